"""Faults a user injects into a VM lab, decided from the lab's machines and the faults already active.

Pure: nothing here touches libvirt, ssh or nftables (``provisioner.faults.executor`` carries the plan out
through the driver's machines).

- ``crash NODE``: the machine is powered off at once, as if its plug were pulled (undo: boot it).
- ``pause NODE``: the machine's virtual CPUs are frozen; its memory and connections stay (undo: resume).
- ``partition NODE``: every frame from and to the machine's network interface is dropped on the lab's
  bridge, both ways, while the machine itself runs on (undo: remove the rules).
- ``kill NODE COMPONENT``: the component's main process gets SIGKILL (systemd restarts it; undo: start
  the unit should systemd have given up).

A node carries at most one fault of each kind, and crash and pause exclude each other (a machine that
is off cannot be frozen). Faults are kept in ``run/faults.json`` of the lab until healed.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from provisioner.drivers.base import Machine
from provisioner.errors import SpecError
from provisioner.lab.components import COMPONENTS, master_only

KINDS = ("crash", "pause", "partition", "kill")

WHAT = {
    "crash": "powered off (as if its plug were pulled)",
    "pause": "paused (its virtual CPUs are frozen)",
    "partition": "cut off the lab network, both ways",
}


@dataclass(frozen=True)
class Fault:
    kind: str
    node: str
    component: str = ""
    since: float = 0.0  # UNIX time it was injected

    @property
    def unit(self) -> str:
        return COMPONENTS[self.component].unit if self.component else ""

    def describe(self) -> str:
        if self.kind == "kill":
            return f"killed {self.component} ({self.unit}) on {self.node} with SIGKILL; systemd restarts it"
        return f"{self.node}: {WHAT[self.kind]}"


def resolve_node(lab: str, machines: Sequence[Machine], given: str) -> Machine:
    """The machine ``given`` names: its full name (``lab-worker1``) or the short one (``worker1``)."""
    for machine in machines:
        if given in (machine.name, machine.name.removeprefix(f"{lab}-"), machine.ip):
            return machine
    names = ", ".join(m.name for m in machines)
    raise SpecError(f"lab {lab!r} has no node {given!r}; its nodes are: {names}")


def plan(kind: str, machine: Machine, active: Iterable[Fault], *, component: str = "", now: float = 0.0) -> Fault:
    """The fault to inject, or a SpecError saying why it cannot be."""
    if kind not in KINDS:
        raise SpecError(f"unknown fault {kind!r}; choose one of: {', '.join(KINDS)}")
    if kind == "kill":
        if component not in COMPONENTS:
            raise SpecError(f"unknown component {component!r}; choose one of: {', '.join(COMPONENTS)}")
        if master_only(component) and machine.role != "master":
            raise SpecError(f"{component} runs only on the master, not on {machine.name}")
    elif component:
        raise SpecError(f"fault {kind} takes a node only (a component is for: kubelab fault kill NODE COMPONENT)")
    on_node = {f.kind for f in active if f.node == machine.name}
    if kind == "kill" and on_node & {"crash", "pause", "partition"}:
        state = "powered off" if "crash" in on_node else "paused" if "pause" in on_node else "cut off"
        raise SpecError(
            f"{machine.name} is {state}: kubelab cannot reach it to kill; first: kubelab fault heal {machine.name}"
        )
    if kind in ("crash", "pause"):
        if kind in on_node:
            raise SpecError(
                f"{machine.name} is already {WHAT[kind].split(' (')[0]}; undo with: kubelab fault heal {machine.name}"
            )
        other = "pause" if kind == "crash" else "crash"
        if other in on_node:
            raise SpecError(
                f"{machine.name} is {WHAT[other].split(' (')[0]}; heal it first: kubelab fault heal {machine.name}"
            )
    if kind == "partition" and "partition" in on_node:
        raise SpecError(f"{machine.name} is already cut off; undo with: kubelab fault heal {machine.name}")
    return Fault(kind, machine.name, component, now)


def lapsed(active: Iterable[Fault], running: Collection[str]) -> list[Fault]:
    """Faults that no longer hold: a crashed or paused machine that runs again without ``kubelab fault
    heal`` (booted by ``kubelab up``, resumed with virsh). ``running``: the names of the running machines."""
    return [f for f in active if f.kind in ("crash", "pause") and f.node in running]


def healing(active: Sequence[Fault], node: str | None) -> tuple[list[Fault], list[Fault]]:
    """``(to undo, to keep)`` for ``kubelab fault heal [NODE]``; partitions are undone last, so a
    machine booted or resumed by the same heal finds its network back as soon as it can use it."""
    undo = [f for f in active if node is None or f.node == node]
    keep = [f for f in active if f not in undo]
    order = {"kill": 0, "crash": 1, "pause": 1, "partition": 2}
    return sorted(undo, key=lambda f: (order[f.kind], f.node)), keep


def load(path: Path) -> list[Fault]:
    if not path.exists():
        return []
    try:
        return [Fault(**item) for item in json.loads(path.read_text())]
    except (ValueError, TypeError) as exc:
        raise SpecError(
            f"{path} is not a fault list kubelab wrote ({exc}); remove it and run: kubelab fault heal"
        ) from exc


def dump(faults: Sequence[Fault]) -> str:
    return json.dumps([asdict(f) for f in faults], indent=1) + "\n"
