"""Carrying out the faults ``provisioner.faults.plan`` decides, through a driver's machines.

crash and pause power a machine off and freeze it (healed by powering it on and resuming it);
partition cuts the machine off the lab network both ways, while it runs on; kill sends SIGKILL to the
unit's main process over ssh, which is how a component crashes, and leaves the restart to systemd
(heal starts a unit systemd gave up on). What each takes is the driver's business
(``Driver.machines()``: libvirt domains and an nftables table for the VM lab); the active faults are
kept in the lab's ``run/faults.json`` until healed.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provisioner.drivers.base import Driver, MachineControl
from provisioner.errors import ComponentError, ProvisionError
from provisioner.faults import plan
from provisioner.faults.plan import Fault
from provisioner.lab import render
from provisioner.system.waiting import Heartbeat

RUNNING, PAUSED, SHUT_OFF = "running", "paused", "shut off"

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


def state_in_words(fault: Fault, machine_state: str | None) -> str | None:
    """What holds now for ``fault`` given its machine's state (None: ask the machine, for a kill)."""
    if fault.kind == "crash":
        return "powered off" if machine_state == SHUT_OFF else "running again (booted outside kubelab fault heal)"
    if fault.kind == "pause":
        return "paused" if machine_state == PAUSED else "not paused any more"
    if fault.kind == "partition":
        return "cut off" if machine_state is not None else "machine gone"
    return None if machine_state == RUNNING else "machine not running"


class FaultOps:
    def __init__(self, driver: Driver, *, say: Callable[[str], None] = print) -> None:
        self.driver = driver
        self.say = say
        self.lab = driver.spec.name
        self.named = "" if self.lab == "kubelab" else f" --name {self.lab}"
        self.control: MachineControl = driver.machines()

    @property
    def state_file(self) -> Path:
        return self.driver.paths.run / "faults.json"

    def active(self) -> list[Fault]:
        return plan.load(self.state_file)

    def _save(self, active: list[Fault]) -> None:
        render.write(self.state_file, plan.dump(active))

    def _running(self) -> None:
        if not self.control.reachable() or not self.driver.paths.spec.exists():
            raise ProvisionError(f"lab {self.lab!r} is not running; start it with: kubelab up{self.named}")

    def _cut_off(self, active: list[Fault]) -> None:
        self.control.cut_off({f.node for f in active if f.kind == "partition"})

    # --- inject ----------------------------------------------------------------------------------

    def inject(self, kind: str, node: str, component: str = "") -> Fault:
        machine = plan.resolve_node(self.lab, self.control.machines, node)
        active = self._holding()
        fault = plan.plan(kind, machine, active, component=component, now=time.time())
        self._running()
        if kind in ("crash", "pause"):
            state = self.control.states().get(machine.name)
            if state is None:
                raise ProvisionError(f"{machine.name} has no machine; create the lab's machines with: kubelab up")
            if state != RUNNING:
                what = "paused" if state == PAUSED else "not running"
                raise ProvisionError(f"{machine.name} is {what}; only a running machine can be {kind}ed")
            if kind == "crash":
                self.control.power_off(machine.name)
            else:
                self.control.pause(machine.name)
        elif kind == "partition":
            self._cut_off([*active, fault])
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
        if not active or not self.control.reachable():
            return active
        running = {name for name, state in self.control.states().items() if state == RUNNING}
        gone = plan.lapsed(active, running)
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
            with Heartbeat(f"{node} to run the fault's command over ssh (at most 60s)", self.say):
                return self.control.run(node, script, timeout=60.0)
        except subprocess.TimeoutExpired as exc:
            raise ComponentError(f"{node} did not answer ssh within 60s; see: kubelab status{self.named}") from exc

    # --- heal ------------------------------------------------------------------------------------

    def heal(self, node: str | None = None) -> list[Fault]:
        name = plan.resolve_node(self.lab, self.control.machines, node).name if node else None
        self._running()
        active = self.active()
        undo, keep = plan.healing(active, name)
        if not undo:
            self.say(f"no faults to heal{' on ' + name if name else ''} in lab {self.lab!r}")
            return []
        unreachable = {f.node for f in undo if f.kind != "kill"}  # off, frozen or cut off until healed below
        for fault in undo:
            if fault.kind == "kill" and fault.node in unreachable:
                self.say(f"{fault.node}: {fault.unit} is started by systemd as its machine comes back")
            elif fault.kind == "kill":
                started = self._ssh(fault.node, START_SCRIPT.format(unit=shlex.quote(fault.unit)))
                again = "started again" if "started" in started.stdout else "was already restarted by systemd"
                self.say(f"{fault.node}: {fault.unit} {again}")
            elif fault.kind == "crash":
                self.control.power_on(fault.node)
                self.say(f"{fault.node}: powered on again (it boots; its node is Ready when its kubelet reports)")
            elif fault.kind == "pause":
                self.control.resume(fault.node)
                self.say(f"{fault.node}: resumed")
        if any(f.kind == "partition" for f in undo):
            self._cut_off(keep)
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
        states = self.control.states() if self.control.reachable() else {}
        out = []
        for fault in active:
            words = state_in_words(fault, states.get(fault.node))
            out.append(Row(fault, words if words is not None else self._unit_state(fault)))
        return out

    def _unit_state(self, fault: Fault) -> str:
        try:
            done = self.control.run(fault.node, f"systemctl is-active {shlex.quote(fault.unit)}", timeout=30.0)
        except subprocess.TimeoutExpired:
            return "unknown (no ssh answer)"
        return f"unit {done.stdout.strip() or 'unknown'}"
