"""Host ports and address ranges of a new lab, picked so that several labs run side by side.

A lab takes ports on this host (a local lab: its API server, etcd's two ports and its registry; a VM
lab: the forwarded API server and registry) and a VM lab takes an address range for its machines'
network. At a lab's first ``up`` every one of them the user did not give (a flag or a lab.yaml key)
is picked here: the conventional default when nothing holds it, else a free port, or the next /24
of 192.168.123.0/24, 192.168.124.0/24, ... that overlaps no range in use. The choice goes into the
lab's spec, which ``up`` records in its lab.json; later ``up``s start from that record, so a lab keeps
its ports until a flag changes them.

``allocate`` is pure: it decides from the spec, the fields given explicitly and :class:`Taken` (what
the other labs of this KUBELAB_HOME recorded, which defaults something listens on now, free ports the
kernel offered, the ranges of active libvirt networks). ``gather`` collects those facts; it is the
only part that looks at the host.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.errors import SpecError
from provisioner.lab.paths import LabPaths
from provisioner.lab.spec import LabSpec, validate
from provisioner.system import ports as hostports

# the spec's fields each driver holds on this host (a VM lab's etcd listens inside its master)
HOST_PORTS: Mapping[str, tuple[str, ...]] = {
    "local": ("api_port", "etcd_port", "etcd_peer_port", "registry_port"),
    "libvirt": ("api_port", "registry_port"),
}
RANGES: Mapping[str, tuple[str, ...]] = {"local": (), "libvirt": ("network_cidr",)}
RANGE_CANDIDATES = tuple(f"192.168.{third}.0/24" for third in range(123, 255))
SPARE_PORTS = 8  # free ports ``gather`` asks the kernel for, more than a lab takes


@dataclass(frozen=True)
class Taken:
    """What holds ports and address ranges on this host, as a new lab must leave them."""

    recorded: Mapping[int, str] = dataclasses.field(default_factory=dict)  # port -> the lab that recorded it
    busy: frozenset[int] = frozenset()  # ports something listens on now (of those asked about)
    spare: Sequence[int] = ()  # free ports the kernel offered, in the order to hand them out
    ranges: Sequence[tuple[str, str]] = ()  # (cidr, lab): the machines' networks other labs recorded
    networks: Sequence[tuple[str, str]] = ()  # (cidr, name): active libvirt networks of no lab here

    def holders_of_ranges(self) -> list[tuple[str, str]]:
        """(cidr, holder in words) of every range in use."""
        return [(c, lab_holder(lab)) for c, lab in self.ranges] + [
            (c, f"libvirt network {n}") for c, n in self.networks
        ]


@dataclass(frozen=True)
class Pick:
    """A setting that did not get its default, and why."""

    key: str  # the spec's field
    default: int | str
    chosen: int | str
    reason: str  # why not the default, following it: "is recorded by lab 'a'"

    def words(self) -> str:
        return f"{self.key.replace('_', '-')} {self.chosen} ({self.default} {self.reason})"


@dataclass(frozen=True)
class Allocation:
    spec: LabSpec
    picks: tuple[Pick, ...] = ()

    def line(self, recorded_in: Path) -> str:
        """What ``up`` says about the picks; '' when every setting got its default."""
        if not self.picks:
            return ""
        return f"lab {self.spec.name!r}: picked {', '.join(p.words() for p in self.picks)}; recorded in {recorded_in}"


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def lab_holder(lab: str) -> str:
    return f"lab {lab!r}"


def allocate(spec: LabSpec, *, explicit: Collection[str], taken: Taken) -> Allocation:
    """``spec`` with every host port and range its driver takes that is not in ``explicit`` moved off
    whatever ``taken`` holds; SpecError when an explicit one is another lab's, or nothing is free."""
    port_keys = HOST_PORTS.get(spec.driver, ())
    used: dict[int, str] = {}  # port -> the field of this lab that has it
    for key in port_keys:
        if key in explicit:
            port = int(getattr(spec, key))
            if port in taken.recorded:
                raise SpecError(
                    f"{key.replace('_', '-')} {port} is recorded by {lab_holder(taken.recorded[port])};"
                    f" choose another port, or leave {flag(key)} out and kubelab picks a free one"
                )
            used[port] = key

    def holder(port: int) -> str | None:
        if port in taken.recorded:
            return f"is recorded by {lab_holder(taken.recorded[port])}"
        if port in taken.busy:
            return "is in use on this host"
        if port in used:
            return f"is this lab's {used[port].replace('_', '-')}"
        return None

    defaults = {int(getattr(spec, key)) for key in port_keys if key not in explicit}
    spares = iter(p for p in taken.spare if p not in defaults)  # a spare is never another setting's default
    changes: dict[str, Any] = {}
    picks: list[Pick] = []
    for key in port_keys:
        if key in explicit:
            continue
        wanted = int(getattr(spec, key))
        chosen = wanted
        held = holder(wanted)
        if held is not None:
            chosen = next((p for p in spares if holder(p) is None), 0)
            if not chosen:
                raise SpecError(
                    f"no free port for {key.replace('_', '-')} ({wanted} {held}); give one with {flag(key)}"
                )
            picks.append(Pick(key, wanted, chosen, held))
            changes[key] = chosen
        used[chosen] = key

    in_use = taken.holders_of_ranges()
    for key in RANGES.get(spec.driver, ()):
        wanted_range = str(getattr(spec, key))
        if key in explicit:
            clash = _overlap(wanted_range, in_use)
            if clash is not None:
                raise SpecError(
                    f"{key.replace('_', '-')} {wanted_range} overlaps {clash[0]} of {clash[1]}; choose another"
                    f" range, or leave {flag(key)} out and kubelab picks a free one"
                )
            continue
        held_by = _overlap(wanted_range, in_use)
        if held_by is None:
            continue
        free = next((c for c in RANGE_CANDIDATES if _overlap(c, in_use) is None), None)
        if free is None:
            raise SpecError(
                f"no free /24 among {RANGE_CANDIDATES[0]} ... {RANGE_CANDIDATES[-1]} for {key.replace('_', '-')};"
                f" give one with {flag(key)}"
            )
        picks.append(Pick(key, wanted_range, free, _range_reason(wanted_range, *held_by)))
        changes[key] = free

    chosen_spec = dataclasses.replace(spec, **changes)
    validate(chosen_spec)
    return Allocation(chosen_spec, tuple(picks))


