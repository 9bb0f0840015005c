"""A lab's machines in a cloud's terms, decided from what libvirt says of its domains (pure).

What a cloud-controller-manager's node controller reads of a machine: its provider ID
(``libvirt://<domain uuid>``, the form ``spec.providerID`` takes), whether it exists and runs, its
addresses (``InternalIP`` from the lab's plan, ``Hostname``), its region and zone (the lab's cloud is
one region, ``kubelab``; the zone is the host the domain runs on, so a lab spread over several hosts
has one zone per host), and an instance type named from its size (``kubelab.2cpu.2gib``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

PROVIDER = "libvirt"
REGION = "kubelab"
# libvirt's virDomainState values, as a cloud's instance states
STATES = {
    0: "unknown",
    1: "running",
    2: "running",  # blocked on I/O: still running
    3: "paused",
    4: "stopping",
    5: "stopped",
    6: "crashed",
    7: "suspended",
}


@dataclass(frozen=True)
class DomainFacts:
    """What libvirt says of one of the lab's domains."""

    name: str
    uuid: str
    state: int  # virDomainState
    vcpus: int
    memory_kib: int


class AddressJSON(TypedDict):
    type: str
    address: str


class InstanceJSON(TypedDict):
    name: str
    providerID: str
    state: str
    addresses: list[AddressJSON]
    region: str
    zone: str
    instanceType: str


@dataclass(frozen=True)
class Instance:
    name: str
    provider_id: str
    state: str
    addresses: tuple[tuple[str, str], ...]  # (type, address), as a Node's status.addresses
    zone: str
    instance_type: str
    region: str = REGION

    def json(self) -> InstanceJSON:
        return {
            "name": self.name,
            "providerID": self.provider_id,
            "state": self.state,
            "addresses": [{"type": kind, "address": value} for kind, value in self.addresses],
            "region": self.region,
            "zone": self.zone,
            "instanceType": self.instance_type,
        }


def provider_id(uuid: str) -> str:
    return f"{PROVIDER}://{uuid}"


def uuid_of(provider: str) -> str | None:
    """The domain UUID a provider ID names; None when it is not one of this cloud's."""
    prefix = f"{PROVIDER}://"
    return provider[len(prefix) :] if provider.startswith(prefix) and len(provider) > len(prefix) else None


def instance_type(vcpus: int, memory_kib: int) -> str:
    mib = memory_kib // 1024
    size = f"{mib // 1024}gib" if mib % 1024 == 0 else f"{mib}mib"
    return f"kubelab.{vcpus}cpu.{size}"


def instance(facts: DomainFacts, *, address: str | None, zone: str) -> Instance:
    addresses: list[tuple[str, str]] = []
    if address:
        addresses.append(("InternalIP", address))
    addresses.append(("Hostname", facts.name))
    return Instance(
        name=facts.name,
        provider_id=provider_id(facts.uuid),
        state=STATES.get(facts.state, "unknown"),
        addresses=tuple(addresses),
        zone=zone,
        instance_type=instance_type(facts.vcpus, facts.memory_kib),
    )


def find(instances: list[Instance], key: str) -> Instance | None:
    """The instance a node name or a provider ID names."""
    uuid = uuid_of(key)
    for found in instances:
        if found.name == key or (uuid is not None and found.provider_id == key):
            return found
    return None
