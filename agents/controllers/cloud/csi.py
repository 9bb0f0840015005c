"""What the lab's CSI controllers share: the driver's name and how its objects are read.

The lab's disks are one CSI driver, ``disk.csi.kubelab.dev``: its controller side (provisioning,
attaching, resizing, as kube's external-provisioner, external-attacher and external-resizer do) runs
in the cloud-controller-manager and asks the cloud API; its node side is the kubelet's. These helpers
read the fields those controllers decide on, so that each planner stays a few lines of decisions.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from typing import Any

from agents.controllers.base import Context, Controller
from agents.controllers.cloud.provider import CloudError, CloudProvider
from agents.machinery import quantity
from agents.machinery.client import ApiError
from agents.machinery.objects import Object

DRIVER = "disk.csi.kubelab.dev"
PROVISIONER_ANNOTATION = "volume.kubernetes.io/storage-provisioner"
BETA_PROVISIONER_ANNOTATION = "volume.beta.kubernetes.io/storage-provisioner"
SELECTED_NODE_ANNOTATION = "volume.kubernetes.io/selected-node"
PROVISIONED_BY_ANNOTATION = "pv.kubernetes.io/provisioned-by"
PROVISIONER_FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"
ATTACHER_FINALIZER = "external-attacher/" + DRIVER.replace(".", "-")
ZONE_LABEL = "topology.kubernetes.io/zone"
MIB = 1024 * 1024


def meta(obj: Object) -> dict[str, Any]:
    return obj.get("metadata") or {}


def spec(obj: Object) -> dict[str, Any]:
    return obj.get("spec") or {}


def notes(obj: Object) -> dict[str, str]:
    return meta(obj).get("annotations") or {}


def deleting(obj: Object) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def requested_bytes(claim: Object) -> int:
    """What the claim asks for, in bytes, rounded up to whole MiB (the cloud's unit); 0 when unreadable."""
    asked = ((spec(claim).get("resources") or {}).get("requests") or {}).get("storage")
    try:
        wanted = quantity.whole(asked) if asked is not None else 0
    except quantity.QuantityError:
        return 0
    return max(0, math.ceil(wanted / MIB) * MIB)


def capacity_bytes(obj: Object, *, where: str = "spec") -> int:
    """A PV's ``spec.capacity.storage`` or a claim's ``status.capacity.storage`` in bytes (0 when unset)."""
    found = ((obj.get(where) or {}).get("capacity") or {}).get("storage")
    try:
        return quantity.whole(found) if found is not None else 0
    except quantity.QuantityError:
        return 0


def storage(size: int) -> str:
    """Bytes as kube writes a storage quantity (``1Gi``, ``100Mi``)."""
    return quantity.canonical(f"{size // MIB}Mi") if size % MIB == 0 else str(size)


def provisioned_here(volume: Object) -> bool:
    """Whether a PV is one of this driver's (its CSI source names the driver)."""
    return (spec(volume).get("csi") or {}).get("driver") == DRIVER


def volume_handle(volume: Object) -> str:
    return str((spec(volume).get("csi") or {}).get("volumeHandle") or "")


async def cloud_volume_name(cloud: CloudProvider, volume: Object) -> str:
    """The cloud's name of a PersistentVolume's disk: the PV's own name when the cloud's volume of that
    name has the PV's handle, else the cloud volume whose id is the handle (a PV made by hand for a disk
    that exists); a ``CloudError`` (404) when the cloud has neither."""
    name, handle = str(meta(volume).get("name") or ""), volume_handle(volume)
    same = await cloud.volume(name)
    if same is not None and same["id"] == handle:
        return name
    found = next((v for v in await cloud.volumes() if v.get("id") == handle), None)
    if found is None:
        raise CloudError(f"the cloud has no volume {handle}", status=404)
    return str(found["name"])


class CsiController(Controller):
    """A controller of the driver's that asks the cloud: what it does on ``sync`` is tried again after
    ``retry`` seconds when the cloud refuses or does not answer, at once after a conflict, and not at all
    once its object is gone."""

    retry = 10.0

    def __init__(self, ctx: Context, cloud: CloudProvider) -> None:
        super().__init__(ctx)
        self.cloud = cloud

    async def attempt(self, key: str, step: Awaitable[None]) -> None:
        try:
            await step
        except CloudError:
            self.queue.add_after(key, self.retry)
        except ApiError as exc:
            if exc.not_found:
                return
            if exc.conflict:
                self.queue.add_after(key, 0.5)
                return
            raise
