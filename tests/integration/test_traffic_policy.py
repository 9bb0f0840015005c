"""``externalTrafficPolicy: Local`` on a local lab's real node: a LoadBalancer Service gets a
``healthCheckNodePort``, where the proxy answers kube-proxy's health check (200 with one local
endpoint while the pod runs on the node, 503 with none once the Deployment is scaled to 0); and a
client outside the node reaches the NodePort with its own address kept (an echo server in the pod
prints the peer it sees).

The client is a network namespace of the test's own (``kl-tp-<random>``), linked to the node's
namespace by a veth pair, as a load balancer in front of the node would be; deleting it afterwards
removes the pair from the node too."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from provisioner.drivers.local import nodenet
from provisioner.system import packages
from tests.support.components import require

# answers every GET with the address and port of the peer it sees
ECHO = """
import http.server
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"peer {self.client_address[0]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("", 8080), Echo).serve_forever()
"""


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"ip {' '.join(args)}: {done.stderr.strip()}"


@pytest.fixture(scope="module")
def client(node_lab: Lab) -> Iterator[tuple[str, str]]:
    """A client namespace one hop from the node: (its name, its address)."""
    require(packages.CURL)
    node = nodenet.for_lab(node_lab.name).netns
    tag = uuid.uuid4().hex[:6]
    name, subnet = f"kl-tp-{tag}", f"10.251.{int(tag[:2], 16)}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", f"kltp{tag}", "netns", node)
        ip("-n", name, "addr", "add", f"{subnet}.2/30", "dev", "eth0")
        ip("-n", name, "link", "set", "eth0", "up")
        ip("-n", name, "route", "add", "default", "via", f"{subnet}.1")
        ip("-n", node, "addr", "add", f"{subnet}.1/30", "dev", f"kltp{tag}")
        ip("-n", node, "link", "set", f"kltp{tag}", "up")
        yield name, f"{subnet}.2"
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def curl(netns: str, url: str) -> tuple[int, str]:
    """An HTTP GET from inside ``netns``: (status, body); status 0 when nothing answered."""
    argv = ["ip", "netns", "exec", netns, "curl", "-s", "--max-time", "3", "-w", "\n%{http_code}", url]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    body, _, code = done.stdout.rpartition("\n")
    return int(code or 0), body


@pytest.fixture(scope="module")
def local_service(node_kubectl: Kubectl) -> Iterator[tuple[str, dict[str, Any]]]:
    """A namespace with the echo Deployment (one pod) behind a LoadBalancer Service with
    ``externalTrafficPolicy: Local``; (namespace, the Service as the API server stored it)."""
    k = node_kubectl
    namespace = f"tp-{uuid.uuid4().hex[:6]}"
    k.ok("create", "namespace", namespace)
    container = {
        "name": "echo",
        "image": "python:3",
        "command": ["python3", "-c", ECHO],
        "ports": [{"containerPort": 8080}],
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "echo", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "echo"}},
            "template": {"metadata": {"labels": {"app": "echo"}}, "spec": {"containers": [container]}},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "echo", "namespace": namespace},
        "spec": {
            "type": "LoadBalancer",
            "externalTrafficPolicy": "Local",
            "selector": {"app": "echo"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }
    try:
        k.ok("apply", "-f", "-", stdin=manifest(deployment, service))
        eventually(
            lambda: k.json("get", "deployment", "echo", "-n", namespace)["status"].get("readyReplicas") == 1,
            timeout=180,
            what="the echo pod to be ready",
        )
        yield namespace, k.json("get", "service", "echo", "-n", namespace)
    finally:
        k("delete", "namespace", namespace, "--wait=false")


def test_the_health_check_and_the_node_port_follow_the_local_endpoint(
    node_lab: Lab, node_kubectl: Kubectl, client: tuple[str, str], local_service: tuple[str, dict[str, Any]]
) -> None:
    client_ns, client_ip = client
    namespace, service = local_service
    spec = service["spec"]
    check_port, node_port = spec["healthCheckNodePort"], spec["ports"][0]["nodePort"]
    assert 30000 <= check_port <= 32767 and check_port != node_port
    node_ip = nodenet.for_lab(node_lab.name).ip

    def health() -> tuple[int, dict[str, Any]]:
        status, body = curl(client_ns, f"http://{node_ip}:{check_port}/healthz")
        return status, (json.loads(body) if status else {})

    expected = {"service": {"namespace": namespace, "name": "echo"}, "serviceProxyHealthy": True}
    up = eventually(lambda: (found := health())[0] == 200 and found, timeout=30, what="the health check to answer 200")
    assert up[1] == {**expected, "localEndpoints": 1}

    # the client's own address reaches the pod: no masquerade for traffic to a Local Service's NodePort
    answered = eventually(
        lambda: (found := curl(client_ns, f"http://{node_ip}:{node_port}/"))[0] == 200 and found,
        timeout=30,
        what="the NodePort to answer",
    )
    assert answered[1] == f"peer {client_ip}"

    node_kubectl.ok("scale", "deployment", "echo", "-n", namespace, "--replicas", "0")
    down = eventually(
        lambda: (found := health())[0] == 503 and found, timeout=60, what="the health check to answer 503"
    )
    assert down[1] == {**expected, "localEndpoints": 0}
