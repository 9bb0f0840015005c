"""The kubelet's volume manager for persistent volumes: claims read, attachments awaited, disks mounted.

kube's kubelet keeps a desired state (the volumes its pods want) and an actual one (what is mounted)
and reconciles them. Here the pod worker asks :meth:`VolumeManager.mount_pod` before it creates a
pod's containers: the pod's claims and their PVs are read, the disks are reported in
``node.status.volumesInUse`` (so the attach/detach controller keeps them attached), each
VolumeAttachment is awaited a few seconds, then :func:`csi.plan_pod` says what to stage and publish
and :class:`~agents.kubelet.disks.Disks` does it. Whatever is not ready is a ``FailedMount``
:class:`VolumeError` with kube's words; the pod worker retries it with its back-off and the pod stays
ContainerCreating. A pod that stops has its disks unpublished (:meth:`unmount_pod`, before its
directory is removed), and :meth:`run` every few seconds unpublishes what no live pod uses, unstages
what nothing uses, grows file systems whose claims wait for it (``FileSystemResizePending``) and keeps
``volumesInUse`` current.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from agents.kubelet import csi
from agents.kubelet.disks import DiskError, Disks
from agents.kubelet.volumes import VolumeError
from agents.machinery.client import ApiError, ApiUnavailableError, Client
from agents.machinery.events import NORMAL, WARNING, EventRecorder
from agents.machinery.resources import PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES, VOLUME_ATTACHMENTS, ResourceRef

log = logging.getLogger(__name__)

FAILED_MOUNT = "FailedMount"
ATTACH_WAIT = 10.0  # seconds a sync waits for a VolumeAttachment before it gives up (and is retried)
ATTACH_POLL = 0.5
RECONCILE_EVERY = 5.0
FORBIDDEN = 403

Report = Callable[[list[str]], Awaitable[None]]  # volumesInUse, as it should read now


class VolumeManager:
    def __init__(
        self,
        client: Client,
        *,
        node_name: str,
        root: Path,
        by_id_dir: Path,
        report: Report,
        recorder: EventRecorder | None = None,
        disks: Disks | None = None,
        attach_wait: float = ATTACH_WAIT,
    ) -> None:
        self.client = client
        self.node_name = node_name
        self.root = root
        self.by_id_dir = by_id_dir
        self.report = report
        self.recorder = recorder
        self.disks = disks or Disks(root)
        self.attach_wait = attach_wait
        self.wanted: dict[str, tuple[csi.DiskVolume, ...]] = {}  # pod uid -> its disks
        self.lock = asyncio.Lock()  # one change of the node's mounts at a time

    def pod_dir(self, uid: str) -> Path:
        return self.root / "pods" / uid

    # --- a pod's disks -----------------------------------------------------------------------------

    async def mount_pod(self, pod: Mapping[str, Any]) -> dict[str, Path]:
        """Make the pod's claim volumes ready; their directories by volume name. A VolumeError
        (``FailedMount``) says what is missing."""
        volumes = csi.claim_volumes(pod)
        uid = str(pod["metadata"]["uid"])
        if not volumes:
            return {}
        names = [str(v["name"]) for v in volumes]
        try:
            resolved = await self._resolve(pod, volumes, names)
            disks = tuple(d for d, _, _ in resolved)
            self.wanted[uid] = disks
            async with self.lock:
                await self.report(csi.volumes_in_use(await self.disks.observe(), self.wanted))
            unattached = await self._await_attached(disks)
            if unattached:
                raise VolumeError(FAILED_MOUNT, csi.mount_failure(names, unattached=unattached))
            async with self.lock:
                mounts = await self.disks.observe()
                plan = csi.plan_pod(
                    uid, disks, mounts, root=self.root, pod_dir=self.pod_dir(uid), by_id_dir=self.by_id_dir
                )
                for action in plan:
                    await self._apply(action)
        except (ApiError, ApiUnavailableError, DiskError) as exc:
            raise VolumeError(FAILED_MOUNT, csi.mount_failure(names, why=str(exc))) from exc
        for disk, claim, pv in resolved:
            await self._expand(disk, claim, pv, pod=pod)
        return {d.name: csi.publish_path(self.pod_dir(uid), d.pv) for d in disks}

    async def _resolve(
        self, pod: Mapping[str, Any], volumes: list[Mapping[str, Any]], names: list[str]
    ) -> list[tuple[csi.DiskVolume, dict[str, Any], dict[str, Any]]]:
        namespace = str(pod["metadata"]["namespace"])
        resolved = []
        failed: list[str] = []
        why: list[str] = []
        for volume in volumes:
            claim_name = str(volume["persistentVolumeClaim"].get("claimName") or "")
            claim = await self._get(PERSISTENT_VOLUME_CLAIMS, claim_name, namespace)
            pv_name = str(((claim or {}).get("spec") or {}).get("volumeName") or "")
            pv = await self._get(PERSISTENT_VOLUMES, pv_name) if pv_name else None
            try:
                disk = csi.resolve(volume, namespace=namespace, claim=claim, pv=pv)
            except csi.ClaimProblem as exc:
                failed.append(str(volume["name"]))
                why.append(str(exc))
                continue
            assert claim is not None and pv is not None
            resolved.append((disk, claim, pv))
        if failed:
            raise VolumeError(FAILED_MOUNT, csi.mount_failure(names, failed=failed, why="; ".join(why)))
        return resolved

    async def _get(self, kind: ResourceRef, name: str, namespace: str = "") -> dict[str, Any] | None:
        try:
            return await self.client.get(kind, name, namespace)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    async def _await_attached(self, disks: Iterable[csi.DiskVolume]) -> list[str]:
        """The volumes whose disk is not attached here within ``attach_wait`` seconds (by pod volume name)."""
        waiting = {d.name: d.pv for d in disks}
        deadline = time.monotonic() + self.attach_wait
        while True:
            for name, pv in list(waiting.items()):
                try:
                    found = await self._get(VOLUME_ATTACHMENTS, csi.attachment_name(pv, self.node_name))
                except ApiError as exc:
                    if exc.code != FORBIDDEN:
                        raise
                    found = None  # the Node authorizer knows no attachment of it to this node yet
                if csi.is_attached(found, pv_name=pv, node_name=self.node_name):
                    del waiting[name]
            if not waiting or time.monotonic() >= deadline:
                return sorted(waiting)
            await asyncio.sleep(ATTACH_POLL)

    async def _apply(self, action: csi.Action) -> None:
        try:
            await self.disks.apply(action)
        except DiskError as exc:
            step = "MountVolume.MountDevice" if isinstance(action, csi.Stage) else "MountVolume.SetUp"
            named = action.pv if isinstance(action, csi.Publish) else getattr(action, "handle", "")
            raise VolumeError(FAILED_MOUNT, f'{step} failed for volume "{named}" : {exc}') from exc

    async def unmount_pod(self, uid: str) -> None:
        """Unpublish the pod's disks (before its directory goes), then unstage what nothing uses; a
        DiskError when a publication cannot be unmounted (the pod's directory must then stay)."""
        self.wanted.pop(uid, None)
        async with self.lock:
            mounts = await self.disks.observe()
            for published in mounts.published:
                if published.pod_uid == uid:
                    await self.disks.apply(csi.Unpublish(published.path))
        await self.cleanup(live_pods=None)

    # --- the node's disks ---------------------------------------------------------------------------

    async def cleanup(self, *, live_pods: Iterable[str] | None) -> None:
        """Unpublish what no live pod uses, unstage what nothing uses, report volumesInUse."""
        async with self.lock:
            mounts = await self.disks.observe()
            if live_pods is not None:
                live = set(live_pods)
                for uid in [u for u in self.wanted if u not in live]:
                    del self.wanted[uid]
            for action in csi.plan_cleanup(mounts, wanted=self.wanted, live_pods=live_pods):
                try:
                    await self.disks.apply(action)
                except DiskError as exc:
                    log.warning("cleaning up persistent volumes: %s", exc)
            await self.report(csi.volumes_in_use(await self.disks.observe(), self.wanted))

    async def run(
        self,
        live_pods: Callable[[], set[str]],
        pods: Callable[[], Iterable[Mapping[str, Any]]] = list,
        *,
        every: float = RECONCILE_EVERY,
    ) -> None:
        """Every ``every`` seconds: learn the disks of ``pods`` not known yet (those that ran before a
        restart of the kubelet), clean up, and grow the file systems whose claims wait for it."""
        while True:
            try:
                await self.populate(pods())
                await self.cleanup(live_pods=live_pods())
                await self._expand_wanted()
            except (ApiError, ApiUnavailableError, DiskError) as exc:
                log.warning("persistent volumes: %s", exc)
            await asyncio.sleep(every)

    async def populate(self, pods: Iterable[Mapping[str, Any]]) -> None:
        """Add the disks of pods that want some and are not known yet (kube's desired state of world
        populator); a pod whose claims cannot be read now is left to its pod worker."""
        for pod in pods:
            uid = str(pod["metadata"]["uid"])
            phase = (pod.get("status") or {}).get("phase")
            volumes = csi.claim_volumes(pod)
            leaving = bool(pod["metadata"].get("deletionTimestamp"))  # its worker unmounts it
            if uid in self.wanted or not volumes or leaving or phase in ("Succeeded", "Failed"):
                continue
            names = [str(v["name"]) for v in volumes]
            try:
                resolved = await self._resolve(pod, volumes, names)
            except VolumeError:
                continue
            self.wanted[uid] = tuple(d for d, _, _ in resolved)

    async def _expand_wanted(self) -> None:
        seen: set[str] = set()
        for disks in list(self.wanted.values()):
            for disk in disks:
                if disk.claim in seen:
                    continue
                seen.add(disk.claim)
                namespace, _, name = disk.claim.partition("/")
                claim = await self._get(PERSISTENT_VOLUME_CLAIMS, name, namespace)
                if claim is None or not csi.resize_pending(claim):
                    continue
                pv = await self._get(PERSISTENT_VOLUMES, disk.pv)
                if pv is not None:
                    await self._expand(disk, claim, pv)

    async def _expand(
        self,
        disk: csi.DiskVolume,
        claim: Mapping[str, Any],
        pv: Mapping[str, Any],
        *,
        pod: Mapping[str, Any] | None = None,
    ) -> None:
        """kube's NodeExpandVolume: when the claim waits for its file system to grow and the disk is
        staged here, resize2fs, then the claim's status says the new capacity."""
        if not csi.resize_pending(claim) or disk.read_only:
            return
        async with self.lock:
            if disk.handle not in (await self.disks.observe()).staged_handles():
                return
            try:
                await self.disks.resize(disk.handle, self.by_id_dir)
            except DiskError as exc:
                log.warning("growing the file system of %s: %s", disk.pv, exc)
                if pod is not None and self.recorder is not None:
                    message = f'MountVolume.NodeExpandVolume failed for volume "{disk.pv}" : {exc}'
                    self.recorder.record(dict(pod), WARNING, "FileSystemResizeFailed", message)
                return
        namespace, _, name = disk.claim.partition("/")
        try:
            await self.client.patch(
                PERSISTENT_VOLUME_CLAIMS,
                name,
                csi.resized_claim_status(claim, pv),
                namespace,
                kind="merge",
                subresource="status",
            )
        except ApiError as exc:
            log.warning("claim %s: recording its grown file system: %s", disk.claim, exc)
            return
        log.info("file system of %s (claim %s) grown", disk.pv, disk.claim)
        if pod is not None and self.recorder is not None:
            message = f'MountVolume.NodeExpandVolume succeeded for volume "{disk.pv}" {self.node_name}'
            self.recorder.record(dict(pod), NORMAL, "FileSystemResizeSuccessful", message)
