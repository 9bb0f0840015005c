"""The CSI provisioner: a cloud volume and its PersistentVolume for every claim the lab's disks serve.

kube's external-provisioner, for the driver ``disk.csi.kubelab.dev``. A claim is this provisioner's
when the persistent volume controller has handed it over (annotation
``volume.kubernetes.io/storage-provisioner`` names the driver), it is not bound yet, and its
StorageClass's ``provisioner`` is the driver; a class with ``volumeBindingMode: WaitForFirstConsumer``
waits until the scheduler chose a node (``volume.kubernetes.io/selected-node``). Then the cloud creates
a qcow2 volume named like the PersistentVolume (``pvc-<claim uid>``), and the PersistentVolume is
created pre-bound to the claim (the persistent volume controller completes the binding), with the
cloud volume's id as ``csi.volumeHandle`` and a node affinity for the cloud volume's zone.

The other way round: a PersistentVolume of the driver, provisioned here, ``Released`` with reclaim
policy ``Delete`` has its cloud volume deleted (a volume still attached is tried again later), then
the PersistentVolume itself. Events are kube's: ``Provisioning``, ``ProvisioningSucceeded``,
``ProvisioningFailed`` (with the cloud's own message, e.g. a pool that cannot hold the size),
``VolumeFailedDelete``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from agents.controllers.base import Context, Event
from agents.controllers.cloud import csi
from agents.controllers.cloud.provider import CloudError, CloudProvider
from agents.machinery.client import ApiError
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.informer import key_of
from agents.machinery.objects import Object
from agents.machinery.resources import NODES, PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES, STORAGE_CLASSES

log = logging.getLogger(__name__)

RETRY_SECONDS = 10.0
FINAL_STATUSES = (400, 507)  # the cloud refuses the volume itself: asking again from the same node changes nothing
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"


def volume_name(claim: Object) -> str:
    """kube's name for a provisioned claim's PersistentVolume: ``pvc-`` and the claim's uid."""
    return f"pvc-{csi.meta(claim).get('uid', '')}"


def claim_class(claim: Object) -> str:
    return str(csi.spec(claim).get("storageClassName") or "")


@dataclass(frozen=True)
class ClaimPlan:
    """``provision``: ask the cloud for ``size`` bytes and create the PV; ``refuse``: the claim asks for
    what a disk cannot be (the message says why); else nothing to do (``why``)."""

    provision: bool = False
    size: int = 0
    why: str = ""
    refuse: str = ""


SUPPORTED_ACCESS_MODES = ("ReadWriteOnce", "ReadWriteOncePod")


def unsupported(claim: Object) -> str:
    """Why a disk cannot serve the claim ("" when it can): a disk is attached to one machine at a time
    and always carries a filesystem here."""
    modes = [m for m in csi.spec(claim).get("accessModes") or [] if m not in SUPPORTED_ACCESS_MODES]
    if modes:
        return f"access mode {modes[0]} is not supported: a disk attaches to one machine at a time"
    if csi.spec(claim).get("volumeMode") == "Block":
        return "volumeMode Block is not supported: the lab's disks are served with a filesystem"
    return ""


def plan_claim(claim: Object, storage_class: Object | None, *, volume_exists: bool) -> ClaimPlan:
    """Whether the claim needs a volume from this provisioner now (pure)."""
    notes = csi.notes(claim)
    if csi.deleting(claim) or csi.spec(claim).get("volumeName"):
        return ClaimPlan(why="bound or being deleted")
    if csi.DRIVER not in (notes.get(csi.PROVISIONER_ANNOTATION), notes.get(csi.BETA_PROVISIONER_ANNOTATION)):
        return ClaimPlan(why="not handed to this provisioner")
    if storage_class is None or storage_class.get("provisioner") != csi.DRIVER:
        return ClaimPlan(why="its class is not this driver's")
    if storage_class.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER and not notes.get(
        csi.SELECTED_NODE_ANNOTATION
    ):
        return ClaimPlan(why="waiting for the scheduler to choose a node")
    if volume_exists:
        return ClaimPlan(why="its volume exists")
    refused = unsupported(claim)
    if refused:
        return ClaimPlan(refuse=f"rpc error: code = InvalidArgument desc = {refused}")
    size = csi.requested_bytes(claim)
    if size <= 0:
        return ClaimPlan(why="no storage request")
    return ClaimPlan(provision=True, size=size)


