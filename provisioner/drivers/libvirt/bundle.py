"""kubelab's own code as the machines get it: the agents' sources with their bytecode compiled here,
and the API server's schema table derived here.

The playbooks copy the bundle into the guests' venv (``kubelab_files``); it is rebuilt only when the
sources change (its digest covers every file). Deriving the schemas takes seconds on this host and
minutes on an emulated CPU, so the API server on the master finds them ready.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import py_compile
import shutil
import sys
from pathlib import Path

from provisioner.drivers.libvirt.inventory import Bundle
from provisioner.project import AGENTS, ROOT

GUEST_CACHE_TAG = "cpython-311"  # the guests' Debian 12 Python
GUEST_SITE_PACKAGES = Path("/opt/kubelab/venv/lib/python3.11/site-packages")


def sources(root: Path = ROOT) -> list[Path]:
    """The files of the bundle: every Python and JSON file of the agents."""
    return sorted(
        p
        for p in (root / AGENTS.name).rglob("*")
        if p.is_file() and p.suffix in (".py", ".json") and "__pycache__" not in p.parts
    )


def digest_of(files: list[Path], root: Path = ROOT) -> str:
    """Covers the sources and the version of the models the schema table is derived from, so a new
    lock re-derives the table even where the agents' code did not change."""
    digest = hashlib.sha256()
    digest.update(b"kubernetes\0" + importlib.metadata.version("kubernetes").encode() + b"\0")
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def ensure(out: Path, root: Path = ROOT) -> Bundle:
    """The bundle in ``out``, rebuilt when the sources changed since it was made."""
    files = sources(root)
    stamp = digest_of(files, root)
    if (out / "digest").exists() and (out / "digest").read_text().strip() == stamp:
        return Bundle(out, stamp)
    shutil.rmtree(out, ignore_errors=True)
    for path in files:
        target = out / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        if path.suffix == ".py" and sys.implementation.cache_tag == GUEST_CACHE_TAG:
            # unchecked-hash bytecode stays valid whatever the files' times on the guest
            py_compile.compile(
                str(target),
                cfile=importlib.util.cache_from_source(str(target)),
                dfile=str(GUEST_SITE_PACKAGES / path.relative_to(root)),
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
    # the same derivation the API server makes at its first start (seconds here, minutes on TCG)
    from agents.apiserver import schemas  # noqa: PLC0415 - only `up` needs it, and it is slow to import
    from agents.apiserver.resources import Catalog  # noqa: PLC0415

    (out / "schemas").mkdir()
    schemas.load(Catalog().models(), out / "schemas")
    (out / "digest").write_text(stamp + "\n")
    return Bundle(out, stamp)
