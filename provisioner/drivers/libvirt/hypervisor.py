"""Every call kubelab makes to libvirt, behind one small class: the lab's network, its storage pool
and volumes, and its domains.

The libvirt binding raises ``libvirtError`` for everything; here each refusal becomes one
``ProvisionError`` line that names the machine or network and, where it can, what to change. The
documents passed to libvirt come from ``plan`` (pure); nothing here decides what the lab should be.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from provisioner.drivers.base import Machine
from provisioner.drivers.libvirt import plan
from provisioner.errors import HostError, ProvisionError

# libvirt's virDomainState values, in the words `kubelab status` prints
STATES = {1: "running", 2: "blocked", 3: "paused", 4: "stopping", 5: "shut off", 6: "crashed", 7: "suspended"}
RUNNING, PAUSED, SHUTOFF = "running", "paused", "shut off"
# libvirt's reasons for a shut-off domain (virDomainShutoffReason) that a booting machine can meet
STOP_REASONS = {1: "it shut down", 2: "it was powered off", 6: "QEMU failed to start it"}
QEMU_LOGS = Path("/var/log/libvirt/qemu")  # where libvirt keeps each domain's QEMU log


def binding() -> Any:
    """The libvirt Python binding, with its errors coming back as exceptions only."""
    try:
        import libvirt  # noqa: PLC0415 - the binding is only needed by this driver
    except ImportError as exc:
        raise HostError(
            "the libvirt Python binding is missing; run ./kubelab again to install it (needs libvirt-dev)"
        ) from exc
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def _message(exc: Exception) -> str:
    getter = getattr(exc, "get_error_message", None)
    text = getter() if callable(getter) else None
    return str(text or exc)


class Hypervisor:
    """One open connection to libvirt, scoped to one lab (``with Hypervisor.open(uri, lab) as hv``)."""

    def __init__(self, conn: Any, lab: str) -> None:
        self.conn = conn
        self.lab = lab
        self.libvirt = binding()

    @classmethod
    @contextlib.contextmanager
    def open(cls, uri: str, lab: str) -> Iterator[Hypervisor]:
        libvirt = binding()
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise HostError(f"cannot connect to libvirt at {uri}: {_message(exc)}") from exc
        try:
            yield cls(conn, lab)
        finally:
            conn.close()

    # --- domains ---------------------------------------------------------------------------------

    def domains(self) -> dict[str, Any]:
        """The lab's domains by name (kubelab's stamp in their metadata, not only their names)."""
        return {d.name(): d for d in self.conn.listAllDomains() if plan.is_ours(self.lab, d.name(), d.XMLDesc(0))}

    def domain(self, name: str) -> Any:
        found = self.domains().get(name)
        if found is None:
            raise ProvisionError(f"{name} has no machine; create the lab's machines with: kubelab up")
        return found

    def states(self) -> dict[str, str]:
        return {name: STATES.get(d.state()[0], "other") for name, d in self.domains().items()}

    def call(self, name: str, what: str, call: Callable[..., Any], *args: Any, image: Path | None = None) -> Any:
        """``call(*args)``, with libvirt's refusal as one line naming the machine; where QEMU may not
        read the base image (it runs as libvirt's own user), what to change."""
        try:
            return call(*args)
        except self.libvirt.libvirtError as exc:
            message = _message(exc)
            hint = ""
            if "Permission denied" in message and image is not None:
                hint = (
                    f"; QEMU runs as libvirt's user and must be able to read the guest image {image}"
                    " and every directory above it (set KUBELAB_GUEST_CACHE to such a place)"
                )
            raise ProvisionError(f"{name}: libvirt could not {what} the machine: {message}{hint}") from exc

    def define(self, name: str, xml: str, *, image: Path) -> Any:
        return self.call(name, "define", self.conn.defineXML, xml, image=image)

    def boot(self, name: str, domain: Any, *, image: Path | None = None) -> bool:
        """Start ``domain`` unless it runs; return whether it was started."""
        if domain.isActive():
            return False
        self.call(name, "start", domain.create, image=image)
        return True

    def stopped(self, name: str) -> str:
        """Why ``name``'s domain does not run ('' while it runs, is paused, or is missing): libvirt's
        reason for its stop, with QEMU's log for a crash."""
        found = self.domains().get(name)
        if found is None:
            return ""
        state, reason = found.state()
        if state == self.libvirt.VIR_DOMAIN_CRASHED or (
            state == self.libvirt.VIR_DOMAIN_SHUTOFF and reason == self.libvirt.VIR_DOMAIN_SHUTOFF_CRASHED
        ):
            return f"its QEMU crashed (see {QEMU_LOGS / name}.log)"
        if state == self.libvirt.VIR_DOMAIN_SHUTOFF:
            return STOP_REASONS.get(reason, "it was shut off")
        return ""

    def remove_domain(self, domain: Any) -> None:
        if domain.isActive():
            domain.destroy()
        domain.undefine()

    # --- the network -----------------------------------------------------------------------------

    def network(self, name: str) -> Any | None:
        try:
            return self.conn.networkLookupByName(name)
        except self.libvirt.libvirtError:
            return None

    def ensure_network(self, network: plan.NetworkPlan, machines: Sequence[Machine], *, cidr: str, xml: str) -> bool:
        """Define (from ``xml``) and start the lab's network, or give the running one the machines'
        reservations in place (destroying it would unplug the running machines from its bridge).
        Returns whether the network was defined now."""
        net = self.network(network.name)
        if net is not None:
            self._update_reservations(net, machines)
        if net is None or not net.isActive():
            self.refuse_overlap(network.name, cidr)
        defined = net is None
        if net is None:
            net = self.conn.networkDefineXML(xml)
        if not net.isActive():
            try:
                net.create()
            except self.libvirt.libvirtError as exc:
                raise ProvisionError(
                    f"network {network.name} ({cidr}) could not start: {_message(exc)};"
                    " give the lab another range with --network-cidr"
                ) from exc
        return defined

    def refuse_overlap(self, name: str, cidr: str) -> None:
        """One line naming the other lab when its active network holds this lab's range (two bridges
        with one range would route the machines of both labs to whichever came first)."""
        others = [(n.name(), n.XMLDesc(0)) for n in self.conn.listAllNetworks() if n.isActive() and n.name() != name]
        clash = plan.overlapping(cidr, others)
        if clash:
            lab = clash.removeprefix("kubelab-")
            undo = f"kubelab down --name {lab}" if clash != lab else f"virsh net-destroy {clash}"
            raise ProvisionError(
                f"network-cidr {cidr} is in use by libvirt network {clash};"
                f" remove it ({undo}) or give this lab another range with --network-cidr"
            )

    def active_ranges(self, *, besides: str) -> list[tuple[str, str]]:
        """(cidr, network name) of every active network's range, but network ``besides``'s."""
        return [
            (cidr, net.name())
            for net in self.conn.listAllNetworks()
            if net.isActive() and net.name() != besides
            for cidr in plan.ranges(net.XMLDesc(0))
        ]

    def _update_reservations(self, net: Any, machines: Sequence[Machine]) -> None:
        libvirt = self.libvirt
        delete, add = plan.reservation_changes(plan.reservations(net.XMLDesc(0)), machines)
        flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
        if net.isActive():
            flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
        changes = [(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, xml) for xml in delete]
        changes += [(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, xml) for xml in add]
        for command, xml in changes:
            try:
                net.update(command, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, xml, flags)
            except libvirt.libvirtError as exc:
                raise ProvisionError(
                    f"network {net.name()}: libvirt could not update the reservation {xml}: {_message(exc)}"
                ) from exc

    def remove_network(self, name: str) -> bool:
        net = self.network(name)
        if net is None:
            return False
        if net.isActive():
            net.destroy()
        net.undefine()
        return True

    # --- the storage pool and the machines' disks -----------------------------------------------

    def _pool(self, name: str) -> Any | None:
        try:
            return self.conn.storagePoolLookupByName(name)
        except self.libvirt.libvirtError:
            return None

    def ensure_pool(self, pool: plan.PoolPlan) -> Any:
        """The lab's storage pool, defined, built (its directory made) and started."""
        found = self._pool(pool.name)
        try:
            if found is None:
                found = self.conn.storagePoolDefineXML(plan.pool_xml(pool), 0)
                found.build(0)
            if not found.isActive():
                found.create(0)
            found.refresh(0)
        except self.libvirt.libvirtError as exc:
            raise ProvisionError(
                f"storage pool {pool.name} ({pool.directory}) could not be made ready: {_message(exc)}"
            ) from exc
        return found

    def ensure_volume(self, pool: plan.PoolPlan, machine: str, *, capacity_gib: int, backing: Path) -> Path:
        """The machine's disk in the lab's pool (an overlay on ``backing``), created if it is missing."""
        found = self.ensure_pool(pool)
        name = plan.volume_name(machine)
        try:
            volume = found.storageVolLookupByName(name)
        except self.libvirt.libvirtError:
            xml = plan.volume_xml(machine, capacity_gib=capacity_gib, backing=backing)
            volume = self.call(machine, "create the disk of", found.createXML, xml, 0, image=backing)
        return Path(volume.path())

    def delete_volume(self, pool: plan.PoolPlan, machine: str) -> None:
        found = self._pool(pool.name)
        if found is None or not found.isActive():
            (pool.directory / plan.volume_name(machine)).unlink(missing_ok=True)
            return
        with contextlib.suppress(self.libvirt.libvirtError):
            found.refresh(0)
            found.storageVolLookupByName(plan.volume_name(machine)).delete(0)

    def remove_pool(self, name: str) -> bool:
        """Delete the pool's volumes and the pool itself (its directory too); whether there was one."""
        found = self._pool(name)
        if found is None:
            return False
        if found.isActive():
            found.refresh(0)
            for volume in found.listAllVolumes(0):
                volume.delete(0)
            found.destroy()
        with contextlib.suppress(self.libvirt.libvirtError):
            found.delete(0)  # removes the (now empty) directory
        found.undefine()
        return True

    def still_used(self) -> bool:
        """Whether libvirt still holds domains or kubelab networks (of any lab)."""
        return bool(self.conn.listAllDomains()) or any(
            n.name().startswith("kubelab-") for n in self.conn.listAllNetworks()
        )
