"""``externalTrafficPolicy: Local`` in the proxy: the planned rules (local endpoints for NodePort
traffic, the client's address kept, dropped without a local endpoint, the ClusterIP unchanged) and
kube-proxy's service health check (the pure plan, the answers, the listeners opened and closed)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import uuid
from typing import Any

import pytest

from agents.proxy.model import Endpoint, PortRef, endpoints_from, service_from
from agents.proxy.rules import NodeConfig, render
from agents.proxy.servicehealth import HealthCheck, ServiceHealthServer, answer, plan

NODE = NodeConfig(cluster_cidr="10.244.0.0/16", node_name="node-a")


def lb(policy: str = "Local", *, health_check: int | None = 32100, kind: str = "LoadBalancer") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": kind,
        "clusterIP": "10.96.0.10",
        "clusterIPs": ["10.96.0.10"],
        "externalTrafficPolicy": policy,
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
    }
    if health_check is not None:
        spec["healthCheckNodePort"] = health_check
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": spec}


def endpoint(address: str, node: str, *, ready: bool = True, terminating: bool = False) -> dict[str, Any]:
    return {
        "addresses": [address],
        "nodeName": node,
        "conditions": {"ready": ready, "serving": True, "terminating": terminating},
    }


def slices(*endpoints: dict[str, Any]) -> dict[PortRef, tuple[Endpoint, ...]]:
    return endpoints_from(
        [
            {
                "metadata": {"name": "web-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "endpoints": list(endpoints),
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        ]
    )


def chain(ruleset: str, name: str) -> list[str]:
    lines = ruleset.splitlines()
    start = lines.index(f"\tchain {name} {{")
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start + 1 : end]]


def rendered(service: dict[str, Any], *eps: dict[str, Any], node: NodeConfig = NODE) -> str:
    model = service_from(service)
    assert model is not None
    return render([model], slices(*eps), node)


def test_the_model_keeps_the_policy_the_health_check_port_and_each_endpoints_node() -> None:
    model = service_from(lb())
    assert model is not None and model.external_local and model.health_check_node_port == 32100
    cluster = service_from(lb("Cluster", health_check=None))
    assert cluster is not None and not cluster.external_local and cluster.health_check_node_port is None
    node_port = service_from(lb(kind="NodePort", health_check=None))
    assert node_port is not None and node_port.external_local and node_port.health_check_node_port is None
    (found,) = slices(endpoint("10.244.1.5", "node-a")).values()
    assert found[0].node_name == "node-a"


def test_local_nodeport_traffic_goes_to_this_nodes_endpoints_only_and_keeps_the_client_address() -> None:
    ruleset = rendered(lb(), endpoint("10.244.1.5", "node-a"), endpoint("10.244.2.7", "node-b"))
    assert chain(ruleset, "ext-default/web/tcp/80") == [
        "ip saddr 10.244.0.0/16 goto svc-default/web/tcp/80",
        "fib saddr type local jump mark-for-masquerade",
        "fib saddr type local goto svc-default/web/tcp/80",
        "meta l4proto tcp dnat to 10.244.1.5:8080",
    ]
    # the ClusterIP keeps the Cluster behaviour: both endpoints
    assert chain(ruleset, "svc-default/web/tcp/80")[-1] == (
        "meta l4proto tcp dnat ip to numgen random mod 2 map { 0 : 10.244.1.5 . 8080, 1 : 10.244.2.7 . 8080 }"
    )
    assert "tcp . 30080 : goto ext-default/web/tcp/80," in ruleset


def test_cluster_policy_nodeport_traffic_is_masqueraded_to_every_endpoint() -> None:
    ruleset = rendered(
        lb("Cluster", health_check=None), endpoint("10.244.1.5", "node-a"), endpoint("10.244.2.7", "node-b")
    )
    assert chain(ruleset, "ext-default/web/tcp/80") == ["jump mark-for-masquerade", "goto svc-default/web/tcp/80"]


def test_without_a_local_endpoint_nodeport_traffic_is_dropped_and_without_any_rejected() -> None:
    elsewhere = rendered(lb(), endpoint("10.244.2.7", "node-b"))
    assert "tcp . 30080 : drop," in elsewhere
    assert "ext-default/web/tcp/80" not in elsewhere
    assert "10.96.0.10 . tcp . 80 : goto svc-default/web/tcp/80," in elsewhere  # the ClusterIP still answers
    nowhere = rendered(lb())
    assert "tcp . 30080 : goto reject-chain," in nowhere


def test_a_terminating_local_endpoint_serves_when_no_local_one_is_ready() -> None:
    ruleset = rendered(
        lb(), endpoint("10.244.1.5", "node-a", ready=False, terminating=True), endpoint("10.244.2.7", "node-b")
    )
    assert chain(ruleset, "ext-default/web/tcp/80")[-1] == "meta l4proto tcp dnat to 10.244.1.5:8080"


def test_without_a_cluster_cidr_only_the_nodes_own_traffic_is_sent_to_the_cluster() -> None:
    ruleset = rendered(lb(), endpoint("10.244.1.5", "node-a"), node=NodeConfig(node_name="node-a"))
    assert chain(ruleset, "ext-default/web/tcp/80")[0] == "fib saddr type local jump mark-for-masquerade"


@pytest.mark.skipif(shutil.which("nft") is None or shutil.which("ip") is None, reason="needs nft and ip")
def test_nft_accepts_the_local_rules() -> None:
    ruleset = rendered(
        lb(), endpoint("10.244.1.5", "node-a"), endpoint("10.244.1.6", "node-a"), endpoint("10.244.2.7", "node-b")
    )
    ruleset += rendered(lb(), endpoint("10.244.2.7", "node-b")).split("\n", 1)[1]  # and the drop, in a 2nd table
    netns = f"kl-tp-{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", netns], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace: {made.stderr.strip()}")
    try:
        checked = subprocess.run(
            ["ip", "netns", "exec", netns, "nft", "-c", "-f", "-"],
            input=ruleset,
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr
    finally:
        subprocess.run(["ip", "netns", "delete", netns], check=False)


# --- the service health check ----------------------------------------------------------------------


def test_the_plan_counts_this_nodes_ready_endpoints_per_service() -> None:
    model = service_from(lb())
    cluster = service_from(lb("Cluster", health_check=None))
    assert model is not None and cluster is not None
    eps = slices(
        endpoint("10.244.1.5", "node-a"),
        endpoint("10.244.1.6", "node-a", ready=False, terminating=True),
        endpoint("10.244.2.7", "node-b"),
    )
    assert plan([model], eps, node_name="node-a") == {32100: HealthCheck(32100, "default", "web", 1)}
    assert plan([model], eps, node_name="node-c") == {32100: HealthCheck(32100, "default", "web", 0)}
    assert plan([model], {}, node_name="node-a") == {32100: HealthCheck(32100, "default", "web", 0)}
    assert plan([cluster], eps, node_name="node-a") == {}


def test_the_answer_is_kube_proxys() -> None:
    status, body = answer(HealthCheck(32100, "default", "web", 2))
    assert status == 200
    assert json.loads(body) == {
        "service": {"namespace": "default", "name": "web"},
        "localEndpoints": 2,
        "serviceProxyHealthy": True,
    }
    status, body = answer(HealthCheck(32100, "default", "web", 0))
    assert status == 503 and json.loads(body)["localEndpoints"] == 0


async def _get(port: int, path: str = "/healthz") -> tuple[int, dict[str, str], dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: node\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_the_server_answers_any_path_follows_the_plan_and_closes_ports_no_longer_planned() -> None:
    port = _free_port()
    server = ServiceHealthServer(address="127.0.0.1")
    try:
        await server.apply({port: HealthCheck(port, "default", "web", 1)})
        status, headers, body = await _get(port)
        assert status == 200 and body["localEndpoints"] == 1 and body["service"]["name"] == "web"
        assert headers["Content-Type"] == "application/json"
        assert headers["X-Load-Balancing-Endpoint-Weight"] == "1"
        await server.apply({port: HealthCheck(port, "default", "web", 0)})
        status, _, body = await _get(port, "/anything")
        assert status == 503 and body["localEndpoints"] == 0
        await server.apply({})
        assert server.ports == []
        with pytest.raises(OSError):
            await _get(port)
    finally:
        await server.close()


async def test_a_port_that_cannot_be_opened_is_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    server = ServiceHealthServer(address="127.0.0.1")
    try:
        await server.apply({port: HealthCheck(port, "default", "web", 1)})
        assert server.ports == [] and "cannot serve the health check of service default/web" in caplog.text
        holder.close()
        await server.apply({port: HealthCheck(port, "default", "web", 1)})
        assert server.ports == [port]
    finally:
        holder.close()
        await server.close()
