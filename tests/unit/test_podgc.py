"""The pod garbage collector (agents/controllers/podgc.py): which pods it force-deletes (plain dicts
stand for what the informers hold), then the controller against an in-process API server, where a pod
evicted from a powered-off node goes once an operator taints the node out-of-service."""

from __future__ import annotations

from typing import Any

from agents.apiserver.server import ApiServer
from agents.controllers import podgc
from agents.controllers.podgc import (
    TERMINATED,
    TERMINATING_OUT_OF_SERVICE,
    UNSCHEDULED_TERMINATING,
    ForceDelete,
    PodGcController,
    plan,
)
from agents.controllers.settings import ControllerManagerSettings
from agents.machinery.objects import Object
from agents.machinery.resources import NODES, PODS
from tests.support.controllerharness import running

OUT_OF_SERVICE = {"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}
UNREACHABLE = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}


def node(name: str, *, ready: str = "Unknown", taints: tuple[dict[str, Any], ...] = ()) -> Object:
    return {
        "metadata": {"name": name},
        "spec": {"taints": list(taints)},
        "status": {"conditions": [{"type": "Ready", "status": ready}]},
    }


def pod(
    name: str,
    *,
    on: str = "w1",
    phase: str = "Running",
    deleting: bool = False,
    created: str = "2026-12-07T20:00:00Z",
    reason: str = "",
) -> Object:
    meta: dict[str, Any] = {"name": name, "namespace": "default", "uid": f"uid-{name}", "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-07T20:10:00Z"
    status: dict[str, Any] = {"phase": phase}
    if reason:
        status["reason"] = reason
    return {"metadata": meta, "spec": {"nodeName": on}, "status": status}


def chosen(steps: list[ForceDelete]) -> list[tuple[str, str, bool]]:
    return [(s.pod["metadata"]["name"], s.reason, s.fail_first) for s in steps]


def nodes(*items: Object) -> dict[str, Object]:
    return {n["metadata"]["name"]: n for n in items}


# --- gcTerminating: non-graceful node shutdown ------------------------------------------------------


def test_a_pod_terminating_on_a_shut_down_node_tainted_out_of_service_is_failed_then_force_deleted() -> None:
    down = node("w1", taints=(UNREACHABLE, OUT_OF_SERVICE))
    steps = plan([pod("db-0", deleting=True)], nodes(down), threshold=12500)
    assert chosen(steps) == [("db-0", TERMINATING_OUT_OF_SERVICE, True)]


def test_the_taint_counts_by_its_key_whatever_its_value_and_effect() -> None:
    down = node("w1", ready="False", taints=({"key": "node.kubernetes.io/out-of-service", "effect": "NoSchedule"},))
    assert chosen(plan([pod("db-0", deleting=True)], nodes(down), threshold=0)) == [
        ("db-0", TERMINATING_OUT_OF_SERVICE, True)
    ]


def test_without_the_taint_a_pod_terminating_on_a_lost_node_waits_for_its_kubelet() -> None:
    lost = node("w1", taints=(UNREACHABLE,))
    assert plan([pod("db-0", deleting=True)], nodes(lost), threshold=12500) == []


def test_a_ready_node_with_the_taint_keeps_its_pods_for_its_kubelet_to_stop() -> None:
    up = node("w1", ready="True", taints=(OUT_OF_SERVICE,))
    assert plan([pod("db-0", deleting=True)], nodes(up), threshold=12500) == []


def test_only_terminating_pods_are_collected_from_an_out_of_service_node() -> None:
    down = node("w1", taints=(OUT_OF_SERVICE,))
    steps = plan([pod("running"), pod("going", deleting=True)], nodes(down), threshold=12500)
    assert chosen(steps) == [("going", TERMINATING_OUT_OF_SERVICE, True)]


def test_a_pod_already_failed_is_deleted_without_touching_its_status() -> None:
    down = node("w1", taints=(OUT_OF_SERVICE,))
    steps = plan([pod("done", phase="Failed", deleting=True)], nodes(down), threshold=12500)
    assert chosen(steps) == [("done", TERMINATING_OUT_OF_SERVICE, False)]


def test_pods_of_a_node_that_does_not_exist_are_left_to_the_node_lifecycle_controller() -> None:
    assert plan([pod("orphan", on="gone", deleting=True), pod("orphan2", on="gone")], {}, threshold=12500) == []


# --- gcUnscheduledTerminating ---------------------------------------------------------------------


def test_a_terminating_pod_that_was_never_scheduled_is_force_deleted() -> None:
    steps = plan([pod("pending", on="", phase="Pending", deleting=True), pod("waiting", on="")], {}, threshold=1)
    assert chosen(steps) == [("pending", UNSCHEDULED_TERMINATING, True)]


# --- gcTerminated ---------------------------------------------------------------------------------


def test_terminated_pods_beyond_the_threshold_go_oldest_first_and_evicted_before_all() -> None:
    up = node("w1", ready="True")
    pods = [
        pod("new", phase="Succeeded", created="2026-12-07T20:03:00Z"),
        pod("old", phase="Failed", created="2026-12-07T20:01:00Z"),
        pod("evicted", phase="Failed", created="2026-12-07T20:04:00Z", reason="Evicted"),
        pod("older", phase="Succeeded", created="2026-12-07T20:00:00Z"),
        pod("running", created="2026-11-01T00:00:00Z"),
    ]
    steps = plan(pods, nodes(up), threshold=2)
    assert chosen(steps) == [("evicted", TERMINATED, False), ("older", TERMINATED, False)]


def test_terminated_pods_up_to_the_threshold_stay_and_zero_turns_the_collection_off() -> None:
    pods = [pod(f"p{i}", phase="Succeeded") for i in range(3)]
    assert plan(pods, {}, threshold=3) == []
    assert plan(pods, {}, threshold=0) == []


def test_a_pod_both_terminated_and_terminating_is_deleted_once() -> None:
    down = node("w1", taints=(OUT_OF_SERVICE,))
    pods = [pod("done", phase="Failed", deleting=True), pod("other", phase="Succeeded")]
    steps = plan(pods, nodes(down), threshold=1)
    assert [s.pod["metadata"]["name"] for s in steps] == ["done"]


def test_the_threshold_setting_is_kubes_default() -> None:
    assert ControllerManagerSettings().terminated_pod_gc_threshold == 12500


# --- the controller against an in-process API server -----------------------------------------------


class QuickPodGc(PodGcController):
    """The real controller looking every 50 ms instead of every 20 s, so the test does not wait."""

    period = 0.05


async def test_a_pod_stuck_terminating_on_a_powered_off_node_goes_once_the_node_is_out_of_service(
    server: ApiServer,
) -> None:
    assert podgc.CHECK_PERIOD == 20.0  # kube's period; the test's subclass only looks more often
    async with running(server, QuickPodGc) as h:
        lost = node("w1", taints=(UNREACHABLE,))
        await h.create(NODES, {"apiVersion": "v1", "kind": "Node", **lost})
        created = await h.create(
            PODS,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "db-0"},
                "spec": {"nodeName": "w1", "containers": [{"name": "db", "image": "busybox:1.35.0"}]},
            },
        )
        await h.set_pod(created)
        await h.client.delete(PODS, "db-0", "default")  # the eviction: graceful, and no kubelet confirms it
        stuck = await h.get(PODS, "db-0")
        assert stuck is not None and stuck["metadata"].get("deletionTimestamp")

        async with h.history(PODS) as seen:

            async def gone() -> bool:  # as a watch sees it
                return any(change == "DELETED" for change, _ in seen)

            await h.client.patch(NODES, "w1", {"spec": {"taints": [UNREACHABLE, OUT_OF_SERVICE]}})
            await h.eventually(gone, what="db-0 force-deleted")
        assert await h.get(PODS, "db-0") is None
        changes = [(change, obj["status"].get("phase")) for change, obj in seen if obj["metadata"]["name"] == "db-0"]
        assert changes[-2:] == [("MODIFIED", "Failed"), ("DELETED", "Failed")], changes
