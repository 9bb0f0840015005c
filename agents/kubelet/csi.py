"""Persistent volumes on this node, planned: which disks to stage and publish, unpublish and unstage.

A pod's ``persistentVolumeClaim`` volume is a claim bound to a PersistentVolume of the lab's CSI
driver (``spec.csi``, driver ``disk.csi.kubelab.dev``); the attach/detach controller attaches its disk
to the node (a VolumeAttachment, ``status.attached``), where it shows up as
``/dev/disk/by-id/virtio-<volumeHandle>``. kube's kubelet then mounts it in two steps, as the CSI
spec names them: *stage* mounts the device once per node at a global path
(``plugins/kubernetes.io/csi/<driver>/<sha256 of the handle>/globalmount``), *publish* bind-mounts that
into each pod using it (``pods/<uid>/volumes/kubernetes.io~csi/<PV name>/mount``). Undoing it goes
the other way: a gone pod's publications are unmounted, and a disk no pod on the node uses is
unstaged and dropped from ``node.status.volumesInUse``, which lets the controller detach it.

Everything here is pure: names and paths, a claim and its PV resolved into a :class:`DiskVolume` (or
kube's words for why not), the CSINode body, and :func:`plan_pod` / :func:`plan_cleanup`, which compare
what is wanted with what :mod:`agents.kubelet.disks` found mounted and say what to do.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DRIVER = "disk.csi.kubelab.dev"
PLUGIN = "kubernetes.io/csi"
POD_VOLUME_KIND = "kubernetes.io~csi"
ZONE_KEY = "topology.kubernetes.io/zone"
DEFAULT_FS_TYPE = "ext4"
RESIZE_PENDING = "FileSystemResizePending"
VOLUME_DATA = "vol_data.json"


# --- names and paths ---------------------------------------------------------------------------------


def unique_volume_name(handle: str, driver: str = DRIVER) -> str:
    """The name ``volumesInUse`` and ``volumesAttached`` use: ``kubernetes.io/csi/<driver>^<handle>``."""
    return f"{PLUGIN}/{driver}^{handle}"


def attachment_name(pv_name: str, node_name: str, driver: str = DRIVER) -> str:
    """The VolumeAttachment of a PV on a node: ``csi-`` and the sha256 of PV, driver and node."""
    return "csi-" + hashlib.sha256(f"{pv_name}{driver}{node_name}".encode()).hexdigest()


def global_path(root: Path, handle: str, driver: str = DRIVER) -> Path:
    """Where the disk is staged on the node, once whatever the number of pods using it."""
    digest = hashlib.sha256(handle.encode()).hexdigest()
    return root / "plugins" / PLUGIN / driver / digest / "globalmount"


def publish_path(pod_dir: Path, pv_name: str) -> Path:
    """Where the staged disk is bind-mounted for one pod (its containers bind-mount this)."""
    return pod_dir / "volumes" / POD_VOLUME_KIND / pv_name / "mount"


def device_path(by_id_dir: Path, handle: str) -> Path:
    """The disk's device as udev names it by its virtio serial (the volume id)."""
    return by_id_dir / f"virtio-{handle}"


def pod_of_publish_path(root: Path, target: Path) -> tuple[str, str] | None:
    """(pod uid, PV name) of a publish path under ``root``; None for any other path."""
    try:
        parts = target.relative_to(root).parts
    except ValueError:
        return None
    if len(parts) == 6 and parts[0] == "pods" and parts[2:4] == ("volumes", POD_VOLUME_KIND) and parts[5] == "mount":
        return parts[1], parts[4]
    return None


def is_global_path(root: Path, target: Path, driver: str = DRIVER) -> bool:
    try:
        parts = target.relative_to(root / "plugins" / PLUGIN / driver).parts
    except ValueError:
        return False
    return len(parts) == 2 and parts[1] == "globalmount"


# --- claims resolved ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiskVolume:
    """A pod's claim volume resolved to its disk."""

    name: str  # the pod's volume name
    claim: str  # namespace/name
    pv: str
    handle: str
    fs_type: str = DEFAULT_FS_TYPE
    read_only: bool = False

    @property
    def unique_name(self) -> str:
        return unique_volume_name(self.handle)


class ClaimProblem(Exception):
    """A claim volume that cannot be processed yet (no claim, not bound, not ours); kube's words."""


