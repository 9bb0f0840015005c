"""The node's and its pods' usage at one moment, with CPU rates, and the Summary API that reports it.

kube's kubelet reports usage twice: ``/metrics/resource`` (cumulative CPU time and the working set,
what metrics-server reads; :mod:`agents.kubelet.resourcemetrics`) and ``/stats/summary`` (the same
with a CPU rate, ``usageNanoCores``). A rate needs two readings: the :class:`Sampler` keeps, per
cgroup, its latest reading and an earlier one at least :data:`MIN_WINDOW` before it, and the kubelet
takes a reading every :data:`HOUSEKEEPING` seconds besides the ones its callers ask for (cadvisor's
housekeeping does the same), so a rate is there from the second reading on. Until then
``usageNanoCores`` is left out, as kube leaves out what it does not know.

A pod's usage is the sum of its running containers': its sandbox is a network namespace, which holds
no process and uses nothing of its own. What runs comes from the kubelet (:class:`PodRuns`); how a
cgroup is read, from :mod:`agents.kubelet.stats`. :func:`advance`, :func:`nano_cores`,
:func:`pod_stats` and :func:`summary` are pure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NotRequired, TypedDict

from agents.kubelet import stats
from agents.kubelet.stats import Usage
from agents.machinery.objects import format_time

log = logging.getLogger(__name__)

HOUSEKEEPING = 10.0  # seconds between the kubelet's own readings
MIN_WINDOW = 1.0  # the shortest time a rate is computed over
NODE_KEY = "node"  # the node's track among the cgroups' (which all start with "/")


@dataclass(frozen=True)
class ContainerRun:
    """A running container as the kubelet knows it."""

    name: str
    cgroup: str  # /<containerd namespace>/<container id>
    started_at: float


@dataclass(frozen=True)
class PodRuns:
    """A pod on this node and its running containers."""

    namespace: str
    name: str
    uid: str
    started_at: float
    containers: tuple[ContainerRun, ...]


@dataclass(frozen=True)
class Track:
    """What the sampler keeps of one cgroup: its latest reading and one at least MIN_WINDOW older."""

    latest: Usage
    earlier: Usage | None = None


def advance(track: Track | None, reading: Usage, *, min_window: float = MIN_WINDOW) -> Track:
    """The track after ``reading``: the latest reading becomes the earlier one once the new one is at
    least ``min_window`` after it; a reading sooner replaces the latest (the window grows), unless
    there is no earlier one yet: then the first stays, or readings close together would never make one."""
    if track is None:
        return Track(reading)
    if reading.at - track.latest.at >= min_window:
        return Track(reading, track.latest)
    if track.earlier is None:
        return track
    return Track(reading, track.earlier)


def nano_cores(track: Track) -> int | None:
    """The CPU rate over the track's window in billionths of a core; None without two readings, or
    when the counter went back (a cgroup made again under the same name)."""
    earlier, latest = track.earlier, track.latest
    if earlier is None or latest.at <= earlier.at or latest.cpu_seconds < earlier.cpu_seconds:
        return None
    return round((latest.cpu_seconds - earlier.cpu_seconds) / (latest.at - earlier.at) * 1e9)


@dataclass(frozen=True)
class Measured:
    """A reading and the rate at that moment (None: not known yet)."""

    usage: Usage
    nano_cores: int | None = None


@dataclass(frozen=True)
class ContainerStats:
    name: str
    started_at: float
    measured: Measured


@dataclass(frozen=True)
class PodStats:
    pod: PodRuns
    measured: Measured  # the sum of its containers'
    containers: tuple[ContainerStats, ...]


@dataclass(frozen=True)
class Snapshot:
    """Everything the two endpoints report, read at one moment."""

    node_name: str
    node_started_at: float
    node: Measured | None  # None: the node's own files could not be read
    pods: tuple[PodStats, ...]

    @property
    def error(self) -> bool:
        return self.node is None


def summed(readings: Sequence[Measured]) -> Measured:
    """A pod's usage from its containers': times and memory add up, the reading's time is the latest,
    the rate is known only when every container's is."""
    usages = [m.usage for m in readings]
    limits = [u.limit_bytes for u in usages]
    rates = [m.nano_cores for m in readings]
    return Measured(
        Usage(
            at=max(u.at for u in usages),
            cpu_seconds=sum(u.cpu_seconds for u in usages),
            memory_bytes=sum(u.memory_bytes for u in usages),
            working_set_bytes=sum(u.working_set_bytes for u in usages),
            rss_bytes=sum(u.rss_bytes for u in usages),
            limit_bytes=None if None in limits else sum(limit or 0 for limit in limits),
        ),
        None if None in rates else sum(rate or 0 for rate in rates),
    )


def pod_stats(pod: PodRuns, measured: dict[str, Measured]) -> PodStats | None:
    """The pod's stats from its containers' readings (by cgroup); None when none of them could be read."""
    containers = tuple(
        ContainerStats(run.name, run.started_at, measured[run.cgroup])
        for run in pod.containers
        if run.cgroup in measured
    )
    if not containers:
        return None
    return PodStats(pod, summed([c.measured for c in containers]), containers)


