"""The Driver protocol: what the CLI, the fault executor and the tests may ask of a lab, whichever
driver runs it. A driver is an executor of decisions made elsewhere (the lab model, the pure plans);
nothing outside ``provisioner.drivers`` branches on which driver it holds.

A lab runs either as processes on this host (the local driver) or as virtual machines (the libvirt
driver). Both answer the same questions: bring the lab up, start it, stop it, remove it, say how it
is (``status``), reach a node (``ssh_argv``), show a component's log (``logs_argv``), and hand out
its machines (``machines``) to break them on purpose.
"""

from __future__ import annotations

import subprocess
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from provisioner.lab.paths import LabPaths
from provisioner.lab.spec import LabSpec


@dataclass(frozen=True)
class Machine:
    """One machine of a lab: a node of the cluster."""

    name: str  # node name, domain name and host name
    role: str  # master or worker
    ip: str
    mac: str
    cpus: int
    memory_mib: int


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str  # running, stopped, exited; or a systemd unit's state (active, failed, ...)
    healthy: bool
    pid: int | None = None
    endpoint: str = ""
    log: str = ""  # where to read more when it is not healthy


@dataclass(frozen=True)
class MachineStatus:
    name: str
    role: str
    ip: str
    state: str  # running, shut off, paused, missing, ...
    accel: str
    node: str  # the Node's readiness as the API server reports it: Ready, NotReady, or "-"
    components: tuple[ComponentStatus, ...] = ()

    @property
    def healthy(self) -> bool:
        return (
            self.state == "running"
            and self.node == "Ready"
            and bool(self.components)
            and all(c.healthy for c in self.components)
        )


@dataclass(frozen=True)
class LabStatus:
    lab: str
    driver: str
    root: Path
    summary: str  # what the lab is made of, in words
    machines: tuple[MachineStatus, ...] = ()
    processes: tuple[ComponentStatus, ...] = ()  # what runs on this host for the lab
    files: tuple[tuple[str, Path], ...] = ()  # (what, where): the kubeconfig, the ssh config

    @property
    def healthy(self) -> bool:
        return all(m.healthy for m in self.machines) and all(p.healthy for p in self.processes)


class MachineControl(Protocol):
    """A lab's machines as the fault executor uses them: power, freeze, cut off, run a command."""

    @property
    def machines(self) -> Sequence[Machine]: ...

    def reachable(self) -> bool:
        """Whether the machines can be acted on now (their hypervisor runs)."""
        ...

    def states(self) -> dict[str, str]:
        """Each existing machine's state: running, paused, shut off, ..."""
        ...

    def power_off(self, name: str) -> None: ...

    def power_on(self, name: str) -> None: ...

    def pause(self, name: str) -> None: ...

    def resume(self, name: str) -> None: ...

    def cut_off(self, names: Collection[str]) -> None:
        """Make exactly these machines unreachable on the lab network (both ways); ``()`` restores all."""
        ...

    def run(self, name: str, script: str, *, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a shell script on a machine as root."""
        ...


class Driver(Protocol):
    spec: LabSpec
    paths: LabPaths

    @property
    def registry(self) -> str:
        """The lab registry's URL as this host reaches it."""
        ...

    def check(self) -> None:
        """Raise (one line saying what to change) unless the lab can be brought up: ports, address
        ranges, host packages, disk space. Writes nothing of the lab's own."""
        ...

    def up(self) -> None:
        """Create the lab or converge it to its spec, and wait until it works (the lifecycle wrote its
        identity and settings, after ``check``)."""
        ...

    def start(self) -> None:
        """Start a stopped lab again, with its state."""
        ...

    def stop(self) -> list[str]:
        """Stop what runs, keep the state; return what was stopped."""
        ...

    def down(self) -> list[str]:
        """Stop everything the lab started and remove its state; return what was removed or stopped."""
        ...

    def status(self) -> LabStatus: ...

    def wait_ready(self) -> None:
        """Wait until every node of the lab is Ready."""
        ...

    def ranges_in_use(self) -> list[tuple[str, str]]:
        """(cidr, holder) of the address ranges this driver's kind of lab would clash with on this host
        (libvirt's active networks), this lab's own left out: what a new lab's range must avoid."""
        ...

    def ssh_argv(self, node: str, command: Sequence[str] = (), *, tty: bool = False) -> list[str]:
        """The command line that runs ``command`` (or a shell) on ``node``."""
        ...

    def ssh_config(self) -> str:
        """An ssh config that reaches the lab's nodes by name."""
        ...

    def logs_argv(self, node: str, component: str, *, follow: bool, tail: int) -> list[str]:
        """The command line that prints ``component``'s log on ``node``."""
        ...

    def machines(self) -> MachineControl:
        """The lab's machines, to break them on purpose."""
        ...
