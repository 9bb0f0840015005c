"""The CSI resizer: a bound claim asking for more storage gets a bigger disk, then a bigger filesystem.

kube's external-resizer, for the driver ``disk.csi.kubelab.dev``. When a bound claim's
``spec.resources.requests.storage`` is more than its ``status.capacity`` (the API server lets it grow
only in a class with ``allowVolumeExpansion``), the claim gets the ``Resizing`` condition and
``status.allocatedResources``, the cloud grows the qcow2 (live, when a machine has it attached), the
PersistentVolume's capacity follows, and the claim's condition becomes ``FileSystemResizePending``:
the kubelet of the node that mounts it grows the ext4 filesystem and writes the new capacity into
the claim's status (kube's node expansion). Events are kube's: ``Resizing``, ``FileSystemResizeRequired``,
``VolumeResizeFailed`` (with the cloud's message; tried again later).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from agents.controllers.base import Context, Event, rfc3339
from agents.controllers.cloud import csi
from agents.controllers.cloud.provider import CloudError, CloudProvider
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.objects import Object
from agents.machinery.resources import PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES

log = logging.getLogger(__name__)

RETRY_SECONDS = 10.0
RESIZING = "Resizing"
FS_RESIZE_PENDING = "FileSystemResizePending"
FS_RESIZE_MESSAGE = "Waiting for user to (re-)start a pod to finish file system resize of volume on node."


@dataclass(frozen=True)
class ResizePlan:
    """``grow_to``: the bytes the disk must reach (0: nothing to do)."""

    grow_to: int = 0


def conditions(claim: Object) -> list[dict[str, Any]]:
    return list((claim.get("status") or {}).get("conditions") or [])


def plan(claim: Object, volume: Object | None) -> ResizePlan:
    """Whether a claim's disk must grow now (pure): bound to one of this driver's PVs, asking more than
    the PV holds, and not already waiting for the node to grow its filesystem to that size."""
    if volume is None or csi.deleting(claim) or (claim.get("status") or {}).get("phase") != "Bound":
        return ResizePlan()
    if not csi.provisioned_here(volume):
        return ResizePlan()
    wanted = csi.requested_bytes(claim)
    if wanted <= csi.capacity_bytes(volume):
        return ResizePlan()
    return ResizePlan(grow_to=wanted)


def condition(type_: str, now: str, message: str = "") -> dict[str, Any]:
    found: dict[str, Any] = {"type": type_, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
    if message:
        found["message"] = message
    return found


class CsiResizer(csi.CsiController):
    name = "csi-resizer"
    source = "external-resizer " + csi.DRIVER
    workers = 1
    retry = RETRY_SECONDS

    def __init__(self, ctx: Context, cloud: CloudProvider) -> None:
        super().__init__(ctx, cloud)
        self.claims = ctx.informer(PERSISTENT_VOLUME_CLAIMS)
        self.volumes = ctx.informer(PERSISTENT_VOLUMES)
        self.claims.on(add=self.enqueue, update=lambda _o, n: self.enqueue(n))

    async def sync(self, key: str) -> None:
        claim = self.claims.get(key)
        if claim is None:
            return
        volume = self.volumes.get(str(csi.spec(claim).get("volumeName") or ""))
        decided = plan(claim, volume)
        if not decided.grow_to or volume is None:
            return
        await self.attempt(key, self._grow(key, claim, volume, decided.grow_to))

    async def _grow(self, key: str, claim: Object, volume: Object, grow_to: int) -> None:
        size, now = csi.storage(grow_to), rfc3339(self.now())
        pv_name = csi.meta(volume)["name"]
        kept = [c for c in conditions(claim) if c.get("type") not in (RESIZING, FS_RESIZE_PENDING)]
        await self._claim_status(claim, [*kept, condition(RESIZING, now)], allocated=size)
        self.record(claim, Event(NORMAL, RESIZING, f"External resizer is resizing volume {pv_name}"))
        try:
            await self.cloud.resize_volume(await csi.cloud_volume_name(self.cloud, volume), size_bytes=grow_to)
        except CloudError as exc:
            self.record(claim, Event(WARNING, "VolumeResizeFailed", f"resize volume {pv_name} failed: {exc}"))
            await self._claim_status(claim, kept, allocated=size)
            log.warning("claim %s: resize to %s: %s", key, size, exc)
            raise
        await self.client.patch(PERSISTENT_VOLUMES, pv_name, {"spec": {"capacity": {"storage": size}}})
        pending = condition(FS_RESIZE_PENDING, now, FS_RESIZE_MESSAGE)
        await self._claim_status(claim, [*kept, pending], allocated=size)
        self.record(claim, Event(NORMAL, "FileSystemResizeRequired", "Require file system resize of volume on node"))
        log.info("claim %s: volume %s grown to %s; the node grows its filesystem", key, pv_name, size)

    async def _claim_status(self, claim: Object, conds: list[dict[str, Any]], *, allocated: str) -> None:
        body = {"status": {"conditions": conds or None, "allocatedResources": {"storage": allocated}}}
        meta = csi.meta(claim)
        await self.client.patch(PERSISTENT_VOLUME_CLAIMS, meta["name"], body, meta["namespace"], subresource="status")
