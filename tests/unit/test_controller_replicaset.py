"""The ReplicaSet controller's sync, run against an in-process API server (tests/support/controllerharness.py)."""

from __future__ import annotations

from typing import Any

from agents.apiserver.server import ApiServer
from agents.controllers.replicaset import ReplicaSetController
from agents.machinery.objects import Object
from agents.machinery.resources import PODS, REPLICASETS
from tests.support.controllerharness import Harness, running


def replica_set(name: str, replicas: int, **labels: str) -> Object:
    labels = labels or {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]},
            },
        },
    }


def bare_pod(name: str, **labels: str) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }


def controller_of(pod: Object) -> str:
    refs: list[dict[str, Any]] = pod["metadata"].get("ownerReferences") or []
    return next((str(r["name"]) for r in refs if r.get("controller")), "")


async def pods_of(h: Harness, app: str) -> list[Object]:
    return await h.items(PODS, labels=f"app={app}")


async def test_replicaset_creates_the_missing_pods_and_reports_them_in_status(server: ApiServer) -> None:
    async with running(server, ReplicaSetController) as h:
        await h.create(REPLICASETS, replica_set("web", 3))

        async def three() -> list[Object]:
            pods = await pods_of(h, "web")
            return pods if len(pods) == 3 else []

        pods = await h.eventually(three, what="three pods")
        assert {controller_of(p) for p in pods} == {"web"}
        assert all(p["metadata"]["generateName"] == "web-" for p in pods)
        for pod in pods:
            await h.set_pod(pod)

        async def all_ready() -> bool:
            rs = await h.get(REPLICASETS, "web")
            return rs is not None and rs["status"].get("readyReplicas") == 3

        await h.eventually(all_ready, what="readyReplicas 3")
        assert ("SuccessfulCreate", "Created 3 pod(s)") in await h.eventually(lambda: h.events("web"))


async def test_replicaset_scaled_down_deletes_the_pods_that_rank_first_for_deletion(server: ApiServer) -> None:
    async with running(server, ReplicaSetController) as h:
        await h.create(REPLICASETS, replica_set("web", 3))
        pods = await h.eventually(lambda: _exactly(h, "web", 3), what="three pods")
        ready, *not_ready = pods
        await h.set_pod(ready)
        for pod in not_ready:
            await h.set_pod(pod, ready=False)

        async def one_ready() -> bool:  # the controller has seen the ready pod
            rs = await h.get(REPLICASETS, "web")
            return rs is not None and rs["status"].get("readyReplicas") == 1

        await h.eventually(one_ready, what="readyReplicas 1")
        await h.client.patch(REPLICASETS, "web", {"spec": {"replicas": 1}}, "default")

        left = await h.eventually(lambda: _exactly(h, "web", 1), what="one pod left")
        assert [p["metadata"]["name"] for p in left] == [ready["metadata"]["name"]]  # the not-ready ones went


async def test_replicaset_adopts_a_matching_orphan_and_releases_a_pod_that_stops_matching(server: ApiServer) -> None:
    async with running(server, ReplicaSetController) as h:
        await h.create(PODS, bare_pod("stray", app="web"))
        await h.create(REPLICASETS, replica_set("web", 2))

        async def adopted() -> bool:
            stray = await h.get(PODS, "stray")
            return stray is not None and controller_of(stray) == "web"

        await h.eventually(adopted, what="the orphan adopted")
        pods = await h.eventually(lambda: _exactly(h, "web", 2), what="one pod created beside it")
        made = next(p for p in pods if p["metadata"]["name"] != "stray")
        await h.client.patch(PODS, made["metadata"]["name"], {"metadata": {"labels": {"app": "other"}}}, "default")

        async def released() -> Object | None:
            pod = await h.get(PODS, made["metadata"]["name"])
            return pod if pod is not None and not pod["metadata"].get("ownerReferences") else None

        await h.eventually(released, what="the relabelled pod released")
        await h.eventually(lambda: _exactly(h, "web", 2), what="a replacement for it")


async def _exactly(h: Harness, app: str, count: int) -> list[Object]:
    pods = [p for p in await pods_of(h, app) if not p["metadata"].get("deletionTimestamp")]
    return pods if len(pods) == count else []
