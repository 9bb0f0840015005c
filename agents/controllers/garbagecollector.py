"""Garbage collector: deletes objects whose owners are gone, as ownerReferences ask.

- Background (the default): once every owner of an object is gone, the object is deleted.
- Foreground: an owner being deleted with the ``foregroundDeletion`` finalizer stays until the
  dependents that block its deletion are gone; they are deleted first.
- Orphan: an owner with the ``orphan`` finalizer has its reference removed from every dependent,
  then the finalizer is removed and the owner goes; the dependents stay.

The collector watches every resource kubelab serves and indexes dependents by their owners' uids.
Its work queue holds two kinds of keys: a dependent to check (``plan_dependent``) and an owner being
deleted to finish (``plan_owner``); both plans are pure, and ``sync`` gathers what they need first
(whether each owner still exists, asking the API server when the cache does not know it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from agents.controllers.base import Context, Controller, delete_object, ignore_not_found
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


@dataclass(frozen=True)
class DependentPlan:
    keep: list[dict[str, Any]] | None = None  # the owner references to keep (the other owners are gone)
    delete: str = ""  # delete the dependent, with this propagation policy


def plan_dependent(dependent: Object, *, alive: list[dict[str, Any]], cached: Mapping[str, Object]) -> DependentPlan:
    """What to do with ``dependent`` (not being deleted itself), given the references in ``alive``
    whose owners exist and the owners the cache holds, by uid: delete it once every owner is gone,
    drop the references of the gone owners, or delete it in the foreground when an owner is being
    deleted in the foreground."""
    refs = dependent["metadata"].get("ownerReferences") or []
    if alive == refs:
        for ref in refs:
            owner = cached.get(ref.get("uid", ""))
            if (
                owner is not None
                and owner["metadata"].get("deletionTimestamp")
                and FOREGROUND in (owner["metadata"].get("finalizers") or [])
            ):
                return DependentPlan(delete="Foreground")
        return DependentPlan()
    if alive:
        return DependentPlan(keep=alive)
    return DependentPlan(delete="Background")


@dataclass
class OwnerPlan:
    release: list[tuple[ResourceRef, Object]] = field(default_factory=list)  # they lose their reference to it
    delete: list[tuple[ResourceRef, Object]] = field(default_factory=list)  # blocking dependents, in the foreground
    drop_finalizer: str = ""  # the owner may go: this finalizer comes off


def plan_owner(owner: Object, dependents: list[tuple[ResourceRef, Object]]) -> OwnerPlan:
    """What deleting ``owner`` still needs, given its dependents: with the orphan finalizer, every
    dependent loses its reference, then the finalizer goes; with foregroundDeletion, the dependents
    that block its deletion are deleted, and the finalizer goes once there are none."""
    meta = owner["metadata"]
    finalizers = meta.get("finalizers") or []
    if not meta.get("deletionTimestamp"):
        return OwnerPlan()
    if ORPHAN in finalizers:
        return OwnerPlan(release=list(dependents), drop_finalizer=ORPHAN)
    if FOREGROUND in finalizers:
        blocking = [
            (r, d)
            for r, d in dependents
            if any(
                ref.get("uid") == meta["uid"] and ref.get("blockOwnerDeletion")
                for ref in d["metadata"].get("ownerReferences") or []
            )
        ]
        return OwnerPlan(
            delete=[(r, d) for r, d in blocking if not d["metadata"].get("deletionTimestamp")],
            drop_finalizer="" if blocking else FOREGROUND,
        )
    return OwnerPlan()


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
            return  # its deletion is under way
        namespace = meta.get("namespace", "")
        refs = meta.get("ownerReferences") or []
        alive = [ref for ref in refs if await self._owner_exists(ref, namespace)]
        cached = {ref.get("uid", ""): found[1] for ref in refs if (found := self._find(ref, namespace)) is not None}
        decided = plan_dependent(obj, alive=alive, cached=cached)
        if decided.keep is not None:
            await ignore_not_found(
                partial(
                    self.client.patch,
                    resource,
                    meta["name"],
                    {"metadata": {"ownerReferences": decided.keep, "resourceVersion": meta["resourceVersion"]}},
                    namespace,
                )
            )
        if decided.delete:
            if decided.delete == "Background":
                log.info("deleting %s %s/%s: its owners are gone", resource.kind, namespace, meta["name"])
            await ignore_not_found(
                partial(
                    self.client.delete, resource, meta["name"], namespace, propagation=decided.delete, uid=meta["uid"]
                )
            )

    async def _finish_owner(self, resource: ResourceRef, owner: Object) -> None:
        meta = owner["metadata"]
        dependents = [(r, d) for r, inf in self.informers.values() for d in inf.by_index("owners", meta["uid"])]
        decided = plan_owner(owner, dependents)
        for dep_resource, dependent in decided.release:
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
        for dep_resource, dependent in decided.delete:
            await delete_object(self.client, dep_resource, dependent, propagation="Foreground")
        if decided.drop_finalizer:
            await self._drop_finalizer(resource, owner, decided.drop_finalizer)

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
