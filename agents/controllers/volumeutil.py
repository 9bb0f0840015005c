"""Storage facts the volume controllers share: kube's annotation and finalizer names, which claims a
pod uses, when a pod is done with its volumes, a claim's and a volume's class, and the names the
attach/detach path gives a CSI volume.

The persistent volume controller, the protection controllers and the attach/detach controller all
read the same few fields in the same way; keeping those readings here keeps them from drifting apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from agents.machinery.objects import Object

BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
SELECTED_NODE = "volume.kubernetes.io/selected-node"
BETA_STORAGE_CLASS = "volume.beta.kubernetes.io/storage-class"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
BETA_DEFAULT_CLASS = "storageclass.beta.kubernetes.io/is-default-class"
PVC_PROTECTION = "kubernetes.io/pvc-protection"
PV_PROTECTION = "kubernetes.io/pv-protection"
CSI_PLUGIN = "kubernetes.io/csi"


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def claim_class(claim: Mapping[str, Any]) -> str:
    """The class a claim asks for: the beta annotation first, then ``spec.storageClassName`` ("" for none)."""
    beta = annotations_of(claim).get(BETA_STORAGE_CLASS)
    if beta is not None:
        return beta
    return str((claim.get("spec") or {}).get("storageClassName") or "")


def volume_class(volume: Mapping[str, Any]) -> str:
    """A PersistentVolume's class, read as ``claim_class`` reads a claim's."""
    return claim_class(volume)


def volume_mode(obj: Mapping[str, Any]) -> str:
    return str((obj.get("spec") or {}).get("volumeMode") or "Filesystem")


def default_class(classes: Iterable[Object]) -> Object | None:
    """The default StorageClass: of those annotated default, the newest (then by name), as kube picks."""
    marked = [
        c
        for c in classes
        if annotations_of(c).get(DEFAULT_CLASS) == "true" or annotations_of(c).get(BETA_DEFAULT_CLASS) == "true"
    ]
    if not marked:
        return None
    return max(marked, key=lambda c: (c["metadata"].get("creationTimestamp", ""), c["metadata"]["name"]))


def claim_names(pod: Mapping[str, Any]) -> list[str]:
    """The names of the claims a pod's volumes use: ``persistentVolumeClaim`` volumes, and each
    ``ephemeral`` volume's claim (named ``<pod>-<volume>``)."""
    names: list[str] = []
    pod_name = (pod.get("metadata") or {}).get("name", "")
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        source = volume.get("persistentVolumeClaim")
        if source and source.get("claimName"):
            names.append(str(source["claimName"]))
        elif volume.get("ephemeral") is not None:
            names.append(f"{pod_name}-{volume.get('name', '')}")
    return names


def claim_keys(pod: Object) -> list[str]:
    """``namespace/name`` of each claim the pod uses (an informer index of pods)."""
    namespace = (pod.get("metadata") or {}).get("namespace", "")
    return [f"{namespace}/{name}" for name in claim_names(pod)]


def is_terminated(pod: Mapping[str, Any]) -> bool:
    """The pod is done with its volumes, as kube's attach/detach controller judges it: it has
    Succeeded or Failed, or it is being deleted and none of its containers runs any more."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return True
    if not (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    return all("running" not in (s.get("state") or {}) for s in statuses)


def is_shut_down(pod: Mapping[str, Any]) -> bool:
    """The kubelet is done with the pod, or it was force-deleted: being deleted with a grace of 0."""
    meta = pod.get("metadata") or {}
    return bool(meta.get("deletionTimestamp")) and meta.get("deletionGracePeriodSeconds") == 0


def unique_volume_name(driver: str, handle: str) -> str:
    """How ``node.status.volumesInUse`` and ``volumesAttached`` name a CSI volume."""
    return f"{CSI_PLUGIN}/{driver}^{handle}"


def attachment_name(pv_name: str, driver: str, node_name: str) -> str:
    """kube's VolumeAttachment name for a PV on a node: ``csi-`` and the sha256 of the three."""
    return "csi-" + hashlib.sha256(f"{pv_name}{driver}{node_name}".encode()).hexdigest()


def has_finalizer(obj: Mapping[str, Any], finalizer: str) -> bool:
    return finalizer in ((obj.get("metadata") or {}).get("finalizers") or [])
