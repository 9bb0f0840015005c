"""benchmarks.podstartup's choice of nodes to warm up: those the measured pods can land on."""

from __future__ import annotations

from typing import Any

from benchmarks import podstartup


def node(name: str, *, ready: str = "True", taints: list[dict[str, str]] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {**spec, **({"taints": taints} if taints else {})},
        "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": ready}]},
    }


def test_every_ready_open_node_gets_a_warm_up_and_the_others_none() -> None:
    nodes = [
        node("w2"),
        node("master", taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
        node("w1", taints=[{"key": "example.com/slow", "effect": "PreferNoSchedule"}]),
        node("down", ready="Unknown"),
        node("cordoned", unschedulable=True),
        node("draining", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]),
    ]
    assert podstartup.pod_nodes(nodes) == ["w1", "w2"]
    assert podstartup.pod_nodes([]) == []


def test_a_warm_up_pod_is_bound_to_its_node_and_a_measured_pod_is_left_to_the_scheduler() -> None:
    assert podstartup.pod("warm-up-w1", "w1")["spec"]["nodeName"] == "w1"
    measured = podstartup.pod("p-000")
    assert "nodeName" not in measured["spec"]
    assert measured["spec"]["containers"][0]["image"] == podstartup.IMAGE
