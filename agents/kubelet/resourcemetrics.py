"""``GET /metrics/resource``: the node's and its pods' usage in Prometheus' text format, kube's names.

This is what metrics-server scrapes from every kubelet: cumulative CPU time (a counter, the scraper
computes the rate between two scrapes) and the memory working set, for the node, each pod and each
container, and each container's start time; ``scrape_error`` is 1 when the node's own usage could not
be read. Every sample carries the time of its reading, as kube's kubelet gives them. The text is made
by prometheus-client from a collector of its own registry (not the process's global one: these are
the node's figures, not the kubelet's).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

from agents.kubelet.resourcestats import Snapshot

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # text/plain; version=0.0.4; charset=utf-8
CONTAINER_LABELS = ["container", "pod", "namespace"]
POD_LABELS = ["pod", "namespace"]


def families(snapshot: Snapshot) -> list[Metric]:
    """The metric families of one snapshot (kube's resource metrics, same names and labels)."""
    node_cpu = CounterMetricFamily(
        "node_cpu_usage_seconds_total", "Cumulative CPU time the node has used, in core-seconds"
    )
    node_memory = GaugeMetricFamily("node_memory_working_set_bytes", "The node's current working set in bytes")
    container_cpu = CounterMetricFamily(
        "container_cpu_usage_seconds_total",
        "Cumulative CPU time the container has used, in core-seconds",
        labels=CONTAINER_LABELS,
    )
    container_memory = GaugeMetricFamily(
        "container_memory_working_set_bytes", "The container's current working set in bytes", labels=CONTAINER_LABELS
    )
    container_start = GaugeMetricFamily(
        "container_start_time_seconds",
        "When the container started, in seconds since the Unix epoch",
        labels=CONTAINER_LABELS,
    )
    pod_cpu = CounterMetricFamily(
        "pod_cpu_usage_seconds_total", "Cumulative CPU time the pod has used, in core-seconds", labels=POD_LABELS
    )
    pod_memory = GaugeMetricFamily(
        "pod_memory_working_set_bytes", "The pod's current working set in bytes", labels=POD_LABELS
    )
    scrape_error = GaugeMetricFamily(
        "scrape_error", "1 if the usage could not be read, 0 otherwise", value=1.0 if snapshot.error else 0.0
    )
    if snapshot.node is not None:
        usage = snapshot.node.usage
        node_cpu.add_metric([], usage.cpu_seconds, timestamp=usage.at)
        node_memory.add_metric([], usage.working_set_bytes, timestamp=usage.at)
    for pod in snapshot.pods:
        namespace, name = pod.pod.namespace, pod.pod.name
        for container in pod.containers:
            usage = container.measured.usage
            labels = [container.name, name, namespace]
            container_cpu.add_metric(labels, usage.cpu_seconds, timestamp=usage.at)
            container_memory.add_metric(labels, usage.working_set_bytes, timestamp=usage.at)
            container_start.add_metric(labels, container.started_at, timestamp=usage.at)
        usage = pod.measured.usage
        pod_cpu.add_metric([name, namespace], usage.cpu_seconds, timestamp=usage.at)
        pod_memory.add_metric([name, namespace], usage.working_set_bytes, timestamp=usage.at)
    return [
        container_cpu,
        container_memory,
        container_start,
        node_cpu,
        node_memory,
        pod_cpu,
        pod_memory,
        scrape_error,
    ]


class ResourceCollector(Collector):
    """A fresh snapshot's families at every collection."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterable[Metric]:
        return families(self.snapshot())


class ResourceMetrics:
    """The registry ``/metrics/resource`` is rendered from."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(ResourceCollector(snapshot))

    def render(self) -> bytes:
        return generate_latest(self.registry)
