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


NOTE_WAIT = 1.0  # seconds a refused command waits for the holder's note: it writes it just after taking the lock
LOCKS = Path("/proc/locks")


def describe_holder(text: str, lab: str, holder: int | None = None) -> str:
    """The one line a refused command prints, from what the holder wrote into the lock file (``holder``: the
    pid the kernel says holds the lock, when known; a note naming another pid is an earlier holder's)."""
    try:
        note = json.loads(text)
        since = time.strftime("%H:%M:%S", time.localtime(float(note["since"])))
        command, pid = str(note["command"]), int(note["pid"])
        if holder is not None and pid != holder:
            raise ValueError("an earlier holder's note")
    except (ValueError, KeyError, TypeError):
        if holder is not None:
            return (
                f"lab {lab!r} is busy: a kubelab command (pid {holder}) holds it;"
                f" try again when it has ended (or stop it: kill {holder})"
            )
        return f"lab {lab!r} is busy: another kubelab command holds it; try again when it has ended"
    return (
        f"lab {lab!r} is busy: `kubelab {command}` (pid {pid}) holds it since {since};"
        f" try again when it has ended (or stop it: kill {pid})"
    )


def holder_of(fd: int, locks: Path = LOCKS) -> int | None:
    """The pid that holds the flock on ``fd``'s file, as the kernel lists it in /proc/locks (None: unknown)."""
    stat = os.fstat(fd)
    wanted = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    try:
        lines = locks.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()  # "3: FLOCK  ADVISORY  WRITE 4242 00:1a:1234 0 EOF" ("3: -> FLOCK ..." waits)
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted and fields[4].isdigit():
            return int(fields[4])
    return None


def _busy_line(path: Path, fd: int, lab: str) -> str:
    """The refusal, naming the holder: its note, once it has written it (at most :data:`NOTE_WAIT` later)."""
    deadline = time.monotonic() + NOTE_WAIT
    while True:
        holder = holder_of(fd)
        try:
            text = path.read_text()
        except OSError:
            text = ""
        line = describe_holder(text, lab, holder)
        if "`kubelab " in line or time.monotonic() >= deadline:
            return line
        time.sleep(0.01)


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
            raise LabBusyError(_busy_line(path, fd, lab)) from None
        record = json.dumps({"command": command, "pid": os.getpid(), "since": time.time()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode() + b"\n", 0)
        yield
    finally:
        os.close(fd)  # releases the lock
