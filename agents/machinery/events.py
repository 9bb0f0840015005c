"""Recording core/v1 Events, so that ``kubectl describe`` tells what happened to an object.

``record`` never blocks and never fails its caller: events are written by a background task. A
repeat of the same event (same object, type, reason and message) within ten minutes bumps the
first one's ``count`` and ``lastTimestamp`` instead of creating another, as kube's recorder does.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from typing import Any

from agents.machinery.client import ApiError, ApiUnavailableError, Client
from agents.machinery.objects import Object, now
from agents.machinery.resources import EVENTS

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
AGGREGATE_WINDOW = 600.0


def reference(obj: Object) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    ref = {
        "apiVersion": obj.get("apiVersion", ""),
        "kind": obj.get("kind", ""),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "resourceVersion": meta.get("resourceVersion", ""),
    }
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    return ref


class EventRecorder:
    def __init__(self, client: Client, *, component: str, host: str = "", capacity: int = 5000) -> None:
        self.client = client
        self.component = component
        self.host = host
        self._queue: asyncio.Queue[tuple[dict[str, Any], str, str, str, str]] = asyncio.Queue(capacity)
        self._recent: OrderedDict[tuple[str, str, str, str], tuple[str, str, int, float]] = OrderedDict()
        self.dropped = 0

    def record(self, obj: Object, type_: str, reason: str, message: str, *, component: str = "") -> None:
        try:
            self._queue.put_nowait((reference(obj), type_, reason, message, component or self.component))
        except asyncio.QueueFull:
            self.dropped += 1

    def scoped(self, component: str) -> ScopedRecorder:
        """A recorder for one part of a program (a controller) that names itself as the source."""
        return ScopedRecorder(self, component)

    async def run(self) -> None:
        while True:
            ref, type_, reason, message, component = await self._queue.get()
            try:
                await self._write(ref, type_, reason, message, component)
            except (ApiError, ApiUnavailableError) as exc:
                log.debug("event %s for %s/%s not recorded: %s", reason, ref.get("kind"), ref.get("name"), exc)

    async def _write(self, ref: dict[str, Any], type_: str, reason: str, message: str, component: str) -> None:
        namespace = ref.get("namespace") or "default"
        key = (ref.get("uid") or f"{namespace}/{ref.get('name')}", type_, reason, message)
        stamp = now()
        seen = self._recent.get(key)
        if seen is not None and time.monotonic() - seen[3] < AGGREGATE_WINDOW:
            name, event_namespace, count, _ = seen
            try:
                await self.client.patch(EVENTS, name, {"count": count + 1, "lastTimestamp": stamp}, event_namespace)
                self._remember(key, (name, event_namespace, count + 1, time.monotonic()))
                return
            except ApiError as exc:
                if not exc.not_found:
                    raise
        name = f"{ref.get('name', 'unknown')}.{time.time_ns():x}{secrets.token_hex(2)}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": component, **({"host": self.host} if self.host else {})},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "reportingComponent": component,
            "reportingInstance": self.host or self.component,
        }
        await self.client.create(EVENTS, body, namespace)
        self._remember(key, (name, namespace, 1, time.monotonic()))

    def _remember(self, key: tuple[str, str, str, str], value: tuple[str, str, int, float]) -> None:
        self._recent[key] = value
        self._recent.move_to_end(key)
        while len(self._recent) > 2048:
            self._recent.popitem(last=False)


class ScopedRecorder:
    """Records through an EventRecorder under another source component (kube's controllers each
    report as themselves: deployment-controller, node-controller, ...)."""

    def __init__(self, recorder: EventRecorder, component: str) -> None:
        self._recorder = recorder
        self.component = component

    def record(self, obj: Object, type_: str, reason: str, message: str, *, component: str = "") -> None:
        self._recorder.record(obj, type_, reason, message, component=component or self.component)
