"""Crashes and concurrency against the lifecycle of local labs: ``kubelab up``, ``down``, ``stop``,
``start`` and ``fault`` on a few labs in one KUBELAB_HOME, through the real command, alone or two at
once, some killed with SIGKILL after a number of output lines (``up`` prints one per step) or after a
delay; after each step, what the host has must agree with what the labs' state says.

One implementation for the integration tier's stateful test (``tests/integration/test_lifecycle_crashes.py``,
hypothesis chooses the steps) and the benchmark ``benchmarks.lifecycle`` (a seeded random choice):

- :class:`Step`: one command on one lab, maybe with a :class:`Kill`;
- :class:`Fleet`: runs steps (:meth:`Fleet.run`, :meth:`Fleet.together`, :meth:`Fleet.lose`: a lab's state
  lost or damaged, then ``down``) and says what went wrong:
  a command that did not do what it must, a lab's identity or settings changed by a command that may not
  change them (clobbered), a command refused for a busy lab that was not refused at once;
- :meth:`Fleet.check`: the host against the labs' state (below); :meth:`Fleet.clean` removes every lab.

What :meth:`Fleet.check` holds a lab to. A lab exists when its state directory has its identity or its
settings. Of a lab that does not exist there is nothing: no process carrying its name or naming its
directory, no network namespace, mount, host registry entry or state file, and nobody holds its lock.
A lab that exists has no process of another identity and no registry entry but its own. A lab whose last
command was a completed ``up`` or ``start`` is healthy (``kubelab status`` exits 0), one whose last was
a completed ``stop`` runs nothing, one whose last was a completed ``down`` does not exist; a killed
command leaves a lab that only has to agree with the host. ``kubelab list`` names no orphan of these labs.
Each lab's lock file (under /run/kubelab/locks) outlives the lab by design: it holds no state, and
removing a file others may be waiting to lock would let two commands hold "the" lock at once.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.lab import lock, registry
from provisioner.lab.identity import ENV_LAB, ENV_UID

PORT_FLAGS = ("--api-port", "--registry-port", "--etcd-port", "--etcd-peer-port")  # every port a local lab takes
TIMEOUT = 180.0  # one command on a local lab without nodes (an `up` takes seconds; this is a hang)
AT_ONCE = 10.0  # seconds: a command refused because the lab is busy has ended within this (Python's start-up included)
PORTS = range(20000, 32000)  # below the kernel's ephemeral range, where a component's own free port never lands
NETNS_DIR = Path("/run/netns")


@dataclass(frozen=True)
class Kill:
    """When to SIGKILL a command: once it has printed ``lines`` lines (those containing ``text``, when given),
    or after ``seconds``."""

    lines: int = 0
    seconds: float = 0.0
    text: str = ""

    def __str__(self) -> str:
        if not self.lines:
            return f"killed after {self.seconds:.1f}s"
        return f"killed after {self.lines} lines" + (f" with {self.text!r}" if self.text else "")

    def counts(self, line: str) -> bool:
        return self.text in line


@dataclass(frozen=True)
class Step:
    """One ``kubelab`` command on one lab, killed as ``kill`` says (None: left to finish)."""

    lab: str
    command: str
    kill: Kill | None = None

    def __str__(self) -> str:
        return f"{self.command} {self.lab}" + (f" ({self.kill})" if self.kill else "")


@dataclass(frozen=True)
class Ran:
    """A command as it ran: its output lines with the time each came, how it ended."""

    step: Step
    pid: int
    began: float  # time.monotonic()
    ended: float
    code: int
    lines: tuple[tuple[float, str, str], ...]  # (when, "out" or "err", text)
    killed: bool  # SIGKILL ended it

    @property
    def out(self) -> str:
        return "\n".join(text for _when, stream, text in self.lines if stream == "out")

    @property
    def err_lines(self) -> list[str]:
        return [text for _when, stream, text in self.lines if stream == "err" and text.strip()]

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.killed

    @property
    def seconds(self) -> float:
        return self.ended - self.began

    @property
    def silence(self) -> float:
        """The longest time without output: from the start to the first line, between two lines, from the
        last line to the end."""
        times = [self.began, *(when for when, _stream, _text in self.lines), self.ended]
        return max(b - a for a, b in itertools.pairwise(times))

    def one_line(self, starts: str) -> bool:
        """Whether the command failed with one line on stderr that starts so, and nothing else."""
        err = self.err_lines
        return self.code == 1 and len(err) == 1 and err[0].startswith(f"kubelab: {starts}") and not self.out.strip()

    def refused_busy(self) -> bool:
        return self.code == 1 and len(self.err_lines) == 1 and f"lab {self.step.lab!r} is busy: " in self.err_lines[0]

    def said(self) -> str:
        """The end of what it printed, for a message."""
        tail = [text for _when, _stream, text in self.lines][-6:]
        return f"exit {self.code}{' (killed)' if self.killed else ''} after {self.seconds:.1f}s: " + " | ".join(tail)


class Running:
    """A ``kubelab`` command started in the background, its output read line by line as it comes."""

    def __init__(self, home: Path, step: Step, argv: Sequence[str], *, echo: bool = False) -> None:
        self.step = step
        self.echo = echo  # print each line as it comes (a long command's progress)
        self.began = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "provisioner.cli", *argv],
            env={**os.environ, "KUBELAB_HOME": str(home)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.lines: list[tuple[float, str, str]] = []
        self.changed = threading.Condition()
        self.open_streams = 2
        self.sent_kill = False
        self.exited = 0.0  # time.monotonic() when it ended (seen by a thread of its own, as it happens)
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, "out"), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, "err"), daemon=True),
            threading.Thread(target=self._wait, daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _wait(self) -> None:
        self.proc.wait()
        with self.changed:
            self.exited = time.monotonic()
            self.changed.notify_all()

    def _read(self, stream: Iterable[str] | None, name: str) -> None:
        for line in stream or ():
            if self.echo:
                print(line, end="", flush=True)
            with self.changed:
                self.lines.append((time.monotonic(), name, line.rstrip("\n")))
                self.changed.notify_all()
        with self.changed:
            self.open_streams -= 1
            self.changed.notify_all()

    def _out_lines(self, kill: Kill) -> int:
        return sum(1 for _when, stream, text in self.lines if stream == "out" and kill.counts(text))

    def kill_when(self, kill: Kill, *, timeout: float) -> None:
        """SIGKILL the command once ``kill`` says, unless it has ended by then."""
        with self.changed:
            if kill.lines:
                self.changed.wait_for(lambda: self._out_lines(kill) >= kill.lines or self.exited, timeout=timeout)
            else:  # the kill point: the command's end, or this deadline
                self.changed.wait_for(lambda: self.exited, timeout=kill.seconds)
            if not self.exited:
                self.proc.kill()
                self.sent_kill = True

    def finish(self, *, timeout: float) -> Ran:
        """Wait for the command's end (SIGKILL after ``timeout`` seconds: a hung command) and its output."""
        with self.changed:
            if not self.changed.wait_for(
                lambda: self.exited, timeout=max(0.0, timeout - (time.monotonic() - self.began))
            ):
                self.lines.append((time.monotonic(), "err", f"(test) no end within {timeout:.0f}s: killed"))
                self.proc.kill()
                self.changed.wait_for(lambda: self.exited)
            # a program the command started may hold its output open for a while: not waited for long
            self.changed.wait_for(lambda: not self.open_streams, timeout=5.0)
            lines = tuple(self.lines)
            ended = self.exited
        code = self.proc.returncode
        return Ran(self.step, self.proc.pid, self.began, ended, code, lines, self.sent_kill and code == -signal.SIGKILL)


