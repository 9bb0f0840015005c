"""Serving a stored kind at a second API version: objects converted on their way in and out.

kube-apiserver keeps each resource at one storage version and converts requests made at its other
versions. Here the catalog marks such a version with ``storage_version`` (``resources.py``), and the
request handlers put a ``VersionView`` in front of the stored resource's ``ResourceStore`` for it:
bodies are converted to the storage version before the stored resource's strategy defaults and
validates them (or the served version's own strategy, when the conversion names one: a custom kind's
versions each have their schema), and every object read, written or deleted is converted back. A mutation (update,
patch, status) sees the served version, so patches apply to the served schema as kube's do. Watches
go through ``VersionWatchStream``, which converts the cache's events as it encodes them. The
conversions themselves live with their kinds (``kinds/autoscaling.py``); ``CONVERSIONS`` names them.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agents.apiserver.kinds import Strategy, autoscaling
from agents.apiserver.registry import DeleteOptions, ListOptions, ListResult, Manage, ResourceStore, Stored
from agents.apiserver.resources import Resource
from agents.apiserver.status import bad_request
from agents.apiserver.watchstream import WatchStream
from agents.machinery import codec
from agents.machinery.objects import Object

Converter = Callable[[Object], Object]


@dataclass(frozen=True)
class Conversion:
    to_served: Converter  # storage version -> served version
    to_storage: Converter  # served version -> storage version
    strategy: Strategy | None = None  # the served version's own (a custom kind's: its schema); else the stored's


# (group, kind, served version) -> how its objects convert to and from the storage version
CONVERSIONS: dict[tuple[str, str, str], Conversion] = {
    (autoscaling.GROUP, autoscaling.KIND, "v1"): Conversion(autoscaling.to_v1, autoscaling.to_v2),
}


def conversion_for(resource: Resource) -> Conversion | None:
    """How ``resource`` converts to its storage version; None when it is the stored version itself."""
    if resource.stored:
        return None
    return CONVERSIONS[(resource.group, resource.kind, resource.version)]


def view(store: ResourceStore, resource: Resource) -> ResourceStore:
    """The store to serve ``resource`` with: ``store`` (that of the stored version) itself, or a view."""
    found = conversion_for(resource)
    if found is None:
        return store
    return VersionView(store if found.strategy is None else store.with_strategy(found.strategy), resource, found)


def watch_stream_type(resource: Resource) -> type[WatchStream]:
    return WatchStream if resource.stored else VersionWatchStream


class VersionView(ResourceStore):
    """The verbs of a stored resource, at another version of it.

    It keeps nothing of its own (hence no ``ResourceStore.__init__``): every verb goes to the stored
    resource's store, with bodies converted in and objects converted out. The scale subresource reads
    and writes the replicas where the stored resource's store says.
    """

    def __init__(self, stored: ResourceStore, served: Resource, conversion: Conversion) -> None:
        self.resource = served
        self.strategy = stored.strategy
        self.stored = stored
        self.conversion = conversion

    def _out(self, obj: Object) -> Object:
        return self.conversion.to_served(obj)

    def _in(self, obj: Object) -> Object:
        try:
            return self.conversion.to_storage(obj)
        except autoscaling.ConversionError as exc:
            raise bad_request(str(exc)) from exc

    def _item(self, item: Stored) -> Stored:
        return Stored(item.key, codec.encode_stored(self._out(item.obj())), item.revision)

    async def get(self, namespace: str, name: str) -> Stored:
        return self._item(await self.stored.get(namespace, name))

    async def list(self, namespace: str, opts: ListOptions) -> ListResult:
        result = await self.stored.list(namespace, opts)
        items = [self._item(i) for i in result.items]
        return ListResult(items, result.revision, result.continue_token, result.remaining)

    def _manage(self, manage: Manage | None) -> Manage | None:
        """``manage`` run on the served version of the objects (its fields are the served schema's)."""
        if manage is None:
            return None

        def served(old: Object | None, new: Object) -> None:
            seen = self._out(new)
            manage(self._out(old) if old is not None else None, seen)
            meta, entries = new.setdefault("metadata", {}), (seen.get("metadata") or {}).get("managedFields")
            if entries:
                meta["managedFields"] = entries
            else:
                meta.pop("managedFields", None)

        return served

    async def create(
        self, namespace: str, body: Object, *, dry_run: bool = False, manage: Manage | None = None
    ) -> Object:
        stored = await self.stored.create(namespace, self._in(body), dry_run=dry_run, manage=self._manage(manage))
        return self._out(stored)

    async def update(
        self,
        namespace: str,
        name: str,
        mutate: Callable[[Object], Object],
        *,
        dry_run: bool = False,
        subresource: str = "",
        create_body: Object | None = None,
        pinned: bool = True,
        manage: Manage | None = None,
    ) -> tuple[Object, bool]:
        def converted(current: Object) -> Object:
            return self._in(mutate(self._out(current)))

        obj, created = await self.stored.update(
            namespace,
            name,
            converted,
            dry_run=dry_run,
            subresource=subresource,
            create_body=self._in(create_body) if create_body is not None else None,
            pinned=pinned,
            manage=self._manage(manage),
        )
        return self._out(obj), created

    async def delete(self, namespace: str, name: str, options: DeleteOptions) -> Object:
        return self._out(await self.stored.delete(namespace, name, options))

    def scale_of(self, obj: Object) -> Object:
        return self.stored.scale_of(obj)

    def set_replicas(self, obj: Object, replicas: int) -> None:
        self.stored.set_replicas(obj, replicas)

    async def delete_collection(
        self, namespace: str, opts: ListOptions, options: DeleteOptions
    ) -> builtins.list[Object]:
        return [self._out(o) for o in await self.stored.delete_collection(namespace, opts, options)]


class VersionWatchStream(WatchStream):
    """A watch at a served version that is not stored: events of the watch cache (stored objects)
    converted as they are encoded; the initial objects come converted from the view already."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        found = conversion_for(self.resource)
        if found is None:
            raise ValueError(f"{self.resource.api_version} {self.resource.kind} is stored: no conversion to watch")
        self.conversion = found

    def encode(self, kind: str, raw: bytes | None, obj: Object | None) -> bytes:
        value: Object = obj if obj is not None else codec.loads(raw or b"{}")
        if value.get("apiVersion") != self.resource.api_version:
            value = self.conversion.to_served(value)
        return super().encode(kind, None, value)
