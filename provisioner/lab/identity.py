"""A lab's identity: its name, a UID made at its first ``up``, and its driver.

The UID is stamped on everything the lab creates (libvirt domains and networks in their metadata,
its processes in their environment, its nftables tables in their comment), so ``kubelab down`` and
``kubelab list`` can tell the lab's own resources from another lab's, or from those of an earlier lab
of the same name, even when the state directory is gone. It lives in the lab's ``identity.json``;
every state file of the lab is written whole (a temporary file renamed over the old one).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from provisioner.lab.paths import LabPaths

ENV_LAB = "KUBELAB_LAB_NAME"  # the environment of a lab's processes names the lab
ENV_UID = "KUBELAB_LAB_UID"  # ... and its identity


@dataclass(frozen=True)
class Identity:
    lab: str
    uid: str
    driver: str
    created: float  # UNIX time of the first `up`

    @property
    def short(self) -> str:
        return self.uid[:8]

    def environment(self) -> dict[str, str]:
        """What the lab's processes carry in their environment."""
        return {ENV_LAB: self.lab, ENV_UID: self.uid}


def new(lab: str, driver: str, *, now: float | None = None) -> Identity:
    return Identity(lab, uuid.uuid4().hex, driver, time.time() if now is None else now)


def path_of(paths: LabPaths) -> Path:
    return paths.root / "identity.json"


def read(paths: LabPaths) -> Identity | None:
    """The lab's identity, or None when it has none (never made, or its state lost or damaged)."""
    try:
        data = json.loads(path_of(paths).read_text())
        return Identity(str(data["lab"]), str(data["uid"]), str(data["driver"]), float(data["created"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_whole(path: Path, text: str, *, mode: int = 0o644) -> None:
    """Replace ``path`` by ``text`` in one rename: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)


def write(paths: LabPaths, identity: Identity) -> None:
    write_whole(path_of(paths), json.dumps(asdict(identity), indent=2) + "\n")
