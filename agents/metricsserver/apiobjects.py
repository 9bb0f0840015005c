"""The metrics.k8s.io/v1beta1 objects as kube writes them (pure: values in, wire shapes out).

NodeMetrics and PodMetrics carry no resourceVersion or uid: they are made at every request, with
that moment as their ``creationTimestamp``, the labels of the Node or Pod they measure, the time of
the newest point (``timestamp``), the time the rate is taken over (``window``, a Go duration such
as ``15.011s``) and the usage as quantities (CPU in nanocores, ``136224597n``; memory in bytes,
``51964Ki``), written in kube's canonical form. Failures are kube's ``Status`` objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from agents.machinery import quantity
from agents.machinery.objects import format_time
from agents.metricsserver.durations import format_nanos
from agents.metricsserver.storage import PodUsage, Usage

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
_BINARY = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    creationTimestamp: str
    labels: dict[str, str]


class ResourceList(TypedDict):
    cpu: str
    memory: str


class NodeMetrics(TypedDict):
    kind: str
    apiVersion: str
    metadata: ObjectMeta
    timestamp: str
    window: str
    usage: ResourceList


class ContainerMetrics(TypedDict):
    name: str
    usage: ResourceList


class PodMetrics(TypedDict):
    kind: str
    apiVersion: str
    metadata: ObjectMeta
    timestamp: str
    window: str
    containers: list[ContainerMetrics]


class MetricsList(TypedDict):
    kind: str
    apiVersion: str
    metadata: dict[str, Any]
    items: Sequence[NodeMetrics] | Sequence[PodMetrics]


class StatusDetails(TypedDict, total=False):
    name: str
    group: str
    kind: str


class Status(TypedDict):
    kind: str
    apiVersion: str
    metadata: dict[str, Any]
    status: str
    message: str
    reason: str
    details: StatusDetails
    code: int


class ApiStatusError(Exception):
    """A request that fails with kube's Status: the server writes it as the answer."""

    def __init__(self, code: int, reason: str, message: str, details: StatusDetails | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details: StatusDetails = details or {}

    def status(self) -> Status:
        return status(self.code, self.reason, self.message, self.details)


def status(code: int, reason: str, message: str, details: StatusDetails | None = None) -> Status:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }


def not_found(resource: str, name: str, *, group: str = GROUP) -> ApiStatusError:
    """kube's NewNotFound: ``nodemetrics.metrics.k8s.io "x" not found``, ``pods "x" not found``."""
    qualified = f"{resource}.{group}" if group else resource
    details: StatusDetails = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return ApiStatusError(404, "NotFound", f'{qualified} "{name}" not found', details)


def bad_request(message: str) -> ApiStatusError:
    return ApiStatusError(400, "BadRequest", message)


# --- quantities and times -------------------------------------------------------------------------


def cpu_quantity(nanocores: int) -> str:
    """CPU as kube writes a quantity of nanocores: ``136224597n``, ``5m``, ``2``."""
    return quantity.canonical(f"{nanocores}n")


def memory_quantity(size: int) -> str:
    """Bytes as kube writes a binary quantity: ``51964Ki`` when a whole number of KiB, else plain."""
    if -1024 < size < 1024:
        return str(size)
    step = 0
    while step < len(_BINARY) - 1 and size % 1024 == 0:
        size //= 1024
        step += 1
    return f"{size}{_BINARY[step]}"


def resources(found: Usage) -> ResourceList:
    return {"cpu": cpu_quantity(found.cpu), "memory": memory_quantity(found.memory)}


def _meta(obj: Mapping[str, Any], *, created: float, namespaced: bool) -> ObjectMeta:
    source = obj.get("metadata") or {}
    meta: ObjectMeta = {"name": str(source.get("name") or "")}
    if namespaced:
        meta["namespace"] = str(source.get("namespace") or "")
    meta["creationTimestamp"] = format_time(created)
    labels = source.get("labels")
    if labels:
        meta["labels"] = dict(labels)
    return meta


def node_metrics(node: Mapping[str, Any], found: Usage, *, created: float) -> NodeMetrics:
    """The NodeMetrics of ``node`` (a Node object) with ``found``; ``created`` is now (Unix seconds)."""
    return {
        "kind": "NodeMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": _meta(node, created=created, namespaced=False),
        "timestamp": format_time(found.timestamp / 1e9),
        "window": format_nanos(found.window),
        "usage": resources(found),
    }


def pod_metrics(pod: Mapping[str, Any], found: PodUsage, *, created: float) -> PodMetrics:
    return {
        "kind": "PodMetrics",
        "apiVersion": GROUP_VERSION,
        "metadata": _meta(pod, created=created, namespaced=True),
        "timestamp": format_time(found.timestamp / 1e9),
        "window": format_nanos(found.window),
        "containers": [{"name": name, "usage": resources(usage)} for name, usage in found.containers],
    }


def metrics_list(kind: str, items: Sequence[NodeMetrics] | Sequence[PodMetrics]) -> MetricsList:
    return {"kind": kind, "apiVersion": GROUP_VERSION, "metadata": {}, "items": items}


# --- discovery ------------------------------------------------------------------------------------


def _group() -> dict[str, Any]:
    version = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {"name": GROUP, "versions": [version], "preferredVersion": version}


def api_group() -> dict[str, Any]:
    """``/apis/metrics.k8s.io``."""
    return {"kind": "APIGroup", "apiVersion": "v1", **_group()}


def api_group_list() -> dict[str, Any]:
    """``/apis``: the one group this server serves."""
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group()]}


def api_resource_list() -> dict[str, Any]:
    """``/apis/metrics.k8s.io/v1beta1``: nodes and pods, read-only."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]},
        ],
    }
