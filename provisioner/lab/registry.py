"""Every lab on this host, whatever its KUBELAB_HOME: one small record per lab identity under
/var/lib/kubelab/labs, written by ``up`` and removed by ``down``.

``kubelab list`` reads it to show the labs of every home, and to tell a resource of a lab that lives
in another home (a test suite's temporary one, say) from an orphan: without it, a lab made elsewhere
would look like leftovers to be removed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from provisioner.lab import identity as labidentity
from provisioner.lab.identity import Identity
from provisioner.lab.paths import LabPaths

ROOT = Path(os.environ.get("KUBELAB_LABS_REGISTRY") or "/var/lib/kubelab/labs")


@dataclass(frozen=True)
class Entry:
    lab: str
    uid: str
    driver: str
    home: str

    @property
    def paths(self) -> LabPaths:
        return LabPaths(Path(self.home) / self.lab)

    def alive(self) -> bool:
        """Whether the lab still exists: its state is there and carries this identity."""
        found = labidentity.read(self.paths)
        return found is not None and found.uid == self.uid


def record(identity: Identity, paths: LabPaths, root: Path | None = None) -> None:
    entry = Entry(identity.lab, identity.uid, identity.driver, str(paths.root.parent))
    labidentity.write_whole((root or ROOT) / f"{identity.uid}.json", json.dumps(asdict(entry)) + "\n")


def forget(uid: str, root: Path | None = None) -> None:
    ((root or ROOT) / f"{uid}.json").unlink(missing_ok=True)


def entries(root: Path | None = None) -> list[Entry]:
    where = root or ROOT
    out = []
    for path in sorted(where.glob("*.json")) if where.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            out.append(Entry(str(data["lab"]), str(data["uid"]), str(data["driver"]), str(data["home"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out
