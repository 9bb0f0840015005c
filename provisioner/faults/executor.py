"""Carrying out the faults ``provisioner.faults.plan`` plans, on a VM lab's machines.

crash and pause go through libvirt (``virDomainDestroy``, ``virDomainSuspend``; healed by
``virDomainCreate``, ``virDomainResume``); partition loads one nftables table of the bridge family
where the lab's bridge lives (inside kubelab's namespace in self-contained mode), dropping every frame
from and to the node's MAC address; kill sends SIGKILL to the unit's main process over ssh, which is
how a component crashes, and leaves the restart to systemd (heal starts a unit systemd gave up on).
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.drivers.libvirt import daemon as libvirthost
from provisioner.drivers.libvirt.plan import Machine
from provisioner.errors import ComponentError, ProvisionError
from provisioner.faults import plan as faults
from provisioner.faults.plan import Fault
from provisioner.lab import render

if TYPE_CHECKING:
    from provisioner.drivers.libvirt.driver import LibvirtDriver

# libvirt's virDomainState values used here
RUNNING, PAUSED, SHUTOFF = 1, 3, 5

KILL_SCRIPT = """
pid=$(systemctl show -p MainPID --value {unit})
if [ "${{pid:-0}}" -eq 0 ]; then echo "kubelab: {unit} is not running"; exit 3; fi
kill -KILL "$pid" && echo "$pid"
"""

START_SCRIPT = """
if ! systemctl is-active --quiet {unit}; then systemctl reset-failed {unit}; systemctl start {unit}; echo started; fi
"""


@dataclass(frozen=True)
class Row:
    fault: Fault
    state: str  # what holds now, in words


def table_name(lab: str) -> str:
    return f"kubelab-faults-{lab}"


def apply_partitions(
    lab: str,
    machines: Sequence[Machine],
    active: Sequence[Fault],
    ruleset: Path,
    wrap: Callable[[list[str]], list[str]],
) -> None:
    """Render the lab's partition table to ``ruleset`` and load it with ``nft -f`` (run through
    ``wrap``: where the lab's bridge is); with no partition left, the table is removed."""
    text = render.render(
        "nftables/faults.nft.j2", lab=lab, table=table_name(lab), cut=faults.partitioned_macs(machines, active)
    )
    render.write(ruleset, text)
    done = subprocess.run(wrap(["nft", "-f", str(ruleset)]), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ComponentError(f"nft could not load {ruleset}: {done.stderr.strip()}")


class FaultOps:
    def __init__(self, driver: LibvirtDriver, *, say: Callable[[str], None] = print) -> None:
        self.driver = driver
        self.say = say
        self.lab = driver.spec.name
        self.named = "" if self.lab == "kubelab" else f" --name {self.lab}"

    @property
    def state_file(self) -> Path:
        return self.driver.paths.run / "faults.json"

    @property
    def ruleset_file(self) -> Path:
        return self.driver.paths.run / "faults.nft"

    def active(self) -> list[Fault]:
        return faults.load(self.state_file)

    def _save(self, active: list[Fault]) -> None:
        render.write(self.state_file, faults.dump(active))

    def _domain(self, conn: Any, node: str) -> Any:
        domain = self.driver._our_domains(conn).get(node)
        if domain is None:
            raise ProvisionError(f"{node} has no machine; create the lab's machines with: kubelab up")
        return domain

    def _running(self) -> libvirthost.Daemon:
        daemon = libvirthost.current()
        if daemon is None or not self.driver.paths.spec.exists():
            raise ProvisionError(f"lab {self.lab!r} is not running; start it with: kubelab up{self.named}")
        return daemon

    # --- inject ----------------------------------------------------------------------------------

    def inject(self, kind: str, node: str, component: str = "") -> Fault:
        machine = faults.resolve_node(self.lab, self.driver.machines, node)
        active = self._holding()
        fault = faults.plan(kind, machine, active, component=component, now=time.time())
        daemon = self._running()
        if kind in ("crash", "pause"):
            with self.driver._connection() as conn:
                domain = self._domain(conn, machine.name)
                state = domain.state()[0]
                if state != RUNNING:
                    what = "paused" if state == PAUSED else "not running"
                    raise ProvisionError(f"{machine.name} is {what}; only a running machine can be {kind}ed")
                domain.destroy() if kind == "crash" else domain.suspend()
        elif kind == "partition":
            self._apply_partitions(daemon, [*active, fault])
        else:
            pid = self._kill(machine.name, fault.unit)
            self.say(f"{machine.name}: {fault.unit} main process {pid} got SIGKILL")
        active.append(fault)
        self._save(active)
        self.say(fault.describe())
        if kind == "kill":
            self.say(f"  watch it come back: kubelab logs {machine.name} {component}{self.named}")
        else:
            self.say(f"  undo with: kubelab fault heal {machine.name}{self.named}")
        return fault

    def _holding(self) -> list[Fault]:
        """The recorded faults, less those undone outside kubelab (which are forgotten, saying so)."""
        active = self.active()
        if not active or libvirthost.current() is None:
            return active
        with self.driver._connection() as conn:
            running = {n for n, d in self.driver._our_domains(conn).items() if d.state()[0] == RUNNING}
        gone = faults.lapsed(active, running)
        for fault in gone:
            self.say(f"{fault.node}: runs again (not by kubelab fault heal); its {fault.kind} fault is forgotten")
        if gone:
            active = [f for f in active if f not in gone]
            self._save(active)
        return active

    def _kill(self, node: str, unit: str) -> str:
        done = self._ssh(node, KILL_SCRIPT.format(unit=shlex.quote(unit)))
        if done.returncode == 3:
            raise ComponentError(f"{unit} is not running on {node}; see: kubelab status{self.named}")
        if done.returncode != 0:
            raise ComponentError(f"could not kill {unit} on {node}: {(done.stderr or done.stdout).strip()[-300:]}")
        return done.stdout.strip()

    def _ssh(self, node: str, script: str) -> subprocess.CompletedProcess[str]:
        try:
            return self.driver.ssh(node, script, timeout=60.0)
        except subprocess.TimeoutExpired as exc:
            raise ComponentError(f"{node} did not answer ssh within 60s; see: kubelab status{self.named}") from exc

    def _apply_partitions(self, daemon: libvirthost.Daemon, active: list[Fault]) -> None:
        apply_partitions(self.lab, self.driver.machines, active, self.ruleset_file, daemon.wrap)

    # --- heal ------------------------------------------------------------------------------------

    def heal(self, node: str | None = None) -> list[Fault]:
        name = faults.resolve_node(self.lab, self.driver.machines, node).name if node else None
        daemon = self._running()
        active = self.active()
        undo, keep = faults.healing(active, name)
        if not undo:
            self.say(f"no faults to heal{' on ' + name if name else ''} in lab {self.lab!r}")
            return []
        unreachable = {f.node for f in undo if f.kind != "kill"}  # off, frozen or cut off until healed below
        with self.driver._connection() as conn:
            for fault in undo:
                if fault.kind == "kill" and fault.node in unreachable:
                    self.say(f"{fault.node}: {fault.unit} is started by systemd as its machine comes back")
                elif fault.kind == "kill":
                    started = self._ssh(fault.node, START_SCRIPT.format(unit=shlex.quote(fault.unit)))
                    again = "started again" if "started" in started.stdout else "was already restarted by systemd"
                    self.say(f"{fault.node}: {fault.unit} {again}")
                elif fault.kind == "crash":
                    domain = self._domain(conn, fault.node)
                    if not domain.isActive():
                        domain.create()
                    self.say(f"{fault.node}: powered on again (it boots; its node is Ready when its kubelet reports)")
                elif fault.kind == "pause":
                    domain = self._domain(conn, fault.node)
                    if domain.state()[0] == PAUSED:
                        domain.resume()
                    self.say(f"{fault.node}: resumed")
        if any(f.kind == "partition" for f in undo):
            self._apply_partitions(daemon, keep)
            for fault in undo:
                if fault.kind == "partition":
                    self.say(f"{fault.node}: network link restored")
        self._save(keep)
        return undo

    # --- list ------------------------------------------------------------------------------------

    def rows(self) -> list[Row]:
        active = self.active()
        if not active:
            return []
        states: dict[str, int] = {}
        if libvirthost.current() is not None:
            with self.driver._connection() as conn:
                states = {n: d.state()[0] for n, d in self.driver._our_domains(conn).items()}
        out = []
        for fault in active:
            vm = states.get(fault.node)
            if fault.kind == "crash":
                state = "powered off" if vm == SHUTOFF else "running again (booted outside kubelab fault heal)"
            elif fault.kind == "pause":
                state = "paused" if vm == PAUSED else "not paused any more"
            elif fault.kind == "partition":
                state = "cut off" if vm is not None else "machine gone"
            else:
                state = self._unit_state(fault) if vm == RUNNING else "machine not running"
            out.append(Row(fault, state))
        return out

    def _unit_state(self, fault: Fault) -> str:
        try:
            done = self.driver.ssh(fault.node, f"systemctl is-active {shlex.quote(fault.unit)}", timeout=30.0)
        except subprocess.TimeoutExpired:
            return "unknown (no ssh answer)"
        return f"unit {done.stdout.strip() or 'unknown'}"

    def remove_partitions(self) -> None:
        """Drop the lab's partition table (``kubelab down``); nothing to do when it has none."""
        daemon = libvirthost.current()
        if daemon is None or not self.ruleset_file.exists():
            return
        self._apply_partitions(daemon, [])
