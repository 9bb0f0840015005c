"""Scenario 5: kubectl logs and exec reach containers on the worker VMs through the API server."""

from __future__ import annotations

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually

POD = """
apiVersion: v1
kind: Pod
metadata:
  name: talker
spec:
  containers:
  - name: sh
    image: busybox:1.35.0
    command: [sh, -c, 'echo hello from $(hostname); sleep 3600']
"""


def test_logs_and_exec(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    kubelab_kubectl.ok("apply", "-f", "-", stdin=POD)
    kubelab_kubectl.ok("wait", "--for=condition=Ready", "pod/talker", "--timeout=180s", timeout=200)
    assert eventually(
        lambda: "hello from talker" in kubelab_kubectl("logs", "talker").out, timeout=60, what="the log line"
    )
    out = kubelab_kubectl.ok("exec", "talker", "--", "hostname")
    assert out.strip() == "talker"
    failed = kubelab_kubectl("exec", "talker", "--", "sh", "-c", "exit 3")
    assert failed.code == 3
