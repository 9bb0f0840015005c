"""The cloud's volumes, decided (pure): what a CSI driver's controller may ask for, and the documents.

A volume is a qcow2 file in a libvirt storage pool of the lab, named after the PersistentVolume it
backs (``pvc-<claim uid>``), hot-attached to an instance as a virtio disk whose ``serial`` is the
volume's id, so the guest finds it as ``/dev/disk/by-id/virtio-<id>``. The id is ``vol-`` and 16
lowercase hex characters (virtio-blk's serial holds at most 20 bytes); it is derived from the lab's
identity, the pool and the name (:func:`volume_id`), so the pool itself is the only record of the
volumes: no state file to lose or go stale, and a lab made again under the same name never gives a
disk of the old lab's id. Which instance holds a volume is read from the instances' domain XML (a disk
whose serial is the id, :func:`attachment`), never kept.

Requests are checked here (:func:`size_of`, :func:`instance_of`, :func:`check_name`), with an HTTP
status on every refusal (``VolumeError`` and its kinds, as the router's ``RouteError``); the libvirt
documents are built here (:func:`volume_xml`, :func:`disk_xml`, :func:`free_target`). The executor on
libvirt is ``provisioner.drivers.libvirt.volumes``; ``VolumeBackend`` is the seam the API serves.
"""

from __future__ import annotations

import hashlib
import re
import string
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict
from xml.sax.saxutils import escape, quoteattr

FORMAT = "qcow2"
ID_PREFIX = "vol-"
ID_HEX = 16  # "vol-" + 16 = 20 characters: all of a virtio-blk serial
NAME_MAX = 253
ROUND = 1 << 20  # sizes are rounded up to whole MiB, as clouds round to their unit
MAX_SIZE = 1 << 44  # 16 TiB: a sanity bound on a request, far above any pool of the lab
TARGET_PREFIX = "vd"
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_ID = re.compile(rf"{ID_PREFIX}[0-9a-f]{{{ID_HEX}}}")


class VolumeError(ValueError):
    """A request the cloud's volumes cannot serve; ``status`` is what the API answers (400: wrong)."""

    status = 400


class VolumeNotFoundError(VolumeError):
    """No such volume, or no such instance."""

    status = 404


class VolumeConflictError(VolumeError):
    """The volume is attached (to another instance, or at all where it may not be)."""

    status = 409


class VolumeBusyError(VolumeError):
    """The instance has not done what was asked yet (a guest that has not released a disk): ask again."""

    status = 503


class VolumeBackendError(VolumeError):
    """The backend (libvirt) failed at what it was asked; its own error is the cause."""

    status = 500


class InsufficientCapacityError(VolumeError):
    """The pool cannot hold what is asked (HTTP's 507 Insufficient Storage)."""

    status = 507


class VolumeJSON(TypedDict):
    name: str
    id: str
    sizeBytes: int
    pool: str
    path: str
    format: str
    zone: str
    attachedTo: str
    device: str


@dataclass(frozen=True)
class Volume:
    """One volume as the cloud answers it."""

    name: str
    id: str
    size_bytes: int
    pool: str
    path: str
    zone: str
    attached_to: str = ""  # the instance's name, "" when detached
    device: str = ""  # its target there (vdb, ...), "" when detached
    format: str = FORMAT

    def json(self) -> VolumeJSON:
        return {
            "name": self.name,
            "id": self.id,
            "sizeBytes": self.size_bytes,
            "pool": self.pool,
            "path": self.path,
            "format": self.format,
            "zone": self.zone,
            "attachedTo": self.attached_to,
            "device": self.device,
        }


class VolumeBackend(Protocol):
    """What serves the volumes API (blocking calls; the server runs them in threads). Each refusal or
    failure is a ``VolumeError`` with the status to answer (``VolumeBackendError``: the backend's own)."""

    def listing(self) -> list[Volume]: ...

    def get(self, name: str) -> Volume | None: ...

    def create(self, name: str, *, size_bytes: int) -> Volume: ...

    def delete(self, name: str) -> Volume | None: ...

    def resize(self, name: str, *, size_bytes: int) -> Volume: ...

    def attach(self, name: str, *, instance: str) -> Volume: ...

    def detach(self, name: str, *, force: bool = False) -> Volume: ...


# --- names and ids ------------------------------------------------------------------------------


def pool_name(lab: str) -> str:
    """The lab's volume pool: ``kubelab-<lab>.volumes`` (a lab's name has no '.', so neither another
    lab's machines' pool ``kubelab-<lab>`` nor another lab's volume pool can be named so)."""
    return f"kubelab-{lab}.volumes"


