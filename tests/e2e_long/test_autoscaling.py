"""The HorizontalPodAutoscaler on the VMs, as kube's own walkthrough (the metrics pipeline itself,
``kubectl top`` on every node, is the e2e tier's scenario 5d): a CPU-bound web server behind a
Service, ``kubectl autoscale`` on it, a load generator in a pod; the HorizontalPodAutoscaler scales
the Deployment out to its maximum while the load runs, and back in to its minimum once the load
stops (the scale-down window shortened by a patch to the HPA's ``autoscaling/v2`` behavior).
"""

from __future__ import annotations

import uuid
from typing import Any

from kubelab_testing.kubectl import Kubectl, condition, manifest
from kubelab_testing.waiting import eventually

# a web server that spends about 20 ms of CPU on each request
SERVER = """
import http.server, math
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        x = 0.0
        for i in range(60000):
            x += math.sqrt(i)
        body = b"OK!"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", 80), H).serve_forever()
"""


def _deployment(namespace: str) -> dict[str, Any]:
    return {
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
                            "image": "python:3.11",
                            "command": ["python", "-c", SERVER],
                            "ports": [{"containerPort": 80}],
                            "resources": {"requests": {"cpu": "100m"}},
                        }
                    ]
                },
            },
        },
    }


def _load(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "load", "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": "load",
                    "image": "busybox",
                    "command": ["sh", "-c", "while true; do wget -q -O- http://burn/ >/dev/null; done"],
                }
            ]
        },
    }


def _hpa(kubectl: Kubectl, namespace: str) -> dict[str, Any]:
    hpa: dict[str, Any] = kubectl.json("get", "hpa.v2.autoscaling", "burn", "-n", namespace)
    return hpa


def test_a_deployment_scales_out_under_cpu_load_and_back_in(kubelab_kubectl: Kubectl) -> None:
    kubectl = kubelab_kubectl
    namespace = f"hpa-{uuid.uuid4().hex[:6]}"
    kubectl.ok("create", "namespace", namespace)
    try:
        kubectl.ok("apply", "-f", "-", stdin=manifest(_deployment(namespace)))
        kubectl.ok("expose", "deployment", "burn", "--port=80", "-n", namespace)
        kubectl.ok("rollout", "status", "deployment/burn", "-n", namespace, "--timeout=300s", timeout=320)
        out = kubectl.ok("autoscale", "deployment", "burn", "--min=1", "--max=3", "--cpu-percent=50", "-n", namespace)
        assert "horizontalpodautoscaler.autoscaling/burn autoscaled" in out
        # the v1 object kubectl made, seen as v2; a short scale-down window for the test
        behavior = {"spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 20}}}}
        kubectl.ok("patch", "hpa", "burn", "-n", namespace, "--type=merge", "-p", manifest(behavior).strip())

        def idle_measured() -> bool:
            return condition(_hpa(kubectl, namespace), "ScalingActive").get("status") == "True"

        assert eventually(idle_measured, timeout=240, what="the HPA reading the pods' CPU")
        kubectl.ok("apply", "-f", "-", stdin=manifest(_load(namespace)))

        def scaled_out() -> bool:
            return int(_hpa(kubectl, namespace).get("status", {}).get("desiredReplicas", 0)) == 3

        assert eventually(scaled_out, timeout=300, what="the HPA scaling out to 3")
        kubectl.ok("rollout", "status", "deployment/burn", "-n", namespace, "--timeout=300s", timeout=320)
        events = kubectl.ok("get", "events", "-n", namespace, "--field-selector", "reason=SuccessfulRescale")
        assert "New size: 3" in events or "New size: 2" in events
        assert "above target" in events
        kubectl.ok("delete", "pod", "load", "-n", namespace, "--wait=false")

        def scaled_in() -> bool:
            spec = kubectl.json("get", "deployment", "burn", "-n", namespace).get("spec", {})
            return int(spec.get("replicas", 0)) == 1

        assert eventually(scaled_in, timeout=300, what="the HPA scaling back in to 1")
        events = kubectl.ok("get", "events", "-n", namespace, "--field-selector", "reason=SuccessfulRescale")
        assert "New size: 1" in events and "below target" in events
        table = kubectl.ok("get", "hpa", "burn", "-n", namespace)
        assert "Deployment/burn" in table and "/50%" in table
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")
