"""A worker domain of a lab of a test's own, defined in libvirt but never started: what the cloud's
tests list as an instance and attach volumes to (a cloud's instance may be off)."""

from __future__ import annotations

import uuid
from pathlib import Path

from provisioner.drivers.base import Machine
from provisioner.drivers.libvirt import plan
from provisioner.drivers.libvirt.hypervisor import Hypervisor


def define_worker(uri: str, lab: str, *, subnet: str, bridge: str, files: Path) -> tuple[Machine, str]:
    """Define ``<lab>-worker1`` at ``<subnet>.11`` (``subnet``: the first three octets) on a network
    named after the lab (bridge ``bridge``), its files under ``files``; the machine and its UUID."""
    machine = Machine(
        name=f"{lab}-worker1", role="worker", ip=f"{subnet}.11", mac=plan.mac_of(lab, "x"), cpus=1, memory_mib=512
    )
    network = plan.NetworkPlan(
        name=f"kubelab-{lab}",
        bridge=bridge,
        gateway=f"{subnet}.1",
        netmask="255.255.255.0",
        prefix=24,
        dhcp_start=f"{subnet}.10",
        dhcp_end=f"{subnet}.11",
    )
    xml = plan.domain_xml(
        machine,
        lab=lab,
        uid=uuid.uuid4().hex,
        accel="tcg",
        network=network,
        kernel=files / "vmlinuz",
        initrd=files / "initrd",
        image_digest="sha256:test",
        disk=files / "disk.qcow2",
        console_log=files / "console.log",
        public_key_line="ssh-ed25519 AAAA test",
    )
    with Hypervisor.open(uri, lab) as hv:
        return machine, hv.conn.defineXML(xml).UUIDString()


def undefine_all(uri: str, lab: str) -> None:
    """Undefine every domain of ``lab``."""
    with Hypervisor.open(uri, lab) as hv:
        for found in hv.domains().values():
            found.undefine()
