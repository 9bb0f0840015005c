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
from provisioner.system.waiting import wait_for


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

    def answers(self, node: str) -> bool:
        try:
            return self.run(node, "true", timeout=20.0).returncode == 0
        except subprocess.TimeoutExpired:
            return False


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
    answers: Callable[[str], bool],
    timeout: float,
    accel: str,
    console_of: Callable[[str], Path],
    say: Callable[[str], None],
) -> None:
    """Wait, side by side, until every machine answers ssh; the first that does not within ``timeout``
    is one ComponentError naming it, the accelerator, and its console's last line."""
    failures: dict[str, str] = {}
    began = time.monotonic()

    def wait(machine: Machine) -> None:
        if wait_for(lambda: answers(machine.name), timeout=timeout, interval=2.0):
            say(f"  {machine.name}: ssh answers after {time.monotonic() - began:.1f}s")
            return
        console = console_of(machine.name)
        failures[machine.name] = (
            f"{machine.name} did not answer ssh at {machine.ip} within {timeout:.0f}s (accelerator {accel});"
            f" console log: {console}{last_console_line(console)}"
        )

    threads = [threading.Thread(target=wait, args=(m,), daemon=True) for m in machines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise ComponentError(failures[sorted(failures)[0]])