def spare_ports(count: int, taken: set[int], rng: random.Random) -> list[int]:
    """``count`` ports of :data:`PORTS` nothing listens on now and not in ``taken`` (which they join)."""
    out: list[int] = []
    while len(out) < count:
        port = rng.choice(PORTS)
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        out.append(port)
    return out


@dataclass(frozen=True)
class State:
    """What a lab's state says it is: its identity and settings files as they are (None: missing)."""

    identity: bytes | None
    settings: bytes | None

    @classmethod
    def of(cls, root: Path) -> State:
        def read(name: str) -> bytes | None:
            try:
                return (root / name).read_bytes()
            except OSError:
                return None

        return cls(read("identity.json"), read("lab.json"))

    @property
    def exists(self) -> bool:
        return self.identity is not None or self.settings is not None

    @property
    def uid(self) -> str:
        try:
            return str(json.loads(self.identity or b"")["uid"])
        except (ValueError, KeyError, TypeError):
            return ""


@dataclass
class LabModel:
    name: str
    flags: tuple[str, ...]  # `kubelab up` flags: the local driver, no nodes, its ports
    last: str = ""  # the last command that completed on it ("killed": a command was killed; "": none yet)


@dataclass
class Tally:
    """The figures of a run: what ran, what went wrong."""

    operations: int = 0
    kills: int = 0
    refusals: int = 0  # refused: the lab was busy, or the command cannot apply (fault on a local lab, start of none)
    busy: int = 0  # of which because another command held the lab
    concurrent: int = 0  # steps with two commands at once
    orphans: int = 0  # resources of no lab, summed over the checks after each step
    clobbered: int = 0  # a lab's identity or settings changed by a command that may not change them
    lost: int = 0  # states lost or damaged on purpose (each followed by `kubelab down`)
    violations: int = 0  # disagreements between the host and the labs' state, summed over the checks
    longest_silence: float = 0.0
    longest_silence_of: str = ""
    longest_refusal: float = 0.0  # the slowest `is busy` refusal (seconds)
    seconds_by_command: dict[str, list[float]] = field(default_factory=dict)

    def count(self, ran: Ran) -> None:
        self.operations += 1
        self.kills += ran.killed
        self.seconds_by_command.setdefault(ran.step.command, []).append(ran.seconds)
        if ran.silence > self.longest_silence:
            self.longest_silence, self.longest_silence_of = ran.silence, str(ran.step)


