"""One etcd watch for the whole registry, fanned out to every HTTP watch.

The cache follows etcd from the revision it started at, keeps a bounded history of recent events
(the window a watch may resume from) and hands each subscriber the events under its key prefix,
in revision order. A subscriber asking for a revision older than the window is told to relist
(410 Gone), as kube-apiserver's watch cache does. Each event is decoded and encoded at most once,
however many watchers receive it. The cache also keeps the namespace index used by admission.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.apiserver.resources import Catalog, Resource
from agents.apiserver.storage import KeyValue, Store, WatchEvent, prefix_end
from agents.apiserver.storage.errors import CompactedError, StorageError
from agents.machinery import codec
from agents.machinery.errors import KubelabError
from agents.machinery.objects import Object

log = logging.getLogger(__name__)

REGISTRY_PREFIX = "/registry/"
NAMESPACES_PREFIX = "/registry/namespaces/"


class TooOldError(KubelabError):
    """The requested revision is older than the cache's window."""

    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


@dataclass(slots=True)
class CacheEvent:
    type: str  # ADDED, MODIFIED or DELETED
    key: str
    resource: Resource
    revision: int
    value: bytes  # the object after the change; for DELETED, its last state
    prev_value: bytes | None
    _raw: bytes | None = None
    _obj: Object | None = None
    _prev: Object | None = None

    def raw(self) -> bytes:
        """The object as JSON with its resourceVersion (the event's revision)."""
        if self._raw is None:
            self._raw = codec.stamp(self.value, self.revision)
        return self._raw

    def obj(self) -> Object:
        """The decoded object. Shared between watchers: never mutate it."""
        if self._obj is None:
            self._obj = codec.decode_stored(self.value, self.revision)
        return self._obj

    def forget_decoded(self) -> None:
        """Drop the decoded objects once dispatched: history keeps bytes only (which the garbage
        collector does not track); a replay decodes again."""
        self._obj = None
        self._prev = None

    def prev_obj(self) -> Object | None:
        if self._prev is None and self.prev_value is not None:
            self._prev = codec.decode_stored(self.prev_value, self.revision)
        return self._prev


_CLOSED = object()


class KeyIndex(Protocol):
    """A view the cache keeps current of every object under ``prefix`` (the RBAC authorizer's)."""

    prefix: str

    def reset(self) -> None: ...

    def put(self, key: str, obj: Object) -> None: ...

    def drop(self, key: str) -> None: ...


Sink = Callable[[CacheEvent], bool]


@dataclass(eq=False)
class Subscription:
    """Events for one watcher: queued, or, once a sink is attached, handed over as they happen."""

    key_prefix: str
    from_revision: int
    capacity: int
    backlog: collections.deque[CacheEvent] = field(default_factory=collections.deque)
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    closed: str | None = None  # why the cache ended this subscription
    sink: Sink | None = None

    def offer(self, event: CacheEvent) -> bool:
        """Take an event; False means the watcher cannot keep up and must be dropped."""
        if event.revision < self.from_revision or not event.key.startswith(self.key_prefix):
            return True
        if self.sink is not None:
            return self.sink(event)
        if self.queue.qsize() >= self.capacity:
            return False
        self.queue.put_nowait(event)
        return True

    def attach(self, sink: Sink) -> list[CacheEvent]:
        """From now on deliver straight to ``sink``; returns the events still waiting, in order, which
        the caller must handle before it next yields to the event loop."""
        pending = list(self.backlog)
        self.backlog.clear()
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if isinstance(item, CacheEvent):
                pending.append(item)
            else:
                self.queue.put_nowait(item)  # the end marker stays for next()
                break
        self.sink = sink
        return pending

    def close(self, reason: str) -> None:
        if self.closed is None:
            self.closed = reason
            self.queue.put_nowait(_CLOSED)

    async def next(self, wait: float | None) -> CacheEvent | None:
        """The next event; None when ``wait`` seconds pass first. Raises EOFError once closed."""
        if self.backlog:
            return self.backlog.popleft()
        if not self.queue.empty():
            item = self.queue.get_nowait()
        else:
            try:
                async with asyncio.timeout(wait):
                    item = await self.queue.get()
            except TimeoutError:
                return None
        if item is _CLOSED:
            raise EOFError(self.closed or "closed")
        event: CacheEvent = item
        return event


