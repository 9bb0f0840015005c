"""Informers: a local, up-to-date copy of one resource, kept by listing then watching.

Handlers are told what changed (added, updated, deleted) and should only enqueue keys: the work
happens later in a controller's ``sync(key)``, which reads the cache again (level-triggered). The
cache's objects are shared: never mutate one, copy it first. A watch that breaks resumes from the
last resourceVersion seen; one that is too old (410) relists and reports the difference.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agents.machinery.client import ApiError, ApiUnavailableError, Client
from agents.machinery.objects import Object
from agents.machinery.resources import ResourceRef

log = logging.getLogger(__name__)

# Between lists while the API server does not answer at all (a lab's first boot: the agents start
# beside it), at most: a refused connection costs next to nothing, and a longer wait is time every
# informer adds after the API server serves. An API server that answers with an error is asked again
# after at most 10 s.
UNAVAILABLE_DELAY_MAX = 2.0

AddHandler = Callable[[Object], None]
UpdateHandler = Callable[[Object, Object], None]
DeleteHandler = Callable[[Object], None]
IndexFunc = Callable[[Object], Iterable[str]]


def key_of(obj: Object) -> str:
    """``namespace/name`` for namespaced objects, ``name`` for cluster-scoped ones."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name', '')}" if namespace else str(meta.get("name", ""))


def split_key(key: str) -> tuple[str, str]:
    namespace, _, name = key.rpartition("/")
    return namespace, name


@dataclass
class _Handlers:
    on_add: AddHandler | None
    on_update: UpdateHandler | None
    on_delete: DeleteHandler | None


class Informer:
    def __init__(
        self,
        client: Client,
        resource: ResourceRef,
        *,
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
    ) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.store: dict[str, Object] = {}
        self.synced = asyncio.Event()
        self.resource_version = ""
        self._handlers: list[_Handlers] = []
        self._index_funcs: dict[str, IndexFunc] = {}
        self._indices: dict[str, dict[str, set[str]]] = {}
        self._indexed: dict[str, dict[str, list[str]]] = {}

    # --- configuration ---------------------------------------------------------------------------

    def on(
        self, *, add: AddHandler | None = None, update: UpdateHandler | None = None, delete: DeleteHandler | None = None
    ) -> None:
        self._handlers.append(_Handlers(add, update, delete))

    def on_any(self, handler: Callable[[Object], None]) -> None:
        """The same handler for every change (it receives the newest state)."""
        self.on(add=handler, update=lambda _old, new: handler(new), delete=handler)

    def add_index(self, name: str, func: IndexFunc) -> None:
        self._index_funcs[name] = func
        self._indices[name] = {}
        self._indexed[name] = {}
        for key, obj in self.store.items():
            self._index(name, key, obj)

    # --- reads -----------------------------------------------------------------------------------

    def get(self, key: str) -> Object | None:
        return self.store.get(key)

    def items(self) -> list[Object]:
        return list(self.store.values())

    def by_index(self, name: str, value: str) -> list[Object]:
        return [self.store[k] for k in self._indices[name].get(value, ()) if k in self.store]

    # --- bookkeeping -----------------------------------------------------------------------------

    def _index(self, name: str, key: str, obj: Object | None) -> None:
        index = self._indices[name]
        for value in self._indexed[name].pop(key, []):
            members = index.get(value)
            if members is not None:
                members.discard(key)
                if not members:
                    del index[value]
        if obj is not None:
            values = list(self._index_funcs[name](obj))
            self._indexed[name][key] = values
            for value in values:
                index.setdefault(value, set()).add(key)

    def _put(self, obj: Object) -> None:
        key = key_of(obj)
        old = self.store.get(key)
        self.store[key] = obj
        for name in self._index_funcs:
            self._index(name, key, obj)
        for handlers in self._handlers:
            try:
                if old is None:
                    if handlers.on_add:
                        handlers.on_add(obj)
                elif handlers.on_update:
                    handlers.on_update(old, obj)
            except Exception:
                log.exception("%s informer handler failed", self.resource.plural)

    def _remove(self, obj: Object) -> None:
        key = key_of(obj)
        last = self.store.pop(key, None) or obj
        for name in self._index_funcs:
            self._index(name, key, None)
        for handlers in self._handlers:
            try:
                if handlers.on_delete:
                    handlers.on_delete(last)
            except Exception:
                log.exception("%s informer handler failed", self.resource.plural)

    def _replace(self, items: list[Object]) -> None:
        fresh = {key_of(obj): obj for obj in items}
        for key in [k for k in self.store if k not in fresh]:
            self._remove(self.store[key])
        for key, obj in fresh.items():
            old = self.store.get(key)
            if old is None or old.get("metadata", {}).get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self._put(obj)

    # --- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        delay = 0.2
        while True:
            try:
                items, self.resource_version = await self.client.list(
                    self.resource,
                    self.namespace,
                    label_selector=self.label_selector,
                    field_selector=self.field_selector,
                )
                self._replace(items)
                self.synced.set()
                delay = 0.2
                await self._watch()
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if not exc.gone:
                    log.warning("%s informer: %s", self.resource.plural, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            except ApiUnavailableError as exc:
                log.info("%s informer: %s; retrying in %.1fs", self.resource.plural, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, UNAVAILABLE_DELAY_MAX)

    async def _watch(self) -> None:
        """Follow changes until the watch must be relisted (410) or the server is unreachable."""
        failures = 0
        while True:
            try:
                async for kind, obj in self.client.watch(
                    self.resource,
                    self.namespace,
                    resource_version=self.resource_version,
                    label_selector=self.label_selector,
                    field_selector=self.field_selector,
                ):
                    failures = 0
                    self.resource_version = (obj.get("metadata") or {}).get("resourceVersion") or self.resource_version
                    if kind == "BOOKMARK":
                        continue
                    obj.setdefault("apiVersion", self.resource.api_version)
                    obj.setdefault("kind", self.resource.kind)
                    if kind == "DELETED":
                        self._remove(obj)
                    else:
                        self._put(obj)
            except ApiUnavailableError:
                failures += 1
                if failures > 3:
                    raise
                await asyncio.sleep(0.2 * failures)


async def wait_synced(*informers: Informer, patience: float = 60.0) -> None:
    await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in informers)), patience)
