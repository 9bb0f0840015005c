"""The last two points of every series, and the usage they give (pure: no clock, no I/O).

metrics-server keeps, per node and per container, the newest point and the one before it; usage
is the rate between the two: CPU in nanocores is the CPU time used between them divided by the time
between them (their ``window``), memory is the newest working set. What each scrape brings replaces
what was stored: a node or pod missing from the newest batch (gone, or its kubelet did not answer)
has no usage until it is scraped twice again, so nothing stale is ever served.

How a new point moves the stored ones (metrics-server's rules):

- newer than the stored newest: that one becomes the previous point;
- not newer (the kubelet has not measured again since): the stored previous point stays, if it is
  older than the new one;
- a container that started again since the stored newest point (its start is later) begins anew;
- a container that started less than one resolution ago (and at least 10 s ago) counts from its
  start with no CPU used, so a new pod has usage after one scrape instead of two.

A pod has usage only when every one of its containers has two points; its timestamp and window are
those of its container measured earliest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from agents.metricsserver.points import Batch, PodRef, Point

FRESH_CONTAINER_MIN = 10 * 10**9  # nanoseconds: a younger container's start is too close to count from


@dataclass(frozen=True)
class Usage:
    timestamp: int  # nanoseconds since the epoch: the newest point's
    window: int  # nanoseconds between the two points
    cpu: int  # nanocores
    memory: int  # bytes


@dataclass(frozen=True)
class PodUsage:
    timestamp: int
    window: int
    containers: tuple[tuple[str, Usage], ...]  # by container name


def usage(last: Point, prev: Point) -> Usage | None:
    """The rate between two points; None when they give none (no time between them, or the CPU
    counter went back: a restarted container whose points were not told apart)."""
    window = last.timestamp - prev.timestamp
    if window <= 0 or last.cpu < prev.cpu:
        return None
    return Usage(last.timestamp, window, (last.cpu - prev.cpu) * 10**9 // window, last.memory)


def _moved(new: Point, last: Point | None, prev: Point | None) -> Point | None:
    """The previous point to keep beside ``new``, given what was stored (``last``, ``prev``)."""
    if last is None:
        return None
    if new.timestamp > last.timestamp:
        return last
    if prev is not None and prev.timestamp < new.timestamp:
        return prev
    return None


class Storage:
    """The points of the two newest scrapes; ``resolution`` (ns) is the time between scrapes."""

    def __init__(self, *, resolution: int) -> None:
        self.resolution = resolution
        self.scrapes = 0
        self._nodes_last: dict[str, Point] = {}
        self._nodes_prev: dict[str, Point] = {}
        self._pods_last: dict[PodRef, Mapping[str, Point]] = {}
        self._pods_prev: dict[PodRef, dict[str, Point]] = {}

    @property
    def ready(self) -> bool:
        """A scrape has been stored (whatever it found)."""
        return self.scrapes > 0

    def store(self, batch: Batch) -> None:
        nodes_prev: dict[str, Point] = {}
        for name, point in batch.nodes.items():
            kept = _moved(point, self._nodes_last.get(name), self._nodes_prev.get(name))
            if kept is not None:
                nodes_prev[name] = kept
        pods_prev: dict[PodRef, dict[str, Point]] = {}
        for ref, containers in batch.pods.items():
            stored_last = self._pods_last.get(ref) or {}
            stored_prev = self._pods_prev.get(ref) or {}
            previous: dict[str, Point] = {}
            for name, point in containers.items():
                age = point.timestamp - point.start
                if point.start and 0 < age < self.resolution and age >= FRESH_CONTAINER_MIN:
                    previous[name] = replace(point, timestamp=point.start, cpu=0)
                    continue
                last = stored_last.get(name)
                if last is None or point.start >= last.timestamp:
                    continue  # new to us, or started again since: it begins anew
                kept = _moved(point, last, stored_prev.get(name))
                if kept is not None:
                    previous[name] = kept
            if previous:
                pods_prev[ref] = previous
        self._nodes_last, self._nodes_prev = dict(batch.nodes), nodes_prev
        self._pods_last, self._pods_prev = dict(batch.pods), pods_prev
        self.scrapes += 1

    def node(self, name: str) -> Usage | None:
        last, prev = self._nodes_last.get(name), self._nodes_prev.get(name)
        if last is None or prev is None:
            return None
        return usage(last, prev)

    def pod(self, ref: PodRef) -> PodUsage | None:
        last, prev = self._pods_last.get(ref), self._pods_prev.get(ref)
        if not last or prev is None:
            return None
        containers: list[tuple[str, Usage]] = []
        earliest: Usage | None = None
        for name in sorted(last):
            before = prev.get(name)
            found = usage(last[name], before) if before is not None else None
            if found is None:
                return None
            containers.append((name, found))
            if earliest is None or found.timestamp < earliest.timestamp:
                earliest = found
        assert earliest is not None
        return PodUsage(earliest.timestamp, earliest.window, tuple(containers))

    def pods(self) -> list[PodRef]:
        return sorted(self._pods_last)

    def nodes(self) -> list[str]:
        return sorted(self._nodes_last)
