"""What one kubelet's ``/metrics/resource`` says, as points in time (pure: text in, a batch out).

The kubelet answers in Prometheus' text format, each sample with the time it was measured in
milliseconds; metrics-server reads five series from it and ignores the rest:

- ``node_cpu_usage_seconds_total`` and ``node_memory_working_set_bytes``: the node;
- ``container_cpu_usage_seconds_total``, ``container_memory_working_set_bytes`` and
  ``container_start_time_seconds``, labelled ``namespace``, ``pod``, ``container``: each container.

A point is the cumulative CPU time (nanoseconds), the working set (bytes) and the time of the CPU
sample. As in metrics-server, a point with no CPU or no memory (or either zero: the kubelet had no
complete reading) is incomplete: the node's is left out, and a pod with one incomplete container is
left out whole, since a pod's usage is the sum of all of its containers.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

NODE_CPU = "node_cpu_usage_seconds_total"
NODE_MEMORY = "node_memory_working_set_bytes"
CONTAINER_CPU = "container_cpu_usage_seconds_total"
CONTAINER_MEMORY = "container_memory_working_set_bytes"
CONTAINER_START = "container_start_time_seconds"
WANTED = frozenset({NODE_CPU, NODE_MEMORY, CONTAINER_CPU, CONTAINER_MEMORY, CONTAINER_START})


class DecodeError(ValueError):
    """The answer is not Prometheus' text format."""


@dataclass(frozen=True)
class Point:
    timestamp: int  # nanoseconds since the epoch, of the CPU sample
    cpu: int  # cumulative CPU time used, nanoseconds
    memory: int  # working set, bytes
    start: int = 0  # the container's start, nanoseconds since the epoch (0: not known)


@dataclass(frozen=True, order=True)
class PodRef:
    namespace: str
    name: str


@dataclass(frozen=True)
class Batch:
    """The points of one scrape (of one node, or of all of them merged)."""

    nodes: Mapping[str, Point] = field(default_factory=dict)
    pods: Mapping[PodRef, Mapping[str, Point]] = field(default_factory=dict)


def merge(batches: list[Batch]) -> Batch:
    nodes: dict[str, Point] = {}
    pods: dict[PodRef, Mapping[str, Point]] = {}
    for batch in batches:
        for name, point in batch.nodes.items():
            nodes.setdefault(name, point)
        for ref, containers in batch.pods.items():
            if ref in pods:
                log.info("pod %s/%s reported by two nodes; the first report is kept", ref.namespace, ref.name)
                continue
            pods[ref] = containers
    return Batch(nodes, pods)


@dataclass
class _Partial:
    cpu: int | None = None
    memory: int | None = None
    start: int = 0
    timestamp: int | None = None
    memory_timestamp: int | None = None

    def point(self, default_time: int) -> Point | None:
        if not self.cpu or not self.memory:
            return None
        when = self.timestamp or self.memory_timestamp or default_time
        return Point(when, self.cpu, self.memory, self.start)


def _nanos(seconds: float) -> int:
    return round(seconds * 1e9)


def _timestamp(raw: object) -> int | None:
    """The sample's time: Prometheus gives milliseconds, the parser seconds; kept to the millisecond."""
    if raw is None:
        return None
    return round(float(raw) * 1000) * 1_000_000  # type: ignore[arg-type]


def decode(text: str, *, node: str, scraped_at: int) -> Batch:
    """The node's and its containers' points; ``scraped_at`` (ns) stands in for a missing sample time."""
    own = _Partial()
    containers: dict[tuple[str, str, str], _Partial] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, TypeError, IndexError) as exc:
        raise DecodeError(f"not Prometheus text: {exc}") from exc
    for family in families:
        for sample in family.samples:
            if sample.name not in WANTED:
                continue
            when = _timestamp(sample.timestamp)
            value = float(sample.value)
            if sample.name.startswith("node_"):
                target = own
            else:
                labels = sample.labels
                key = (labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", ""))
                if not all(key):
                    continue
                target = containers.setdefault(key, _Partial())
            if sample.name in (NODE_CPU, CONTAINER_CPU):
                target.cpu, target.timestamp = max(0, _nanos(value)), when
            elif sample.name in (NODE_MEMORY, CONTAINER_MEMORY):
                target.memory, target.memory_timestamp = max(0, int(value)), when
            else:
                target.start = _nanos(value)
    nodes: dict[str, Point] = {}
    point = own.point(scraped_at)
    if point is None:
        log.info("node %s: no complete node metrics (CPU and memory)", node)
    else:
        nodes[node] = point
    grouped: dict[PodRef, dict[str, Point | None]] = {}
    for (namespace, pod, container), partial in containers.items():
        grouped.setdefault(PodRef(namespace, pod), {})[container] = partial.point(scraped_at)
    pods: dict[PodRef, Mapping[str, Point]] = {}
    for ref, points in grouped.items():
        complete = {name: p for name, p in points.items() if p is not None}
        if len(complete) == len(points):
            pods[ref] = complete
        else:
            log.debug("pod %s/%s: a container has no complete metrics; the pod is left out", ref.namespace, ref.name)
    return Batch(nodes, pods)
