"""The guest base image of the VM lab, built offline from Debian packages (recipe in images/guest/).

Every node boots a qcow2 overlay on one base disk, with the kernel and kubelab's own initrd copied
out of the image's /boot (direct kernel boot). Building it is: a wheelhouse of the agents' Python packages
(``pip download`` of cp311 manylinux wheels on the host, exactly the versions of the lock's agents
subset, requirements/agents.txt, every file checked against its hashes), the Debian tree
(``mmdebstrap``, whose hooks install the wheelhouse into /opt/kubelab/venv and make the tree a lab
node), an ext4 file system from the tree (``mke2fs -d``, no loop mounts) and its qcow2 conversion.

The result is kept under ``<cache>/<digest>/``, where the digest covers what the image is made of:
the recipe, its hooks and files, and the locked agents subset (versions and hashes), but not the
project's own code (the playbooks install that). The host venv installs the same lock
(requirements/host.txt is a superset with the same pins), so host and guests run the same versions.
A second ``ensure`` with the same inputs reuses the image.
Planning (recipe, lock, digest, command lines) is pure; the executor at the bottom runs the plan.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from provisioner.errors import HostError, ProvisionError, SpecError
from provisioner.project import IMAGES, ROOT
from provisioner.system import packages
from provisioner.system.waiting import Heartbeat, timed_out, wait_for

RECIPE_DIR = IMAGES / "guest"
AGENTS_LOCK = ROOT / "requirements" / "agents.txt"  # exported from uv.lock by `make lock`
DEFAULT_CACHE = Path("/var/cache/kubelab/guest")
LOCK_TIMEOUT = 3600.0  # waiting for another build of the image: a cold build takes minutes
FORMAT = 2  # bump when the builder's output changes for the same inputs
REQUIREMENTS = (packages.MMDEBSTRAP, packages.MKE2FS, packages.QEMU_IMG)
HOOK_STAGES = ("setup", "extract", "essential", "customize")
# only these parts of the recipe directory go into the image (and so into the digest)
CONTENT_DIRS = ("hooks", "files")
# the initrd the nodes boot: kubelab's own (hooks/initrd.sh), not the one Debian's kernel package makes
KUBELAB_INITRD = "initrd-kubelab.img"
_SIZE = re.compile(r"^[1-9][0-9]*[MG]$")
_UNIT = re.compile(r"^[A-Za-z0-9@._:-]+\.(service|socket|timer|mount|automount|target|path)$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# one package of a lock export: name==version, an optional environment marker, the files' hashes
_PIN = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;]+)"
    r"(?:\s*;\s*(?P<marker>.*?))?(?P<hashes>(?:\s+--hash=sha256:[0-9a-f]{64})+)\s*"
)
_COMMENT = re.compile(r"(^|\s)#.*$")
_WHEELHOUSE_HINT = (
    "every package of requirements/agents.txt must have a cp311 manylinux wheel on the package index "
    "whose hash the lock lists; a package only the host imports belongs in pyproject.toml's host extra"
)


class GuestImageError(ProvisionError):
    """Building the guest image failed; the message names the step and its log."""


@dataclass(frozen=True)
class GuestImage:
    disk: Path  # the base qcow2; nodes boot overlays backed by it
    kernel: Path
    initrd: Path
    digest: str
    cached: bool
    seconds: float


@dataclass(frozen=True)
class Recipe:
    suite: str
    variant: str
    packages: tuple[str, ...]
    path_exclude: tuple[str, ...]
    path_include: tuple[str, ...]
    python: str  # the suite's python3 (major.minor): wheels are chosen for it
    glibc: str  # the suite's glibc: the newest manylinux wheels it runs
    host_only: tuple[str, ...]  # packages the nodes never get: the wheelhouse refuses them
    disk_size: str
    hooks: tuple[tuple[str, str], ...]  # (stage, path relative to the recipe directory), in order
    enable: tuple[str, ...]
    disable: tuple[str, ...]
    mask: tuple[str, ...]
    source: Path  # the recipe directory

    def canonical(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "variant": self.variant,
            "packages": list(self.packages),
            "path_exclude": list(self.path_exclude),
            "path_include": list(self.path_include),
            "python": self.python,
            "glibc": self.glibc,
            "host_only": list(self.host_only),
            "disk_size": self.disk_size,
            "hooks": [list(h) for h in self.hooks],
            "enable": list(self.enable),
            "disable": list(self.disable),
            "mask": list(self.mask),
        }


# --- the recipe -----------------------------------------------------------------------------------

_FIELDS = {
    "suite",
    "variant",
    "packages",
    "path_exclude",
    "path_include",
    "python",
    "glibc",
    "host_only",
    "disk_size",
    "hooks",
    "enable",
    "disable",
    "mask",
}


def _strings(data: Mapping[str, Any], key: str, where: str, pattern: re.Pattern[str] | None = None) -> tuple[str, ...]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{where}: {key}: expected a list of strings")
    for item in value:
        if pattern is not None and not pattern.match(item):
            raise SpecError(f"{where}: {key}: {item!r} is not a valid name")
    return tuple(value)


def _text(data: Mapping[str, Any], key: str, where: str, pattern: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise SpecError(f"{where}: {key}: {value!r} is not valid (expected to match {pattern})")
    return value


def parse_recipe(data: object, *, source: Path) -> Recipe:
    """A recipe from its YAML document; SpecError names the file and the field that is wrong."""
    where = str(source / "recipe.yaml")
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping")
    unknown = set(data) - _FIELDS
    if unknown:
        raise SpecError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    packages = _strings(data, "packages", where, _PACKAGE)
    if not packages:
        raise SpecError(f"{where}: packages: name the Debian packages of the image")
    size = data.get("disk_size")
    if not isinstance(size, str) or not _SIZE.match(size):
        raise SpecError(f'{where}: disk_size: {size!r} must be a size like "8G" or "512M"')
    raw_hooks = data.get("hooks") or {}
    if not isinstance(raw_hooks, dict) or set(raw_hooks) - set(HOOK_STAGES):
        raise SpecError(f"{where}: hooks: a mapping from {', '.join(HOOK_STAGES)} to lists of scripts")
    hooks: list[tuple[str, str]] = []
    for stage in HOOK_STAGES:
        for path in _strings(raw_hooks, stage, f"{where}: hooks"):
            parts = Path(path).parts
            if Path(path).is_absolute() or ".." in parts or not parts or parts[0] not in CONTENT_DIRS:
                raise SpecError(f"{where}: hooks: {path!r} must be a path under hooks/ or files/")
            script = source / path
            if not script.is_file() or not os.access(script, os.X_OK):
                raise SpecError(f"{where}: hooks: {path} is not an executable file in {source}")
            hooks.append((stage, path))
    return Recipe(
        suite=_text(data, "suite", where, r"[a-z]+"),
        variant=_text(data, "variant", where, r"[a-z]+"),
        packages=packages,
        path_exclude=_strings(data, "path_exclude", where),
        path_include=_strings(data, "path_include", where),
        python=_text(data, "python", where, r"3\.[0-9]+"),
        glibc=_text(data, "glibc", where, r"2\.[0-9]+"),
        host_only=_strings(data, "host_only", where),
        disk_size=size,
        hooks=tuple(hooks),
        enable=_strings(data, "enable", where, _UNIT),
        disable=_strings(data, "disable", where, _UNIT),
        mask=_strings(data, "mask", where, _UNIT),
        source=source,
    )


def load_recipe(directory: Path = RECIPE_DIR) -> Recipe:
    path = directory / "recipe.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SpecError(f"cannot read the guest image recipe {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML ({exc})") from exc
    return parse_recipe(data, source=directory)


@dataclass(frozen=True)
class Pin:
    """One package of the lock: its exact version, the environment it is for, its files' hashes."""

    name: str
    version: str
    marker: str  # empty: every environment
    hashes: tuple[str, ...]  # "sha256:<hex>", one per file (wheels and sdist) of that version

    def line(self) -> str:
        """The requirement as pip reads it: pinned, and installable only as one of these files."""
        marker = f" ; {self.marker}" if self.marker else ""
        return f"{self.name}=={self.version}{marker}" + "".join(f" --hash={h}" for h in self.hashes)


