"""Scenario 9: stop shuts the machines down with their disks; start brings the cluster back with its state."""

from __future__ import annotations

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from tests.e2e.test_02_deployment import running_pods


def test_stop_then_start_keeps_the_state(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    kubelab_kubectl.ok("create", "configmap", "keep-me", "--from-literal=answer=42")
    stopped = kubelab_lab.cli("stop", "--name", kubelab_lab.name, timeout=600)
    assert stopped.ok and kubelab_lab.master.name in stopped.out, stopped.out + stopped.err
    status = kubelab_lab.cli("status", "--name", kubelab_lab.name)
    assert status.code == 1 and status.out.count("shut off") == len(kubelab_lab.nodes)

    started = kubelab_lab.cli("start", "--name", kubelab_lab.name, timeout=1200)
    assert started.ok, started.out + started.err
    assert kubelab_kubectl.json("get", "configmap", "keep-me")["data"] == {"answer": "42"}
    eventually(
        lambda: len(running_pods(kubelab_kubectl, "app=web")) == 3, timeout=300, what="the deployment running again"
    )
    assert (
        kubelab_kubectl.json("get", "deployment", "web")["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        == "3"
    )
