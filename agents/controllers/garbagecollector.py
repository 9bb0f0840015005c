"""Garbage collector: deletes objects whose owners are gone, as ownerReferences ask.

- Background (the default): once every owner of an object is gone, the object is deleted.
- Foreground: an owner being deleted with the ``foregroundDeletion`` finalizer stays until the
  dependents that block its deletion are gone; they are deleted first.
- Orphan: an owner with the ``orphan`` finalizer has its reference removed from every dependent,
  then the finalizer is removed and the owner goes; the dependents stay.

The collector watches every resource kubelab serves and indexes dependents by their owners' uids.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from agents.controllers.base import Context, Controller, ignore_not_found
from agents.machinery.client import ApiError
from agents.machinery.informer import Informer, key_of
from agents.machinery.objects import Object
from agents.machinery.resources import ALL, EVENTS, LEASES, ResourceRef, by_kind

log = logging.getLogger(__name__)
WATCHED = [r for r in ALL if r not in (EVENTS, LEASES)]
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


def _owner_uids(obj: Object) -> list[str]:
    return [r.get("uid", "") for r in (obj.get("metadata") or {}).get("ownerReferences") or []]


class GarbageCollector(Controller):
    name = "garbagecollector"
    source = "garbage-collector-controller"
    workers = 4

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.informers: dict[str, tuple[ResourceRef, Informer]] = {}
        for resource in WATCHED:
            informer = ctx.informer(resource)
            informer.add_index("owners", _owner_uids)
            tag = f"{resource.plural}.{resource.group}"
            self.informers[tag] = (resource, informer)
            informer.on(
                add=partial(self._changed, tag), update=partial(self._updated, tag), delete=partial(self._deleted, tag)
            )

    # --- events --------------------------------------------------------------------------------

    def _changed(self, tag: str, obj: Object) -> None:
        meta = obj.get("metadata") or {}
        if meta.get("ownerReferences"):
            self.queue.add(f"dependent|{tag}|{key_of(obj)}")
        if meta.get("deletionTimestamp") and {FOREGROUND, ORPHAN} & set(meta.get("finalizers") or []):
            self.queue.add(f"owner|{tag}|{key_of(obj)}")

    def _updated(self, tag: str, old: Object, new: Object) -> None:
        self._changed(tag, new)

    def _deleted(self, tag: str, obj: Object) -> None:
        uid = (obj.get("metadata") or {}).get("uid", "")
        for dependent_tag, (_, informer) in self.informers.items():
            for dependent in informer.by_index("owners", uid):
                self.queue.add(f"dependent|{dependent_tag}|{key_of(dependent)}")
        # a dependent going away may unblock a foreground deletion
        for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
            owner = self._find(ref, (obj.get("metadata") or {}).get("namespace", ""))
            if owner is not None:
                resource, found = owner
                self.queue.add(f"owner|{resource.plural}.{resource.group}|{key_of(found)}")

    # --- lookups -------------------------------------------------------------------------------

    def _find(self, ref: dict[str, Any], namespace: str) -> tuple[ResourceRef, Object] | None:
        resource = by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if resource is None:
            return None
        _, informer = self.informers[f"{resource.plural}.{resource.group}"]
        key = f"{namespace}/{ref.get('name')}" if resource.namespaced else str(ref.get("name"))
        found = informer.get(key)
        if found is None or found["metadata"].get("uid") != ref.get("uid"):
            return None
        return resource, found

    async def _owner_exists(self, ref: dict[str, Any], namespace: str) -> bool:
        resource = by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if resource is None:
            return True  # an owner of a kind we do not know: never collect on its account
        if self._find(ref, namespace) is not None:
            return True
        try:  # the informer may lag: ask the API server before deleting anything
            owner = await self.client.get(resource, ref.get("name", ""), namespace if resource.namespaced else "")
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        return bool(owner["metadata"].get("uid") == ref.get("uid"))

    # --- work ----------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        role, tag, object_key = key.split("|", 2)
        resource, informer = self.informers[tag]
        obj = informer.get(object_key)
        if obj is None:
            return
        if role == "dependent":
            await self._collect(resource, obj)
        else:
            await self._finish_owner(resource, obj)

    async def _collect(self, resource: ResourceRef, obj: Object) -> None:
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return
        namespace = meta.get("namespace", "")
        refs = meta.get("ownerReferences") or []
        alive = [ref for ref in refs if await self._owner_exists(ref, namespace)]
        if alive == refs:
            # owners deleting in the foreground take their blocking dependents with them
            for ref in refs:
                owner = self._find(ref, namespace)
                if (
                    owner is not None
                    and owner[1]["metadata"].get("deletionTimestamp")
                    and FOREGROUND in (owner[1]["metadata"].get("finalizers") or [])
                ):
                    await ignore_not_found(
                        partial(
                            self.client.delete,
                            resource,
                            meta["name"],
                            namespace,
                            propagation="Foreground",
                            uid=meta["uid"],
                        )
                    )
                    return
            return
        if alive:
            await ignore_not_found(
                partial(
                    self.client.patch,
                    resource,
                    meta["name"],
                    {"metadata": {"ownerReferences": alive, "resourceVersion": meta["resourceVersion"]}},
                    namespace,
                )
            )
            return
        log.info("deleting %s %s/%s: its owners are gone", resource.kind, namespace, meta["name"])
        await ignore_not_found(
            partial(self.client.delete, resource, meta["name"], namespace, propagation="Background", uid=meta["uid"])
        )

    async def _finish_owner(self, resource: ResourceRef, owner: Object) -> None:
        meta = owner["metadata"]
        finalizers = meta.get("finalizers") or []
        if not meta.get("deletionTimestamp"):
            return
        dependents = [(r, d) for r, inf in self.informers.values() for d in inf.by_index("owners", meta["uid"])]
        if ORPHAN in finalizers:
            for dep_resource, dependent in dependents:
                refs = [r for r in dependent["metadata"].get("ownerReferences") or [] if r.get("uid") != meta["uid"]]
                await ignore_not_found(
                    partial(
                        self.client.patch,
                        dep_resource,
                        dependent["metadata"]["name"],
                        {"metadata": {"ownerReferences": refs or None}},
                        dependent["metadata"].get("namespace", ""),
                    )
                )
            await self._drop_finalizer(resource, owner, ORPHAN)
            return
        if FOREGROUND in finalizers:
            blocking = [
                (r, d)
                for r, d in dependents
                if any(
                    ref.get("uid") == meta["uid"] and ref.get("blockOwnerDeletion")
                    for ref in d["metadata"].get("ownerReferences") or []
                )
            ]
            for dep_resource, dependent in blocking:
                if not dependent["metadata"].get("deletionTimestamp"):
                    await ignore_not_found(
                        partial(
                            self.client.delete,
                            dep_resource,
                            dependent["metadata"]["name"],
                            dependent["metadata"].get("namespace", ""),
                            propagation="Foreground",
                        )
                    )
            if not blocking:
                await self._drop_finalizer(resource, owner, FOREGROUND)

    async def _drop_finalizer(self, resource: ResourceRef, owner: Object, finalizer: str) -> None:
        meta = owner["metadata"]
        remaining = [f for f in meta.get("finalizers") or [] if f != finalizer]
        await ignore_not_found(
            partial(
                self.client.patch,
                resource,
                meta["name"],
                {"metadata": {"finalizers": remaining or None, "resourceVersion": meta["resourceVersion"]}},
                meta.get("namespace", ""),
            )
        )

    async def run(self) -> None:
        for tag, (_, informer) in self.informers.items():
            await informer.synced.wait()
            for obj in informer.items():  # objects orphaned while the collector was not running
                self._changed(tag, obj)
        await super().run()
