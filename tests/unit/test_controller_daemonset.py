"""The DaemonSet controller: its plan (pure) and its sync against an in-process API server."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agents.apiserver.server import ApiServer
from agents.controllers import history
from agents.controllers.daemonset import DaemonSetController, node_of, plan
from agents.machinery.objects import Object
from agents.machinery.resources import DAEMONSETS, NODES, PODS
from tests.support.controllerharness import Harness, running

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REF = {"kind": "DaemonSet", "name": "agent", "uid": "ds-uid", "controller": True}


def daemon_set(**spec: Any) -> Object:
    template_spec = {"containers": [{"name": "main", "image": "busybox"}], **spec.pop("pod", {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 1},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": template_spec},
            **spec,
        },
    }


def node(name: str, *, labels: dict[str, str] | None = None, taints: list[dict[str, Any]] | None = None) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"taints": taints} if taints else {},
    }


def pod(
    name: str, on: str, *, rev: str = "r1", ready: bool = True, phase: str = "Running", created: str = "2026-01-01"
) -> Object:
    condition = {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "creationTimestamp": f"{created}T00:00:00Z",
            "labels": {"app": "agent", history.HASH_LABEL: rev},
            "ownerReferences": [REF],
        },
        "spec": {"nodeName": on},
        "status": {"phase": phase, "conditions": [condition]},
    }


def planned(ds: Object, pods: list[Object], nodes: list[Object], revision: str = "r1") -> Any:
    return plan(ds, pods, nodes=nodes, revisions=[], revision=revision, now=NOW)


def deleted(decided: Any) -> list[str]:
    return sorted(p["metadata"]["name"] for p in decided.delete)


# --- the plan ------------------------------------------------------------------------------------


def test_every_eligible_node_without_a_pod_gets_one_pinned_to_it() -> None:
    nodes = [
        node("n1"),
        node("n2", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        node("n3", taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),  # tolerated by default
        node("n4", labels={"disk": "ssd"}),
    ]
    decided = planned(daemon_set(), [pod("agent-a", "n1")], nodes)
    assert sorted(node_of(p) for p in decided.create) == ["n3", "n4"]
    assert all(p["metadata"]["labels"][history.HASH_LABEL] == "r1" for p in decided.create)
    assert [e.message for e in decided.events] == ["Created 2 pod(s)"]
    selective = planned(daemon_set(pod={"nodeSelector": {"disk": "ssd"}}), [], nodes)
    assert [node_of(p) for p in selective.create] == ["n4"]


def test_extra_failed_and_misplaced_pods_are_deleted() -> None:
    nodes = [node("n1"), node("n2")]
    pods = [
        pod("older", "n1", created="2026-01-01"),
        pod("newer", "n1", created="2026-01-02"),
        pod("failed", "n2", phase="Failed"),
        pod("elsewhere", "gone"),
    ]
    decided = planned(daemon_set(), pods, nodes)
    assert deleted(decided) == ["elsewhere", "failed", "newer"]
    assert [node_of(p) for p in decided.create] == ["n2"]
    assert decided.events[-1].message == "Deleted pod: elsewhere, failed, newer"


def test_a_rolling_update_replaces_old_pods_while_at_most_max_unavailable_are_down() -> None:
    nodes = [node("n1"), node("n2"), node("n3")]
    old = [pod("a", "n1"), pod("b", "n2"), pod("c", "n3")]
    assert len(planned(daemon_set(), old, nodes, revision="r2").delete) == 1
    broken = [pod("a", "n1", ready=False), pod("b", "n2", ready=False), pod("c", "n3")]
    assert deleted(planned(daemon_set(), broken, nodes, revision="r2")) == ["a", "b"]  # down anyway
    on_delete = daemon_set(updateStrategy={"type": "OnDelete"})
    assert planned(on_delete, old, nodes, revision="r2").delete == []


def test_the_status_counts_desired_scheduled_ready_and_updated_pods() -> None:
    nodes = [node("n1"), node("n2"), node("n3")]
    status = planned(daemon_set(), [pod("a", "n1"), pod("b", "n2", rev="r0", ready=False)], nodes).status
    assert status == {
        "desiredNumberScheduled": 3,
        "currentNumberScheduled": 2,
        "numberMisscheduled": 0,
        "numberReady": 1,
        "updatedNumberScheduled": 1,
        "numberAvailable": 1,
        "numberUnavailable": 2,
        "observedGeneration": 1,
    }


# --- the sync ------------------------------------------------------------------------------------


def manifest(**spec: Any) -> Object:
    body = daemon_set(**spec)
    body["metadata"] = {"name": "agent"}
    return body


async def placed(h: Harness) -> list[str]:
    return sorted(node_of(p) for p in await h.items(PODS) if not p["metadata"].get("deletionTimestamp"))


async def test_daemonset_runs_one_pod_on_every_node_its_pods_tolerate(server: ApiServer) -> None:
    async with running(server, DaemonSetController) as h:
        for name in ("n1", "n2"):
            await h.create(NODES, node(name))
        await h.create(NODES, node("n3", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]))
        await h.create(DAEMONSETS, manifest())

        async def two() -> bool:
            return await placed(h) == ["n1", "n2"]

        await h.eventually(two, what="pods on n1 and n2")

        async def counted() -> bool:
            ds = await h.get(DAEMONSETS, "agent")
            return ds is not None and ds["status"].get("currentNumberScheduled") == 2

        await h.eventually(counted, what="the status")
        ds = await h.get(DAEMONSETS, "agent")
        assert ds is not None and ds["status"]["desiredNumberScheduled"] == 2


async def test_daemonset_follows_a_node_that_stops_matching_its_node_selector(server: ApiServer) -> None:
    async with running(server, DaemonSetController) as h:
        for name in ("n1", "n2"):
            await h.create(NODES, node(name, labels={"role": "edge"}))
        await h.create(DAEMONSETS, manifest(pod={"nodeSelector": {"role": "edge"}}))

        async def on(expected: list[str]) -> bool:
            return await placed(h) == expected

        await h.eventually(lambda: on(["n1", "n2"]), what="pods on both nodes")
        await h.client.patch(NODES, "n2", {"metadata": {"labels": {"role": "core"}}})
        await h.eventually(lambda: on(["n1"]), what="the pod on n2 gone")