def parse_lock(text: str, *, source: Path) -> tuple[Pin, ...]:
    """The packages of a lock export (requirements/*.txt as `make lock` writes them): comments and
    annotations go, continuation lines join; every package must be pinned with its hashes."""
    logical, current = [], ""
    for raw in text.splitlines():
        line = _COMMENT.sub("", raw).rstrip()
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    logical.append(current)
    logical = [entry.strip() for entry in logical if entry.strip()]
    pins = []
    for entry in logical:
        match = _PIN.fullmatch(entry)
        if match is None:
            raise SpecError(f"{source}: {entry[:80]!r} is not a package pinned with its hashes; run make lock")
        hashes = tuple(h.removeprefix("--hash=") for h in match.group("hashes").split())
        pins.append(Pin(match.group("name"), match.group("version"), (match.group("marker") or "").strip(), hashes))
    if not pins:
        raise SpecError(f"{source}: no packages; run make lock")
    return tuple(pins)


def load_lock(path: Path = AGENTS_LOCK) -> tuple[Pin, ...]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SpecError(f"cannot read the agents' locked packages {path}: {exc.strerror}; run make lock") from exc
    return parse_lock(text, source=path)


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def guest_requirements(pins: Sequence[Pin], host_only: Sequence[str]) -> str:
    """The wheelhouse's requirements.txt: the locked agents subset, one pinned and hashed package a
    line. A package the recipe keeps off the nodes is refused, whatever its spelling: it got into
    [project].dependencies (the agents' set) when it belongs in the host extra."""
    banned = {_normalized(n) for n in host_only}
    for pin in pins:
        if _normalized(pin.name) in banned:
            raise SpecError(
                f"the agents' lock requirements/agents.txt holds {pin.name}, which images/guest/recipe.yaml "
                f"keeps off the nodes (host_only): declare it in pyproject.toml's host extra and run make lock"
            )
    return "".join(f"{pin.line()}\n" for pin in pins)


