"""Resource metrics end to end on a local lab's real node: the kubelet's cgroup readings, scraped by the
metrics-server add-on, served through the API server's aggregation layer to the real `kubectl top`,
the official Python client, and the HorizontalPodAutoscaler, which scales a Deployment under CPU load
out and back in."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually

# a pod that burns one CPU until it is deleted
BURN = "while :; do :; done"


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for condition in obj.get("status", {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return {}


@pytest.fixture(scope="module")
def k(node_lab: Lab, node_kubectl: Kubectl) -> Kubectl:
    def available() -> bool:
        found = node_kubectl("get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "json")
        return found.ok and _condition(json.loads(found.out), "Available").get("status") == "True"

    eventually(available, timeout=180, what="the metrics API to be available")
    return node_kubectl


def test_kubectl_top_shows_the_node_and_a_busy_pods_cpu(node_lab: Lab, k: Kubectl) -> None:
    namespace = f"top-{uuid.uuid4().hex[:6]}"
    k.ok("create", "namespace", namespace)
    try:
        k.ok("run", "burn", "--image=busybox", "-n", namespace, "--", "sh", "-c", BURN)

        def burning() -> int:
            result = k("top", "pod", "burn", "-n", namespace, "--no-headers")
            if not result.ok:
                return 0
            cpu = result.out.split()[1]
            return int(cpu.removesuffix("m")) if cpu.endswith("m") else int(cpu) * 1000

        # one busy loop is close to a whole CPU; allow for a loaded machine
        assert eventually(lambda: burning() >= 300, timeout=120, what="kubectl top showing the busy pod")
        [name] = k.ok("get", "nodes", "-o", "name").split()
        node = k.ok("top", "nodes", "--no-headers").split()
        assert node[0] == name.removeprefix("node/") and node[1].endswith("m") and node[3].endswith("Mi")
        assert int(node[1].removesuffix("m")) >= 300
        containers = k.ok("top", "pod", "burn", "-n", namespace, "--containers", "--no-headers").split()
        assert containers[:2] == ["burn", "burn"]
        # the same numbers through the official client: the metrics group is discoverable and listable
        with config.new_client_from_config(config_file=str(node_lab.kubeconfig)) as api_client:
            pods = k8s.CustomObjectsApi(api_client).list_namespaced_custom_object(
                "metrics.k8s.io", "v1beta1", namespace, "pods"
            )
            groups = {g.name for g in k8s.ApisApi(api_client).get_api_versions().groups}
        assert [p["metadata"]["name"] for p in pods["items"]] == ["burn"]
        assert pods["items"][0]["containers"][0]["usage"]["cpu"].endswith("n")
        assert "metrics.k8s.io" in groups
    finally:
        k("delete", "namespace", namespace, "--wait=false")


def test_a_deployment_under_cpu_load_scales_out_and_back_in(k: Kubectl) -> None:
    namespace = f"hpa-{uuid.uuid4().hex[:6]}"
    k.ok("create", "namespace", namespace)
    try:
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "burn", "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "burn"}},
                "template": {
                    "metadata": {"labels": {"app": "burn"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "burn",
                                "image": "busybox",
                                # busy while /tmp/idle is absent: the test switches the load off by exec
                                "command": ["sh", "-c", "while :; do [ -e /tmp/idle ] && sleep 1; done"],
                                "resources": {"requests": {"cpu": "200m"}},
                            }
                        ]
                    },
                },
            },
        }
        k.ok("apply", "-f", "-", stdin=manifest(deployment))
        out = k.ok("autoscale", "deployment", "burn", "--min=1", "--max=2", "--cpu-percent=50", "-n", namespace)
        assert "horizontalpodautoscaler.autoscaling/burn autoscaled" in out
        behavior = {"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}}}}
        k.ok("patch", "hpa", "burn", "-n", namespace, "--type=merge", "-p", manifest(behavior).strip())

        def replicas() -> int:
            return int(k.json("get", "deployment", "burn", "-n", namespace).get("spec", {}).get("replicas", 0))

        assert eventually(lambda: replicas() == 2, timeout=180, what="the HPA scaling out to its maximum")
        hpa = k.json("get", "hpa", "burn", "-n", namespace)
        assert _condition(hpa, "ScalingActive")["status"] == "True"
        assert _condition(hpa, "ScalingLimited")["reason"] == "TooManyReplicas"
        current = hpa["status"]["currentMetrics"][0]["resource"]
        assert current["name"] == "cpu" and current["current"]["averageUtilization"] > 50
        table = k.ok("get", "hpa", "burn", "-n", namespace, "--no-headers").split()
        assert table[1] == "Deployment/burn" and table[-4:-1] == ["1", "2", "2"]
        # the load stops in every replica
        for pod in k.ok("get", "pods", "-n", namespace, "-l", "app=burn", "-o", "name").split():
            eventually(lambda pod=pod: k("exec", "-n", namespace, pod, "--", "touch", "/tmp/idle").ok, timeout=60)
        assert eventually(lambda: replicas() == 1, timeout=180, what="the HPA scaling back in to its minimum")
        events = k.ok("get", "events", "-n", namespace, "--field-selector", "reason=SuccessfulRescale")
        assert "New size: 2; reason: cpu resource utilization (percentage of request) above target" in events
        assert "New size: 1; reason: All metrics below target" in events
    finally:
        k("delete", "namespace", namespace, "--wait=false")
