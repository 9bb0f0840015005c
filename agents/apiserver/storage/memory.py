"""An in-process, multi-version store with the same contract as etcd.

Used by unit tests and by the storage contract suite (which runs the same tests against etcd).
It keeps every key's history so reads at an older revision and watches from an older revision
behave as on etcd until ``compact`` drops the history.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator

from agents.apiserver.storage.base import KeyValue, RangeResult, WatchEvent
from agents.apiserver.storage.errors import (
    CompactedError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    RevisionConflictError,
)


class MemoryStore:
    def __init__(self) -> None:
        self._revision = 1  # etcd starts at revision 1 with nothing in it
        self._compacted = 0
        self._keys: list[str] = []  # every key ever written, sorted
        self._history: dict[str, list[tuple[int, KeyValue | None]]] = {}
        self._log: list[WatchEvent] = []
        self._watchers: list[tuple[str, asyncio.Queue[WatchEvent | None]]] = []

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for _, queue in self._watchers:
            queue.put_nowait(None)
        self._watchers.clear()

    # --- reads -----------------------------------------------------------------------------------

    def _at(self, key: str, revision: int) -> KeyValue | None:
        versions = self._history.get(key, [])
        found: KeyValue | None = None
        for rev, kv in versions:
            if rev > revision:
                break
            found = kv
        return found

    def _check_revision(self, revision: int) -> int:
        if revision <= 0:
            return self._revision
        if revision > self._revision:
            raise FutureRevisionError(revision, self._revision)
        if revision < self._compacted:
            raise CompactedError(revision, self._compacted)
        return revision

    async def get(self, key: str) -> tuple[KeyValue | None, int]:
        return self._at(key, self._revision), self._revision

    async def range(self, start: str, end: str, *, revision: int = 0, limit: int = 0) -> RangeResult:
        at = self._check_revision(revision)
        lo = bisect.bisect_left(self._keys, start)
        hi = bisect.bisect_left(self._keys, end) if end != "\0" else len(self._keys)
        live = [kv for key in self._keys[lo:hi] if (kv := self._at(key, at)) is not None]
        more = bool(limit) and len(live) > limit
        return RangeResult(kvs=live[:limit] if limit else live, revision=at, more=more, count=len(live))

    async def current_revision(self) -> int:
        return self._revision

    # --- writes ----------------------------------------------------------------------------------

    def _record(self, key: str, kv: KeyValue | None, prev: KeyValue | None) -> None:
        if key not in self._history:
            bisect.insort(self._keys, key)
            self._history[key] = []
        self._history[key].append((self._revision, kv))
        if kv is not None:
            event = WatchEvent("PUT", kv, prev)
        else:
            assert prev is not None
            event = WatchEvent("DELETE", KeyValue(key, b"", 0, self._revision), prev)
        self._log.append(event)
        for prefix, queue in self._watchers:
            if key.startswith(prefix):
                queue.put_nowait(event)

    async def create(self, key: str, value: bytes) -> int:
        if self._at(key, self._revision) is not None:
            raise KeyExistsError(key)
        self._revision += 1
        self._record(key, KeyValue(key, value, self._revision, self._revision), None)
        return self._revision

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        current = self._at(key, self._revision)
        if current is None:
            raise KeyNotFoundError(key)
        if current.mod_revision != expected_revision:
            raise RevisionConflictError(key, expected_revision, current.mod_revision)
        self._revision += 1
        self._record(key, KeyValue(key, value, current.create_revision, self._revision), current)
        return self._revision

    async def delete(self, key: str, *, expected_revision: int = 0) -> tuple[KeyValue, int]:
        current = self._at(key, self._revision)
        if current is None:
            raise KeyNotFoundError(key)
        if expected_revision and current.mod_revision != expected_revision:
            raise RevisionConflictError(key, expected_revision, current.mod_revision)
        self._revision += 1
        self._record(key, None, current)
        return current, self._revision

    async def compact(self, revision: int) -> None:
        if revision <= self._compacted:
            return
        if revision > self._revision:
            raise FutureRevisionError(revision, self._revision)
        self._compacted = revision
        for key, versions in self._history.items():
            keep_from = 0
            for i, (rev, _) in enumerate(versions):
                if rev <= revision:
                    keep_from = i
            self._history[key] = versions[keep_from:]
        self._log = [e for e in self._log if e.revision >= revision]

    # --- watch -----------------------------------------------------------------------------------

    def watch(self, prefix: str, *, start_revision: int) -> AsyncIterator[WatchEvent]:
        if 0 < start_revision < self._compacted:
            return self._failed(CompactedError(start_revision, self._compacted))
        start = start_revision if start_revision > 0 else self._revision + 1
        backlog = [e for e in self._log if e.revision >= start and e.kv.key.startswith(prefix)]
        queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        entry = (prefix, queue)
        self._watchers.append(entry)
        return self._stream(backlog, queue, entry)

    async def _failed(self, error: Exception) -> AsyncIterator[WatchEvent]:
        raise error
        yield  # pragma: no cover  (makes this an async generator)

    async def _stream(
        self,
        backlog: list[WatchEvent],
        queue: asyncio.Queue[WatchEvent | None],
        entry: tuple[str, asyncio.Queue[WatchEvent | None]],
    ) -> AsyncIterator[WatchEvent]:
        try:
            for event in backlog:
                yield event
            while (event_or_end := await queue.get()) is not None:
                yield event_or_end
        finally:
            if entry in self._watchers:
                self._watchers.remove(entry)