# --- planning (pure) ------------------------------------------------------------------------------


def content_files(directory: Path) -> list[tuple[str, bytes, bool]]:
    """What of the recipe directory goes into the image: (relative path, bytes, executable) of
    every file under hooks/ and files/, sorted. Anything else there (notes, a README) does not."""
    found = []
    for top in CONTENT_DIRS:
        base = directory / top
        if not base.is_dir():
            continue
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            executable = bool(path.stat().st_mode & 0o111)
            found.append((path.relative_to(directory).as_posix(), path.read_bytes(), executable))
    return sorted(found)


def digest(recipe: Recipe, files: Sequence[tuple[str, bytes, bool]], requirements: str) -> str:
    """Changes when the recipe, any hook or file for the image, the locked packages of the guests
    (a version or a hash in ``requirements``, the wheelhouse's requirements.txt) or the builder's
    format changes; 16 hex digits name the cache entry."""
    inputs = {
        "format": FORMAT,
        "recipe": recipe.canonical(),
        "files": [[path, hashlib.sha256(data).hexdigest(), executable] for path, data, executable in files],
        "requirements": hashlib.sha256(requirements.encode()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def manylinux_platforms(glibc: str, arch: str = "x86_64") -> list[str]:
    """Every manylinux tag a system with this glibc runs, newest first (pip wants them listed when
    it chooses wheels for a platform other than its own)."""
    newest = int(glibc.split(".")[1])
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags = []
    for minor in range(newest, 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in legacy:
            tags.append(f"{legacy[minor]}_{arch}")
    return tags


@dataclass(frozen=True)
class BuildPlan:
    """Where a build happens and the commands of its phases."""

    digest: str
    work: Path  # a temporary directory next to the cache entry, removed afterwards
    requirements: str  # the wheelhouse's requirements.txt: the locked agents subset, with hashes
    wheelhouse: tuple[str, ...]
    packages: tuple[str, ...]
    filesystem: tuple[str, ...]
    qcow2: tuple[str, ...]

    @property
    def wheels(self) -> Path:
        return self.work / "wheels"

    @property
    def rootfs(self) -> Path:
        return self.work / "rootfs"

    @property
    def raw(self) -> Path:
        return self.work / "disk.raw"

    @property
    def out(self) -> Path:
        """What becomes the cache entry: disk.qcow2, vmlinuz, initrd.img, manifest.json."""
        return self.work / "out"


def wheelhouse_argv(recipe: Recipe, *, python: str, dest: Path, requirements: Path) -> list[str]:
    """pip downloads wheels (never sources) for the guest's Python and glibc, whatever the host's,
    each checked against the lock's hashes."""
    tag = recipe.python.replace(".", "")
    argv = [python, "-m", "pip", "download", "--disable-pip-version-check", "--require-hashes", "--dest", str(dest)]
    argv += ["--only-binary=:all:", "--implementation", "cp", "--python-version", recipe.python]
    for abi in (f"cp{tag}", "abi3", "none"):
        argv += ["--abi", abi]
    for platform in manylinux_platforms(recipe.glibc):
        argv += ["--platform", platform]
    return [*argv, "--requirement", str(requirements)]


def mmdebstrap_argv(recipe: Recipe, *, rootfs: Path, wheels: Path) -> list[str]:
    """mmdebstrap into a directory; each hook runs on the host as ``HOOK ROOT RECIPE_DIR WHEELS``,
    then systemctl (in the chroot) enables, disables and masks the recipe's units."""
    argv = ["mmdebstrap", f"--variant={recipe.variant}", "--format=directory", "--mode=root"]
    argv.append(f"--include={','.join(recipe.packages)}")
    argv += [f"--dpkgopt=path-exclude={p}" for p in recipe.path_exclude]
    argv += [f"--dpkgopt=path-include={p}" for p in recipe.path_include]
    for stage, path in recipe.hooks:
        script = shlex.quote(str(recipe.source / path))
        argv.append(f'--{stage}-hook={script} "$1" {shlex.quote(str(recipe.source))} {shlex.quote(str(wheels))}')
    for verb, units in (("enable", recipe.enable), ("disable", recipe.disable), ("mask", recipe.mask)):
        if units:
            argv.append(f'--customize-hook=chroot "$1" systemctl --quiet {verb} {" ".join(units)}')
    return [*argv, recipe.suite, str(rootfs)]


def plan_build(recipe: Recipe, *, requirements: str, image_digest: str, work: Path, python: str) -> BuildPlan:
    wheels, rootfs, raw = work / "wheels", work / "rootfs", work / "disk.raw"
    return BuildPlan(
        digest=image_digest,
        work=work,
        requirements=requirements,
        wheelhouse=tuple(wheelhouse_argv(recipe, python=python, dest=wheels, requirements=wheels / "requirements.txt")),
        packages=tuple(mmdebstrap_argv(recipe, rootfs=rootfs, wheels=wheels)),
        # inode tables and journal are written now, so the guest's ext4lazyinit has nothing to do;
        # the zeroes cost nothing in the qcow2
        filesystem=(
            *("mke2fs", "-q", "-t", "ext4", "-d", str(rootfs), "-L", "root"),
            *("-E", "lazy_itable_init=0,lazy_journal_init=0", str(raw), recipe.disk_size),
        ),
        qcow2=("qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "out" / "disk.qcow2")),
    )


def parse_dpkg_status(text: str) -> dict[str, str]:
    """Installed package -> version, from a dpkg status file."""
    installed = {}
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line[0].isspace())
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            installed[fields["Package"]] = fields.get("Version", "")
    return installed


def cache_root() -> Path:
    return Path(os.environ.get("KUBELAB_GUEST_CACHE") or DEFAULT_CACHE)


# --- the executor ---------------------------------------------------------------------------------


def ensure(
    say: Callable[[str], None],
    *,
    force: bool = False,
    cache: Path | None = None,
    recipe_dir: Path = RECIPE_DIR,
    lock: Path = AGENTS_LOCK,
) -> GuestImage:
    """The guest image, from the cache when its inputs are unchanged, built otherwise.

    ``force`` rebuilds even a cached image, in place: labs whose overlays sit on the old disk
    must be recreated afterwards."""
    began = time.monotonic()
    recipe = load_recipe(recipe_dir)
    requirements = guest_requirements(load_lock(lock), recipe.host_only)
    image_digest = digest(recipe, content_files(recipe_dir), requirements)
    root = cache or cache_root()
    entry = root / image_digest
    if not force and (image := _cached(entry, began)) is not None:
        say(f"guest image {image_digest} from the cache ({entry})")
        return image
    if os.geteuid() != 0:
        raise HostError(
            f"building the guest image needs root (mmdebstrap, chroot); run as root, or point "
            f"KUBELAB_GUEST_CACHE at a directory that holds image {image_digest}"
        )
    packages.ensure(REQUIREMENTS, say=say)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HostError(
            f"cannot create the guest image cache {root} ({exc.strerror}); set KUBELAB_GUEST_CACHE"
        ) from exc
    with _locked(root / ".lock", say=say):
        if not force and (image := _cached(entry, began)) is not None:  # built while we waited
            say(f"guest image {image_digest} from the cache ({entry})")
            return image
        for stale in root.glob(".build-*"):  # left by a build that was killed; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".build-{image_digest}-", dir=root))
        try:
            plan = plan_build(
                recipe, requirements=requirements, image_digest=image_digest, work=work, python=sys.executable
            )
            _build(plan, recipe, entry=entry, log=root / f"{image_digest}.log", say=say)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - began
    say(f"guest image {image_digest} built in {seconds:.0f} s: {entry}")
    return GuestImage(entry / "disk.qcow2", entry / "vmlinuz", entry / "initrd.img", image_digest, False, seconds)


def _cached(entry: Path, began: float) -> GuestImage | None:
    parts = [entry / n for n in ("disk.qcow2", "vmlinuz", "initrd.img", "manifest.json")]
    if not all(p.is_file() for p in parts):
        return None
    seconds = time.monotonic() - began
    return GuestImage(parts[0], parts[1], parts[2], entry.name, True, seconds)


@contextlib.contextmanager
def _locked(path: Path, *, say: Callable[[str], None]) -> Iterator[None]:
    """One build per cache at a time; a second ``ensure`` waits (saying so, up to ``LOCK_TIMEOUT``)
    and then finds the image. The holder writes its pid into the lock file, for the waiter to name."""
    with path.open("a+") as lock:

        def taken() -> bool:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        def holder() -> str:
            lock.seek(0)
            pid = lock.read().strip()
            return f"the lock {path} is held by pid {pid}" if pid else f"the lock {path} is held"

        what = "another kubelab's build of the guest image"
        if not wait_for(taken, timeout=LOCK_TIMEOUT, interval=1.0, what=what, say=say, last=holder):
            raise GuestImageError(timed_out(what, LOCK_TIMEOUT, holder()))
        try:
            lock.truncate(0)
            lock.write(f"{os.getpid()}\n")
            lock.flush()
            yield
        finally:
            lock.truncate(0)
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(plan: BuildPlan, recipe: Recipe, *, entry: Path, log: Path, say: Callable[[str], None]) -> None:
    pins = parse_lock(plan.requirements, source=plan.wheels / "requirements.txt")
    say(
        f"building guest image {plan.digest}: Debian {recipe.suite}, {len(recipe.packages)} packages, "
        f"{len(pins)} locked Python packages (log: {log})"
    )
    log.write_text("")
    plan.wheels.mkdir(parents=True)
    (plan.wheels / "requirements.txt").write_text(plan.requirements)
    seconds = _run("wheelhouse", plan.wheelhouse, log=log, say=say, hint=_WHEELHOUSE_HINT)
    wheels = sorted(p.name for p in plan.wheels.glob("*.whl"))
    say(f"wheelhouse: {len(wheels)} wheels ({seconds:.1f} s)")

    seconds = _run(
        "packages",
        plan.packages,
        log=log,
        say=say,
        progress=True,
        hint="the Debian mirror must be reachable, and the hooks in images/guest/hooks must succeed",
    )
    installed = parse_dpkg_status((plan.rootfs / "var/lib/dpkg/status").read_text())
    kernel, initrd = _boot_files(plan.rootfs)
    say(f"packages: {len(installed)} Debian packages, kernel {kernel.name.removeprefix('vmlinuz-')} ({seconds:.1f} s)")

    plan.out.mkdir()
    shutil.copyfile(kernel, plan.out / "vmlinuz")
    shutil.copyfile(initrd, plan.out / "initrd.img")
    seconds = _run("filesystem", plan.filesystem, log=log, say=say)
    say(f"filesystem: ext4 of {recipe.disk_size} ({seconds:.1f} s)")
    seconds = _run("qcow2", plan.qcow2, log=log, say=say)
    disk = plan.out / "disk.qcow2"
    say(f"qcow2: {disk.stat().st_size / 1e6:.0f} MB ({seconds:.1f} s)")

    manifest = {
        "format": FORMAT,
        "digest": plan.digest,
        "suite": recipe.suite,
        "kernel": kernel.name.removeprefix("vmlinuz-"),
        "disk_size": recipe.disk_size,
        "requirements": [f"{pin.name}=={pin.version}" for pin in pins],
        "wheels": wheels,
        "packages": installed,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (plan.out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    shutil.move(log, plan.out / "build.log")
    if entry.exists():  # a forced rebuild: the old entry moves aside (and goes with the work directory)
        entry.rename(plan.work / "replaced")
    plan.out.rename(entry)  # the same file system: the entry appears complete or not at all


def _boot_files(rootfs: Path) -> tuple[Path, Path]:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        found = ", ".join(k.name for k in kernels) or "none"
        raise GuestImageError(f"the image's /boot should hold one kernel, found {found}; check the recipe's packages")
    initrd = rootfs / "boot" / KUBELAB_INITRD
    if not initrd.is_file():
        raise GuestImageError(f"the image has {kernels[0].name} but no /boot/{KUBELAB_INITRD}; check hooks/initrd.sh")
    return kernels[0], initrd


def _run(
    phase: str,
    argv: Sequence[str],
    *,
    log: Path,
    say: Callable[[str], None] | None = None,
    progress: bool = False,
    hint: str = "",
) -> float:
    """Run one phase's command, its output appended to the build log; with ``say``, a line at least
    every 10 s (with ``progress``, mmdebstrap's "I:" lines; between them, the last line of output).
    A failure is one line: the phase, the last lines of output, the log's path."""
    began = time.monotonic()
    tail: list[str] = []
    beat = (
        Heartbeat(f"the guest image's {phase} step ({argv[0]})", say, last=lambda: tail[-1][:160] if tail else "")
        if say is not None
        else contextlib.nullcontext()
    )
    with log.open("a") as out, beat:
        out.write(f"=== {phase}: {shlex.join(argv)}\n")
        out.flush()
        try:
            process = subprocess.Popen(
                list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
            )
        except FileNotFoundError as exc:
            raise HostError(f"{argv[0]} is missing; it builds the guest image's {phase}") from exc
        assert process.stdout is not None
        for line in process.stdout:
            out.write(line)
            tail = [*tail[-4:], line.rstrip()]
            if progress and isinstance(beat, Heartbeat) and line.startswith("I: "):
                message = _progress_message(line[3:])
                if message:
                    beat.say(f"{phase}: {message} ({time.monotonic() - began:.0f} s)")
        code = process.wait()
    if code != 0:
        last = " | ".join(t for t in tail if t.strip()) or "no output"
        advice = f"; {hint}" if hint else ""
        raise GuestImageError(
            f"guest image {phase} step ({argv[0]}) failed with exit code {code}: {last} (log: {log}){advice}"
        )
    return time.monotonic() - began


def _progress_message(info: str) -> str:
    """An mmdebstrap "I:" line as a progress message: hooks by their stage, not their command line;
    its closing "success" line is left to the caller's summary."""
    message = info.strip().rstrip(".")
    if message.startswith("success in "):
        return ""
    return message.split(" in shell:", 1)[0].split(": ", 1)[0]
