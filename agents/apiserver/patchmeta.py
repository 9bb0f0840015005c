"""Strategic-merge metadata: which lists merge by which key.

In Kubernetes these are Go struct tags (``patchStrategy:"merge" patchMergeKey:"name"``); the
official Python models do not carry them, so this table does, keyed by model and JSON field. The
strategic merge patch uses it, and the OpenAPI documents publish it as
``x-kubernetes-patch-strategy`` / ``x-kubernetes-patch-merge-key`` so that kubectl computes the
same patches it would against kube-apiserver.
"""

from __future__ import annotations

from typing import NamedTuple


class PatchMeta(NamedTuple):
    strategy: str  # "merge", "retainKeys" or "merge,retainKeys"
    merge_key: str  # "" for lists of primitives merged as sets


_CONTAINER = {
    "ports": PatchMeta("merge", "containerPort"),
    "env": PatchMeta("merge", "name"),
    "volumeMounts": PatchMeta("merge", "mountPath"),
    "volumeDevices": PatchMeta("merge", "devicePath"),
}
_CONDITIONS = PatchMeta("merge", "type")

PATCH_META: dict[tuple[str, str], PatchMeta] = {
    ("V1ObjectMeta", "finalizers"): PatchMeta("merge", ""),
    ("V1ObjectMeta", "ownerReferences"): PatchMeta("merge", "uid"),
    ("V1PodSpec", "containers"): PatchMeta("merge", "name"),
    ("V1PodSpec", "initContainers"): PatchMeta("merge", "name"),
    ("V1PodSpec", "ephemeralContainers"): PatchMeta("merge", "name"),
    ("V1PodSpec", "volumes"): PatchMeta("merge,retainKeys", "name"),
    ("V1PodSpec", "imagePullSecrets"): PatchMeta("merge", "name"),
    ("V1PodSpec", "hostAliases"): PatchMeta("merge", "ip"),
    ("V1PodSpec", "topologySpreadConstraints"): PatchMeta("merge", "topologyKey"),
    ("V1PodSpec", "resourceClaims"): PatchMeta("merge,retainKeys", "name"),
    ("V1PodSpec", "schedulingGates"): PatchMeta("merge", "name"),
    **{("V1Container", field): meta for field, meta in _CONTAINER.items()},
    **{("V1EphemeralContainer", field): meta for field, meta in _CONTAINER.items()},
    ("V1PodStatus", "conditions"): _CONDITIONS,
    ("V1PodStatus", "podIPs"): PatchMeta("merge", "ip"),
    ("V1PodStatus", "hostIPs"): PatchMeta("merge", "ip"),
    ("V1NodeSpec", "podCIDRs"): PatchMeta("merge", ""),
    ("V1NodeStatus", "conditions"): _CONDITIONS,
    ("V1NodeStatus", "addresses"): PatchMeta("merge", "type"),
    ("V1ServiceSpec", "ports"): PatchMeta("merge", "port"),
    ("V1ServiceStatus", "conditions"): _CONDITIONS,
    ("V1NamespaceStatus", "conditions"): _CONDITIONS,
    ("V1ServiceAccount", "secrets"): PatchMeta("merge", "name"),
    ("V1DeploymentSpec", "strategy"): PatchMeta("retainKeys", ""),
    ("V1DeploymentStatus", "conditions"): _CONDITIONS,
    ("V1ReplicaSetStatus", "conditions"): _CONDITIONS,
    ("V1StatefulSetStatus", "conditions"): _CONDITIONS,
    ("V1DaemonSetStatus", "conditions"): _CONDITIONS,
    ("V1JobStatus", "conditions"): _CONDITIONS,
}

# Lists whose items server-side apply tells apart by more than their strategic-merge key (kube's
# ``+listMapKey`` tags): each key field with the value it has when the item leaves it out (None: none,
# the item has no key). A Service may have port 53 twice, over TCP and over UDP.
_PORT_KEYS = (("containerPort", None), ("protocol", "TCP"))
LIST_MAP_KEYS: dict[tuple[str, str], tuple[tuple[str, str | None], ...]] = {
    ("V1Container", "ports"): _PORT_KEYS,
    ("V1EphemeralContainer", "ports"): _PORT_KEYS,
    ("V1ServiceSpec", "ports"): (("port", None), ("protocol", "TCP")),
}

# Fields of type resource.Quantity (the Python models type them as plain strings).
QUANTITY_FIELDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("V1ResourceRequirements", "limits"),
        ("V1ResourceRequirements", "requests"),
        ("V1VolumeResourceRequirements", "limits"),
        ("V1VolumeResourceRequirements", "requests"),
        ("V1EmptyDirVolumeSource", "sizeLimit"),
        ("V1ResourceFieldSelector", "divisor"),
        ("V1PodSpec", "overhead"),
        ("V1PodStatus", "allocatedResources"),
        ("V1ContainerStatus", "allocatedResources"),
        ("V1NodeStatus", "capacity"),
        ("V1NodeStatus", "allocatable"),
        ("V1PersistentVolumeSpec", "capacity"),
        ("V1PersistentVolumeClaimStatus", "capacity"),
        ("V1PersistentVolumeClaimStatus", "allocatedResources"),
    }
)