class Fleet:
    """Local labs ``names`` in ``home``, driven through the real ``kubelab`` command."""

    def __init__(
        self,
        home: Path,
        names: Sequence[str],
        *,
        with_node: Sequence[str] = (),
        seed: int = 0,
        timeout: float = TIMEOUT,
        say: Callable[[str], None] = lambda _line: None,
    ) -> None:
        """``with_node``: the labs (of ``names``) that run a real node (containerd, kubelet and proxy in a network
        namespace); the others run the control plane alone."""
        self.home = home
        self.timeout = timeout
        self.say = say
        rng = random.Random(seed)
        taken: set[int] = set()
        self.labs: dict[str, LabModel] = {}
        for name in names:
            flags = ["--driver", "local", "--nodes", "1" if name in with_node else "0"]
            for flag, port in zip(PORT_FLAGS, spare_ports(len(PORT_FLAGS), taken, rng), strict=True):
                flags += [flag, str(port)]
            self.labs[name] = LabModel(name, tuple(flags))
        self.tally = Tally()

    # --- running commands --------------------------------------------------------------------------

    def argv(self, step: Step) -> list[str]:
        if step.command == "up":
            return ["up", "--name", step.lab, *self.labs[step.lab].flags]
        if step.command == "fault":  # a local lab has no machines to crash: refused, whatever its state
            return ["fault", "crash", f"{step.lab}-node1", "--name", step.lab]
        return [step.command, "--name", step.lab]

    def start(self, step: Step) -> Running:
        return Running(self.home, step, self.argv(step))

    def state(self, lab: str) -> State:
        return State.of(self.home / lab)

    def run(self, step: Step) -> list[str]:
        """Run ``step`` alone; what went wrong (nothing: an empty list)."""
        before = self.state(step.lab)
        running = self.start(step)
        if step.kill is not None:
            running.kill_when(step.kill, timeout=self.timeout)
        ran = running.finish(timeout=self.timeout)
        return self._after([ran], {step.lab: before})

    def together(self, first: Step, second: Step) -> list[str]:
        """Run two commands at once (unkilled); what went wrong. On one lab, one of them holds the lab and the
        other is refused at once as busy, or they run one after the other; on two labs, both run."""
        before = {lab: self.state(lab) for lab in {first.lab, second.lab}}
        both = [self.start(first), self.start(second)]
        runs = [r.finish(timeout=self.timeout) for r in both]
        self.tally.concurrent += 1
        return self._after(runs, before)

    # --- what a step must have done ----------------------------------------------------------------

    def _after(self, runs: list[Ran], before: dict[str, State]) -> list[str]:
        problems: list[str] = []
        for ran in runs:
            self.tally.count(ran)
            self.say(f"  {ran.step}: {'killed' if ran.killed else f'exit {ran.code}'} after {ran.seconds:.1f}s")
        for lab, was in before.items():
            mine = [r for r in runs if r.step.lab == lab]
            problems += self._outcomes(mine, was)
            problems += self._clobbered(lab, mine, was, self.state(lab))
            self.labs[lab].last = _last(mine, self.labs[lab].last)
        return problems

    def _outcomes(self, runs: list[Ran], before: State) -> list[str]:
        """Each command did what it must: ``up``, ``down`` and ``stop`` succeed, ``start`` succeeds on a lab
        that exists and is refused in one line otherwise, ``fault`` is refused in one line (a local lab has
        no machines); on a busy lab, a command is refused at once in one line naming the holder."""
        problems = []
        alone = len(runs) == 1
        for ran in runs:
            if ran.killed:
                continue
            others = [r for r in runs if r is not ran]
            if not alone and ran.refused_busy():
                problems += self._busy(ran, others[0])
                continue
            command, lab = ran.step.command, ran.step.lab
            exists = before.settings is not None if alone else None  # of two at once, the first may change it
            if command in ("up", "down", "stop"):
                good = ran.ok
            elif command == "start":
                none = ran.one_line(f"lab {lab!r} does not exist; create it with: kubelab up")
                good = {True: ran.ok, False: none, None: ran.ok or none}[exists]
            else:  # fault
                local = ran.one_line(f"lab {lab!r} uses the local driver: it has no machines to break")
                none = ran.one_line(f"lab {lab!r} does not exist; create it with: kubelab up")
                good = {True: local, False: none, None: local or none}[exists]
            if good and not ran.ok:
                self.tally.refusals += 1
            if not good:
                problems.append(f"{ran.step}{'' if alone else ' (two at once)'}: {ran.said()}")
        if not alone and all(r.refused_busy() for r in runs):
            problems.append(f"{' and '.join(str(r.step) for r in runs)}: both refused as busy")
        if not alone and not any(r.refused_busy() for r in runs):
            problems += _overlapped(runs)
        return problems

    def _busy(self, refused: Ran, holder: Ran) -> list[str]:
        self.tally.refusals += 1
        self.tally.busy += 1
        self.tally.longest_refusal = max(self.tally.longest_refusal, refused.seconds)
        command = "fault crash" if holder.step.command == "fault" else holder.step.command
        named = f"is busy: `kubelab {command}` (pid {holder.pid}) holds it since "
        problems = []
        if named not in refused.err_lines[0]:
            problems.append(
                f"{refused.step}: the busy line does not name `kubelab {command}` (pid {holder.pid}):"
                f" {refused.err_lines[0]}"
            )
        if refused.seconds > AT_ONCE:
            problems.append(
                f"{refused.step}: refused as busy after {refused.seconds:.1f}s, not at once"
                f" ({holder.step} ran {holder.seconds:.1f}s)"
            )
        return problems

    def _clobbered(self, lab: str, runs: list[Ran], before: State, after: State) -> list[str]:
        """A lab's identity and settings are written by ``up`` (a lab that had none) and removed by ``down``;
        nothing else changes them, and a command refused before it began (busy, or told it cannot apply)
        changes nothing."""
        ran = {r.step.command for r in runs if not (r.refused_busy() or r.one_line(f"lab {lab!r} "))}
        problems = []
        for what, was, now in (
            ("identity", before.identity, after.identity),
            ("settings", before.settings, after.settings),
        ):
            if was == now:
                continue
            if was is not None and now is None:
                allowed = "down" in ran
            elif was is None:
                allowed = "up" in ran
            else:  # a new lab of the same name: down, then up
                allowed = {"down", "up"} <= ran
            if not allowed:
                did = ", ".join(str(r.step) for r in runs)
                problems.append(
                    f"{lab}: its {what} {'appeared' if was is None else 'vanished' if now is None else 'changed'}"
                    f" after {did}"
                )
        if problems:
            self.tally.clobbered += 1
        return problems

    # --- the host against the labs' state ----------------------------------------------------------

    def check(self, *, listing: bool = True) -> list[str]:
        """Where the host and the labs' state disagree (see the module's docstring); ``listing``: also ask
        ``kubelab list`` for orphans."""
        problems: list[str] = []
        statuses = {
            name: Running(self.home, Step(name, "status"), ["status", "--name", name])
            for name, lab in self.labs.items()
            if lab.last in ("up", "start")
        }
        listed = Running(self.home, Step("", "list"), ["list"]) if listing else None
        processes = _lab_processes(self.home, list(self.labs))
        entries = [e for e in registry.entries() if Path(e.home) == self.home]
        orphans = 0
        for name, lab in self.labs.items():
            state = self.state(name)
            root = self.home / name
            found = processes.get(name, [])
            holder = _lock_holder(self.home, name)
            if holder:
                problems.append(f"{name}: its lock is held ({holder}) with no command running")
            if lab.last == "down" and state.exists:
                problems.append(f"{name}: a completed down left its state ({root})")
            if not state.exists:
                leftovers = [
                    *(f"process {p}" for p in found),
                    *(f"network namespace {n}" for n in _namespaces(name)),
                    *(f"mount {m}" for m in _mounts(root)),
                    *(f"registry entry {e.uid[:8]}" for e in entries if e.lab == name),
                    *([f"files {sorted(p.name for p in root.iterdir())}"] if root.exists() else []),
                ]
                orphans += len(leftovers)
                problems += [f"{name} does not exist, but the host has its {what}" for what in leftovers]
                continue
            uid = state.uid
            if uid:
                foreign = [p for p in found if p.uid != uid]
                problems += [f"{name} ({uid[:8]}): process {p} carries another identity" for p in foreign]
                stale = [e.uid[:8] for e in entries if e.lab == name and e.uid != uid]
                if stale:
                    problems.append(f"{name} ({uid[:8]}): registry entries of earlier labs of its name: {stale}")
                if not [e for e in entries if e.lab == name and e.uid == uid]:
                    problems.append(f"{name} ({uid[:8]}): not in the host registry (kubelab list elsewhere misses it)")
            if lab.last == "stop" and found:
                problems.append(f"{name}: a completed stop left processes running: {found}")
        for name, running in statuses.items():
            status = running.finish(timeout=self.timeout)
            if status.code != 0:
                problems.append(f"{name}: `kubelab status` after a completed {self.labs[name].last}: {status.said()}")
        if listed is not None:
            shown = listed.finish(timeout=self.timeout)
            if shown.code != 0:
                problems.append(f"kubelab list: {shown.said()}")
            lines = shown.out.splitlines()
            at = next((i for i, line in enumerate(lines) if line.startswith("orphans")), len(lines))
            mine = [line.strip() for line in lines[at + 1 :] if any(f"(lab {n}," in line for n in self.labs)]
            orphans = max(orphans, len(mine))  # two views of the same leftovers: not added up
            problems += [f"kubelab list names an orphan: {line}" for line in mine]
        self.tally.orphans += orphans
        self.tally.violations += len(problems)
        return problems

    def lose(self, lab: str, how: str) -> list[str]:
        """The lab's state lost as a user or a full disk may lose it (``how``: "removed", its directory deleted;
        "damaged", its settings unreadable), then ``kubelab down``, which must still remove all of it. While
        the state is gone, ``kubelab list`` must name what still runs of the lab as orphans."""
        root = self.home / lab
        running = _lab_processes(self.home, [lab]).get(lab, [])
        if how == "removed":
            shutil.rmtree(root, ignore_errors=True)
        elif root.is_dir():
            (root / "lab.json").write_text('{"name": ')
        self.tally.lost += 1
        self.say(f"  {lab}: state {how}")
        problems = []
        if how == "removed" and running:
            shown = Running(self.home, Step("", "list"), ["list"]).finish(timeout=self.timeout)
            if not [line for line in shown.out.splitlines() if f"(lab {lab}," in line]:
                problems.append(f"{lab}: its state is gone and {running} run, but kubelab list names no orphan of it")
        return problems + self.run(Step(lab, "down"))

    def clean(self) -> list[str]:
        """``kubelab down`` every lab (unkilled), then check that nothing of them is left."""
        problems = []
        for name in self.labs:
            problems += self.run(Step(name, "down"))
        return problems + self.check()


