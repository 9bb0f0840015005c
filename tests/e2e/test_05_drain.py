"""Scenario 5e: draining a worker, on the VMs.

`kubectl drain` cordons a worker and evicts its pods through the Eviction subresource; a
PodDisruptionBudget (maxUnavailable 1) lets one pod of a 4-replica Deployment go at a time, so the
Deployment never has fewer than 3 ready pods while its pods move to the other nodes; `kubectl
uncordon` opens the worker again. The drain is limited to the scenario's own pods so the session's
lab keeps its add-ons where they are.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually


def _deployment(namespace: str, label: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": label}},
            "template": {
                "metadata": {"labels": {"app": label}},
                "spec": {
                    # all four start on the worker to drain where they can; the drain then moves them
                    "affinity": {
                        "nodeAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 100,
                                    "preference": {
                                        "matchExpressions": [
                                            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                                        ]
                                    },
                                }
                            ]
                        }
                    },
                    "terminationGracePeriodSeconds": 2,
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx",
                            "readinessProbe": {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 2},
                        }
                    ],
                },
            },
        },
    }


def test_draining_a_worker_moves_its_pods_within_the_disruption_budget(
    kubelab_lab: Lab, kubelab_kubectl: Kubectl
) -> None:
    kubectl = kubelab_kubectl
    node = kubelab_lab.workers[0].name
    namespace = f"drain-{uuid.uuid4().hex[:6]}"
    label = f"web-{namespace}"
    kubectl.ok("create", "namespace", namespace)
    lowest: list[int] = []
    stop = threading.Event()

    def ready() -> int:
        status = kubectl.json("get", "deployment", "web", "-n", namespace).get("status", {})
        return int(status.get("readyReplicas", 0))

    def watch_ready() -> None:
        while not stop.is_set():
            lowest.append(ready())
            stop.wait(1.0)

    try:
        kubectl.ok("apply", "-f", "-", stdin=manifest(_deployment(namespace, label, node)))
        kubectl.ok("rollout", "status", "deployment/web", "-n", namespace, "--timeout=300s", timeout=320)
        kubectl.ok("create", "pdb", "web", "-n", namespace, f"--selector=app={label}", "--max-unavailable=1")

        def budget_known() -> bool:
            status = kubectl.json("get", "pdb", "web", "-n", namespace).get("status", {})
            return bool(status.get("currentHealthy") == 4 and status.get("disruptionsAllowed") == 1)

        assert eventually(budget_known, timeout=120, what="the budget allowing one disruption")
        on_node = [
            p
            for p in kubectl.json("get", "pods", "-n", namespace, "-l", f"app={label}")["items"]
            if p["spec"].get("nodeName") == node
        ]
        assert len(on_node) >= 2, "the scheduler placed fewer than two pods on the preferred worker"
        watcher = threading.Thread(target=watch_ready, daemon=True)
        drain = [
            *("drain", node, "--ignore-daemonsets", "--delete-emptydir-data"),
            *(f"--pod-selector=app={label}", "--timeout=600s"),
        ]
        watcher.start()
        out = kubectl.ok(*drain, timeout=620)
        stop.set()
        watcher.join()
        assert f"node/{node} drained" in out
        placed = kubectl.json("get", "pods", "-n", namespace, "-l", f"app={label}")["items"]
        assert placed and all(p["spec"].get("nodeName") != node for p in placed)
        assert eventually(lambda: ready() == 4, timeout=300, what="all four ready again elsewhere")
        assert lowest and min(lowest) >= 3, lowest
    finally:
        stop.set()
        kubectl("uncordon", node)
        kubectl("delete", "namespace", namespace, "--wait=false")
    assert not kubectl.json("get", "node", node)["spec"].get("unschedulable")
