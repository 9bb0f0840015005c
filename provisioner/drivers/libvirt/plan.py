"""What a libvirt lab consists of, decided from its spec alone: machines, addresses, names.

Pure: nothing here talks to libvirt. The master takes host number ``FIRST_HOST`` of the lab's network,
worker N the next ones; MAC addresses are derived from the lab name and the address, so a lab that is
converged again keeps every machine's identity (and its DHCP reservation).
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
from dataclasses import dataclass

from provisioner.lab.spec import FIRST_HOST, LabSpec


@dataclass(frozen=True)
class Machine:
    name: str  # node name, domain name and host name
    role: str  # master or worker
    ip: str
    mac: str
    cpus: int
    memory_mib: int


@dataclass(frozen=True)
class NetworkPlan:
    name: str  # the libvirt network
    bridge: str  # its Linux bridge (15 characters at most)
    gateway: str  # the bridge's own address: the hypervisor side
    netmask: str
    prefix: int
    dhcp_start: str
    dhcp_end: str


def _short(lab: str) -> str:
    return hashlib.sha256(lab.encode()).hexdigest()[:8]


def network(spec: LabSpec) -> NetworkPlan:
    net = ipaddress.ip_network(spec.network_cidr)
    hosts = list(net.hosts())
    last_fixed = FIRST_HOST + spec.workers
    return NetworkPlan(
        name=f"kubelab-{spec.name}",
        bridge=f"klbr{_short(spec.name)}",
        gateway=str(hosts[0]),
        netmask=str(net.netmask),
        prefix=net.prefixlen,
        # the reserved addresses come from the same range; dnsmasq hands out only those
        dhcp_start=str(hosts[FIRST_HOST - 1]),
        dhcp_end=str(hosts[min(last_fixed, len(hosts) - 1)]),
    )


def mac_of(lab: str, ip: str) -> str:
    digest = hashlib.sha256(f"{lab}/{ip}".encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def machines(spec: LabSpec) -> list[Machine]:
    hosts = list(ipaddress.ip_network(spec.network_cidr).hosts())
    out = []
    for index in range(spec.workers + 1):
        ip = str(hosts[FIRST_HOST - 1 + index])
        master = index == 0
        out.append(
            Machine(
                name=f"{spec.name}-master" if master else f"{spec.name}-worker{index}",
                role="master" if master else "worker",
                ip=ip,
                mac=mac_of(spec.name, ip),
                cpus=spec.master_cpus if master else spec.cpus,
                memory_mib=spec.master_memory if master else spec.memory,
            )
        )
    return out


def master(spec: LabSpec) -> Machine:
    return machines(spec)[0]


def is_worker_name(lab: str, name: str) -> bool:
    """Whether ``name`` is what :func:`machines` calls a worker of ``lab`` (of any count)."""
    prefix = f"{lab}-worker"
    return name.startswith(prefix) and name[len(prefix) :].isdigit()


def address_of(spec: LabSpec, name: str) -> str | None:
    """The address ``name`` has (or had) in the lab, also for a worker beyond ``spec.workers``."""
    if is_worker_name(spec.name, name):
        wider = dataclasses.replace(spec, workers=max(spec.workers, int(name.rsplit("worker", 1)[1])))
        return next((m.ip for m in machines(wider) if m.name == name), None)
    return next((m.ip for m in machines(spec) if m.name == name), None)
