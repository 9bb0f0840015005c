"""Scenario 4: a rolling update to a new template, then a rollback to the previous one."""

from __future__ import annotations

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from tests.e2e.test_02_deployment import running_pods


def _greetings(kubectl: Kubectl) -> set[str]:
    pods = running_pods(kubectl, "app=web")
    return {
        next((e.get("value", "") for e in p["spec"]["containers"][0].get("env", []) if e["name"] == "GREETING"), "")
        for p in pods
    }


def test_rollout_and_rollback(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    kubelab_kubectl.ok("set", "env", "deployment/web", "GREETING=v2")
    kubelab_kubectl.ok("rollout", "status", "deployment/web", "--timeout=300s", timeout=320)
    eventually(
        lambda: _greetings(kubelab_kubectl) == {"v2"} and len(running_pods(kubelab_kubectl, "app=web")) == 3,
        timeout=120,
        what="all replicas on the new template",
    )
    history = kubelab_kubectl.ok("rollout", "history", "deployment/web")
    assert "2" in history.split()

    kubelab_kubectl.ok("rollout", "undo", "deployment/web")
    kubelab_kubectl.ok("rollout", "status", "deployment/web", "--timeout=300s", timeout=320)
    eventually(
        lambda: _greetings(kubelab_kubectl) == {""} and len(running_pods(kubelab_kubectl, "app=web")) == 3,
        timeout=120,
        what="all replicas back on the first template",
    )
    deployment = kubelab_kubectl.json("get", "deployment", "web")
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
