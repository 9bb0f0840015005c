"""The Python part of an add-on's image: the project's own code and the locked wheels it imports.

An add-on (the cluster DNS, ...) runs the project's code in a pod: Debian's python3 comes from the
recipe's packages as for any image, and this adds, under the image's
``/usr/local/lib/python3.11/dist-packages`` (on Debian python3's path):

- ``wheels``: packages of the agents' lock (requirements/agents.txt), exactly those versions, each
  wheel checked against the lock's hashes (``pip download --require-hashes``, for the guest's Python
  and glibc, as the guest image's wheelhouse; kept in the image cache, so a second build is offline),
  unpacked as pip would install them;
- ``code``: the project's packages the add-on imports (``agents/machinery``, ``agents/dns``), as
  files of the repository;

both compiled to bytecode that is checked by nothing (unchecked-hash .pyc: the layer's files carry
the epoch as their time, and an emulated CPU should not compile on every start).
"""

from __future__ import annotations

import compileall
import hashlib
import py_compile
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.artefacts import guestimage
from provisioner.errors import HostError, SpecError
from provisioner.project import ROOT

SITE = "/usr/local/lib/python3.11/dist-packages"
PIP_TIMEOUT = 600.0


@dataclass(frozen=True)
class PythonLayer:
    wheels: tuple[str, ...]  # package names of the agents' lock
    code: tuple[str, ...]  # repository paths (packages or modules) copied as they are

    def canonical(self) -> dict[str, Any]:
        return {"wheels": list(self.wheels), "code": list(self.code)}


def parse(value: object, where: str) -> PythonLayer:
    if not isinstance(value, dict) or set(value) - {"wheels", "code"}:
        raise SpecError(f"{where}: python: give wheels (packages of the agents' lock) and code (repository paths)")
    layer = []
    for key in ("wheels", "code"):
        items = value.get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
            raise SpecError(f"{where}: python.{key}: expected a list of names")
        layer.append(tuple(items))
    for path in layer[1]:
        if path.startswith("/") or ".." in path.split("/") or not (ROOT / path).exists():
            raise SpecError(f"{where}: python.code: {path!r} is not a path in the repository")
    return PythonLayer(layer[0], layer[1])


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins_of(layer: PythonLayer, where: str) -> list[guestimage.Pin]:
    """The lock's pins of the layer's wheels; a name the lock lacks is the recipe's mistake."""
    locked = {_normalized(p.name): p for p in guestimage.load_lock()}
    missing = [w for w in layer.wheels if _normalized(w) not in locked]
    if missing:
        raise SpecError(f"{where}: python.wheels: {missing[0]!r} is not in requirements/agents.txt (add it, make lock)")
    return [locked[_normalized(w)] for w in layer.wheels]


def code_files(layer: PythonLayer) -> list[tuple[str, bytes]]:
    """(path in the repository, content) of every .py file the layer's code takes, in name order."""
    out: list[tuple[str, bytes]] = []
    for entry in layer.code:
        source = ROOT / entry
        files = (
            [source] if source.is_file() else sorted(p for p in source.rglob("*.py") if "__pycache__" not in p.parts)
        )
        out += [(str(f.relative_to(ROOT)), f.read_bytes()) for f in files]
    return out


def digest(layer: PythonLayer, pins: Sequence[guestimage.Pin]) -> str:
    """Changes with the code's bytes and the wheels' exact versions."""
    hasher = hashlib.sha256()
    for path, data in code_files(layer):
        hasher.update(path.encode() + b"\0" + hashlib.sha256(data).digest())
    for pin in pins:
        hasher.update(pin.line().encode())
    return hasher.hexdigest()


def _wheel_for(pin: guestimage.Pin, wheels: Path) -> Path | None:
    prefix = re.sub(r"[-.]+", "_", pin.name).lower() + "-" + pin.version + "-"
    found = [w for w in sorted(wheels.glob("*.whl")) if w.name.lower().startswith(prefix)]
    return found[0] if found else None


def download(pins: Sequence[guestimage.Pin], wheels: Path) -> None:
    """The pinned wheels for the guest's Python into ``wheels`` (only the ones not there yet)."""
    wanted = [p for p in pins if _wheel_for(p, wheels) is None]
    if not wanted:
        return
    wheels.mkdir(parents=True, exist_ok=True)
    requirements = wheels / "requirements.txt"
    requirements.write_text("".join(p.line() + "\n" for p in wanted))
    recipe = guestimage.load_recipe()
    argv = guestimage.wheelhouse_argv(recipe, python=sys.executable, dest=wheels, requirements=requirements)
    argv.insert(argv.index("download") + 1, "--no-deps")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=PIP_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise HostError(f"pip download of {len(wanted)} wheels took over {PIP_TIMEOUT:.0f}s") from exc
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise HostError(f"pip download of the add-on's wheels failed: {last[0]}")
    for pin in wanted:
        if _wheel_for(pin, wheels) is None:
            raise HostError(f"pip download gave no wheel of {pin.name} {pin.version}")


def install(layer: PythonLayer, pins: Sequence[guestimage.Pin], *, wheels: Path, tree: Path) -> None:
    """Unpack the wheels and copy the code into ``tree``'s site directory, then compile it all."""
    site = tree / SITE.lstrip("/")
    site.mkdir(parents=True, exist_ok=True)
    for pin in pins:
        wheel = _wheel_for(pin, wheels)
        assert wheel is not None
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                # *.data/ holds scripts and headers, which nothing in a pod runs
                if member.endswith("/") or member.split("/", 1)[0].endswith(".data"):
                    continue
                target = site / member
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
    for path, data in code_files(layer):
        target = site / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for cache in site.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    ok = compileall.compile_dir(
        site,
        ddir=SITE,
        quiet=1,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    if not ok:
        raise HostError(f"compiling the add-on's Python files failed (under {site})")
