"""What every controller shares: the informers of the controller-manager, the client, the recorder.

A controller registers informer handlers that only enqueue keys, and implements ``sync(key)``,
which reads the current state from the informers, asks its module's pure ``plan(...)`` what to do
(a ``Plan``: what to create, delete or patch, the status to write, the events to record, when to
look again) and carries that out through the client. ``Context.informer`` hands out one informer
per resource for the whole process, so ten controllers watching pods cost one watch. The small
executors every controller uses (``write_status``, ``delete_object``, ``gather_limited``) live here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from agents.machinery.client import ApiError, Client
from agents.machinery.events import EventRecorder
from agents.machinery.informer import Informer, key_of
from agents.machinery.objects import Object, deep_copy
from agents.machinery.resources import ResourceRef
from agents.machinery.workqueue import WorkQueue, run_workers

log = logging.getLogger(__name__)


def rfc3339(when: datetime) -> str:
    """A time as the API writes it (UTC, whole seconds): what a plan stamps on conditions and taints."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Event:
    """An Event a plan asks for: about the object being synced unless ``about`` names another, and
    reported as the controller itself unless ``component`` names another source."""

    type: str
    reason: str
    message: str
    about: Object | None = None
    component: str = ""


@dataclass(frozen=True)
class Create:
    """An object a plan asks to create; ``event`` is recorded once it exists."""

    body: Object
    event: Event | None = None


@dataclass(frozen=True)
class Delete:
    """An object a plan asks to delete; ``event`` is recorded once the deletion is accepted."""

    target: Object
    event: Event | None = None


def owner_uid(obj: Object) -> str:
    """The uid of the object's controlling owner, or ""."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid", ""))
    return ""


def index_by_owner(obj: Object) -> Iterable[str]:
    uid = owner_uid(obj)
    return [uid] if uid else []


def index_by_namespace(obj: Object) -> Iterable[str]:
    return [(obj.get("metadata") or {}).get("namespace", "")]


def enabled(selected: Iterable[str], known: Iterable[str]) -> list[str]:
    """kube's ``--controllers`` rule: ``*`` for every known controller but those named ``-NAME``, or the names given."""
    names, known = list(selected), list(known)
    if "*" in names:
        return [n for n in known if f"-{n}" not in names]
    return [n for n in names if n in known]


def unknown(selected: Iterable[str], known: Iterable[str]) -> list[str]:
    """The names in ``--controllers`` that name no controller (``-NAME`` counts as NAME)."""
    known = set(known)
    return [n.lstrip("-") for n in selected if n != "*" and n.lstrip("-") not in known]


@dataclass
class Context:
    client: Client
    recorder: EventRecorder
    settings: Any
    informers: dict[str, Informer] = field(default_factory=dict)

    def informer(self, resource: ResourceRef) -> Informer:
        found = self.informers.get(resource.plural + "." + resource.group)
        if found is None:
            found = Informer(self.client, resource)
            found.add_index("owner", index_by_owner)
            if resource.namespaced:
                found.add_index("namespace", index_by_namespace)
            self.informers[resource.plural + "." + resource.group] = found
        return found


class Controller:
    """A level-triggered control loop over one work queue."""

    name = "controller"
    source = ""  # the component its events name (kube's), default NAME-controller
    workers = 2

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.recorder = ctx.recorder.scoped(self.source or f"{self.name}-controller")
        self.queue = WorkQueue(self.name)

    def enqueue(self, obj: Object) -> None:
        self.queue.add(key_of(obj))

    def enqueue_owner(self, obj: Object, kind: str, informer: Informer) -> None:
        """Enqueue the controlling owner of ``obj`` if it is of ``kind`` and known."""
        meta = obj.get("metadata") or {}
        for ref in meta.get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == kind:
                owner_key = f"{meta.get('namespace')}/{ref.get('name')}" if meta.get("namespace") else ref["name"]
                owner = informer.get(owner_key)
                if owner is not None and owner["metadata"].get("uid") == ref.get("uid"):
                    self.queue.add(owner_key)

    def record(self, subject: Object, *events: Event | None) -> None:
        """Record the events a plan asked for (``subject``: the object the plan was made for)."""
        for event in events:
            if event is not None:
                self.recorder.record(
                    event.about or subject, event.type, event.reason, event.message, component=event.component
                )

    @staticmethod
    def now() -> datetime:
        """The time a plan is made at (plans never read the clock themselves)."""
        return datetime.now(UTC)

    async def resync(self, informer: Informer, period: float) -> None:
        """Once ``informer`` has synced, every object of it queued every ``period`` seconds (for loops
        that also follow something outside the cluster, which sends no events)."""
        await informer.synced.wait()
        while True:
            for obj in informer.items():
                self.enqueue(obj)
            await asyncio.sleep(period)

    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        await run_workers(self.queue, self.sync, workers=self.workers)


async def ignore_not_found(call: Callable[[], Any]) -> Any:
    """Run an API call; a 404 means the work is already done."""
    try:
        return await call()
    except ApiError as exc:
        if exc.not_found:
            return None
        raise


async def delete_object(client: Client, resource: ResourceRef, obj: Object, **options: Any) -> None:
    """Delete ``obj`` (``options`` as ``Client.delete`` takes them); one already gone is no error."""
    meta = obj["metadata"]
    await ignore_not_found(partial(client.delete, resource, meta["name"], meta.get("namespace", ""), **options))


async def write_status(
    client: Client, resource: ResourceRef, observed: Object, status: dict[str, Any], *, latest: Object | None = None
) -> Object | None:
    """Write ``status`` unless ``observed`` already has it, onto a copy of ``latest`` (the newest cached
    copy, when the caller has one) or of ``observed``; an object gone meanwhile is no error."""
    if status == (observed.get("status") or {}):
        return None
    body = deep_copy(latest or observed)
    body["status"] = status
    result: Object | None = await ignore_not_found(partial(client.update_status, resource, body))
    return result


async def gather_limited(calls: Iterable[Callable[[], Any]], limit: int = 16) -> list[Any]:
    """Run API calls with at most ``limit`` in flight; exceptions are returned, not raised."""
    semaphore = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Any]) -> Any:
        async with semaphore:
            return await call()

    return list(await asyncio.gather(*(one(c) for c in calls), return_exceptions=True))
