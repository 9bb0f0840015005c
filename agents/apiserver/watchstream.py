"""One HTTP watch: initial events, then events from the watch cache, as a chunked JSON stream.

Label and field selectors are applied to both the new and the previous state of each object, so a
watcher sees ADDED when an object starts to match and DELETED when it stops matching, as with
kube-apiserver. Idle streams get BOOKMARK events when the client asked for them; a revision older
than the cache's window ends the stream with an ERROR event carrying 410 Expired.

Once a watch has caught up, the watch cache hands it each event as it dispatches it (no task switch
per watcher), and what one turn of the event loop dispatched leaves as one chunk. A watcher whose
connection has more than 8 MiB unsent is disconnected (it re-watches from its last resourceVersion).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from agents.apiserver import negotiation
from agents.apiserver.registry import ListOptions, ResourceStore, Stored
from agents.apiserver.tables import printer_key, table
from agents.apiserver.watchcache import CacheEvent, Subscription, TooOldError, WatchCache
from agents.machinery import codec
from agents.machinery.objects import Object

MAX_BUFFERED = 8 * 1024 * 1024  # bytes waiting for a slow watcher before its watch is closed


@dataclass(frozen=True)
class WatchSettings:
    min_request_timeout: int = 1800
    bookmark_interval: float = 30.0
    idle_check: float = 5.0  # how often an idle stream checks that its client is still there


def _expired(message: str) -> bytes:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Expired",
        "code": 410,
    }
    return codec.dumps({"type": "ERROR", "object": status}) + b"\n"


class WatchStream:
    def __init__(
        self,
        *,
        request: web.Request,
        store: ResourceStore,
        cache: WatchCache,
        namespace: str,
        opts: ListOptions,
        output: str,
        include: str,
        duration: int,
        bookmarks: bool,
        initial_events: bool,
        settings: WatchSettings,
    ) -> None:
        self.request = request
        self.store = store
        self.resource = store.resource
        self.cache = cache
        self.namespace = namespace
        self.opts = opts
        self.output = output
        self.include = include
        self.duration = duration
        self.bookmarks = bookmarks
        self.initial_events = initial_events
        self.settings = settings
        self.filtering = not (opts.labels.empty and opts.fields.empty)
        self._headers = True  # Table streams carry column definitions in their first event only
        self._queued: list[bytes] = []
        self._queued_bytes = 0
        self._flush_scheduled = False

    # --- encoding --------------------------------------------------------------------------------

    def encode(self, kind: str, raw: bytes | None, obj: Object | None) -> bytes:
        if self.output == negotiation.JSON and raw is not None:
            return b'{"type":"' + kind.encode() + b'","object":' + raw + b"}\n"
        value: Any = obj if obj is not None else codec.loads(raw or b"{}")
        if self.output == negotiation.TABLE:
            rv = value.get("metadata", {}).get("resourceVersion", "")
            value = table(
                printer_key(self.resource),
                [value],
                include=self.include,
                headers=self._headers,
                list_meta={"resourceVersion": rv},
            )
            self._headers = False
        elif self.output == negotiation.PARTIAL:
            value = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": value.get("metadata") or {},
            }
        return codec.dumps({"type": kind, "object": value}) + b"\n"

    def bookmark(self, revision: int, *, end_of_initial: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(revision)}
        if end_of_initial:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": self.resource.kind, "apiVersion": self.resource.api_version, "metadata": meta}
        return codec.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"

    def event_line(self, event: CacheEvent) -> bytes:
        if not self.filtering:
            return self.encode(event.type, event.raw(), None)
        current = event.obj()
        matches = self.store.matches
        if event.type == "DELETED":
            return self.encode("DELETED", event.raw(), current) if matches(current, self.opts) else b""
        now = matches(current, self.opts)
        previous = event.prev_obj()
        before = previous is not None and matches(previous, self.opts)
        if now:
            return self.encode("MODIFIED" if before else "ADDED", event.raw(), current)
        if before and previous is not None:
            return self.encode("DELETED", None, previous)
        return b""

    # --- streaming -------------------------------------------------------------------------------

    async def run(self) -> web.StreamResponse:
        initial: list[Stored] = []
        if self.initial_events or self.opts.resource_version in ("", "0"):
            listed = await self.store.list(
                self.namespace, ListOptions(labels=self.opts.labels, fields=self.opts.fields)
            )
            initial, start = listed.items, listed.revision + 1
        else:
            start = int(self.opts.resource_version) + 1
        sub: Subscription | None = None
        too_old = ""
        try:
            sub = self.cache.subscribe(self.resource, self.resource.collection_prefix(self.namespace), start)
        except TooOldError as exc:
            too_old = str(exc)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(self.request)
        try:
            if sub is None:
                await response.write(_expired(too_old))
                return response
            chunk = b"".join(
                self.encode("ADDED", item.raw(), item.obj() if self.output != negotiation.JSON else None)
                for item in initial
            )
            if self.initial_events and self.bookmarks:
                chunk += self.bookmark(start - 1, end_of_initial=True)
            if chunk:
                await response.write(chunk)
            try:
                await self._follow(sub, floor=start - 1)
            finally:
                self._flush()  # before the closing chunk aiohttp writes
        except ConnectionError:
            pass  # the client went away
        finally:
            if sub is not None:
                self.cache.unsubscribe(self.resource, sub)
        return response

    def _send(self, data: bytes) -> bool:
        """Queue ``data`` for the connection; everything queued in one turn of the event loop leaves
        as one HTTP/1.1 chunk (one TLS record and one system call however many events a batch of
        etcd's brought). The stream is chunked and nothing else writes to it while the watch runs.
        False when the client is gone or too far behind."""
        transport = self.request.transport
        if transport is None or transport.is_closing():
            return False
        self._queued_bytes += len(data)
        if transport.get_write_buffer_size() + self._queued_bytes > MAX_BUFFERED:
            return False
        self._queued.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return True

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._queued:
            return
        data = b"".join(self._queued)
        self._queued.clear()
        self._queued_bytes = 0
        transport = self.request.transport
        if transport is not None and not transport.is_closing():
            transport.write(b"%x\r\n%b\r\n" % (len(data), data))

    def _deliver(self, event: CacheEvent) -> bool:
        line = self.event_line(event)
        return self._send(line) if line else True

    async def _follow(self, sub: Subscription, *, floor: int) -> None:
        # Everything still queued goes first; from then on the cache hands events to _deliver as
        # they arrive (no task switch per event and watcher), and this loop only keeps time.
        pending = sub.attach(self._deliver)
        chunk = b"".join(self.event_line(e) for e in pending)
        if chunk and not self._send(chunk):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.duration
        interval = self.settings.bookmark_interval
        tick = min(self.settings.idle_check, interval) if self.bookmarks else self.settings.idle_check
        last_bookmark = loop.time()
        while (remaining := deadline - loop.time()) > 0:
            try:
                await sub.next(min(remaining, tick))
            except EOFError as exc:
                if str(exc).startswith("too old"):
                    self._send(_expired(str(exc)))
                return
            transport = self.request.transport
            if transport is None or transport.is_closing():
                return
            if self.bookmarks and loop.time() - last_bookmark >= interval:
                if not self._send(self.bookmark(max(self.cache.latest_revision, floor))):
                    return
                last_bookmark = loop.time()