class Sampler:
    """Reads the node and the running containers, and keeps each cgroup's track for its rate."""

    def __init__(
        self,
        *,
        node_name: str,
        pods: Callable[[], list[PodRuns]],
        read_cgroup: Callable[[str], Usage | None] = stats.read_cgroup,
        read_node: Callable[[], Usage] = stats.read_node,
        boot_time: Callable[[], float] = stats.read_boot_time,
    ) -> None:
        self.node_name = node_name
        self.pods = pods
        self.read_cgroup = read_cgroup
        self.read_node = read_node
        self._boot_time = boot_time
        self._started: float | None = None
        self._tracks: dict[str, Track] = {}

    def _measure(self, key: str, reading: Usage, seen: dict[str, Track]) -> Measured:
        track = advance(self._tracks.get(key), reading)
        seen[key] = track
        return Measured(reading, nano_cores(track))

    def node_started_at(self) -> float:
        if self._started is None:
            try:
                self._started = self._boot_time()
            except (OSError, ValueError):
                return 0.0
        return self._started

    def snapshot(self) -> Snapshot:
        """Read everything now; the tracks of cgroups no longer read are forgotten."""
        seen: dict[str, Track] = {}
        try:
            node: Measured | None = self._measure(NODE_KEY, self.read_node(), seen)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("the node's usage could not be read: %s", exc)
            node = None
        pods = self.pods()
        measured: dict[str, Measured] = {}
        for pod in pods:
            for run in pod.containers:
                reading = self.read_cgroup(run.cgroup)
                if reading is not None:
                    measured[run.cgroup] = self._measure(run.cgroup, reading, seen)
        self._tracks = seen
        found = (pod_stats(pod, measured) for pod in pods)
        return Snapshot(self.node_name, self.node_started_at(), node, tuple(p for p in found if p is not None))

    async def run(self, period: float = HOUSEKEEPING) -> None:
        """A reading every ``period`` seconds, so rates are known when asked for; until cancelled."""
        while True:
            self.snapshot()
            await asyncio.sleep(period)


# --- the Summary API (kube's stats/v1alpha1 shapes) -------------------------------------------------


class CPUStats(TypedDict):
    time: str
    usageNanoCores: NotRequired[int]
    usageCoreNanoSeconds: int


class MemoryStats(TypedDict):
    time: str
    availableBytes: NotRequired[int]
    usageBytes: int
    workingSetBytes: int
    rssBytes: int


class NodeSummary(TypedDict):
    nodeName: str
    startTime: str
    cpu: NotRequired[CPUStats]
    memory: NotRequired[MemoryStats]


class PodReference(TypedDict):
    name: str
    namespace: str
    uid: str


class ContainerSummary(TypedDict):
    name: str
    startTime: str
    cpu: CPUStats
    memory: MemoryStats


class PodSummary(TypedDict):
    podRef: PodReference
    startTime: str
    containers: list[ContainerSummary]
    cpu: CPUStats
    memory: MemoryStats


class Summary(TypedDict):
    node: NodeSummary
    pods: list[PodSummary]


def cpu_stats(measured: Measured) -> CPUStats:
    out = CPUStats(time=format_time(measured.usage.at), usageCoreNanoSeconds=round(measured.usage.cpu_seconds * 1e9))
    if measured.nano_cores is not None:
        out["usageNanoCores"] = measured.nano_cores
    return out


def memory_stats(usage: Usage) -> MemoryStats:
    out = MemoryStats(
        time=format_time(usage.at),
        usageBytes=usage.memory_bytes,
        workingSetBytes=usage.working_set_bytes,
        rssBytes=usage.rss_bytes,
    )
    if usage.available_bytes is not None:
        out["availableBytes"] = usage.available_bytes
    return out


def summary(snapshot: Snapshot) -> Summary:
    """``GET /stats/summary``: the node, then each pod with its containers."""
    node = NodeSummary(nodeName=snapshot.node_name, startTime=format_time(snapshot.node_started_at))
    if snapshot.node is not None:
        node["cpu"] = cpu_stats(snapshot.node)
        node["memory"] = memory_stats(snapshot.node.usage)
    pods = [
        PodSummary(
            podRef=PodReference(name=p.pod.name, namespace=p.pod.namespace, uid=p.pod.uid),
            startTime=format_time(p.pod.started_at),
            containers=[
                ContainerSummary(
                    name=c.name,
                    startTime=format_time(c.started_at),
                    cpu=cpu_stats(c.measured),
                    memory=memory_stats(c.measured.usage),
                )
                for c in p.containers
            ],
            cpu=cpu_stats(p.measured),
            memory=memory_stats(p.measured.usage),
        )
        for p in snapshot.pods
    ]
    return Summary(node=node, pods=pods)
