"""The scheduling queue: pods waiting for a decision, pods that fit nowhere, pods backing off.

Active pods come out by priority, then by arrival. A pod that fits nowhere waits in the
unschedulable set until the cluster changes in a way that could help (a node appears or changes, an
assigned pod goes away) or five minutes pass. A pod whose binding failed backs off (1 s doubling to
10 s) before its next attempt.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time

UNSCHEDULABLE_RETRY = 300.0


class SchedulingQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[int, int, str]] = []
        self._active: set[str] = set()
        self._unschedulable: dict[str, float] = {}
        self._attempts: dict[str, int] = {}
        self._order = itertools.count()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._active)

    @property
    def unschedulable(self) -> int:
        return len(self._unschedulable)

    def add(self, key: str, priority: int = 0) -> None:
        if key in self._active:
            return
        self._unschedulable.pop(key, None)
        self._active.add(key)
        heapq.heappush(self._heap, (-priority, next(self._order), key))
        self._ready.set()

    def remove(self, key: str) -> None:
        self._active.discard(key)  # the heap entry is skipped when it comes up
        self._unschedulable.pop(key, None)
        self._attempts.pop(key, None)

    def mark_unschedulable(self, key: str) -> None:
        self._unschedulable[key] = time.monotonic()

    def backoff(self, key: str, priority: int = 0) -> None:
        attempts = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempts
        delay = min(1.0 * 2 ** (attempts - 1), 10.0)
        asyncio.get_running_loop().call_later(delay, self.add, key, priority)

    def scheduled(self, key: str) -> None:
        self._attempts.pop(key, None)

    def move_all_to_active(self, priorities: dict[str, int] | None = None) -> int:
        """The cluster changed: give every unschedulable pod another try."""
        moved = list(self._unschedulable)
        for key in moved:
            self.add(key, (priorities or {}).get(key, 0))
        return len(moved)

    def flush_stale(self) -> None:
        now = time.monotonic()
        for key in [k for k, since in self._unschedulable.items() if now - since > UNSCHEDULABLE_RETRY]:
            self.add(key)

    async def pop(self) -> str:
        while True:
            while self._heap:
                _, _, key = heapq.heappop(self._heap)
                if key in self._active:
                    self._active.discard(key)
                    return key
            self._ready.clear()
            await self._ready.wait()
