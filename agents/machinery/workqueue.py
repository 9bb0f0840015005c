"""A work queue of keys, as client-go's: fair, stingy, with per-key backoff.

A key waits at most once however often it is added; a key being worked on is not handed out
again until ``done``, and if it was added meanwhile it comes back once after. Failures delay the
key exponentially (5 ms, 10 ms, ... up to 5 minutes); success (``forget``) resets its delay.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable

from agents.machinery.client import ApiError, ApiUnavailableError

log = logging.getLogger(__name__)


class WorkQueue:
    def __init__(self, name: str, *, base_delay: float = 0.005, max_delay: float = 300.0) -> None:
        self.name = name
        self._queue: collections.deque[str] = collections.deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._ready = asyncio.Event()
        self._base = base_delay
        self._max = max_delay

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._ready.set()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
        else:
            asyncio.get_running_loop().call_later(delay, self.add, key)

    def add_rate_limited(self, key: str) -> None:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        self.add_after(key, min(self._base * (2**failures), self._max))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def retries(self, key: str) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> str:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._ready.set()


async def run_workers(queue: WorkQueue, sync: Callable[[str], Awaitable[None]], *, workers: int = 1) -> None:
    """Take keys from ``queue`` and ``sync`` them; a failure retries the key with backoff."""

    async def worker() -> None:
        while True:
            key = await queue.get()
            try:
                await sync(key)
                queue.forget(key)
            except asyncio.CancelledError:
                raise
            except (ApiUnavailableError, ApiError) as exc:
                level = logging.DEBUG if isinstance(exc, ApiError) and exc.conflict else logging.WARNING
                log.log(level, "%s: syncing %s failed (retry %d): %s", queue.name, key, queue.retries(key) + 1, exc)
                queue.add_rate_limited(key)
            except Exception:
                log.exception("%s: syncing %s failed", queue.name, key)
                queue.add_rate_limited(key)
            finally:
                queue.done(key)

    await asyncio.gather(*(worker() for _ in range(workers)))
