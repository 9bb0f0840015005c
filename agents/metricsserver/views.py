"""Which NodeMetrics and PodMetrics a request gets (pure: the watched objects, the stored points and
the request's selectors in, objects or a Status out).

Only objects the informers know are answered for, with their labels, so ``labelSelector`` selects
as on the Nodes and Pods themselves; ``fieldSelector`` takes ``metadata.name`` (and, for pods,
``metadata.namespace``). A list leaves out what has no usage yet; a get of an object that exists but
has none answers metrics-server's NotFound (``podmetrics.metrics.k8s.io "ns/name" not found``),
and of one that does not exist the object's own (``pods "name" not found``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agents.machinery.selectors import FieldSelector, LabelSelector, SelectorError, parse_fields, parse_labels
from agents.metricsserver import apiobjects
from agents.metricsserver.apiobjects import MetricsList, NodeMetrics, PodMetrics
from agents.metricsserver.points import PodRef
from agents.metricsserver.storage import Storage

Object = Mapping[str, Any]
NODE_FIELDS = ("metadata.name",)
POD_FIELDS = ("metadata.name", "metadata.namespace")


def selectors(query: Mapping[str, str], fields: tuple[str, ...]) -> tuple[LabelSelector, FieldSelector]:
    """A list's ``labelSelector`` and ``fieldSelector``; a BadRequest Status when one does not parse."""
    try:
        labels = parse_labels(query.get("labelSelector", ""))
        chosen = parse_fields(query.get("fieldSelector", ""), fields)
    except SelectorError as exc:
        raise apiobjects.bad_request(str(exc)) from exc
    return labels, chosen


def _meta(obj: Object) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _selected(obj: Object, labels: LabelSelector, fields: FieldSelector) -> bool:
    meta = _meta(obj)
    values = {"metadata.name": str(meta.get("name") or ""), "metadata.namespace": str(meta.get("namespace") or "")}
    return labels.matches(meta.get("labels") or {}) and fields.matches(lambda f: values.get(f, ""))


def node_list(
    nodes: Iterable[Object], storage: Storage, *, labels: LabelSelector, fields: FieldSelector, now: float
) -> MetricsList:
    items: list[NodeMetrics] = []
    for node in sorted(nodes, key=lambda n: str(_meta(n).get("name") or "")):
        if not _selected(node, labels, fields):
            continue
        found = storage.node(str(_meta(node).get("name") or ""))
        if found is not None:
            items.append(apiobjects.node_metrics(node, found, created=now))
    return apiobjects.metrics_list("NodeMetricsList", items)


def node_get(node: Object | None, name: str, storage: Storage, *, now: float) -> NodeMetrics:
    if node is None:
        raise apiobjects.not_found("nodes", name, group="")
    found = storage.node(name)
    if found is None:
        raise apiobjects.not_found("nodemetrics", name)
    return apiobjects.node_metrics(node, found, created=now)


def pod_list(
    pods: Iterable[Object],
    storage: Storage,
    *,
    namespace: str,
    labels: LabelSelector,
    fields: FieldSelector,
    now: float,
) -> MetricsList:
    """The pods of ``namespace`` ("": every namespace) with usage, by namespace and name."""
    chosen: list[tuple[PodRef, Object]] = []
    for pod in pods:
        ref = PodRef(str(_meta(pod).get("namespace") or ""), str(_meta(pod).get("name") or ""))
        if (not namespace or ref.namespace == namespace) and _selected(pod, labels, fields):
            chosen.append((ref, pod))
    items: list[PodMetrics] = []
    for ref, pod in sorted(chosen, key=lambda pair: pair[0]):
        found = storage.pod(ref)
        if found is not None:
            items.append(apiobjects.pod_metrics(pod, found, created=now))
    return apiobjects.metrics_list("PodMetricsList", items)


def pod_get(pod: Object | None, ref: PodRef, storage: Storage, *, now: float) -> PodMetrics:
    if pod is None:
        raise apiobjects.not_found("pods", ref.name, group="")
    found = storage.pod(ref)
    if found is None:
        raise apiobjects.not_found("podmetrics", f"{ref.namespace}/{ref.name}")
    return apiobjects.pod_metrics(pod, found, created=now)