def persistent_volume(claim: Object, storage_class: Object, volume: dict[str, Any]) -> Object:
    """The PersistentVolume of a provisioned cloud volume, pre-bound to ``claim``."""
    meta, spec = csi.meta(claim), csi.spec(claim)
    body: Object = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": volume_name(claim),
            "annotations": {csi.PROVISIONED_BY_ANNOTATION: csi.DRIVER},
            "finalizers": [csi.PROVISIONER_FINALIZER],
        },
        "spec": {
            "capacity": {"storage": csi.storage(int(volume["sizeBytes"]))},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "persistentVolumeReclaimPolicy": storage_class.get("reclaimPolicy") or "Delete",
            "storageClassName": claim_class(claim),
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "claimRef": {
                "kind": "PersistentVolumeClaim",
                "apiVersion": "v1",
                "namespace": meta.get("namespace"),
                "name": meta.get("name"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "csi": {
                "driver": csi.DRIVER,
                "volumeHandle": str(volume["id"]),
                "fsType": (storage_class.get("parameters") or {}).get("csi.storage.k8s.io/fstype") or "ext4",
            },
        },
    }
    if storage_class.get("mountOptions"):
        body["spec"]["mountOptions"] = list(storage_class["mountOptions"])
    if volume.get("zone"):
        term = {"matchExpressions": [{"key": csi.ZONE_LABEL, "operator": "In", "values": [str(volume["zone"])]}]}
        body["spec"]["nodeAffinity"] = {"required": {"nodeSelectorTerms": [term]}}
    return body


def should_delete(volume: Object) -> bool:
    """Whether a PV's cloud volume must go: provisioned here, Released (or its claim gone while being
    deleted), reclaim policy Delete (pure)."""
    if not csi.provisioned_here(volume) or csi.notes(volume).get(csi.PROVISIONED_BY_ANNOTATION) != csi.DRIVER:
        return False
    if csi.spec(volume).get("persistentVolumeReclaimPolicy") != "Delete":
        return False
    phase = (volume.get("status") or {}).get("phase")
    return phase in ("Released", "Failed") or (csi.deleting(volume) and phase != "Bound")


class CsiProvisioner(csi.CsiController):
    name = "csi-provisioner"
    source = f"{csi.DRIVER}_csi-provisioner"
    workers = 2
    retry = RETRY_SECONDS

    def __init__(self, ctx: Context, cloud: CloudProvider) -> None:
        super().__init__(ctx, cloud)
        self.claims = ctx.informer(PERSISTENT_VOLUME_CLAIMS)
        self.volumes = ctx.informer(PERSISTENT_VOLUMES)
        self.classes = ctx.informer(STORAGE_CLASSES)
        self.nodes = ctx.informer(NODES)
        self.claims.on(add=self._claim, update=lambda _o, n: self._claim(n))
        self.volumes.on(add=self._volume, update=lambda _o, n: self._volume(n))

    def _claim(self, claim: Object) -> None:
        self.queue.add("claim/" + key_of(claim))

    def _volume(self, volume: Object) -> None:
        if should_delete(volume):
            self.queue.add("volume/" + key_of(volume))

    async def sync(self, key: str) -> None:
        kind, _, name = key.partition("/")
        await self.attempt(key, self._sync_claim(name) if kind == "claim" else self._sync_volume(name))

    async def _sync_claim(self, key: str) -> None:
        claim = self.claims.get(key)
        if claim is None:
            return
        class_name = claim_class(claim)
        storage_class = self.classes.get(class_name) if class_name else None
        decided = plan_claim(claim, storage_class, volume_exists=self.volumes.get(volume_name(claim)) is not None)
        if decided.refuse:
            self.record(claim, Event(WARNING, "ProvisioningFailed", self._failed(class_name, decided.refuse)))
            await self._unselect(claim)
            return
        if not decided.provision or storage_class is None:
            return
        name = volume_name(claim)
        self.record(
            claim, Event(NORMAL, "Provisioning", f'External provisioner is provisioning volume for claim "{key}"')
        )
        try:
            made = await self.cloud.create_volume(name, size_bytes=decided.size)
        except CloudError as exc:
            message = self._failed(class_name, str(exc))
            self.record(claim, Event(WARNING, "ProvisioningFailed", message))
            log.warning("claim %s: %s", key, message)
            if exc.status in FINAL_STATUSES:  # this node's zone cannot have it: let the scheduler choose again
                await self._unselect(claim)
            raise
        try:
            await self.client.create(PERSISTENT_VOLUMES, persistent_volume(claim, storage_class, dict(made)))
        except ApiError as exc:
            if not exc.already_exists:
                raise
        self.record(claim, Event(NORMAL, "ProvisioningSucceeded", f"Successfully provisioned volume {name}"))
        log.info("claim %s: provisioned %s (%s, %d bytes)", key, name, made.get("id"), decided.size)

    @staticmethod
    def _failed(class_name: str, why: str) -> str:
        return f'failed to provision volume with StorageClass "{class_name}": {why}'

    async def _unselect(self, claim: Object) -> None:
        """Take the scheduler's ``selected-node`` off the claim after a final refusal (as kube's provisioner
        does), so that the pod waiting for it is scheduled again instead of waiting for its bind timeout."""
        meta = csi.meta(claim)
        if csi.SELECTED_NODE_ANNOTATION not in csi.notes(claim):
            return
        body = {
            "metadata": {
                "annotations": {csi.SELECTED_NODE_ANNOTATION: None},
                "resourceVersion": meta["resourceVersion"],
            }
        }
        await self.client.patch(PERSISTENT_VOLUME_CLAIMS, meta["name"], body, meta["namespace"])

    async def _sync_volume(self, name: str) -> None:
        volume = self.volumes.get(name)
        if volume is None or not should_delete(volume):
            return
        try:
            await self.cloud.delete_volume(name)
        except CloudError as exc:
            self.record(volume, Event(WARNING, "VolumeFailedDelete", f"rpc error: {exc}"))
            raise
        meta = volume["metadata"]
        finalizers = [f for f in meta.get("finalizers") or [] if f != csi.PROVISIONER_FINALIZER]
        if finalizers != (meta.get("finalizers") or []):
            patch = {"metadata": {"finalizers": finalizers or None, "resourceVersion": meta["resourceVersion"]}}
            await self.client.patch(PERSISTENT_VOLUMES, name, patch)
        if not csi.deleting(volume):
            await self.client.delete(PERSISTENT_VOLUMES, name)
        log.info("volume %s: cloud volume deleted", name)
