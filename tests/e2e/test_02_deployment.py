"""Scenario 2: a 3-replica Deployment spreads over both workers and runs there in containerd."""

from __future__ import annotations

from typing import Any

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: echo
        image: echo:1.0
        ports: [{containerPort: 8080}]
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: POD_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 2
"""


def running_pods(kubectl: Kubectl, selector: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = kubectl.json("get", "pods", "-l", selector)["items"]
    return [p for p in pods if p["status"].get("phase") == "Running" and "deletionTimestamp" not in p["metadata"]]


def test_three_replicas_spread_over_both_workers(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    kubelab_kubectl.ok("apply", "-f", "-", stdin=MANIFEST)
    kubelab_kubectl.ok("rollout", "status", "deployment/web", "--timeout=300s", timeout=320)
    pods = eventually(
        lambda: (p := running_pods(kubelab_kubectl, "app=web")) and len(p) == 3 and p, timeout=60, what="3 pods"
    )
    hosts = {p["spec"]["nodeName"] for p in pods}
    assert hosts == {w.name for w in kubelab_lab.workers}
    assert all(p["status"]["podIP"].startswith("10.244.") for p in pods)
