"""Scenario 4: a rolling update to a new template, then a rollback to the previous one."""

from __future__ import annotations

from kubelab_testing.plugin import Kubectl, Lab, eventually
from tests.e2e.test_02_deployment import running_pods


def _greetings(kubectl: Kubectl) -> set[str]:
    pods = running_pods(kubectl, "app=web")
    return {
        next((e.get("value", "") for e in p["spec"]["containers"][0].get("env", []) if e["name"] == "GREETING"), "")
        for p in pods
    }


def test_rollout_and_rollback(kubelab_lab: Lab, kubectl: Kubectl) -> None:
    kubectl.ok("set", "env", "deployment/web", "GREETING=v2")
    kubectl.ok("rollout", "status", "deployment/web", "--timeout=300s", timeout=320)
    eventually(
        lambda: _greetings(kubectl) == {"v2"} and len(running_pods(kubectl, "app=web")) == 3,
        timeout=120,
        what="all replicas on the new template",
    )
    history = kubectl.ok("rollout", "history", "deployment/web")
    assert "2" in history.split()

    kubectl.ok("rollout", "undo", "deployment/web")
    kubectl.ok("rollout", "status", "deployment/web", "--timeout=300s", timeout=320)
    eventually(
        lambda: _greetings(kubectl) == {""} and len(running_pods(kubectl, "app=web")) == 3,
        timeout=120,
        what="all replicas back on the first template",
    )
    deployment = kubectl.json("get", "deployment", "web")
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
