"""The namespace and ServiceAccount controllers: their plans (pure) and their syncs."""

from __future__ import annotations

from datetime import UTC, datetime

from agents.apiserver.server import ApiServer
from agents.controllers import namespace as namespaces
from agents.controllers import serviceaccount
from agents.controllers.base import rfc3339
from agents.controllers.namespace import NamespaceController
from agents.controllers.serviceaccount import ServiceAccountController
from agents.machinery.objects import Object
from agents.machinery.resources import CONFIGMAPS, NAMESPACES, PODS, SERVICE_ACCOUNTS
from tests.support.controllerharness import running

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def namespace(*, deleting: bool = True) -> Object:
    meta = {"name": "shop", "uid": "ns-uid"}
    if deleting:
        meta["deletionTimestamp"] = "2026-06-01T11:59:00Z"
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": meta,
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Terminating" if deleting else "Active"},
    }


def item(name: str, *, deleting: bool = False) -> Object:
    meta = {"name": name, "namespace": "shop"}
    if deleting:
        meta["deletionTimestamp"] = "2026-06-01T11:59:00Z"
    return {"metadata": meta}


# --- the plans -----------------------------------------------------------------------------------


def test_a_terminating_namespace_with_content_deletes_it_and_says_what_remains() -> None:
    contents = {PODS: [item("p1"), item("p2", deleting=True)], CONFIGMAPS: [item("c1")], SERVICE_ACCOUNTS: []}
    decided = namespaces.plan(namespace(), contents, now=NOW)
    assert [(r.plural, o["metadata"]["name"]) for r, o in decided.delete] == [("pods", "p1"), ("configmaps", "c1")]
    assert decided.status is not None
    [condition] = decided.status["conditions"]
    assert condition == {
        "type": "NamespaceContentRemaining",
        "status": "True",
        "reason": "SomeResourcesRemain",
        "message": "Some resources are remaining: configmaps has 1 resource instances, pods has 2 resource instances",
        "lastTransitionTime": rfc3339(NOW),
    }
    assert decided.status["phase"] == "Terminating"
    assert decided.finalize is None and decided.requeue_after == namespaces.RECHECK


def test_an_empty_terminating_namespace_is_finalized_without_the_kubernetes_finalizer() -> None:
    decided = namespaces.plan(namespace(), {PODS: [], CONFIGMAPS: []}, now=NOW)
    assert decided.delete == [] and decided.status is None
    assert decided.finalize is not None and decided.finalize["spec"] == {"finalizers": []}


def test_an_active_namespace_without_a_default_service_account_gets_one() -> None:
    made = serviceaccount.plan(namespace(deleting=False), None).create
    assert made is not None and made["metadata"] == {"name": "default", "namespace": "shop"}
    assert serviceaccount.plan(namespace(deleting=False), {"metadata": {"name": "default"}}).create is None
    assert serviceaccount.plan(namespace(deleting=True), None).create is None


# --- the syncs -----------------------------------------------------------------------------------


def manifest() -> Object:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}


async def test_a_deleted_namespace_is_emptied_then_goes(server: ApiServer) -> None:
    async with running(server, NamespaceController) as h:
        await h.create(NAMESPACES, manifest())
        await h.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}}, "shop")
        await h.client.delete(NAMESPACES, "shop")

        async def gone() -> bool:
            return await h.get(NAMESPACES, "shop") is None

        await h.eventually(gone, what="the namespace gone")
        assert await h.get(CONFIGMAPS, "c1", "shop") is None


async def test_every_namespace_gets_a_default_service_account_back_when_it_is_deleted(server: ApiServer) -> None:
    async with running(server, ServiceAccountController) as h:
        await h.create(NAMESPACES, manifest())

        async def account() -> Object | None:
            return await h.get(SERVICE_ACCOUNTS, "default", "shop")

        first = await h.eventually(account, what="the default account")
        await h.client.delete(SERVICE_ACCOUNTS, "default", "shop")

        async def another() -> Object | None:
            found = await account()
            return found if found and found["metadata"]["uid"] != first["metadata"]["uid"] else None

        await h.eventually(another, what="the account made again")
