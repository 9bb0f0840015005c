"""The garbage collector: its plans for dependents and owners (pure), and its sync."""

from __future__ import annotations

from typing import Any

from agents.apiserver.server import ApiServer
from agents.controllers.garbagecollector import (
    FOREGROUND,
    ORPHAN,
    DependentPlan,
    GarbageCollector,
    OwnerPlan,
    plan_dependent,
    plan_owner,
)
from agents.machinery.objects import Object
from agents.machinery.resources import CONFIGMAPS
from tests.support.controllerharness import Harness, running


def ref(uid: str, *, block: bool = False) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "name": f"owner-{uid}", "uid": uid, "blockOwnerDeletion": block}


def obj(name: str, *refs: dict[str, Any], deleting: bool = False, finalizers: list[str] | None = None) -> Object:
    meta: dict[str, Any] = {"name": name, "namespace": "default", "uid": f"uid-{name}", "ownerReferences": list(refs)}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if finalizers:
        meta["finalizers"] = finalizers
    return {"metadata": meta}


# --- the plans -----------------------------------------------------------------------------------


def test_a_dependent_whose_owners_are_all_gone_is_deleted_in_the_background() -> None:
    assert plan_dependent(obj("d", ref("a"), ref("b")), alive=[], cached={}) == DependentPlan(delete="Background")


def test_a_dependent_keeps_the_references_of_the_owners_that_remain() -> None:
    assert plan_dependent(obj("d", ref("a"), ref("b")), alive=[ref("b")], cached={}) == DependentPlan(keep=[ref("b")])


def test_a_dependent_of_an_owner_deleted_in_the_foreground_is_deleted_in_the_foreground() -> None:
    going = obj("owner-a", deleting=True, finalizers=[FOREGROUND])
    dependent = obj("d", ref("a"))
    assert plan_dependent(dependent, alive=[ref("a")], cached={"a": going}) == DependentPlan(delete="Foreground")
    assert plan_dependent(dependent, alive=[ref("a")], cached={"a": obj("owner-a")}) == DependentPlan()


def test_an_owner_deleted_with_orphan_releases_every_dependent_then_loses_the_finalizer() -> None:
    owner = obj("owner-a", deleting=True, finalizers=[ORPHAN])
    owner["metadata"]["uid"] = "a"
    dependents = [(CONFIGMAPS, obj("d1", ref("a"))), (CONFIGMAPS, obj("d2", ref("a")))]
    assert plan_owner(owner, dependents) == OwnerPlan(release=dependents, drop_finalizer=ORPHAN)


def test_an_owner_deleted_in_the_foreground_waits_for_its_blocking_dependents() -> None:
    owner = obj("owner-a", deleting=True, finalizers=[FOREGROUND])
    owner["metadata"]["uid"] = "a"
    blocking = (CONFIGMAPS, obj("d1", ref("a", block=True)))
    going = (CONFIGMAPS, obj("d2", ref("a", block=True), deleting=True))
    loose = (CONFIGMAPS, obj("d3", ref("a")))
    assert plan_owner(owner, [blocking, going, loose]) == OwnerPlan(delete=[blocking])
    assert plan_owner(owner, [loose]) == OwnerPlan(drop_finalizer=FOREGROUND)
    assert plan_owner(obj("alive"), [blocking]) == OwnerPlan()


# --- the sync ------------------------------------------------------------------------------------


def configmap(name: str, owner: Object | None = None, *, block: bool = False) -> Object:
    meta: dict[str, Any] = {"name": name}
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "blockOwnerDeletion": block,
            }
        ]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}


async def gone(h: Harness, name: str) -> bool:
    return await h.get(CONFIGMAPS, name) is None


async def test_garbage_collector_deletes_a_dependent_once_its_owner_is_gone(server: ApiServer) -> None:
    async with running(server, GarbageCollector) as h:
        owner = await h.create(CONFIGMAPS, configmap("owner"))
        await h.create(CONFIGMAPS, configmap("dependent", owner))
        await h.create(CONFIGMAPS, configmap("unrelated"))
        await h.client.delete(CONFIGMAPS, "owner", "default")
        await h.eventually(lambda: gone(h, "dependent"), what="the dependent collected")
        assert await h.get(CONFIGMAPS, "unrelated") is not None


async def test_orphan_deletion_keeps_the_dependent_without_its_owner_reference(server: ApiServer) -> None:
    async with running(server, GarbageCollector) as h:
        owner = await h.create(CONFIGMAPS, configmap("owner"))
        await h.create(CONFIGMAPS, configmap("dependent", owner))
        await h.client.delete(CONFIGMAPS, "owner", "default", propagation="Orphan")
        await h.eventually(lambda: gone(h, "owner"), what="the owner gone")
        dependent = await h.get(CONFIGMAPS, "dependent")
        assert dependent is not None and not dependent["metadata"].get("ownerReferences")


async def test_foreground_deletion_removes_the_blocking_dependents_before_the_owner(server: ApiServer) -> None:
    async with running(server, GarbageCollector) as h, h.history(CONFIGMAPS) as changes:
        owner = await h.create(CONFIGMAPS, configmap("owner"))
        await h.create(CONFIGMAPS, configmap("dependent", owner, block=True))
        await h.client.delete(CONFIGMAPS, "owner", "default", propagation="Foreground")

        async def owner_deleted() -> list[str]:
            deleted = [o["metadata"]["name"] for change, o in changes if change == "DELETED"]
            return deleted if "owner" in deleted else []

        assert await h.eventually(owner_deleted, what="the owner gone") == ["dependent", "owner"]
