"""The replica calculation of the horizontal-pod-autoscaler controller (kube's replica calculator):
from the pods a HorizontalPodAutoscaler's target selects, their resource requests and their usage in the
resource metrics API, the number of replicas that would bring a Resource metric to its target.

Pure functions over API objects: the usage per pod (``pod_usage``), which pods count (``group_pods``:
ready, unready, missing metrics, ignored), the usage ratio against the target (``utilization_ratio``,
within ``Tuning.tolerance`` there is no change), and the proposal for a Utilization target
(``resource_replicas``) or an AverageValue one (``raw_resource_replicas``). Missing metrics count as
no usage when scaling up and as full usage when scaling down, and unready pods are left out of a CPU
scale-up, as kube does, so that a recommendation does not swing on pods just starting.
:mod:`agents.controllers.horizontal` turns the proposal into a scale and the HPA's status.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from agents.machinery.objects import Object, parse_time
from agents.machinery.quantity import QuantityError, milli


class MetricsError(Exception):
    """A metric could not be read or used; the text is kube's."""


@dataclass(frozen=True)
class Tuning:
    """kube-controller-manager's --horizontal-pod-autoscaler-* settings, in seconds."""

    sync_period: float = 15.0
    downscale_stabilization: float = 300.0
    tolerance: float = 0.1
    cpu_initialization_period: float = 300.0
    initial_readiness_delay: float = 30.0

    @classmethod
    def from_settings(cls, settings: Any) -> Tuning:
        prefix = "horizontal_pod_autoscaler_"
        given = {f: getattr(settings, prefix + f) for f in cls.__dataclass_fields__ if hasattr(settings, prefix + f)}
        return cls(**given)


@dataclass(frozen=True)
class PodMetric:
    value: int  # milli-units (millicores, milli-bytes) summed over the pod's containers
    timestamp: datetime | None = None
    window: float = 0.0


_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float:
    """Seconds of a Go duration string (``15.011s``, ``1m0s``); 0 for what does not parse."""
    return sum(float(n) * _UNIT[u] for n, u in _DURATION.findall(text or ""))


def pod_usage(items: list[Object], resource: str, container: str = "") -> dict[str, PodMetric]:
    """Usage per pod from PodMetrics (kube's getPodMetrics): a pod missing the resource in any
    (considered) container has no metric at all."""
    out: dict[str, PodMetric] = {}
    for item in items:
        containers = [c for c in item.get("containers") or [] if not container or c.get("name") == container]
        total, missing = 0, not containers
        for entry in containers:
            usage = (entry.get("usage") or {}).get(resource)
            if usage is None:
                missing = True
                break
            try:
                total += milli(usage)
            except QuantityError:
                missing = True
                break
        if missing:
            continue
        stamp = item.get("timestamp")
        out[str((item.get("metadata") or {}).get("name", ""))] = PodMetric(
            total, parse_time(stamp) if stamp else None, go_duration(str(item.get("window") or ""))
        )
    return out


@dataclass(frozen=True)
class PodGroups:
    ready: int
    unready: frozenset[str]
    missing: frozenset[str]
    ignored: frozenset[str]


def _ready_condition(pod: Object) -> Object | None:
    return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)


def group_pods(
    pods: list[Object], metrics: Mapping[str, PodMetric], resource: str, *, now: datetime, tuning: Tuning
) -> PodGroups:
    """kube's groupPods: deleted and failed pods are ignored, pending ones unready, pods without a
    metric missing; for cpu, a pod not Ready (or whose sample predates its readiness within its
    first minutes) is unready too."""
    ready = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in pods:
        name = str(pod["metadata"].get("name", ""))
        status = pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp") or status.get("phase") == "Failed":
            ignored.add(name)
            continue
        if status.get("phase") == "Pending":
            unready.add(name)
            continue
        metric = metrics.get(name)
        if metric is None:
            missing.add(name)
            continue
        if resource == "cpu":
            condition = _ready_condition(pod)
            started = status.get("startTime")
            if condition is None or not started:
                is_unready = True
            else:
                start = parse_time(str(started))
                changed = parse_time(str(condition.get("lastTransitionTime") or started))
                if start + timedelta(seconds=tuning.cpu_initialization_period) > now:
                    stale = metric.timestamp is not None and metric.timestamp < changed + timedelta(
                        seconds=metric.window
                    )
                    is_unready = condition.get("status") == "False" or stale
                else:
                    is_unready = (
                        condition.get("status") == "False"
                        and start + timedelta(seconds=tuning.initial_readiness_delay) > changed
                    )
            if is_unready:
                unready.add(name)
                continue
        ready += 1
    return PodGroups(ready, frozenset(unready), frozenset(missing), frozenset(ignored))


