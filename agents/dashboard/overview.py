"""The architecture map's content, built from objects the user listed (pure: no I/O, a clock given).

The control plane is read the way kube exposes it to clients: the API server's health is its
``/readyz``; etcd's revision is the ``resourceVersion`` of a list (kube's resourceVersion is etcd's
revision); the scheduler's and the controller-manager's leaders are the holders of their Leases in
``kube-system``; the add-ons are the Deployments and DaemonSets the add-on manager labelled. A node is
what it reports: the kubelet's heartbeat is the renewal of its Lease in ``kube-node-lease``, its Ready
condition says whether the node controller and the kubelet consider it healthy, and ``nodeInfo`` names
the container runtime and proxy it runs. A node whose Ready condition is False or Unknown is failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict

Object = Mapping[str, Any]

SCHEDULER_LEASE = "kube-scheduler"
CONTROLLER_MANAGER_LEASE = "kube-controller-manager"
ADDON_LABEL = "addonmanager.kubelab.io/addon"
ETCD_SIZE_UNKNOWN = "not exposed by the API server"


class LeaderView(TypedDict):
    lease: str
    holder: str
    renewAgeSeconds: float | None
    healthy: bool


class AddonView(TypedDict):
    name: str
    kind: str
    namespace: str
    ready: int
    wanted: int
    healthy: bool


class PodView(TypedDict):
    namespace: str
    name: str
    ip: str
    phase: str
    ready: bool


class NodeView(TypedDict):
    name: str
    ready: str  # the Ready condition's status: True, False or Unknown
    reason: str
    message: str
    failed: bool
    heartbeatAgeSeconds: float | None
    internalIP: str
    podCIDR: str
    kubelet: str
    containerd: str
    proxy: str
    pods: list[PodView]


class ControlPlaneView(TypedDict):
    apiserver: dict[str, Any]
    etcd: dict[str, Any]
    scheduler: LeaderView
    controllerManager: LeaderView
    addons: list[AddonView]


class Overview(TypedDict):
    controlPlane: ControlPlaneView
    nodes: list[NodeView]
    pending: list[PodView]
    errors: dict[str, str]


def parse_time(value: object) -> float | None:
    """An RFC 3339 time of the API (``2024-01-02T03:04:05Z``, with or without fractions) as Unix seconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def leader(leases: Sequence[Object], name: str, *, now: float) -> LeaderView:
    """Who holds lease ``name`` and how long ago it was renewed; healthy while within its duration."""
    found = next((lease for lease in leases if (lease.get("metadata") or {}).get("name") == name), None)
    spec = (found or {}).get("spec") or {}
    renewed = parse_time(spec.get("renewTime")) or parse_time(spec.get("acquireTime"))
    age = None if renewed is None else max(0.0, now - renewed)
    duration = float(spec.get("leaseDurationSeconds") or 15)
    holder = str(spec.get("holderIdentity") or "")
    return {
        "lease": name,
        "holder": holder,
        "renewAgeSeconds": age,
        "healthy": bool(holder) and age is not None and age <= duration,
    }


def ready_condition(node: Object) -> tuple[str, str, str]:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return (
                str(condition.get("status") or "Unknown"),
                str(condition.get("reason") or ""),
                str(condition.get("message") or ""),
            )
    return "Unknown", "", "the node has not reported a Ready condition"


def pod_view(pod: Object) -> PodView:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return {
        "namespace": str(meta.get("namespace") or ""),
        "name": str(meta.get("name") or ""),
        "ip": str(status.get("podIP") or ""),
        "phase": str(status.get("phase") or "Pending"),
        "ready": ready,
    }


def node_view(node: Object, *, lease: Object | None, pods: Sequence[Object], now: float) -> NodeView:
    meta, spec, status = node.get("metadata") or {}, node.get("spec") or {}, node.get("status") or {}
    ready, reason, message = ready_condition(node)
    renewed = parse_time(((lease or {}).get("spec") or {}).get("renewTime"))
    info = status.get("nodeInfo") or {}
    address = next((str(a.get("address")) for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), "")
    return {
        "name": str(meta.get("name") or ""),
        "ready": ready,
        "reason": reason,
        "message": message,
        "failed": ready != "True",
        "heartbeatAgeSeconds": None if renewed is None else max(0.0, now - renewed),
        "internalIP": address,
        "podCIDR": str(spec.get("podCIDR") or ""),
        "kubelet": str(info.get("kubeletVersion") or ""),
        "containerd": str(info.get("containerRuntimeVersion") or ""),
        "proxy": str(info.get("kubeProxyVersion") or ""),
        "pods": sorted((pod_view(p) for p in pods), key=lambda p: (p["namespace"], p["name"])),
    }


def addon_view(workload: Object, kind: str) -> AddonView:
    meta, spec, status = workload.get("metadata") or {}, workload.get("spec") or {}, workload.get("status") or {}
    if kind == "DaemonSet":
        wanted, ready = int(status.get("desiredNumberScheduled") or 0), int(status.get("numberReady") or 0)
    else:
        replicas = spec.get("replicas")
        wanted = 1 if replicas is None else int(replicas)
        ready = int(status.get("readyReplicas") or 0)
    labels = meta.get("labels") or {}
    return {
        "name": str(labels.get(ADDON_LABEL) or meta.get("name") or ""),
        "kind": kind,
        "namespace": str(meta.get("namespace") or ""),
        "ready": ready,
        "wanted": wanted,
        "healthy": ready >= wanted,
    }


def build(
    *,
    nodes: Sequence[Object],
    pods: Sequence[Object],
    leases: Sequence[Object],
    node_leases: Sequence[Object],
    deployments: Sequence[Object] = (),
    daemonsets: Sequence[Object] = (),
    readyz: tuple[int, str],
    revision: str,
    now: float,
    errors: Mapping[str, str] | None = None,
) -> Overview:
    """The whole map. ``readyz``: the API server's answer (code, body); ``revision``: a list's
    resourceVersion; ``errors``: what could not be listed (name -> the API server's message)."""
    by_node: dict[str, list[Object]] = {}
    pending: list[PodView] = []
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name:
            by_node.setdefault(str(node_name), []).append(pod)
        else:
            pending.append(pod_view(pod))
    heartbeats = {str((lease.get("metadata") or {}).get("name")): lease for lease in node_leases}
    node_views = [
        node_view(node, lease=heartbeats.get(name), pods=by_node.get(name, []), now=now)
        for node in nodes
        for name in [str((node.get("metadata") or {}).get("name") or "")]
    ]
    addons = [
        addon_view(w, kind)
        for kind, workloads in (("Deployment", deployments), ("DaemonSet", daemonsets))
        for w in workloads
        if ADDON_LABEL in ((w.get("metadata") or {}).get("labels") or {})
    ]
    code, body = readyz
    return {
        "controlPlane": {
            "apiserver": {"healthy": code == 200, "readyz": body.strip()[:2000], "code": code},
            "etcd": {"revision": revision, "size": ETCD_SIZE_UNKNOWN},
            "scheduler": leader(leases, SCHEDULER_LEASE, now=now),
            "controllerManager": leader(leases, CONTROLLER_MANAGER_LEASE, now=now),
            "addons": sorted(addons, key=lambda a: (a["name"], a["kind"])),
        },
        "nodes": sorted(node_views, key=lambda n: n["name"]),
        "pending": sorted(pending, key=lambda p: (p["namespace"], p["name"])),
        "errors": dict(errors or {}),
    }