@dataclass(frozen=True)
class Found:
    """A process of a lab, as the host shows it."""

    pid: int
    uid: str  # the identity in its environment ("": none)
    program: str

    def __str__(self) -> str:
        return f"{self.program} (pid {self.pid}{', uid ' + self.uid[:8] if self.uid else ', no identity'})"


def _lab_processes(home: Path, names: Sequence[str]) -> dict[str, list[Found]]:
    """The processes of each lab: those whose environment names the lab (as the lab stamps its own), and
    those whose command line names the lab's directory (a process started without the stamp)."""
    roots = {name: str(home / name) + "/" for name in names}
    out: dict[str, list[Found]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw_env = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state in ("Z", "X"):
            continue
        env = dict(item.split(b"=", 1) for item in raw_env.split(b"\0") if b"=" in item)
        argv = [a.decode(errors="replace") for a in cmdline if a]
        tag = env.get(ENV_LAB.encode(), b"").decode(errors="replace")
        for name, root in roots.items():
            if tag == name or any(root in arg or arg == root[:-1] for arg in argv):
                program = argv[0].rsplit("/", 1)[-1] if argv else "?"
                if program.startswith("python") and "-m" in argv:
                    program = argv[argv.index("-m") + 1]
                uid = env.get(ENV_UID.encode(), b"").decode(errors="replace")
                out.setdefault(name, []).append(Found(int(entry.name), uid, program))
    return out


def _namespaces(lab: str) -> list[str]:
    names = sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []
    return [n for n in names if n == f"kl-{lab}-node" or n.startswith(f"kl-{lab}-node1-")]


def _mounts(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    return sorted({p[4] for p in (line.split() for line in lines) if len(p) > 4 and p[4].startswith(prefix)})


def _lock_holder(home: Path, lab: str) -> str:
    """Who holds the lab's lock ('' nobody), asked the way a command asks: a non-blocking flock."""
    path = lock.lock_file(home, lab)
    if not path.exists():
        return ""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return path.read_text().strip() or "a holder that wrote nothing"
    finally:
        os.close(fd)  # releases it
    return ""


def _overlapped(runs: list[Ran]) -> list[str]:
    """Two commands on one lab that both ran must have run one after the other: ``up`` and ``start`` print
    every line while they hold the lab, so their output must not interleave."""
    spans = [(r.lines[0][0], r.lines[-1][0], r) for r in runs if r.step.command in ("up", "start") and r.ok and r.lines]
    if len(spans) == 2 and spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]:
        return [
            f"{spans[0][2].step} and {spans[1][2].step} both ran and their output interleaved: the lab was not held"
        ]
    return []


def _last(runs: list[Ran], was: str) -> str:
    """The lab's last completed command after ``runs``: a killed one makes it "killed"; of two that both ran,
    the later one counts (they held the lab one after the other)."""
    if any(r.killed for r in runs):
        return "killed"
    done = sorted((r for r in runs if r.ok), key=lambda r: r.ended)
    return done[-1].step.command if done else was


def random_step(rng: random.Random, labs: Sequence[str]) -> list[Step]:
    """A step for the benchmark: one command (half of them killed: after 1 to 12 lines or 0.2 to 8 s), or, one
    time in five, two commands at once (two times in three on one lab). Commands are weighted towards ``up``
    so that the labs spend time running."""
    weighted = ("up", "up", "up", "down", "down", "stop", "start", "start", "fault")
    if rng.random() < 0.2:
        lab = rng.choice(labs)
        other = lab if rng.random() < 2 / 3 else rng.choice(labs)
        return [Step(lab, rng.choice(weighted)), Step(other, rng.choice(weighted))]
    kill = None
    if rng.random() < 0.5:
        kill = Kill(lines=rng.randint(1, 12)) if rng.random() < 0.5 else Kill(seconds=round(rng.uniform(0.2, 8.0), 1))
    return [Step(rng.choice(labs), rng.choice(weighted), kill)]