def _range_reason(wanted: str, cidr: str, holder: str) -> str:
    return f"is taken by {holder}" if cidr == wanted else f"overlaps {cidr} of {holder}"


def _overlap(cidr: str, ranges: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    """The first of ``ranges`` ((cidr, holder) pairs) that overlaps ``cidr``."""
    wanted = ipaddress.ip_network(cidr, strict=False)
    for other, holder in ranges:
        try:
            network = ipaddress.ip_network(other, strict=False)
        except ValueError:
            continue
        if network.version == wanted.version and network.overlaps(wanted):
            return other, holder
    return None


# --- the facts, from this host ----------------------------------------------------------------------


def recorded_labs(paths: LabPaths) -> dict[str, LabSpec]:
    """The other labs of the KUBELAB_HOME ``paths`` lives in, by name, as their lab.json records them
    (a lab.json that cannot be read is left out: it records nothing this lab could respect)."""
    home = paths.root.parent
    out: dict[str, LabSpec] = {}
    if not home.is_dir():
        return out
    for directory in sorted(home.iterdir()):
        other = LabPaths(directory)
        if directory == paths.root or not other.spec.is_file():
            continue
        try:
            out[directory.name] = LabSpec.from_json(other.spec.read_text())
        except (OSError, ValueError, TypeError):
            continue
    return out


def _health_ports(paths: LabPaths) -> list[int]:
    """The ports a local lab picked for its components' health endpoints (run/ports.json)."""
    try:
        data = json.loads(paths.ports.read_text())
    except (OSError, ValueError):
        return []
    return [int(v) for v in data.values() if isinstance(v, int)] if isinstance(data, dict) else []


def gather(spec: LabSpec, paths: LabPaths, *, networks: Sequence[tuple[str, str]]) -> Taken:
    """What a new lab ``spec`` (at ``paths``) finds taken: the ports and ranges the other labs of its
    home recorded, which of its wanted ports something listens on now, a few free ports, and
    ``networks`` (its driver's answer: the (cidr, name) of each active network it does not own)."""
    recorded: dict[int, str] = {}
    ranges: list[tuple[str, str]] = []
    for name, other in recorded_labs(paths).items():
        for key in HOST_PORTS.get(other.driver, ()):
            recorded.setdefault(int(getattr(other, key)), name)
        for port in _health_ports(LabPaths(paths.root.parent / name)):
            recorded.setdefault(port, name)
        ranges += [(str(getattr(other, key)), name) for key in RANGES.get(other.driver, ())]
    wanted = {int(getattr(spec, key)) for key in HOST_PORTS.get(spec.driver, ())}
    busy = frozenset(p for p in wanted if p not in recorded and hostports.in_use("127.0.0.1", p))
    spare: list[int] = []
    for _ in range(SPARE_PORTS * 4):
        if len(spare) == SPARE_PORTS:
            break
        port = hostports.free(avoid=spare)
        if port not in recorded and port not in spare:
            spare.append(port)
    return Taken(recorded=recorded, busy=busy, spare=tuple(spare), ranges=tuple(ranges), networks=tuple(networks))
