"""The kubelet of a lab's real node serves its usage: ``/metrics/resource`` and ``/stats/summary`` show
a pod that burns CPU using more and more of it, read from its cgroup; and the port lets in the API
server's token, a ServiceAccount whose RBAC grants ``nodes/metrics`` (reviewed through the API
server), and nobody else: 403 without the grant, 401 for a token the API server does not know."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually

BURN = {"name": "burn", "image": "busybox", "command": ["sh", "-c", "while :; do :; done"]}


@dataclass(frozen=True)
class KubeletPort:
    """The node's kubelet as a client on this host reaches it: its address, the cluster CA, the API
    server's kubelet client token."""

    url: str
    node: str
    context: ssl.SSLContext
    apiserver_token: str

    def get(self, path: str, token: str) -> tuple[int, str, str]:
        """(status, Content-Type, body) of GET ``path`` with ``token``."""
        request = urllib.request.Request(self.url + path, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=30) as answer:
                return answer.status, answer.headers.get("Content-Type", ""), answer.read().decode()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.headers.get("Content-Type", ""), refused.read().decode()


@pytest.fixture(scope="module")
def lab_port(node_lab: Lab, node_kubectl: Kubectl) -> tuple[Kubectl, KubeletPort]:
    k = node_kubectl
    [node] = k.json("get", "nodes")["items"]
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    pki = Path(node_lab.root) / "pki"
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))  # the serving certificate is checked
    token = (pki / "apiserver-kubelet-client.token").read_text().strip()
    return k, KubeletPort(f"https://127.0.0.1:{port}", node["metadata"]["name"], context, token)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, float | None]]:
    """Each sample of a Prometheus text by (name, labels): (value, timestamp in seconds)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            stamp = float(sample.timestamp) if sample.timestamp is not None else None
            out[(sample.name, tuple(sorted(sample.labels.items())))] = (sample.value, stamp)
    return out


def burn_labels(container: bool = True) -> tuple[tuple[str, str], ...]:
    labels = {"pod": "burn", "namespace": "default", **({"container": "burn"} if container else {})}
    return tuple(sorted(labels.items()))


def test_a_pod_burning_cpu_shows_its_counter_growing_and_its_memory(lab_port: tuple[Kubectl, KubeletPort]) -> None:
    k, port = lab_port
    k.ok(
        "apply",
        "-f",
        "-",
        stdin=manifest(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "burn"}, "spec": {"containers": [BURN]}}
        ),
    )
    eventually(lambda: k.json("get", "pod", "burn")["status"].get("phase") == "Running", timeout=90, what="burn runs")

    def metrics() -> dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, float | None]]:
        status, content_type, body = port.get("/metrics/resource", port.apiserver_token)
        assert status == 200, body
        assert content_type.startswith("text/plain; version=0.0.4")
        return samples(body)

    first = eventually(
        lambda: (m := metrics()) and ("container_cpu_usage_seconds_total", burn_labels()) in m and m,
        timeout=30,
        what="the burning container in /metrics/resource",
    )
    cpu, stamp = first[("container_cpu_usage_seconds_total", burn_labels())]
    assert stamp is not None and stamp > 1e9  # each sample has the time of its reading
    assert first[("container_memory_working_set_bytes", burn_labels())][0] > 0
    assert first[("pod_memory_working_set_bytes", burn_labels(container=False))][0] > 0
    assert first[("container_start_time_seconds", burn_labels())][0] > 1e9
    assert first[("node_cpu_usage_seconds_total", ())][0] > 0
    assert first[("node_memory_working_set_bytes", ())][0] > 0
    assert first[("scrape_error", ())][0] == 0
    later = eventually(
        lambda: (m := metrics())[("pod_cpu_usage_seconds_total", burn_labels(container=False))][0] > cpu + 1.0 and m,
        timeout=30,
        what="the pod's CPU counter to grow by a second",
    )
    assert later[("container_cpu_usage_seconds_total", burn_labels())][0] > cpu + 1.0

    def burning() -> dict[str, Any] | None:
        status, content_type, body = port.get("/stats/summary", port.apiserver_token)
        assert status == 200 and content_type.startswith("application/json"), body
        summary = json.loads(body)
        pod = next((p for p in summary["pods"] if p["podRef"]["name"] == "burn"), None)
        return summary if pod is not None and "usageNanoCores" in pod["cpu"] else None

    summary = eventually(burning, timeout=40, what="a CPU rate for burn in /stats/summary")
    assert summary["node"]["nodeName"] == port.node
    assert summary["node"]["cpu"]["usageCoreNanoSeconds"] > 0 and summary["node"]["memory"]["workingSetBytes"] > 0
    [pod] = [p for p in summary["pods"] if p["podRef"]["name"] == "burn"]
    assert pod["podRef"]["namespace"] == "default" and pod["podRef"]["uid"]
    assert pod["cpu"]["usageNanoCores"] > 100_000_000  # a busy loop: far more than a tenth of a core
    assert pod["memory"]["workingSetBytes"] > 0
    assert [c["name"] for c in pod["containers"]] == ["burn"]
    k.ok("delete", "pod", "burn", "--grace-period=0", "--force")


def test_only_tokens_allowed_nodes_metrics_get_in(lab_port: tuple[Kubectl, KubeletPort]) -> None:
    k, port = lab_port
    k.ok("create", "serviceaccount", "nobody")
    k.ok("create", "serviceaccount", "scraper")
    k.ok("create", "clusterrole", "node-metrics-reader", "--verb=get", "--resource=nodes/metrics")
    k.ok(
        "create",
        "clusterrolebinding",
        "scraper",
        "--clusterrole=node-metrics-reader",
        "--serviceaccount=default:scraper",
    )
    nobody = k.ok("create", "token", "nobody").strip()
    scraper = k.ok("create", "token", "scraper").strip()

    status, _, body = port.get("/metrics/resource", nobody)
    assert (status, body) == (
        403,
        "Forbidden (user=system:serviceaccount:default:nobody, verb=get, resource=nodes, subresource=metrics)",
    )
    eventually(lambda: port.get("/metrics/resource", scraper)[0] == 200, timeout=20, what="the scraper let in")
    status, _, body = port.get("/stats/summary", scraper)  # nodes/stats is not granted
    assert (status, body) == (
        403,
        "Forbidden (user=system:serviceaccount:default:scraper, verb=get, resource=nodes, subresource=stats)",
    )
    assert port.get("/metrics/resource", "not-a-token")[:3:2] == (401, "Unauthorized")
    assert port.get("/stats/summary", port.apiserver_token)[0] == 200
