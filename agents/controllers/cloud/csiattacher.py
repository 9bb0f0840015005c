"""The CSI attacher: the cloud attaches the disk a VolumeAttachment asks for, and detaches it after.

kube's external-attacher, for the driver ``disk.csi.kubelab.dev``. The attach/detach controller
creates a VolumeAttachment (``spec.attacher`` the driver, ``spec.nodeName``, the PersistentVolume in
``spec.source``) for each volume a node's pods need. This controller first puts its finalizer on it,
then asks the cloud to hot-plug the volume into the node's machine (a virtio disk whose serial is the
volume's id, the name the kubelet finds it by) and writes ``status.attached: true`` with that serial
and the device in ``attachmentMetadata``. A refusal is ``status.attachError`` (time and the cloud's
message) and another try later. When the VolumeAttachment is deleted, the cloud detaches the disk
(forcibly, from the machine's configuration only, when its Node is gone or not Ready: a crashed
machine cannot let go of a disk itself) and the finalizer goes, so the object goes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from agents.controllers.base import Context, rfc3339
from agents.controllers.cloud import csi
from agents.controllers.cloud.provider import CloudError, CloudProvider
from agents.machinery.objects import Object
from agents.machinery.resources import NODES, PERSISTENT_VOLUMES, VOLUME_ATTACHMENTS

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class AttachPlan:
    """One step: ``add_finalizer``, ``attach``, ``detach`` (``force``: config only), or nothing."""

    add_finalizer: bool = False
    attach: bool = False
    detach: bool = False
    force: bool = False


def node_ready(node: Object | None) -> bool:
    conditions = ((node or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def plan(attachment: Object, node: Object | None) -> AttachPlan:
    """What a VolumeAttachment of this driver needs next (pure); others' are not ours."""
    if csi.spec(attachment).get("attacher") != csi.DRIVER:
        return AttachPlan()
    finalizers = csi.meta(attachment).get("finalizers") or []
    if csi.deleting(attachment):
        if csi.ATTACHER_FINALIZER not in finalizers:
            return AttachPlan()
        return AttachPlan(detach=True, force=not node_ready(node))
    if csi.ATTACHER_FINALIZER not in finalizers:
        return AttachPlan(add_finalizer=True)
    if (attachment.get("status") or {}).get("attached"):
        return AttachPlan()
    return AttachPlan(attach=True)


class CsiAttacher(csi.CsiController):
    name = "csi-attacher"
    source = f"{csi.DRIVER}_csi-attacher"
    workers = 2
    retry = RETRY_SECONDS

    def __init__(self, ctx: Context, cloud: CloudProvider) -> None:
        super().__init__(ctx, cloud)
        self.attachments = ctx.informer(VOLUME_ATTACHMENTS)
        self.volumes = ctx.informer(PERSISTENT_VOLUMES)
        self.nodes = ctx.informer(NODES)
        self.attachments.on(add=self.enqueue, update=lambda _o, n: self.enqueue(n))

    async def sync(self, key: str) -> None:
        attachment = self.attachments.get(key)
        if attachment is None:
            return
        spec = csi.spec(attachment)
        decided = plan(attachment, self.nodes.get(str(spec.get("nodeName") or "")))
        await self.attempt(key, self._step(attachment, decided))

    async def _step(self, attachment: Object, decided: AttachPlan) -> None:
        if decided.add_finalizer:
            finalizers = [*(csi.meta(attachment).get("finalizers") or []), csi.ATTACHER_FINALIZER]
            await self._finalizers(attachment, finalizers)
        elif decided.attach:
            await self._attach(attachment)
        elif decided.detach:
            await self._detach(attachment, force=decided.force)

    async def _volume_name(self, attachment: Object) -> str:
        pv_name = str((csi.spec(attachment).get("source") or {}).get("persistentVolumeName") or "")
        volume = self.volumes.get(pv_name)
        if volume is None:
            raise CloudError(f'persistentvolume "{pv_name}" not found', status=404)
        return await csi.cloud_volume_name(self.cloud, volume)

    async def _attach(self, attachment: Object) -> None:
        node = str(csi.spec(attachment).get("nodeName") or "")
        try:
            name = await self._volume_name(attachment)
            made = await self.cloud.attach_volume(name, instance=node)
        except CloudError as exc:
            error = {"time": rfc3339(self.now()), "message": f"rpc error: {exc}"}
            await self._status(attachment, {"attached": False, "attachError": error})
            log.warning("volumeattachment %s: attach to %s: %s", csi.meta(attachment)["name"], node, exc)
            raise
        metadata = {"serial": str(made.get("id") or ""), "device": str(made.get("device") or "")}
        await self._status(attachment, {"attached": True, "attachmentMetadata": metadata, "attachError": None})
        log.info("volumeattachment %s: %s attached to %s as %s", csi.meta(attachment)["name"], name, node, metadata)

    async def _detach(self, attachment: Object, *, force: bool) -> None:
        try:
            name = await self._volume_name(attachment)
            await self.cloud.detach_volume(name, force=force)
        except CloudError as exc:
            if exc.status != 404 and "not found" not in str(exc):
                error = {"time": rfc3339(self.now()), "message": f"rpc error: {exc}"}
                await self._status(attachment, {**(attachment.get("status") or {}), "detachError": error})
                raise
        finalizers = [f for f in csi.meta(attachment).get("finalizers") or [] if f != csi.ATTACHER_FINALIZER]
        await self._finalizers(attachment, finalizers)
        log.info("volumeattachment %s: detached (force=%s)", csi.meta(attachment)["name"], force)

    async def _finalizers(self, attachment: Object, finalizers: list[str]) -> None:
        meta = csi.meta(attachment)
        body = {"metadata": {"finalizers": finalizers or None, "resourceVersion": meta["resourceVersion"]}}
        await self.client.patch(VOLUME_ATTACHMENTS, meta["name"], body)

    async def _status(self, attachment: Object, status: dict[str, object | None]) -> None:
        await self.client.patch(
            VOLUME_ATTACHMENTS, csi.meta(attachment)["name"], {"status": status}, subresource="status"
        )
