"""What a libvirt lab consists of, decided from its spec alone: machines, addresses, names, and the
libvirt documents (network, storage pool, volumes, domains) that describe them.

Pure: nothing here talks to libvirt. The master takes host number ``FIRST_HOST`` of the lab's network,
worker N the next ones; MAC addresses are derived from the lab name and the address, so a lab that is
converged again keeps every machine's identity (and its DHCP reservation). What a converging ``up``
must change is decided here too (:func:`converge`, :func:`reservation_changes`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import ipaddress
import re
import xml.etree.ElementTree as ET
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from provisioner.drivers.base import Machine
from provisioner.lab import render
from provisioner.lab.spec import FIRST_HOST, LabSpec

VM_ROOT = Path("/var/lib/kubelab/vms")  # one storage pool (a directory) per lab
CONSOLE_ROOT = Path("/var/log/kubelab")
KERNEL_ARGS = "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet"


@dataclass(frozen=True)
class NetworkPlan:
    name: str  # the libvirt network
    bridge: str  # its Linux bridge (15 characters at most)
    gateway: str  # the bridge's own address: the hypervisor side
    netmask: str
    prefix: int
    dhcp_start: str
    dhcp_end: str


@dataclass(frozen=True)
class PoolPlan:
    name: str  # the libvirt storage pool holding the machines' disks
    directory: Path


@dataclass(frozen=True)
class Convergence:
    """What ``up`` changes among the lab's domains."""

    remove: tuple[str, ...]  # domains of machines no longer part of the lab
    create: tuple[Machine, ...]  # machines that have no domain yet


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


def pool(spec: LabSpec, root: Path = VM_ROOT) -> PoolPlan:
    return PoolPlan(name=f"kubelab-{spec.name}", directory=root / spec.name)


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


def volume_name(machine: str) -> str:
    return f"{machine}.qcow2"


def console_of(lab: str, machine: str, root: Path = CONSOLE_ROOT) -> Path:
    return root / lab / f"{machine}-console.log"


def converge(wanted: Sequence[Machine], existing: Collection[str]) -> Convergence:
    names = {m.name for m in wanted}
    return Convergence(
        remove=tuple(sorted(n for n in existing if n not in names)),
        create=tuple(m for m in wanted if m.name not in existing),
    )


# --- libvirt documents ----------------------------------------------------------------------------


def network_xml(plan: NetworkPlan, machines: Sequence[Machine], *, lab: str, uid: str) -> str:
    return render.render("libvirt/network.xml.j2", network=plan, machines=machines, lab=lab, uid=uid)


def pool_xml(plan: PoolPlan) -> str:
    return render.render("libvirt/pool.xml.j2", pool=plan)


def volume_xml(machine: str, *, capacity_gib: int, backing: Path) -> str:
    """A qcow2 overlay on the guest image: the machine's disk, a volume of the lab's pool."""
    return render.render(
        "libvirt/volume.xml.j2", volume=volume_name(machine), capacity_gib=capacity_gib, backing=backing
    )


def kernel_cmdline(machine: Machine, public_key_line: str) -> str:
    """The guest's kernel command line: its host name and the lab's ssh key (one word, base64)."""
    key = base64.b64encode(public_key_line.encode()).decode()
    return f"{KERNEL_ARGS} kubelab.hostname={machine.name} kubelab.ssh={key}"


def domain_xml(
    machine: Machine,
    *,
    lab: str,
    uid: str,
    accel: str,
    network: NetworkPlan,
    kernel: Path,
    initrd: Path,
    image_digest: str,
    disk: Path,
    console_log: Path,
    public_key_line: str,
) -> str:
    return render.render(
        "libvirt/domain.xml.j2",
        machine=machine,
        lab=lab,
        uid=uid,
        accel=accel,
        network=network,
        kernel=str(kernel),
        initrd=str(initrd),
        cmdline=kernel_cmdline(machine, public_key_line),
        disk=str(disk),
        console_log=str(console_log),
        image_digest=image_digest,
    )


def is_ours(lab: str, name: str, xml: str) -> bool:
    """Whether a domain (its name and XML) belongs to ``lab``: kubelab stamps its lab in the metadata."""
    return name.startswith(f"{lab}-") and stamp_of(xml)[0] == lab


_STAMP = re.compile(r"<kubelab:name>([^<]*)</kubelab:name>(?:\s*<kubelab:uid>([^<]*)</kubelab:uid>)?")


def stamp_of(xml: str) -> tuple[str, str]:
    """``(lab, uid)`` kubelab stamped in a domain's or network's metadata; ``("", "")`` for none
    (a uid of "" for one made before labs had identities)."""
    found = _STAMP.search(xml)
    return (found.group(1), found.group(2) or "") if found else ("", "")


def ranges(xml: str) -> list[str]:
    """The IPv4 ranges of a libvirt network's XML, as CIDRs (``192.168.123.0/24``)."""
    out = []
    for element in ET.fromstring(xml).iterfind("./ip"):
        address = element.get("address")
        if not address or element.get("family", "ipv4") != "ipv4":
            continue
        mask = element.get("prefix") or element.get("netmask") or "24"
        out.append(str(ipaddress.ip_network(f"{address}/{mask}", strict=False)))
    return out


def overlapping(cidr: str, networks: Sequence[tuple[str, str]]) -> str | None:
    """The first of ``networks`` (name, libvirt XML) with an IPv4 range that overlaps ``cidr``."""
    wanted = ipaddress.ip_network(cidr)
    for name, xml in networks:
        if any(ipaddress.ip_network(other).overlaps(wanted) for other in ranges(xml)):
            return name
    return None


def reservations(xml: str) -> dict[str, str]:
    """The DHCP host reservations of a network's XML: MAC -> the ``<host>`` element as text."""
    out = {}
    for element in ET.fromstring(xml).iterfind("./ip/dhcp/host"):
        attributes = " ".join(f"{k}='{v}'" for k, v in element.attrib.items())
        out[element.get("mac", "")] = f"<host {attributes}/>"
    return out


def reservation_changes(current: Mapping[str, str], machines: Sequence[Machine]) -> tuple[list[str], list[str]]:
    """``(to delete, to add)``: the ``<host>`` elements that turn ``current`` into one reservation per machine."""
    wanted = {m.mac: f"<host mac='{m.mac}' name='{m.name}' ip='{m.ip}'/>" for m in machines}
    delete = [xml for mac, xml in current.items() if mac not in wanted]
    add = [xml for mac, xml in wanted.items() if mac not in current]
    return delete, add
