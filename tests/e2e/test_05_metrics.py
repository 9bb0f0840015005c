"""Scenario 5d: resource metrics on the VMs.

Every lab runs the metrics-server add-on: it scrapes each node's kubelet (``/metrics/resource``, read
from the guests' cgroups) and serves ``metrics.k8s.io`` through the API server's aggregation layer,
so ``kubectl top`` shows every node and the add-ons' pods. The HorizontalPodAutoscaler scaling a
Deployment under CPU load is the long tier's (tests/e2e_long/test_autoscaling.py) and the
integration tier's (tests/integration/test_autoscaling.py).
"""

from __future__ import annotations

from kubelab_testing.kubectl import Kubectl, condition
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually


def test_kubectl_top_shows_every_node(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    kubectl = kubelab_kubectl

    def available() -> bool:
        service = kubectl.json("get", "apiservice", "v1beta1.metrics.k8s.io")
        return condition(service, "Available").get("status") == "True"

    assert eventually(available, timeout=300, what="the metrics API available")
    names = {node.name for node in kubelab_lab.nodes}

    def top_nodes() -> dict[str, list[str]]:
        result = kubectl("top", "nodes", "--no-headers")
        rows = {line.split()[0]: line.split()[1:] for line in result.out.splitlines() if line.strip()}
        return rows if result.ok and set(rows) == names else {}

    rows = eventually(top_nodes, timeout=180, what="kubectl top nodes listing every node")
    for node, (cpu, cpu_percent, memory, memory_percent) in rows.items():
        assert cpu.endswith("m") and int(cpu[:-1]) > 0, (node, cpu)
        assert memory.endswith("Mi") and int(memory[:-2]) > 0, (node, memory)
        assert cpu_percent.endswith("%") and memory_percent.endswith("%")
    pods = kubectl.ok("top", "pods", "-n", "kube-system", "--no-headers")
    assert "kube-dns-" in pods and "metrics-server-" in pods