def pod_requests(pods: list[Object], resource: str, container: str = "") -> dict[str, int]:
    """Each pod's request of ``resource`` in milli-units (kube's calculatePodRequests): every
    container (and restartable init container) considered must request it."""
    out: dict[str, int] = {}
    for pod in pods:
        spec = pod.get("spec") or {}
        containers = list(spec.get("containers") or []) + [
            c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"
        ]
        total = 0
        for entry in containers:
            if container and entry.get("name") != container:
                continue
            request = ((entry.get("resources") or {}).get("requests") or {}).get(resource)
            if request is None:
                raise MetricsError(
                    f"missing request for {resource} in container {entry.get('name', '')} of Pod"
                    f" {pod['metadata'].get('name', '')}"
                )
            total += milli(request)
        out[str(pod["metadata"].get("name", ""))] = total
    return out


def utilization_ratio(
    metrics: Mapping[str, PodMetric], requests: Mapping[str, int], target: int
) -> tuple[float, int, int]:
    """(usage ratio, utilization %, average raw usage) over pods with both a metric and a request."""
    used = requested = entries = 0
    for name, metric in metrics.items():
        if name not in requests:
            continue
        used += metric.value
        requested += requests[name]
        entries += 1
    if requested == 0:
        raise MetricsError("no metrics returned matched known pods")
    utilization = used * 100 // requested
    return utilization / target, utilization, used // entries


@dataclass(frozen=True)
class Proposal:
    replicas: int
    utilization: int | None  # percent of request, for Utilization targets
    average: int  # milli-units per pod


def resource_replicas(
    current: int,
    target: int,
    resource: str,
    *,
    pods: list[Object],
    metrics: Mapping[str, PodMetric],
    now: datetime,
    tuning: Tuning,
    container: str = "",
) -> Proposal:
    """Replicas for a Utilization target (kube's GetResourceReplicas)."""
    if not pods:
        raise MetricsError("no pods returned by selector while calculating replica count")
    groups = group_pods(pods, metrics, resource, now=now, tuning=tuning)
    usable = {n: m for n, m in metrics.items() if n not in groups.ignored and n not in groups.unready}
    if not usable:
        raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")
    requests = pod_requests(pods, resource, container)

    def ratio_of(values: Mapping[str, PodMetric]) -> float:
        return utilization_ratio(values, requests, target)[0]

    def missing_on_scale_down(name: str) -> PodMetric:  # as using its request (or the target, if higher)
        return PodMetric(requests.get(name, 0) * max(100, target) // 100)

    _, utilization, average = utilization_ratio(usable, requests, target)
    replicas = _replicas(current, usable, groups, ratio_of, missing_on_scale_down, tuning=tuning)
    return Proposal(replicas, utilization, average)


def _replicas(
    current: int,
    usable: Mapping[str, PodMetric],
    groups: PodGroups,
    ratio_of: Callable[[Mapping[str, PodMetric]], float],
    missing_on_scale_down: Callable[[str], PodMetric],
    *,
    tuning: Tuning,
    plain: bool = False,
) -> int:
    """kube's common rule for both targets: the usage ratio over the pods with metrics; when pods lack
    metrics or are unready, the ratio again with those filled in (no usage when scaling up, as
    ``missing_on_scale_down`` says when scaling down), and no change when the filled-in ratio is within
    the tolerance or turns the direction round. At a ratio of exactly 1 kube fills missing pods in
    only for a ``plain`` (AverageValue) target, with no usage."""
    ratio = ratio_of(usable)
    with_unready = bool(groups.unready) and ratio > 1.0
    if not with_unready and not groups.missing:
        return current if abs(1.0 - ratio) <= tuning.tolerance else math.ceil(ratio * groups.ready)
    filled = dict(usable)
    if groups.missing:
        if ratio < 1.0:
            filled.update({n: missing_on_scale_down(n) for n in groups.missing})
        elif ratio > 1.0 or plain:
            filled.update({n: PodMetric(0) for n in groups.missing})
    if with_unready:
        filled.update({n: PodMetric(0) for n in groups.unready})
    new_ratio = ratio_of(filled)
    if abs(1.0 - new_ratio) <= tuning.tolerance or (ratio < 1.0 < new_ratio) or (new_ratio < 1.0 < ratio):
        return current
    replicas = math.ceil(new_ratio * len(filled))
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current
    return replicas


def raw_resource_replicas(
    current: int,
    target: int,
    resource: str,
    *,
    pods: list[Object],
    metrics: Mapping[str, PodMetric],
    now: datetime,
    tuning: Tuning,
) -> Proposal:
    """Replicas for an AverageValue target in milli-units (kube's calcPlainMetricReplicas)."""
    if not pods:
        raise MetricsError("no pods returned by selector while calculating replica count")
    groups = group_pods(pods, metrics, resource, now=now, tuning=tuning)
    usable = {n: m for n, m in metrics.items() if n not in groups.ignored and n not in groups.unready}
    if not usable:
        raise MetricsError("did not receive metrics for targeted pods (pods might be unready)")

    def average_of(values: Mapping[str, PodMetric]) -> int:
        return sum(m.value for m in values.values()) // len(values)

    replicas = _replicas(
        current,
        usable,
        groups,
        lambda values: average_of(values) / target,
        lambda _name: PodMetric(target),
        tuning=tuning,
        plain=True,
    )
    return Proposal(replicas, None, average_of(usable))
