"""What VM labs have in libvirt and on disk, found whether or not their state directory is there:
domains and networks (kubelab's stamp in their metadata: the lab's name and identity), storage pools
and partition tables (named after the lab), the machines' directories, and kubelab's own libvirtd when
no lab uses it any more."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from provisioner.drivers.libvirt import daemon, partitions, plan, volumes
from provisioner.drivers.libvirt.hypervisor import Hypervisor
from provisioner.lab.resources import Resource

PREFIX = "kubelab-"
VOLUME_POOL_SUFFIX = ".volumes"
_COMMENT = re.compile(r'comment "kubelab lab (\S+) uid (\S*)"')


def _named(name: str, lab: str | None) -> str | None:
    """The lab a ``kubelab-<lab>`` name (or its volume pool's ``kubelab-<lab>.volumes``) names (if it is
    ``lab``, when one is asked for)."""
    if not name.startswith(PREFIX):
        return None
    owner = name.removeprefix(PREFIX).removesuffix(VOLUME_POOL_SUFFIX)
    return owner if lab is None or owner == lab else None


def find(
    lab: str | None,
    *,
    vm_root: Path = plan.VM_ROOT,
    console_root: Path = plan.CONSOLE_ROOT,
    volume_root: Path = volumes.VOLUME_ROOT,
) -> list[Resource]:
    out: list[Resource] = []
    running = daemon.current()
    if running is not None:
        with Hypervisor.open(running.uri, lab or "") as hv:
            for domain in hv.conn.listAllDomains():
                owner, uid = plan.stamp_of(domain.XMLDesc(0))
                if owner and (lab is None or owner == lab):
                    out.append(Resource("libvirt domain", domain.name(), owner, uid, "libvirt"))
            for network in hv.conn.listAllNetworks():
                owner, uid = plan.stamp_of(network.XMLDesc(0))
                owner = owner or _named(network.name(), None) or ""
                if owner and (lab is None or owner == lab):
                    out.append(Resource("libvirt network", network.name(), owner, uid, "libvirt"))
            for pool in hv.conn.listAllStoragePools():
                owner = _named(pool.name(), lab) or ""
                if owner:
                    out.append(Resource("storage pool", pool.name(), owner, "", "libvirt"))
        out += _partition_tables(running, lab)
    for root in (vm_root, console_root, volume_root):
        for entry in sorted(root.iterdir()) if root.is_dir() else []:
            if entry.is_dir() and (lab is None or entry.name == lab):
                out.append(Resource("directory", str(entry), entry.name, "", "libvirt"))
    return out


def _partition_tables(running: daemon.Daemon, lab: str | None) -> list[Resource]:
    listed = subprocess.run(
        running.wrap(["nft", "list", "tables", "bridge"]), capture_output=True, text=True, check=False
    )
    out = []
    for line in listed.stdout.splitlines():
        name = line.removeprefix("table bridge ").strip()
        owner = name.removeprefix(partitions.table_name(""))
        if not name.startswith(partitions.table_name("")) or (lab is not None and owner != lab):
            continue
        text = subprocess.run(
            running.wrap(["nft", "list", "table", "bridge", name]), capture_output=True, text=True, check=False
        )
        found = _COMMENT.search(text.stdout)
        out.append(Resource("nftables table", f"bridge {name}", owner, found.group(2) if found else "", "libvirt"))
    return out


def unused_daemon(labs_left: bool) -> list[Resource]:
    """kubelab's own libvirtd, as an orphan, when it runs and no lab uses it."""
    running = daemon.current()
    if running is None or not running.self_contained or labs_left:
        return []
    with Hypervisor.open(running.uri, "") as hv:
        if hv.still_used():
            return []
    return [Resource("libvirt daemon", f"libvirtd in namespace {running.netns}", "", "", "libvirt")]


def remove(resource: Resource) -> None:
    running = daemon.current()
    if resource.kind == "directory":
        shutil.rmtree(resource.name, ignore_errors=True)
        return
    if resource.kind == "libvirt daemon":
        daemon.release(still_used=False, say=lambda _m: None)
        return
    if running is None:
        return
    if resource.kind == "nftables table":
        subprocess.run(
            running.wrap(["nft", "delete", "table", *resource.name.split()]), capture_output=True, check=False
        )
        return
    with Hypervisor.open(running.uri, resource.lab) as hv:
        if resource.kind == "libvirt domain":
            found = [d for d in hv.conn.listAllDomains() if d.name() == resource.name]
            for domain in found:
                hv.remove_domain(domain)
        elif resource.kind == "libvirt network":
            hv.remove_network(resource.name)
        elif resource.kind == "storage pool":
            hv.remove_pool(resource.name)
