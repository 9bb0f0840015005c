"""One lock per lab: ``up``, ``down``, ``start``, ``stop`` and ``fault`` hold it while they run, so two
commands never change one lab at once. A second command fails at once with one line saying which
command holds the lab, since when, and with which pid.

The lock is ``flock`` on a file under /run/kubelab/locks named after the lab's home and name, outside
the lab's state directory (``down`` removes that, and a refused command changes nothing there): the
kernel releases it when its holder exits, however it exits (a killed command leaves no stale lock
behind). The file also says who holds it, for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from provisioner.errors import ProvisionError


class LabBusyError(ProvisionError):
    """Another kubelab command holds the lab."""


ROOT = Path(os.environ.get("KUBELAB_LOCKS") or "/run/kubelab/locks")


def lock_file(home: Path, lab: str) -> Path:
    place = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
    return ROOT / f"{place}-{lab}.lock"


def describe_holder(text: str, lab: str) -> str:
    """The one line a refused command prints, from what the holder wrote into the lock file."""
    try:
        holder = json.loads(text)
        since = time.strftime("%H:%M:%S", time.localtime(float(holder["since"])))
        command, pid = str(holder["command"]), int(holder["pid"])
    except (ValueError, KeyError, TypeError):
        return f"lab {lab!r} is busy: another kubelab command holds it; try again when it has ended"
    return (
        f"lab {lab!r} is busy: `kubelab {command}` (pid {pid}) holds it since {since};"
        f" try again when it has ended (or stop it: kill {pid})"
    )


@contextlib.contextmanager
def held(home: Path, lab: str, command: str, *, wait: bool = False) -> Iterator[None]:
    """Hold the lab's lock for the ``with`` block; LabBusyError at once when another command holds it
    (``wait``: wait for it instead, for locks held only for a moment)."""
    path = lock_file(home, lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabBusyError(describe_holder(path.read_text(), lab)) from None
        record = json.dumps({"command": command, "pid": os.getpid(), "since": time.time()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode() + b"\n", 0)
        yield
    finally:
        os.close(fd)  # releases the lock
