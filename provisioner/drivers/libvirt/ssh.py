"""Reaching a VM lab's machines with ssh: the lab's key pair, the ssh config (through the lab's
network namespace when it has one), running a command on a machine, and waiting until all answer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provisioner.drivers.base import Machine
from provisioner.errors import ComponentError, ProvisionError
from provisioner.lab import render
from provisioner.system.waiting import indented, timed_out, wait_for

PROBE_TIMEOUT = 20.0  # one ssh attempt at a machine, handshake and a command included


def ensure_key(private: Path, comment: str) -> str:
    """Create an ed25519 key pair at ``private`` (and ``.pub``) unless it exists; return the public line."""
    public = private.with_suffix(".pub")
    if private.exists() and public.exists():
        return public.read_text().strip()
    key = Ed25519PrivateKey.generate()
    private.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    text = f"{line.decode()} {comment}"
    public.write_text(text + "\n")
    return text


def config(
    *,
    hosts: Sequence[tuple[str, str]],
    key: Path,
    known_hosts: Path,
    netns: str,
) -> str:
    """An ssh config for ``hosts`` ((name, ip) pairs), through the lab's namespace when it has one."""
    proxy = f"{sys.executable} -m provisioner.drivers.libvirt.tunnel connect {netns} %h %p" if netns else ""
    return render.render(
        "ssh/ssh_config.j2",
        hosts=hosts,
        key=str(key),
        known_hosts=str(known_hosts),
        proxy_command=proxy,
    )


def forget_hosts(known_hosts: Path, *hosts: str) -> None:
    """Drop the host keys recorded for ``hosts`` (names or addresses): a machine made again has new
    keys, and ssh refuses a host whose key changed (``ssh-keygen -R``, which also finds hashed entries)."""
    if not known_hosts.exists():
        return
    for name in hosts:
        subprocess.run(["ssh-keygen", "-R", name, "-f", str(known_hosts)], capture_output=True, check=False)
    known_hosts.with_name(known_hosts.name + ".old").unlink(missing_ok=True)


@dataclass(frozen=True)
class Access:
    """ssh to the machines of one lab, by node name, with the lab's config."""

    lab: str
    config: Path
    nodes: tuple[str, ...]

    def argv(self, node: str, command: Sequence[str] = (), *, tty: bool = False) -> list[str]:
        if node not in self.nodes:
            raise ProvisionError(f"no node {node!r} in lab {self.lab!r}; nodes: {', '.join(sorted(self.nodes))}")
        if not self.config.exists():
            raise ProvisionError(f"lab {self.lab!r} has no machines yet; create it with: kubelab up")
        return ["ssh", "-F", str(self.config), *(["-t"] if tty else []), node, *command]

    def run(self, node: str, command: str, *, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``command`` (a shell command line) on ``node`` as root, without a terminal or prompts."""
        argv = [*self.argv(node), "-o", "BatchMode=yes", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def probe(self, node: str) -> str:
        """'' when ``node`` answers ssh (and runs a command), else what ssh said last: its own error
        line (``Permission denied (publickey)``, ``Connection refused``, ...)."""
        try:
            done = self.run(node, "true", timeout=PROBE_TIMEOUT)
        except subprocess.TimeoutExpired:
            return f"no answer within {PROBE_TIMEOUT:.0f}s"
        return "" if done.returncode == 0 else ssh_error(done.stderr, done.returncode)


def ssh_error(stderr: str, code: int) -> str:
    """The line of a failed ssh's standard error that says why: the tunnel's own (it names the address
    it could not reach) when it has one, else ssh's last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    tunnel = [line.removeprefix("kubelab tunnel: ") for line in lines if line.startswith("kubelab tunnel: ")]
    said = tunnel[-1] if tunnel else (lines[-1] if lines else f"ssh exited with code {code} and said nothing")
    return said[:200]


def last_console_line(console: Path) -> str:
    """`` (last line: ...)`` of a console log, or '' when it is empty or unreadable."""
    try:
        with console.open("rb") as log:
            log.seek(max(0, log.seek(0, 2) - 4096))
            tail = log.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return f" (last line: {lines[-1][:160]})" if lines else ""


def wait_all(
    machines: Sequence[Machine],
    *,
    probe: Callable[[str], str],
    timeout: float,
    accel: str,
    console_of: Callable[[str], Path],
    say: Callable[[str], None],
    stopped: Callable[[str], str] = lambda _name: "",
    restart: Callable[[str], None] = lambda _name: None,
) -> None:
    """Wait, side by side, until every machine answers ssh (``probe``: '' when it does, else what ssh
    said). Says at least every ``waiting.EVERY`` seconds which machines it still waits for and what
    ssh said last for each; the first that does not answer within ``timeout`` is one ComponentError
    naming it, the accelerator, ssh's last error and its console's last line.

    A machine that stops while it boots (``stopped``: why, or '' while it runs; QEMU's emulation has
    crashed a booting guest) is started again once (``restart``), with a line saying so; a second stop
    is the error, at once rather than at the deadline."""
    seen: dict[str, str] = {m.name: "not tried yet" for m in machines}
    answered: set[str] = set()
    failures: dict[str, str] = {}
    began = time.monotonic()

    def wait(machine: Machine) -> None:
        restarted: list[str] = []

        def answers() -> bool:
            said = probe(machine.name)
            if said:
                seen[machine.name] = said
            return not said

        def gone() -> str | None:
            why = stopped(machine.name)
            if not why:
                return None
            if restarted:
                return why
            restarted.append(why)
            say(f"  {machine.name}: {why} while it booted; starting it again")
            restart(machine.name)
            return None

        if wait_for(answers, timeout=timeout, interval=2.0, abort=gone):
            answered.add(machine.name)
            say(f"  {machine.name}: ssh answers after {time.monotonic() - began:.1f}s")
            return
        console = console_of(machine.name)
        why = stopped(machine.name) if restarted else ""
        if why:
            failures[machine.name] = (
                f"{machine.name} stopped while it booted, twice ({restarted[0]}, then {why});"
                f" console log: {console}{last_console_line(console)}"
            )
            return
        failures[machine.name] = (
            f"{machine.name} did not answer ssh at {machine.ip} within {timeout:.0f}s (accelerator {accel});"
            f" ssh said: {seen[machine.name]}; console log: {console}{last_console_line(console)}"
        )

    threads = [threading.Thread(target=wait, args=(m,), daemon=True) for m in machines]
    for thread in threads:
        thread.start()

    def waiting_for() -> str:
        return pending_line([(m.name, seen[m.name]) for m in machines if m.name not in answered])

    finished = wait_for(
        lambda: not any(t.is_alive() for t in threads),
        timeout=timeout + PROBE_TIMEOUT + 10.0,  # a probe begun at the deadline ends within PROBE_TIMEOUT
        interval=0.2,
        what=f"ssh on {len(machines)} machines",
        say=indented(say),
        last=waiting_for,
    )
    if failures:
        raise ComponentError(failures[sorted(failures)[0]])
    if not finished:
        raise ComponentError(timed_out(f"ssh on {len(machines)} machines", timeout, waiting_for()))


def pending_line(pending: Sequence[tuple[str, str]]) -> str:
    """The machines still awaited, grouped by what ssh said last for each: ``a, b: Connection refused``."""
    groups: dict[str, list[str]] = {}
    for name, said in pending:
        groups.setdefault(said, []).append(name)
    return "; ".join(f"{', '.join(names)}: {said}" for said, names in groups.items())