def claim_volumes(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The pod's volumes that are claims."""
    volumes = (pod.get("spec") or {}).get("volumes") or []
    return [v for v in volumes if "persistentVolumeClaim" in v]


def resolve(
    volume: Mapping[str, Any], *, namespace: str, claim: Mapping[str, Any] | None, pv: Mapping[str, Any] | None
) -> DiskVolume:
    """The disk behind a pod's claim volume; a ClaimProblem says why there is none (yet): ``claim``
    None is a claim not found, ``pv`` None a PV not found."""
    source = volume["persistentVolumeClaim"]
    claim_name = str(source.get("claimName") or "")
    where = f"{namespace}/{claim_name}"
    if claim is None:
        raise ClaimProblem(
            f"error processing PVC {where}: failed to fetch PVC from API server:"
            f' persistentvolumeclaims "{claim_name}" not found'
        )
    if (claim.get("metadata") or {}).get("deletionTimestamp"):
        raise ClaimProblem(f"error processing PVC {where}: can't start pod because PVC {where} is being deleted")
    pv_name = str((claim.get("spec") or {}).get("volumeName") or "")
    if not pv_name or (claim.get("status") or {}).get("phase") != "Bound":
        raise ClaimProblem(f"error processing PVC {where}: PVC is not bound")
    if pv is None:
        raise ClaimProblem(f'error processing PVC {where}: persistentvolumes "{pv_name}" not found')
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    claim_uid = (claim.get("metadata") or {}).get("uid")
    if ref.get("uid") and claim_uid and ref["uid"] != claim_uid:
        raise ClaimProblem(
            f"error processing PVC {where}: expected PV {pv_name!r} to be bound to this claim,"
            f" its claimRef is {ref.get('namespace')}/{ref.get('name')} (uid {ref['uid']})"
        )
    csi = (pv.get("spec") or {}).get("csi") or {}
    if csi.get("driver") != DRIVER or not csi.get("volumeHandle"):
        raise ClaimProblem(f"error processing PVC {where}: PV {pv_name!r} is not a volume of driver {DRIVER}")
    read_only = bool(source.get("readOnly")) or bool(csi.get("readOnly"))
    return DiskVolume(
        name=str(volume["name"]),
        claim=where,
        pv=pv_name,
        handle=str(csi["volumeHandle"]),
        fs_type=str(csi.get("fsType") or DEFAULT_FS_TYPE),
        read_only=read_only,
    )


def mount_failure(
    unmounted: Sequence[str], *, unattached: Sequence[str] = (), failed: Sequence[str] = (), why: str = ""
) -> str:
    """kube's FailedMount message for a pod whose volumes are not all ready."""
    return (
        f"Unable to attach or mount volumes: unmounted volumes=[{' '.join(unmounted)}],"
        f" unattached volumes=[{' '.join(unattached)}], failed to process volumes=[{' '.join(failed)}]:"
        f" {why or 'timed out waiting for the condition'}"
    )


def is_attached(attachment: Mapping[str, Any] | None, *, pv_name: str, node_name: str) -> bool:
    """The VolumeAttachment says the PV's disk is on this node."""
    if attachment is None:
        return False
    spec = attachment.get("spec") or {}
    return (
        spec.get("nodeName") == node_name
        and (spec.get("source") or {}).get("persistentVolumeName") == pv_name
        and bool((attachment.get("status") or {}).get("attached"))
    )


# --- expansion ---------------------------------------------------------------------------------------


def resize_pending(claim: Mapping[str, Any]) -> bool:
    conditions = (claim.get("status") or {}).get("conditions") or []
    return any(c.get("type") == RESIZE_PENDING and c.get("status", "True") == "True" for c in conditions)


def resized_claim_status(claim: Mapping[str, Any], pv: Mapping[str, Any]) -> dict[str, Any]:
    """The claim's status patch (a merge patch) once the file system has grown: its capacity the
    PV's, the FileSystemResizePending condition gone, no storage resize status left (kube's
    MarkFSResizeFinished)."""
    status = claim.get("status") or {}
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != RESIZE_PENDING]
    capacity = dict(status.get("capacity") or {})
    capacity["storage"] = ((pv.get("spec") or {}).get("capacity") or {}).get("storage", capacity.get("storage"))
    patch: dict[str, Any] = {"capacity": capacity, "conditions": conditions}
    if "storage" in (status.get("allocatedResourceStatuses") or {}):
        patch["allocatedResourceStatuses"] = {"storage": None}
    return {"status": patch}


