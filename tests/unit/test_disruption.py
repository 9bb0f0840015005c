"""The disruption controller: a PodDisruptionBudget's status from its pods (and their controllers'
scale), as kube's disruption controller computes it; the plan is pure, and one run end to end feeds the
eviction subresource."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.apiserver.server import ApiServer
from agents.controllers import disruption
from agents.controllers.disruption import DisruptionController, Scale, ScaleError
from agents.machinery.client import ApiError
from agents.machinery.resources import DEPLOYMENTS, POD_DISRUPTION_BUDGETS, PODS, REPLICASETS
from tests.support.controllerharness import running

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, *, ready: bool = True, app: str = "web", owner_uid: str = "rs-1", deleting: bool = False) -> Any:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "default",
        "labels": {"app": app},
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-rs", "uid": owner_uid, "controller": True}
        ],
    }
    if deleting:
        meta["deletionTimestamp"] = stamp(NOW)
    return {
        "metadata": meta,
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def budget(generation: int = 1, status: dict[str, Any] | None = None, **spec: Any) -> Any:
    return {
        "metadata": {"name": "web-pdb", "namespace": "default", "generation": generation},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec},
        "status": status or {},
    }


def numbers(status: dict[str, Any]) -> tuple[int, int, int, int]:
    return status["expectedPods"], status["desiredHealthy"], status["currentHealthy"], status["disruptionsAllowed"]


def test_an_integer_min_available_counts_the_selected_pods() -> None:
    pods = [pod("a"), pod("b"), pod("c"), pod("other", app="db")]
    decided = disruption.plan(budget(minAvailable=2), pods, scale=None, now=NOW)
    assert numbers(decided.status) == (3, 2, 3, 1)
    assert decided.status["observedGeneration"] == 1
    condition = decided.status["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "DisruptionAllowed",
        "True",
        "SufficientPods",
    )


def test_unready_and_deleting_pods_are_not_healthy() -> None:
    pods = [pod("a"), pod("b", ready=False), pod("c", deleting=True)]
    decided = disruption.plan(budget(minAvailable=2), pods, scale=None, now=NOW)
    assert numbers(decided.status) == (3, 2, 1, 0)
    condition = decided.status["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "InsufficientPods")


def test_a_percentage_min_available_is_of_the_controllers_scale_rounded_up() -> None:
    pods = [pod("a"), pod("b"), pod("c")]
    assert disruption.needs_scale(budget(minAvailable="50%"))
    decided = disruption.plan(budget(minAvailable="50%"), pods, scale=5, now=NOW)
    assert numbers(decided.status) == (5, 3, 3, 0)


def test_max_unavailable_subtracts_from_the_deployments_scale() -> None:
    # two ReplicaSets of one Deployment (a rollout) count as the Deployment, once
    pods = [pod("a", owner_uid="rs-old"), pod("b", owner_uid="rs-new"), pod("c", owner_uid="rs-new"), pod("d")]
    found = {"rs-old": Scale("deploy-1", 4), "rs-new": Scale("deploy-1", 4), "rs-1": Scale("deploy-1", 4)}
    scale = disruption.expected_scale(pods, found)
    assert scale == 4
    decided = disruption.plan(budget(maxUnavailable=1), pods, scale=scale, now=NOW)
    assert numbers(decided.status) == (4, 3, 4, 1)
    percent = disruption.plan(budget(maxUnavailable="30%"), pods, scale=scale, now=NOW)  # 30% of 4 rounds up to 2
    assert numbers(percent.status) == (4, 2, 4, 2)


def test_pods_without_a_known_controller_fail_the_scale() -> None:
    orphan = pod("a")
    orphan["metadata"]["ownerReferences"] = []
    with pytest.raises(ScaleError) as no_ref:
        disruption.expected_scale([orphan], {})
    assert no_ref.value.reason == "NoControllerRef" and str(no_ref.value) == 'found no controller ref for pod "a"'
    with pytest.raises(ScaleError) as none_found:
        disruption.expected_scale([pod("b")], {"rs-1": None})
    assert none_found.value.reason == "NoControllers"
    failed = disruption.fail_safe(budget(status={"disruptionsAllowed": 2}, minAvailable="50%"), "boom", now=NOW)
    assert failed["disruptionsAllowed"] == 0
    assert (failed["conditions"][0]["reason"], failed["conditions"][0]["message"]) == ("SyncFailed", "boom")


def test_no_disruption_is_allowed_while_no_pod_is_expected() -> None:
    decided = disruption.plan(budget(maxUnavailable=1), [], scale=0, now=NOW)
    assert numbers(decided.status) == (0, 0, 0, 0)
    assert [(e.reason, e.message) for e in decided.events] == [("NoPods", "No matching pods found")]


def test_disrupted_pods_do_not_count_until_deleted_or_two_minutes_have_passed() -> None:
    recent, overdue = stamp(NOW - timedelta(seconds=30)), stamp(NOW - timedelta(minutes=3))
    status = {"disruptedPods": {"a": recent, "b": overdue, "c": recent, "gone": recent}}
    pods = [pod("a"), pod("b"), pod("c", deleting=True), pod("d")]
    decided = disruption.plan(budget(status=status, minAvailable=1), pods, scale=None, now=NOW)
    # a: still on its way out; b: overdue, counts again (and an Event says so); c: deleting; gone: gone
    assert decided.status["disruptedPods"] == {"a": recent}
    assert numbers(decided.status) == (4, 1, 2, 1)
    assert [(e.reason, e.about["metadata"]["name"]) for e in decided.events if e.about] == [("NotDeleted", "b")]
    assert decided.requeue_after == pytest.approx(90.05)


def test_the_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    earlier = stamp(NOW - timedelta(hours=1))
    held = {"conditions": [{"type": "DisruptionAllowed", "status": "True", "lastTransitionTime": earlier}]}
    decided = disruption.plan(budget(status=held, minAvailable=1), [pod("a"), pod("b")], scale=None, now=NOW)
    assert decided.status["conditions"][0]["lastTransitionTime"] == earlier


def test_a_missing_selector_picks_no_pod_and_an_empty_one_every_pod() -> None:
    pods = [pod("a"), pod("b", app="db")]
    nil = {"metadata": {"name": "p", "namespace": "default"}, "spec": {"minAvailable": 1}}
    assert disruption.selected(nil, pods) == []
    everything = {"metadata": {"name": "p", "namespace": "default"}, "spec": {"minAvailable": 1, "selector": {}}}
    assert disruption.selected(everything, pods) == pods


# --- end to end --------------------------------------------------------------------------------------


def _deployment(replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        },
    }


async def test_the_controller_writes_the_budget_from_a_deployments_scale_and_evictions_spend_it(
    server: ApiServer,
) -> None:
    async with running(server, DisruptionController) as h:
        deploy = await h.create(DEPLOYMENTS, _deployment(3))
        owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": deploy["metadata"]["uid"]}
        rs_body = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web-1", "labels": {"app": "web"}, "ownerReferences": [{**owner, "controller": True}]},
            "spec": {**_deployment(3)["spec"], "replicas": 3},
        }
        rs = await h.create(REPLICASETS, rs_body)
        rs_ref = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": rs["metadata"]["uid"]}
        for name in ("p1", "p2", "p3"):
            created = await h.create(
                PODS,
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": name,
                        "labels": {"app": "web"},
                        "ownerReferences": [{**rs_ref, "controller": True}],
                    },
                    "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
                },
            )
            await h.set_pod(created)
        await h.create(
            POD_DISRUPTION_BUDGETS,
            {
                "apiVersion": "policy/v1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "web-pdb"},
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}},
            },
        )

        async def allowed(count: int) -> dict[str, Any] | None:
            found = await h.get(POD_DISRUPTION_BUDGETS, "web-pdb")
            status = (found or {}).get("status") or {}
            ok = status.get("observedGeneration") == 1 and status.get("disruptionsAllowed") == count
            return status if ok else None

        status = await h.eventually(lambda: allowed(1), what="one disruption allowed")
        assert numbers(status) == (3, 2, 3, 1)
        await h.client.request("POST", "/api/v1/namespaces/default/pods/p1/eviction", body=_eviction("p1"))
        spent = await h.eventually(lambda: allowed(0), what="the budget spent")
        assert list(spent["disruptedPods"]) == ["p1"]  # the eviction's own write: p1 is on its way out

        async def settled() -> dict[str, Any] | None:
            status = await allowed(0)
            return status if status and status["currentHealthy"] == 2 else None

        recounted = await h.eventually(settled, what="the controller's recount")
        assert "disruptedPods" not in recounted  # p1 is being deleted: it left the list
        with pytest.raises(ApiError) as refused:
            await h.client.request("POST", "/api/v1/namespaces/default/pods/p2/eviction", body=_eviction("p2"))
        assert refused.value.code == 429
        # p1 goes (the test plays the kubelet that finishes the deletion), a new pod takes its place and turns ready
        await h.client.delete(PODS, "p1", "default", grace_period=0)
        replacement = await h.create(
            PODS,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "p4",
                    "labels": {"app": "web"},
                    "ownerReferences": [{**rs_ref, "controller": True}],
                },
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        )
        await h.set_pod(replacement)
        healed = await h.eventually(lambda: allowed(1), what="the budget healed")
        assert "disruptedPods" not in healed


def _eviction(name: str) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}}
