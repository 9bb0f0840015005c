"""The cloud's volumes on libvirt: the executor of ``provisioner.cloud.volumes`` (which decides).

Each lab has one ``dir`` storage pool for its volumes, ``kubelab-<lab>.volumes`` (beside, never inside,
the machines' pool ``kubelab-<lab>``), in ``/var/lib/kubelab/volumes/<lab>`` by default: QEMU runs as
libvirt's own user and must reach the files, which a directory under root's home does not allow. The
cloud defines, builds and starts the pool when it starts (:meth:`LibvirtVolumes.start`); it is not
removed when the cloud stops, since volumes outlive the cloud's process, but by the lab's ``down``.

A volume is a qcow2 file of the pool named after its PersistentVolume; its id is derived from the lab's
identity (``KUBELAB_LAB_UID`` in the cloud's environment), the pool and the name, so the pool is the only
record (``virsh vol-list`` is the truth). Which instance holds it is read at every call from the lab's
domains: a disk whose serial is the id, in the live or the persistent definition.

Attach is ``attachDeviceFlags`` live (when the domain runs) and config (so it survives a restart);
detach removes the disk from the persistent definition, then from the live one and waits (bounded) until
QEMU has really let it go, which needs the guest's cooperation for a virtio hot-unplug; ``force`` (the
machine is off or crashed) does not wait for a guest. Resize grows the file while it is detached, or
asks QEMU (``blockResize``) while a running instance holds it; a volume never shrinks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from provisioner.cloud import volumes as model
from provisioner.drivers.libvirt import plan
from provisioner.drivers.libvirt.hypervisor import Hypervisor
from provisioner.errors import ProvisionError

VOLUME_ROOT = Path("/var/lib/kubelab/volumes")  # one directory (a pool) per lab
DETACH_TIMEOUT = 30.0  # seconds a guest has to release a hot-unplugged disk
DETACH_INTERVAL = 0.25
T = TypeVar("T")


def pool_plan(lab: str, root: Path = VOLUME_ROOT) -> plan.PoolPlan:
    """The lab's volume pool: its name and directory (the driver's ``down`` removes it by both)."""
    return plan.PoolPlan(name=model.pool_name(lab), directory=root / lab)


def _message(exc: Exception) -> str:
    getter = getattr(exc, "get_error_message", None)
    text = getter() if callable(getter) else None
    return str(text or exc)


@dataclass(frozen=True)
class _Held:
    """Where a volume is held: the instance, its domain, the target, and in which definitions."""

    instance: str
    domain: Any
    device: str
    live: bool  # in the running domain's live definition
    config: bool  # in its persistent definition


class LibvirtVolumes:
    """The lab's volumes in its pool; every call opens libvirt, reads what is there, and acts."""

    def __init__(self, *, uri: str, lab: str, lab_uid: str, pool: plan.PoolPlan) -> None:
        self.uri = uri
        self.lab = lab
        self.lab_uid = lab_uid
        self.pool = pool
        self.detach_timeout = DETACH_TIMEOUT

    # --- plumbing --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _session(self) -> Iterator[Hypervisor]:
        try:
            with Hypervisor.open(self.uri, self.lab) as hv:
                yield hv
        except model.VolumeError:
            raise
        except ProvisionError as exc:
            raise model.VolumeBackendError(str(exc)) from exc

    def _do(self, hv: Hypervisor, what: str, call: Callable[..., T], *args: Any) -> T:
        try:
            return call(*args)
        except hv.libvirt.libvirtError as exc:
            raise model.VolumeBackendError(f"libvirt could not {what}: {_message(exc)}") from exc

    def _pool(self, hv: Hypervisor) -> Any:
        """The lab's volume pool, started and refreshed (made again should it have gone while the cloud runs)."""
        return hv.ensure_pool(self.pool)

    def _lookup(self, hv: Hypervisor, pool: Any, name: str) -> Any | None:
        try:
            return pool.storageVolLookupByName(name)
        except hv.libvirt.libvirtError:
            return None

    def _documents(self, hv: Hypervisor, domain: Any) -> tuple[str, str]:
        """(live, persistent) XML of a domain; the live one is the persistent one while it is off."""
        live = self._do(hv, f"read {domain.name()}", domain.XMLDesc, 0)
        config = (
            self._do(hv, f"read {domain.name()}", domain.XMLDesc, hv.libvirt.VIR_DOMAIN_XML_INACTIVE)
            if domain.isPersistent()
            else ""
        )
        return live, config

    def _held(self, hv: Hypervisor, volume_id: str) -> _Held | None:
        for name, domain in sorted(hv.domains().items()):
            live, config = self._documents(hv, domain)
            active = bool(domain.isActive())
            in_live = model.attachment(volume_id, {name: [live]}) if active else ("", "")
            in_config = model.attachment(volume_id, {name: [config]}) if config else ("", "")
            if in_live[0] or in_config[0]:
                return _Held(name, domain, in_live[1] or in_config[1], bool(in_live[0]), bool(in_config[0]))
        return None

    def _describe(self, hv: Hypervisor, volume: Any, zone: str) -> model.Volume:
        name = volume.name()
        _kind, capacity, _allocation = self._do(hv, f"read volume {name}", volume.info)
        volume_id = model.volume_id(lab_uid=self.lab_uid, pool=self.pool.name, name=name)
        held = self._held(hv, volume_id)
        return model.Volume(
            name=name,
            id=volume_id,
            size_bytes=int(capacity),
            pool=self.pool.name,
            path=str(volume.path()),
            zone=zone,
            attached_to=held.instance if held else "",
            device=held.device if held else "",
        )

    def _zone(self, hv: Hypervisor) -> str:
        return str(self._do(hv, "name its host", hv.conn.getHostname))

    def _available(self, hv: Hypervisor, pool: Any) -> int:
        _state, _capacity, _allocation, available = self._do(hv, f"read pool {self.pool.name}", pool.info)
        return int(available)

    def _existing(self, hv: Hypervisor, pool: Any, name: str) -> Any:
        model.check_name(name)
        found = self._lookup(hv, pool, name)
        if found is None:
            raise model.VolumeNotFoundError(f"no volume is named {name}")
        return found

    # --- the pool --------------------------------------------------------------------------------

    def start(self) -> None:
        """The lab's volume pool defined, built (its directory made) and started, when it is not."""
        with self._session() as hv:
            hv.ensure_pool(self.pool)

    # --- the API's calls -------------------------------------------------------------------------

    def listing(self) -> list[model.Volume]:
        with self._session() as hv:
            pool, zone = self._pool(hv), self._zone(hv)
            found = self._do(hv, f"list pool {self.pool.name}", pool.listAllVolumes, 0)
            return sorted((self._describe(hv, v, zone) for v in found), key=lambda v: v.name)

    def get(self, name: str) -> model.Volume | None:
        model.check_name(name)
        with self._session() as hv:
            pool = self._pool(hv)
            found = self._lookup(hv, pool, name)
            return None if found is None else self._describe(hv, found, self._zone(hv))

    def create(self, name: str, *, size_bytes: int) -> model.Volume:
        """Volume ``name`` of ``size_bytes``; one that exists is answered as it is."""
        model.check_name(name)
        with self._session() as hv:
            pool, zone = self._pool(hv), self._zone(hv)
            found = self._lookup(hv, pool, name)
            if found is None:
                model.check_room(self.pool.name, available=self._available(hv, pool), requested=size_bytes)
                xml = model.volume_xml(name, size_bytes=size_bytes)
                found = self._do(hv, f"create volume {name}", pool.createXML, xml, 0)
            return self._describe(hv, found, zone)

    def delete(self, name: str) -> model.Volume | None:
        """The volume deleted (None when there was none); a 409 while an instance holds it."""
        model.check_name(name)
        with self._session() as hv:
            pool = self._pool(hv)
            found = self._lookup(hv, pool, name)
            if found is None:
                return None
            gone = self._describe(hv, found, self._zone(hv))
            if gone.attached_to:
                raise model.VolumeConflictError(
                    f"volume {name} is attached to {gone.attached_to} as {gone.device}; detach it first"
                )
            self._do(hv, f"delete volume {name}", found.delete, 0)
            return gone

    def resize(self, name: str, *, size_bytes: int) -> model.Volume:
        with self._session() as hv:
            pool, zone = self._pool(hv), self._zone(hv)
            found = self._existing(hv, pool, name)
            now = self._describe(hv, found, zone)
            growth = model.check_growth(name, current=now.size_bytes, wanted=size_bytes)
            if growth == 0:
                return now
            model.check_room(self.pool.name, available=self._available(hv, pool), requested=growth)
            held = self._held(hv, now.id)
            if held is not None and held.live:
                flags = hv.libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES
                self._do(hv, f"grow {name} in {held.instance}", held.domain.blockResize, held.device, size_bytes, flags)
            else:
                self._do(hv, f"grow volume {name}", found.resize, size_bytes, 0)
            return self._describe(hv, self._existing(hv, pool, name), zone)

    def attach(self, name: str, *, instance: str) -> model.Volume:
        """The volume attached to ``instance`` (live when it runs, and in its definition)."""
        with self._session() as hv:
            pool, zone = self._pool(hv), self._zone(hv)
            now = self._describe(hv, self._existing(hv, pool, name), zone)
            if now.attached_to == instance:
                return now
            if now.attached_to:
                raise model.VolumeConflictError(
                    f"volume {name} is attached to {now.attached_to}; detach it before attaching it to {instance}"
                )
            domain = hv.domains().get(instance)
            if domain is None:
                raise model.VolumeNotFoundError(f"no instance is named {instance}")
            live, config = self._documents(hv, domain)
            target = model.free_target([live, config])
            xml = model.disk_xml(path=now.path, target=target, serial=now.id)
            flags = hv.libvirt.VIR_DOMAIN_AFFECT_CONFIG if domain.isPersistent() else 0
            if domain.isActive():
                flags |= hv.libvirt.VIR_DOMAIN_AFFECT_LIVE
            try:
                domain.attachDeviceFlags(xml, flags)
            except hv.libvirt.libvirtError as exc:
                if "PCI slots" in _message(exc):  # q35: each hot-plugged disk takes a spare pcie-root-port
                    raise model.VolumeConflictError(
                        f"{instance} has no free PCI slot for another disk (its definition has no spare"
                        f" pcie-root-port): {_message(exc)}"
                    ) from exc
                raise model.VolumeBackendError(
                    f"libvirt could not attach {name} to {instance}: {_message(exc)}"
                ) from exc
            return self._describe(hv, self._existing(hv, pool, name), zone)

    def detach(self, name: str, *, force: bool = False) -> model.Volume:
        """The volume detached from whichever instance holds it (nothing to do when none does)."""
        with self._session() as hv:
            pool, zone = self._pool(hv), self._zone(hv)
            now = self._describe(hv, self._existing(hv, pool, name), zone)
            held = self._held(hv, now.id)
            if held is None:
                return now
            xml = model.disk_xml(path=now.path, target=held.device, serial=now.id)
            if held.config:
                flags = hv.libvirt.VIR_DOMAIN_AFFECT_CONFIG
                self._do(hv, f"detach {name} from {held.instance}", held.domain.detachDeviceFlags, xml, flags)
            if held.live:
                self._unplug(hv, held, xml, name=name, wait=not force)
            return self._describe(hv, self._existing(hv, pool, name), zone)

    def _unplug(self, hv: Hypervisor, held: _Held, xml: str, *, name: str, wait: bool) -> None:
        """Ask QEMU to unplug the disk and, with ``wait``, see it gone from the live definition."""
        try:
            held.domain.detachDeviceFlags(xml, hv.libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except hv.libvirt.libvirtError as exc:
            if "in the process of unplug" not in _message(exc):  # asked before: wait for it again
                raise model.VolumeBackendError(
                    f"libvirt could not detach {name} from {held.instance}: {_message(exc)}"
                ) from exc
        if not wait:
            return
        deadline = time.monotonic() + self.detach_timeout
        volume_id = model.volume_id(lab_uid=self.lab_uid, pool=self.pool.name, name=name)
        while True:
            if not held.domain.isActive():
                return
            live = self._do(hv, f"read {held.instance}", held.domain.XMLDesc, 0)
            if not model.attachment(volume_id, {held.instance: [live]})[0]:
                return
            if time.monotonic() >= deadline:
                raise model.VolumeBusyError(
                    f"{held.instance} has not released volume {name} within {self.detach_timeout:.0f}s"
                    " (its guest must acknowledge the unplug); ask again, or force it when the machine is off"
                )
            time.sleep(DETACH_INTERVAL)
