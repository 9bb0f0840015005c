"""Room on this host's disks: ``up`` checks it before it writes anything."""

from __future__ import annotations

import shutil
from pathlib import Path

from provisioner.errors import HostError


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds ``path`` (or would: its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def require(path: Path, needed: int, *, what: str) -> None:
    """HostError naming the place and the shortfall when fewer than ``needed`` bytes are free there."""
    free = free_bytes(path)
    if free < needed:
        raise HostError(
            f"{what} need {needed / 2**30:.1f} GiB free at {path}, the disk has {free / 2**30:.1f} GiB;"
            " free some space there"
        )
