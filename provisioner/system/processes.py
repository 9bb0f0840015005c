"""Background processes the local driver starts, and finding them again later.

Each process is recorded by pid together with its start time (from /proc), so a later ``status`` or
``down`` acts only on the process kubelab started, never on an unrelated process that reused the pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from provisioner.errors import ComponentError


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    start_ticks: int
    argv: tuple[str, ...]
    log: str

    def save(self, run_dir: Path) -> None:
        """Into ``run_dir/NAME.json``, whole: a command killed while saving leaves the old record or the new one."""
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / f"{self.name}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, run_dir: Path, name: str) -> ProcessRecord | None:
        path = run_dir / f"{name}.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(data["name"], data["pid"], data["start_ticks"], tuple(data["argv"]), data["log"])


def running_record(run_dir: Path, name: str) -> ProcessRecord | None:
    """The record ``name`` in ``run_dir`` while its process runs (the same pid and start time), else None."""
    record = ProcessRecord.load(run_dir, name)
    return record if record is not None and alive(record) else None


def stop_recorded(run_dir: Path, name: str) -> bool:
    """End the process recorded as ``name`` in ``run_dir`` (by its pid and start time, never by a name)
    and forget the record; whether it ran."""
    record = ProcessRecord.load(run_dir, name)
    if record is None:
        return False
    stopped = stop(record)
    (run_dir / f"{name}.json").unlink(missing_ok=True)
    return stopped


def stat_fields(pid: int, proc: Path = Path("/proc")) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the program's name (the state letter first, then the
    parent's pid, ...), or None if there is no such process."""
    try:
        raw = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a pid, or None if there is no such process."""
    fields = stat_fields(pid)
    return None if fields is None else (fields[0], int(fields[19]))


def alive(record: ProcessRecord) -> bool:
    stat = _stat(record.pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[1] == record.start_ticks


# a program started with a record: it waits until its record is saved, and ends when the command that
# started it dies first (EOF on its stdin), so no process of a lab ever runs unrecorded
_GATE = 'IFS= read -r _ || exit 1; exec "$@" </dev/null'


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    record_in: Path | None = None,
) -> ProcessRecord:
    """Start ``argv`` in its own session, output appended to ``log``; ``tags`` go into its environment
    (on top of ``env``, or of this process's own), where ``tagged`` finds them again. ``record_in``: its
    record is saved there before the program begins (a ``kubelab`` command killed in between leaves neither
    a program running without its record nor a record of a program that never ran)."""
    if tags:
        env = {**(env if env is not None else os.environ), **tags}
    command = list(argv)
    if record_in is not None:
        if shutil.which(argv[0], path=(env if env is not None else os.environ).get("PATH")) is None:
            raise ComponentError(f"{name}: cannot start {argv[0]}: No such file or directory")
        command = ["/bin/sh", "-c", _GATE, name, *argv]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE if record_in is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(env) if env is not None else None,
                cwd=cwd,
            )
        except OSError as exc:
            raise ComponentError(f"{name}: cannot start {argv[0]}: {exc.strerror}") from exc
    stat = _stat(proc.pid)
    record = ProcessRecord(name, proc.pid, stat[1] if stat else 0, tuple(argv), str(log))
    if proc.stdin is not None:  # the gate: the record first, then the program
        try:
            record.save(record_in or Path())
            with contextlib.suppress(BrokenPipeError):  # it ended already: the caller sees it exited
                proc.stdin.write(b"go\n")
                proc.stdin.flush()
        finally:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
    if stat is None:
        raise ComponentError(f"{name} exited at once; see {log}")
    return record


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # not our child: init reaps it
        os.waitpid(pid, os.WNOHANG)


def stop(record: ProcessRecord, *, grace: float = 10.0) -> bool:
    """SIGTERM, then SIGKILL after ``grace`` seconds. Returns whether the process was running."""
    if not alive(record):
        _reap(record.pid)
        return False
    os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not alive(record):
            return True
        time.sleep(0.05)
    os.kill(record.pid, signal.SIGKILL)
    while alive(record):
        _reap(record.pid)
        time.sleep(0.02)
    return True


def log_tail(path: str | Path, lines: int = 5) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


@dataclass(frozen=True)
class Tagged:
    """A running process that carries a tag (``name=value``) in its environment."""

    pid: int
    start_ticks: int
    value: str
    argv: tuple[str, ...]
    environment: Mapping[str, str]

    @property
    def record(self) -> ProcessRecord:
        return ProcessRecord(
            self.argv[0].rsplit("/", 1)[-1] if self.argv else str(self.pid), self.pid, self.start_ticks, self.argv, ""
        )


def tagged(name: str, proc: Path = Path("/proc")) -> list[Tagged]:
    """Every live process whose environment sets ``name`` (as its own spawner put it there)."""
    found = []
    marker = name.encode() + b"="
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "environ").read_bytes()
            if marker not in raw:
                continue
            argv = tuple(a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a)
        except OSError:
            continue
        environment = dict(item.decode(errors="replace").split("=", 1) for item in raw.split(b"\0") if b"=" in item)
        stat = _stat(int(entry.name))
        if stat is None or stat[0] in ("Z", "X") or name not in environment:
            continue
        found.append(Tagged(int(entry.name), stat[1], environment[name], argv, environment))
    return found