class WatchCache:
    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        *,
        capacity: int = 20000,
        subscriber_capacity: int = 5000,
        recent_capacity: int = 20000,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._history: collections.deque[CacheEvent] = collections.deque()
        self._capacity = capacity
        self._subscriber_capacity = subscriber_capacity
        self._subs: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self.window_start = 0  # the oldest revision a watch may start from
        self.latest_revision = 0  # the newest revision the cache has seen
        self.namespaces: dict[str, str] = {}  # name -> phase
        self.healthy = False
        # The latest state of recently written keys, oldest first: updates start from it instead of
        # reading etcd (as kube-apiserver's GuaranteedUpdate starts from the cached object); their
        # compare-and-swap catches a copy that lags, and the retry reads etcd.
        self._recent: dict[str, KeyValue] = {}
        self._recent_capacity = recent_capacity
        self._indexes: list[KeyIndex] = []

    def add_index(self, index: KeyIndex) -> None:
        """Keep ``index`` current from the next (re)synchronisation on; add before ``start``."""
        self._indexes.append(index)

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        revision = await self._resync()
        self._task = asyncio.create_task(self._follow(revision + 1), name="watch-cache")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for subs in self._subs.values():
            for sub in list(subs):
                sub.close("shutting down")

    async def _resync(self) -> int:
        """Start over at the current revision: reload the namespace index, drop the history."""
        result = await self._store.range(NAMESPACES_PREFIX, prefix_end(NAMESPACES_PREFIX))
        self.namespaces = {}
        for kv in result.kvs:
            obj = codec.decode_stored(kv.value, kv.mod_revision)
            self.namespaces[obj["metadata"]["name"]] = (obj.get("status") or {}).get("phase", "Active")
        for index in self._indexes:
            found = await self._store.range(index.prefix, prefix_end(index.prefix), revision=result.revision)
            index.reset()
            for kv in found.kvs:
                index.put(kv.key, codec.decode_stored(kv.value, kv.mod_revision))
        self._history.clear()
        self._recent.clear()
        self.window_start = result.revision + 1
        self.latest_revision = result.revision
        self.healthy = True
        return result.revision

    async def _follow(self, start: int) -> None:
        delay = 0.1
        while True:
            try:
                async for event in self._store.watch(REGISTRY_PREFIX, start_revision=start):
                    self._apply(event)
                    start = event.revision + 1
                    delay = 0.1
            except asyncio.CancelledError:
                raise
            except CompactedError:
                log.warning("watch cache fell behind etcd compaction; resynchronising, watchers must relist")
                self._close_all("too old resource version")
                start = await self._resync_retrying() + 1
                continue
            except StorageError as exc:
                log.warning("etcd watch interrupted (%s); resuming from revision %d", exc, start)
                self.healthy = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            self.healthy = True

    async def _resync_retrying(self) -> int:
        delay = 0.1
        while True:
            try:
                return await self._resync()
            except StorageError as exc:
                self.healthy = False
                log.warning("watch cache resync failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _close_all(self, reason: str) -> None:
        for subs in self._subs.values():
            for sub in list(subs):
                sub.close(reason)
        self._subs.clear()

    # --- events ----------------------------------------------------------------------------------

    def _apply(self, event: WatchEvent) -> None:
        key = event.kv.key
        self.latest_revision = max(self.latest_revision, event.revision)
        resource = self._catalog.by_key(key)
        if resource is None:
            return
        if event.type == "DELETE":
            self._recent.pop(key, None)
            if event.prev is None:
                return
            cached = CacheEvent("DELETED", key, resource, event.revision, event.prev.value, event.prev.value)
        else:
            kind = "ADDED" if event.prev is None else "MODIFIED"
            prev = event.prev.value if event.prev is not None else None
            cached = CacheEvent(kind, key, resource, event.revision, event.kv.value, prev)
            self._recent.pop(key, None)
            self._recent[key] = event.kv
            if len(self._recent) > self._recent_capacity:
                del self._recent[next(iter(self._recent))]
        if key.startswith(NAMESPACES_PREFIX):
            name = key[len(NAMESPACES_PREFIX) :]
            if cached.type == "DELETED":
                self.namespaces.pop(name, None)
            else:
                self.namespaces[name] = (cached.obj().get("status") or {}).get("phase", "Active")
        for index in self._indexes:
            if key.startswith(index.prefix):
                if cached.type == "DELETED":
                    index.drop(key)
                else:
                    index.put(key, cached.obj())
        if len(self._history) >= self._capacity:
            evicted = self._history.popleft()
            self.window_start = evicted.revision + 1
        self._history.append(cached)
        subs = self._subs.get(resource.key_prefix)
        if subs:
            for sub in list(subs):
                try:
                    kept = sub.offer(cached)
                except Exception:
                    log.exception("delivering an event to a watch on %s failed", sub.key_prefix)
                    kept = False
                if not kept:
                    log.info("closing a watch on %s that cannot keep up", sub.key_prefix)
                    sub.close("watcher too slow")
                    subs.discard(sub)
        cached.forget_decoded()

    def peek(self, key: str) -> KeyValue | None:
        """The latest value of ``key`` this cache has seen, if it was written recently. It may lag
        etcd: use it only where a compare on its mod_revision follows."""
        return self._recent.get(key)

    # --- subscriptions ---------------------------------------------------------------------------

    def subscribe(self, resource: Resource, key_prefix: str, from_revision: int) -> Subscription:
        """Events under ``key_prefix`` with revision >= ``from_revision``, replayed then live."""
        if from_revision < self.window_start:
            raise TooOldError(from_revision - 1, self.window_start - 1)
        sub = Subscription(key_prefix, from_revision, self._subscriber_capacity)
        replay: list[CacheEvent] = []
        for event in reversed(self._history):
            if event.revision < from_revision:
                break
            if event.key.startswith(key_prefix):
                replay.append(event)
        sub.backlog.extend(reversed(replay))
        self._subs.setdefault(resource.key_prefix, set()).add(sub)
        return sub

    def unsubscribe(self, resource: Resource, sub: Subscription) -> None:
        subs = self._subs.get(resource.key_prefix)
        if subs is not None:
            subs.discard(sub)

    def watcher_count(self) -> int:
        return sum(len(s) for s in self._subs.values())
