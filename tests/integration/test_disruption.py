"""Workload controllers and disruptions on a local lab's real node: a ReplicationController keeps its
pods and lets them go with it, a deleted Job's running pod does not stay Terminating, and
`kubectl drain` evicts through the Eviction subresource only as far as a PodDisruptionBudget allows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.waiting import eventually

SLEEPER = {"name": "c", "image": "busybox", "command": ["sleep", "3600"]}


@pytest.fixture
def ns(node_kubectl: Kubectl) -> Iterator[str]:
    name = f"dis-{uuid.uuid4().hex[:6]}"
    node_kubectl.ok("create", "namespace", name)
    yield name
    node_kubectl("delete", "namespace", name, "--wait=false")


def pods(k: Kubectl, ns: str, selector: str) -> list[dict[str, Any]]:
    return list(k.json("get", "pods", "-n", ns, "-l", selector)["items"])


def running(k: Kubectl, ns: str, selector: str) -> set[str]:
    return {
        p["metadata"]["name"]
        for p in pods(k, ns, selector)
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    }


def test_a_replication_controller_keeps_its_pods_and_takes_them_along(node_kubectl: Kubectl, ns: str) -> None:
    k = node_kubectl
    rc = {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "replicas": 2,
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [SLEEPER]}},
        },
    }
    k.ok("apply", "-f", "-", stdin=manifest(rc))
    eventually(lambda: len(running(k, ns, "app=web")) == 2, timeout=90, what="both pods of the RC running")
    owner = pods(k, ns, "app=web")[0]["metadata"]["ownerReferences"][0]
    assert (owner["apiVersion"], owner["kind"], owner["name"]) == ("v1", "ReplicationController", "web")
    assert k.json("get", "rc", "web", "-n", ns)["spec"]["selector"] == {"app": "web"}  # defaulted
    k.ok("scale", "rc", "web", "--replicas=1", "-n", ns)
    eventually(lambda: len(pods(k, ns, "app=web")) == 1, timeout=90, what="the RC scaled to one pod")
    table = k.ok("get", "rc", "web", "-n", ns, "--no-headers").split()
    assert table[:2] == ["web", "1"]
    k.ok("delete", "rc", "web", "-n", ns)
    eventually(lambda: not pods(k, ns, "app=web"), timeout=90, what="the RC's pods gone with it")


def test_deleting_a_job_with_a_running_pod_lets_the_pod_go(node_kubectl: Kubectl, ns: str) -> None:
    k = node_kubectl
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "long", "namespace": ns},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [SLEEPER]}}},
    }
    k.ok("apply", "-f", "-", stdin=manifest(job))
    eventually(lambda: len(running(k, ns, "job-name=long")) == 1, timeout=90, what="the Job's pod running")
    [pod] = pods(k, ns, "job-name=long")
    assert "batch.kubernetes.io/job-tracking" in pod["metadata"]["finalizers"]
    k.ok("delete", "job", "long", "-n", ns, "--wait=false")
    eventually(lambda: not pods(k, ns, "job-name=long"), timeout=90, what="the deleted Job's pod gone")


def test_drain_evicts_only_as_far_as_the_disruption_budget_allows(node_kubectl: Kubectl, ns: str) -> None:
    k = node_kubectl
    [node] = [n.removeprefix("node/") for n in k.ok("get", "nodes", "-o", "name").split()]
    label = f"guarded-{ns}"
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "guarded", "namespace": ns},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": label}},
            "template": {
                "metadata": {"labels": {"app": label}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [SLEEPER]},
            },
        },
    }
    k.ok("apply", "-f", "-", stdin=manifest(deployment))
    k.ok("create", "pdb", "guarded", "-n", ns, f"--selector=app={label}", "--min-available=2")
    eventually(lambda: len(running(k, ns, f"app={label}")) == 2, timeout=90, what="both guarded pods running")

    def allowed() -> int:
        status = k.json("get", "pdb", "guarded", "-n", ns).get("status", {})
        return int(status.get("disruptionsAllowed", -1)) if status.get("currentHealthy") is not None else -1

    eventually(lambda: allowed() == 0 and k.json("get", "pdb", "guarded", "-n", ns)["status"]["currentHealthy"] == 2)
    before = running(k, ns, f"app={label}")
    drain = ["drain", node, "--ignore-daemonsets", "--delete-emptydir-data", f"--pod-selector=app={label}"]
    try:
        # the budget needs both: nothing may go, and drain says why until it gives up
        refused = k(*drain, "--timeout=12s", timeout=60)
        assert not refused.ok
        assert "Cannot evict pod as it would violate the pod's disruption budget." in refused.err + refused.out
        assert running(k, ns, f"app={label}") == before
        assert k.json("get", "node", node)["spec"].get("unschedulable") is True  # cordoned first
        # one may go now; its replacement cannot start on the cordoned node, so the second must wait
        k.ok("patch", "pdb", "guarded", "-n", ns, "--type=merge", "-p", '{"spec":{"minAvailable":1}}')
        eventually(lambda: allowed() == 1, timeout=60, what="the budget allowing one disruption")
        partial = k(*drain, "--timeout=15s", timeout=60)
        assert not partial.ok
        left = running(k, ns, f"app={label}")
        assert len(left) == 1 and left < before
        status = k.json("get", "pdb", "guarded", "-n", ns)["status"]
        assert status["disruptionsAllowed"] == 0 and status["currentHealthy"] == 1
        table = k.ok("get", "pdb", "guarded", "-n", ns, "--no-headers").split()
        assert table[:4] == ["guarded", "1", "N/A", "0"]
    finally:
        k("uncordon", node)
    eventually(lambda: len(running(k, ns, f"app={label}")) == 2, timeout=90, what="the replacement running again")
    eventually(lambda: allowed() == 1, timeout=60, what="the budget restored")
