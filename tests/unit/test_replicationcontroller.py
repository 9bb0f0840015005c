"""ReplicationControllers (core/v1): served with kube's defaults, validation, scale and table, and run
by the ReplicaSet controller's loop through its adapter (agents/controllers/replicationcontroller.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.apiserver.server import ApiServer
from agents.apiserver.tables import printer_for, table
from agents.controllers.base import rfc3339
from agents.controllers.replicaset import plan
from agents.controllers.replicationcontroller import ReplicationControllerController, label_map_selector
from agents.machinery.client import ApiError
from agents.machinery.objects import Object
from agents.machinery.resources import PODS, REPLICATION_CONTROLLERS
from tests.support.controllerharness import Harness, running

RCS = REPLICATION_CONTROLLERS
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def rc(name: str, replicas: int | None = None, *, selector: dict[str, str] | None = None, **labels: str) -> Object:
    labels = labels or {"app": name}
    spec: dict[str, Any] = {
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": name}, "spec": spec}


def bare_pod(name: str, **labels: str) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }


def controller_of(pod: Object) -> dict[str, Any]:
    refs: list[dict[str, Any]] = pod["metadata"].get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), {})


async def rejected(h: Harness, body: Object) -> str:
    with pytest.raises(ApiError) as caught:
        await h.create(RCS, body)
    assert caught.value.code == 422 and caught.value.reason == "Invalid"
    return str(caught.value.status["message"])


# --- the planner, through the adapter ------------------------------------------------------------


def stored(replicas: int, selector: dict[str, str]) -> Object:
    body = rc("web", replicas, selector=selector)
    body["metadata"].update(namespace="default", uid="rc-uid", generation=2)
    return body


def running_pod(name: str, node: str = "n1") -> Object:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": {"app": "web"}},
        "spec": {"nodeName": node},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(NOW - timedelta(1))}],
        },
    }


def test_the_map_selector_selects_pods_carrying_every_pair() -> None:
    selector = label_map_selector({"app": "web", "tier": "front"})
    assert selector.matches({"app": "web", "tier": "front", "extra": "x"})
    assert not selector.matches({"app": "web"})
    assert selector.render() == "app=web,tier=front"


def test_the_replicaset_plan_scales_a_replication_controller_up_and_down() -> None:
    up = plan(stored(3, {"app": "web"}), [running_pod("a")], expectations_met=True, now=NOW)
    assert up.create == 2 and up.delete == []
    assert up.status["replicas"] == 1 and up.status["readyReplicas"] == 1 and up.status["observedGeneration"] == 2
    down = plan(
        stored(1, {"app": "web"}),
        [running_pod("a", "n1"), running_pod("b", "n1"), running_pod("c", "n2")],
        expectations_met=True,
        now=NOW,
    )
    assert down.create == 0
    assert len(down.delete) == 2 and "c" not in {p["metadata"]["name"] for p in down.delete}  # crowded node first


# --- the API ------------------------------------------------------------------------------------


async def test_the_selector_and_labels_default_to_the_templates_and_replicas_to_one(server: ApiServer) -> None:
    async with running(server) as h:
        made = await h.create(RCS, rc("web", tier="front", app="web"))
        assert made["spec"]["selector"] == {"tier": "front", "app": "web"}
        assert made["metadata"]["labels"] == {"tier": "front", "app": "web"}
        assert made["spec"]["replicas"] == 1
        assert made["status"] == {"replicas": 0}
        assert made["metadata"]["generation"] == 1
        assert made["spec"]["template"]["spec"]["restartPolicy"] == "Always"


async def test_a_selector_the_template_labels_do_not_match_is_refused_in_kubes_words(server: ApiServer) -> None:
    async with running(server) as h:
        message = await rejected(h, rc("web", selector={"app": "other"}))
        assert message == (
            'ReplicationController "web" is invalid: spec.template.metadata.labels: Invalid value: '
            '{"app":"web"}: `selector` does not match template `labels`'
        )
        no_labels = rc("bare")
        no_labels["spec"]["template"]["metadata"] = {}
        assert "spec.selector: Required value" in await rejected(h, no_labels)
        assert "spec.replicas: Invalid value: -1: must be greater than or equal to 0" in await rejected(
            h, rc("neg", -1)
        )
        never = rc("never")
        never["spec"]["template"]["spec"]["restartPolicy"] = "Never"
        assert 'spec.template.spec.restartPolicy: Unsupported value: "Never"' in await rejected(h, never)


async def test_the_scale_subresource_renders_the_map_selector_and_sets_replicas(server: ApiServer) -> None:
    async with running(server) as h:
        await h.create(RCS, rc("web", 2, tier="front", app="web"))
        scale = await h.client.get(RCS, "web", "default", subresource="scale")
        assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
        assert scale["spec"] == {"replicas": 2}
        assert scale["status"] == {"replicas": 0, "selector": "app=web,tier=front"}
        await h.client.patch(RCS, "web", {"spec": {"replicas": 5}}, "default", subresource="scale")
        found = await h.get(RCS, "web")
        assert found is not None and found["spec"]["replicas"] == 5


async def test_status_replicas_is_a_field_selector(server: ApiServer) -> None:
    async with running(server) as h:
        await h.create(RCS, rc("web", 0))
        items, _ = await h.client.list(RCS, "default", field_selector="status.replicas=0")
        assert [i["metadata"]["name"] for i in items] == ["web"]


def test_kubectl_get_rc_shows_desired_current_ready_and_age() -> None:
    obj = rc("web", 3, selector={"app": "web"})
    obj["metadata"]["creationTimestamp"] = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    obj["status"] = {"replicas": 3, "readyReplicas": 2}
    printed = table("replicationcontrollers", [obj])
    assert [c["name"] for c in printed["columnDefinitions"] if c["priority"] == 0] == [
        "Name",
        "Desired",
        "Current",
        "Ready",
        "Age",
    ]
    assert printer_for("replicationcontrollers").row(obj) == ["web", 3, 3, 2, "5m", "main", "busybox", "app=web"]


# --- the controller ------------------------------------------------------------------------------


async def pods_of(h: Harness, app: str) -> list[Object]:
    return [p for p in await h.items(PODS, labels=f"app={app}") if not p["metadata"].get("deletionTimestamp")]


async def test_a_replication_controller_runs_its_pods_and_names_itself_their_controller(server: ApiServer) -> None:
    async with running(server, ReplicationControllerController) as h:
        await h.create(RCS, rc("web", 3))

        async def three() -> list[Object]:
            pods = await pods_of(h, "web")
            return pods if len(pods) == 3 else []

        pods = await h.eventually(three, what="three pods")
        made = await h.get(RCS, "web")
        assert made is not None
        for pod in pods:
            ref = controller_of(pod)
            assert (ref["apiVersion"], ref["kind"], ref["name"], ref["uid"]) == (
                "v1",
                "ReplicationController",
                "web",
                made["metadata"]["uid"],
            )
            await h.set_pod(pod)

        async def all_ready() -> bool:
            found = await h.get(RCS, "web")
            return found is not None and found["status"].get("readyReplicas") == 3

        await h.eventually(all_ready, what="readyReplicas 3")
        assert ("SuccessfulCreate", "Created 3 pod(s)") in await h.eventually(lambda: h.events("web"))

        await h.client.patch(RCS, "web", {"spec": {"replicas": 1}}, "default", subresource="scale")

        async def one() -> list[Object]:
            pods = await pods_of(h, "web")
            return pods if len(pods) == 1 else []

        await h.eventually(one, what="scaled down to one pod")


async def test_a_replication_controller_adopts_orphans_its_map_selector_matches(server: ApiServer) -> None:
    async with running(server, ReplicationControllerController) as h:
        await h.create(PODS, bare_pod("stray", app="web", tier="front"))
        await h.create(PODS, bare_pod("half", app="web"))  # lacks tier=front: not selected
        await h.create(RCS, rc("web", 2, app="web", tier="front"))

        async def adopted() -> bool:
            stray = await h.get(PODS, "stray")
            return stray is not None and controller_of(stray).get("kind") == "ReplicationController"

        await h.eventually(adopted, what="the orphan adopted")

        async def two() -> list[Object]:
            pods = [p for p in await pods_of(h, "web") if controller_of(p)]
            return pods if len(pods) == 2 else []

        await h.eventually(two, what="one pod created beside it")
        half = await h.get(PODS, "half")
        assert half is not None and not half["metadata"].get("ownerReferences")
