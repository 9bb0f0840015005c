"""The node lifecycle and node IPAM controllers: their plans (pure) and their syncs."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from agents.apiserver.server import ApiServer
from agents.controllers import nodeipam
from agents.controllers.base import rfc3339
from agents.controllers.nodeipam import NodeIpamController
from agents.controllers.nodelifecycle import (
    ORPHAN_QUARANTINE,
    UNREACHABLE,
    NodeLifecycleController,
    eviction_due,
    plan,
    plan_orphans,
)
from agents.controllers.settings import ControllerManagerSettings
from agents.machinery.objects import Object, now
from agents.machinery.resources import NODES, PODS
from tests.support.controllerharness import Harness, running

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def node(
    name: str = "n1", *, ready: str = "True", taints: list[dict[str, Any]] | None = None, cidr: str = ""
) -> Object:
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if cidr:
        spec["podCIDR"] = cidr
    condition = {"type": "Ready", "status": ready, "lastHeartbeatTime": now(), "lastTransitionTime": now()}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": spec,
        "status": {"conditions": [condition]},
    }


def pod(name: str, *, tolerations: list[dict[str, Any]] | None = None, ready: bool = True) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
        "spec": {
            "nodeName": "n1",
            "tolerations": tolerations or [],
            "containers": [{"name": "main", "image": "busybox"}],
        },
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def tolerate(seconds: int | None) -> list[dict[str, Any]]:
    toleration: dict[str, Any] = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    if seconds is not None:
        toleration["tolerationSeconds"] = seconds
    return [toleration]


# --- the plans -----------------------------------------------------------------------------------


def test_a_silent_node_turns_unknown_its_pods_not_ready_and_it_gets_the_unreachable_taints() -> None:
    pods = [pod("evicted"), pod("stays", tolerations=tolerate(None)), pod("waits", tolerations=tolerate(60))]
    decided = plan(node(), pods, silent=True, now=NOW)
    assert decided.mark_unknown is not None
    assert {c["type"]: c["status"] for c in decided.mark_unknown["status"]["conditions"]} == {
        "Ready": "Unknown",
        "MemoryPressure": "Unknown",
        "DiskPressure": "Unknown",
        "PIDPressure": "Unknown",
    }
    assert [e.reason for e in decided.events] == ["NodeNotReady"]
    assert [p["metadata"]["name"] for p in decided.not_ready] == ["evicted", "stays", "waits"]
    assert decided.taints == [
        {"key": UNREACHABLE, "effect": "NoSchedule"},
        {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": rfc3339(NOW)},
    ]
    assert [(p["metadata"]["name"], wait) for p, wait in decided.evict] == [
        ("evicted", 0.0),
        ("stays", None),
        ("waits", 60.0),
    ]


def test_a_node_that_keeps_reporting_is_left_as_it_is() -> None:
    decided = plan(node(), [pod("a")], silent=False, now=NOW)
    assert decided.mark_unknown is None and decided.taints is None and decided.not_ready == []
    assert decided.evict == [(pod("a"), None)]


def test_an_eviction_goes_ahead_only_if_the_pod_still_does_not_tolerate_its_node() -> None:
    taint = {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": rfc3339(NOW - timedelta(seconds=61))}
    waiting = pod("waits", tolerations=tolerate(60))
    assert eviction_due(waiting, node(taints=[taint]), now=NOW)
    assert not eviction_due(waiting, node(), now=NOW)  # the taint went meanwhile
    assert eviction_due(waiting, None, now=NOW)  # so did the node


def test_the_pods_of_a_missing_node_go_only_after_the_quarantine() -> None:
    pods = [pod("a")]
    assert plan_orphans("n1", pods, missing_for=10.0).requeue_after == ORPHAN_QUARANTINE - 10.0
    late = plan_orphans("n1", pods, missing_for=ORPHAN_QUARANTINE)
    assert [d.target["metadata"]["name"] for d in late.delete] == ["a"]
    assert late.delete[0].event is not None and late.delete[0].event.reason == "PodGC"
    assert plan_orphans("n1", [], missing_for=100.0) == plan_orphans("n1", [], missing_for=0.0)


def test_a_node_gets_the_first_pod_cidr_nobody_holds_or_was_given() -> None:
    cluster = ipaddress.IPv4Network("10.244.0.0/22")
    nodes = [node("n0", cidr="10.244.0.0/24"), node("n1")]
    decided = nodeipam.plan(nodes[1], nodes, cluster=cluster, mask=24, taken={"10.244.1.0/24"})
    assert decided.assign == "10.244.2.0/24"
    assert decided.event is not None and decided.event.reason == "CIDRAssignmentSucceeded"
    assert nodeipam.plan(nodes[0], nodes, cluster=cluster, mask=24, taken=set()) == nodeipam.Plan()
    halves = [node("n0", cidr="10.244.0.0/23"), node("n1")]
    full = nodeipam.plan(halves[1], halves, cluster=cluster, mask=23, taken={"10.244.2.0/23"})
    assert full.assign == "" and full.event is not None and full.event.reason == "CIDRNotAvailable"


# --- the syncs -----------------------------------------------------------------------------------


async def test_a_node_that_stops_reporting_turns_unknown_and_its_intolerant_pods_are_evicted(
    server: ApiServer,
) -> None:
    settings = replace(ControllerManagerSettings(), node_monitor_grace_period=0.3, node_monitor_period=0.05)
    async with running(server, NodeLifecycleController, settings=settings) as h:
        await h.create(NODES, node())
        await h.create(PODS, pod("evicted", tolerations=tolerate(0)))
        await h.create(PODS, pod("stays", tolerations=tolerate(None)))
        for name in ("evicted", "stays"):
            made = await h.get(PODS, name)
            assert made is not None
            await h.set_pod(made)

        async def unknown() -> Object | None:
            found = await h.get(NODES, "n1")
            conditions = (found or {}).get("status", {}).get("conditions") or []
            return found if any(c["type"] == "Ready" and c["status"] == "Unknown" for c in conditions) else None

        silent = await h.eventually(unknown, what="the node Unknown")
        await h.eventually(lambda: _tainted(h), what="the unreachable taints")

        async def evicted() -> bool:
            found = await h.get(PODS, "evicted")
            return found is None or bool(found["metadata"].get("deletionTimestamp"))

        await h.eventually(evicted, what="the intolerant pod evicted")
        stays = await h.get(PODS, "stays")
        assert stays is not None and not stays["metadata"].get("deletionTimestamp")
        assert {c["type"]: c["status"] for c in stays["status"]["conditions"]}["Ready"] == "False"
        assert ("NodeNotReady", "Node n1 status is now: NodeNotReady") in await h.eventually(
            lambda: h.events("n1", "default")
        )
        assert silent["metadata"]["name"] == "n1"


async def _tainted(h: Harness) -> bool:
    found = await h.get(NODES, "n1")
    taints = (found or {}).get("spec", {}).get("taints") or []
    return {(t["key"], t["effect"]) for t in taints} == {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}


async def test_every_node_gets_its_own_pod_cidr(server: ApiServer) -> None:
    async with running(server, NodeIpamController) as h:
        for name in ("n1", "n2", "n3"):
            await h.create(NODES, node(name))

        async def assigned() -> list[str]:
            cidrs = [(n.get("spec") or {}).get("podCIDR") for n in await h.items(NODES)]
            return [c for c in cidrs if c] if all(cidrs) and len(cidrs) == 3 else []

        cidrs = await h.eventually(assigned, what="three pod CIDRs")
        assert sorted(cidrs) == ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24"]