# --- the CSINode -------------------------------------------------------------------------------------


def csinode_drivers(node_name: str, *, attach_limit: int) -> list[dict[str, Any]]:
    return [
        {
            "name": DRIVER,
            "nodeID": node_name,
            "topologyKeys": [ZONE_KEY],
            "allocatable": {"count": attach_limit},
        }
    ]


def csinode_object(node_name: str, *, node_uid: str, attach_limit: int) -> dict[str, Any]:
    """The CSINode the kubelet keeps for its node: the driver, its node id, topology key and
    attach limit; owned by the Node so it goes with it."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSINode",
        "metadata": {
            "name": node_name,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}],
        },
        "spec": {"drivers": csinode_drivers(node_name, attach_limit=attach_limit)},
    }


# --- what is mounted, and the plans ------------------------------------------------------------------


@dataclass(frozen=True)
class Staged:
    handle: str  # "" when the global path's record of its handle is missing
    path: Path


@dataclass(frozen=True)
class Published:
    pod_uid: str
    pv: str
    handle: str  # "" when unknown
    path: Path
    read_only: bool = False


@dataclass(frozen=True)
class NodeMounts:
    """What is mounted on the node under the kubelet's root."""

    staged: tuple[Staged, ...] = ()
    published: tuple[Published, ...] = ()

    def staged_handles(self) -> set[str]:
        return {s.handle for s in self.staged if s.handle}


@dataclass(frozen=True)
class Stage:
    handle: str
    device: Path
    path: Path
    fs_type: str


@dataclass(frozen=True)
class Publish:
    handle: str
    pv: str
    source: Path
    path: Path
    read_only: bool


@dataclass(frozen=True)
class Unpublish:
    path: Path


@dataclass(frozen=True)
class Unstage:
    handle: str
    path: Path


Action = Stage | Publish | Unpublish | Unstage


def plan_pod(
    pod_uid: str, volumes: Sequence[DiskVolume], mounts: NodeMounts, *, root: Path, pod_dir: Path, by_id_dir: Path
) -> list[Action]:
    """What makes the pod's (attached) disks usable: each staged unless it is, then published into the
    pod unless it is."""
    staged = {s.path for s in mounts.staged}
    published = {p.path for p in mounts.published}
    actions: list[Action] = []
    seen: set[Path] = set()
    for volume in volumes:
        stage_at = global_path(root, volume.handle)
        if stage_at not in staged and stage_at not in seen:
            actions.append(Stage(volume.handle, device_path(by_id_dir, volume.handle), stage_at, volume.fs_type))
            seen.add(stage_at)
        target = publish_path(pod_dir, volume.pv)
        if target not in published and target not in seen:
            actions.append(Publish(volume.handle, volume.pv, stage_at, target, volume.read_only))
            seen.add(target)
    return actions


def plan_cleanup(
    mounts: NodeMounts, *, wanted: Mapping[str, Sequence[DiskVolume]], live_pods: Iterable[str] | None = None
) -> list[Action]:
    """What goes: publications of pods that no longer want them (``live_pods``, when known: the pods
    on the node; a publication of any other pod goes), then the staged disks no publication left and
    no pod wants. A staged disk whose handle is unknown is left alone."""
    live = set(live_pods) if live_pods is not None else None
    actions: list[Action] = []
    kept_handles: set[str] = {v.handle for volumes in wanted.values() for v in volumes}
    for published in mounts.published:
        pod_wants = {v.pv for v in wanted.get(published.pod_uid, ())}
        gone = live is not None and published.pod_uid not in live
        if published.pod_uid in wanted and published.pv not in pod_wants:
            gone = True  # the pod's spec cannot drop a volume, but a stale publication can linger
        if gone:
            actions.append(Unpublish(published.path))
        else:
            kept_handles.add(published.handle)
    for staged in mounts.staged:
        if staged.handle and staged.handle not in kept_handles:
            actions.append(Unstage(staged.handle, staged.path))
    return actions


def volumes_in_use(mounts: NodeMounts, wanted: Mapping[str, Sequence[DiskVolume]]) -> list[str]:
    """``node.status.volumesInUse``: every disk a pod here wants or that is staged, sorted."""
    handles = mounts.staged_handles() | {v.handle for volumes in wanted.values() for v in volumes}
    return sorted(unique_volume_name(h) for h in handles)