def check_name(name: str) -> str:
    if len(name) > NAME_MAX or not _NAME.fullmatch(name):
        raise VolumeError(
            f"volume name {name!r} is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', "
            f"starting and ending with a letter or digit, at most {NAME_MAX} characters)"
        )
    return name


def volume_id(*, lab_uid: str, pool: str, name: str) -> str:
    """The id of volume ``name`` of ``pool`` in the lab of identity ``lab_uid``: the virtio serial."""
    digest = hashlib.sha256(f"{lab_uid}/{pool}/{name}".encode()).hexdigest()
    return ID_PREFIX + digest[:ID_HEX]


def is_id(text: str) -> bool:
    return bool(_ID.fullmatch(text))


# --- request bodies -----------------------------------------------------------------------------


def size_of(body: Mapping[str, Any]) -> int:
    """The ``sizeBytes`` a body asks for, rounded up to whole MiB."""
    size = body.get("sizeBytes")
    if isinstance(size, bool) or not isinstance(size, int):
        raise VolumeError("sizeBytes is required (a whole number of bytes, such as 1073741824)")
    if size <= 0:
        raise VolumeError(f"sizeBytes {size} must be positive")
    if size > MAX_SIZE:
        raise VolumeError(f"sizeBytes {size} is more than this cloud's largest volume ({MAX_SIZE} bytes)")
    return -(-size // ROUND) * ROUND


def instance_of(body: Mapping[str, Any]) -> str:
    instance = body.get("instance")
    if not isinstance(instance, str) or not instance:
        raise VolumeError("instance is required (the name of one of the lab's instances)")
    return instance


def check_room(pool: str, *, available: int, requested: int) -> None:
    """A 507 with the pool's figures when ``requested`` more bytes do not fit in what it has left."""
    if requested > available:
        raise InsufficientCapacityError(f"pool {pool} has {available} bytes available, {requested} requested")


def check_growth(name: str, *, current: int, wanted: int) -> int:
    """The bytes a resize adds (0: nothing to do); a 400 for a smaller size (volumes never shrink)."""
    if wanted < current:
        raise VolumeError(f"volume {name} has {current} bytes; it cannot shrink to {wanted}")
    return wanted - current


# --- the instances' disks -----------------------------------------------------------------------


@dataclass(frozen=True)
class Disk:
    """A disk of a domain's XML."""

    target: str  # dev
    serial: str
    source: str  # the file, "" for none


def disks(domain_xml: str) -> list[Disk]:
    found = []
    for element in ET.fromstring(domain_xml).iterfind("./devices/disk"):
        target = element.find("target")
        serial = element.find("serial")
        source = element.find("source")
        found.append(
            Disk(
                target=target.get("dev", "") if target is not None else "",
                serial=(serial.text or "").strip() if serial is not None else "",
                source=source.get("file", "") if source is not None else "",
            )
        )
    return found


def attachment(volume: str, domains: Mapping[str, Iterable[str]]) -> tuple[str, str]:
    """``(instance, device)`` holding the volume of id ``volume``, from each instance's domain XMLs
    (its live and its persistent definition); ``("", "")`` when none does."""
    for name, documents in sorted(domains.items()):
        for document in documents:
            for disk in disks(document):
                if disk.serial == volume:
                    return name, disk.target
    return "", ""


def _targets() -> Iterable[str]:
    for first in string.ascii_lowercase[1:]:  # vda is the machine's own disk
        yield TARGET_PREFIX + first
    for first in string.ascii_lowercase:
        for second in string.ascii_lowercase:
            yield TARGET_PREFIX + first + second


def free_target(documents: Iterable[str]) -> str:
    """The first virtio target (vdb, vdc, ..., vdz, vdaa, ...) no disk of the domain XMLs uses."""
    used = {disk.target for document in documents for disk in disks(document)}
    for target in _targets():
        if target not in used:
            return target
    raise VolumeConflictError("the instance has no free virtio disk target")


# --- libvirt documents --------------------------------------------------------------------------


def volume_xml(name: str, *, size_bytes: int) -> str:
    """A new qcow2 volume of the pool (sparse: it takes room as the guest writes)."""
    return (
        "<volume>"
        f"<name>{escape(name)}</name>"
        f"<capacity unit='bytes'>{size_bytes}</capacity>"
        f"<target><format type='{FORMAT}'/><permissions><mode>0600</mode></permissions></target>"
        "</volume>"
    )


def disk_xml(*, path: str, target: str, serial: str) -> str:
    """The volume as a virtio disk of an instance, its serial the volume's id."""
    return (
        "<disk type='file' device='disk'>"
        f"<driver name='qemu' type='{FORMAT}'/>"
        f"<source file={quoteattr(path)}/>"
        f"<target dev={quoteattr(target)} bus='virtio'/>"
        f"<serial>{escape(serial)}</serial>"
        "</disk>"
    )
