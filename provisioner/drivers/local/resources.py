"""What local labs leave on this host outside their processes: the nodes' and pods' network
namespaces (``kl-<lab>-node``, ``kl-<lab>-node1-<pod uid>``) and mounts under a lab's state directory.
Found by their names (a namespace carries no metadata), removed with what runs inside them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

from provisioner.drivers.local.nodenet import NETNS_DIR
from provisioner.lab.resources import Resource

NETNS = re.compile(r"^kl-(?P<lab>[a-z0-9][-a-z0-9]*?)-node(?:$|\d+-)")
MOUNTINFO = Path("/proc/self/mountinfo")


def _mount_points(under: Path) -> list[str]:
    root = str(under.resolve()) + "/"
    try:
        lines = MOUNTINFO.read_text().splitlines()
    except OSError:
        return []
    return sorted({p[4] for p in (line.split() for line in lines) if len(p) > 4 and p[4].startswith(root)})


def find(lab: str | None, homes: list[Path]) -> list[Resource]:
    """The namespaces named after ``lab`` (any lab: None), and mounts under a lab directory of ``homes``."""
    out = []
    names = sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []
    for name in names:
        match = NETNS.match(name)
        if match and (lab is None or match.group("lab") == lab):
            out.append(Resource("network namespace", name, match.group("lab"), "", "local"))
    for home in homes:
        for point in _mount_points(home):
            owner = Path(point).relative_to(home.resolve()).parts[0]
            if lab is None or owner == lab:
                out.append(Resource("mount", point, owner, "", "local"))
    return out


def remove(resource: Resource) -> None:
    if resource.kind == "network namespace":
        pids = subprocess.run(["ip", "netns", "pids", resource.name], capture_output=True, text=True, check=False)
        for pid in pids.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                continue
        subprocess.run(["ip", "netns", "delete", resource.name], capture_output=True, check=False)
    elif resource.kind == "mount":
        subprocess.run(["umount", "-l", resource.name], capture_output=True, check=False)
