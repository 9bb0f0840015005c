"""The proxy against real nftables and routes, inside network namespaces this module creates.

Topology (every namespace is ``kl-px-<random>-<role>`` and is deleted by name afterwards)::

    client 192.168.77.2 --veth-- 192.168.77.1  node  10.244.1.1 (br0) --veth-- ep1 10.244.1.11
                                               (the proxy's table           --veth-- ep2 10.244.1.12
                                                and routes live here)       --veth-- ep3 10.244.1.13
                                               default route: 192.168.78.2 in "uplink", a dead end

Each endpoint runs a small server that answers its own name over HTTP (8080) and UDP (5353). The
proxy runs as a process in the host's namespace, talks to the session's lab API server, and applies
its rules and routes inside the node namespace (``--netns``). Nothing leaves this machine: the
namespaces have no link to the host's network.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kubelab_testing.commands import stop
from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab, free_port
from kubelab_testing.waiting import answers, eventually
from provisioner.project import ROOT
from provisioner.system import packages
from tests.support.components import in_ci, require

pytestmark = pytest.mark.integration

NODE_IP = "192.168.77.1"
CLIENT_IP = "192.168.77.2"
GATEWAY = "10.244.1.1"
ENDPOINTS = {"ep1": "10.244.1.11", "ep2": "10.244.1.12", "ep3": "10.244.1.13"}
CLUSTER_CIDR = "10.244.0.0/16"
HTTP_PORT = 8080
UDP_PORT = 5353
ROLES = ("node", "client", "uplink", *ENDPOINTS)

# An endpoint: answers its name over HTTP and UDP; says "ready" once both sockets are bound.
SERVER = """
import http.server, socket, sys, threading
name = sys.argv[1].encode()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(name)))
        self.end_headers()
        self.wfile.write(name)
    def log_message(self, *args):
        pass
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", int(sys.argv[3])))
def echo():
    while True:
        _, peer = udp.recvfrom(2048)
        udp.sendto(name, peer)
threading.Thread(target=echo, daemon=True).start()
server = http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[2])), Handler)
print("ready", flush=True)
server.serve_forever()
"""

# A client: N requests, each on a new connection (HTTP) or a new socket (UDP); prints one JSON line.
# http.client rather than urllib: no proxy settings from the environment are ever used.
PROBE = """
import http.client, json, socket, sys, time
mode, address, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
out = []
for _ in range(count):
    started = time.monotonic()
    try:
        if mode == "http":
            conn = http.client.HTTPConnection(address, port, timeout=3)
            conn.request("GET", "/")
            out.append({"answer": conn.getresponse().read().decode()})
            conn.close()
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.settimeout(3)
            sock.connect((address, port))
            sock.send(b"who")
            out.append({"answer": sock.recv(2048).decode()})
            sock.close()
    except OSError as exc:
        out.append({"error": type(exc).__name__, "message": str(exc), "seconds": time.monotonic() - started})
print(json.dumps(out))
"""


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class Net:
    prefix: str
    workdir: Path

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    @property
    def node(self) -> str:
        return self.ns("node")

    def probe(self, role: str, mode: str, address: str, port: int, count: int = 1) -> list[dict[str, Any]]:
        script = str(self.workdir / "probe.py")
        done = run("ip", "netns", "exec", self.ns(role), sys.executable, script, mode, address, str(port), str(count))
        result: list[dict[str, Any]] = json.loads(done.stdout)
        return result

    def answers(self, role: str, mode: str, address: str, port: int, count: int) -> set[str]:
        results = self.probe(role, mode, address, port, count)
        failed = [r for r in results if "error" in r]
        assert not failed, f"{len(failed)} of {count} {mode} requests to {address}:{port} failed: {failed[:3]}"
        return {r["answer"] for r in results}

    def table(self) -> str:
        return run("ip", "netns", "exec", self.node, "nft", "list", "table", "ip", "kubelab", check=False).stdout

    def endpoints_in_rules(self, namespace: str, name: str) -> set[str]:
        """The endpoint addresses the rules send the Service's TCP port 80 to."""
        chain = re.search(rf"chain svc-{namespace}/{name}/tcp/80 {{(.*?)\n\t}}", self.table(), re.S)
        return set(re.findall(r"([0-9.]+)(?::| \. )8080", chain.group(1))) if chain else set()

    def routes(self) -> list[dict[str, Any]]:
        out = run("ip", "-n", self.node, "-json", "-4", "route", "show", "table", "main").stdout
        found: list[dict[str, Any]] = json.loads(out or "[]")
        return found


def _build(net: Net, servers: list[subprocess.Popen[str]]) -> None:
    node = net.node
    for role in ROLES:
        run("ip", "netns", "add", net.ns(role))
        run("ip", "-n", net.ns(role), "link", "set", "lo", "up")
    run("ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    # the node's "uplink": a namespace that forwards nothing. Like a real node's default route, it
    # makes a ClusterIP routable, so that traffic to one without endpoints reaches the forward hook
    # (and the proxy's reject) instead of failing as "network unreachable".
    uplink = net.ns("uplink")
    run("ip", "-n", node, "link", "add", "uplink", "type", "veth", "peer", "name", "eth0", "netns", uplink)
    run("ip", "-n", node, "addr", "add", "192.168.78.1/30", "dev", "uplink")
    run("ip", "-n", node, "link", "set", "uplink", "up")
    run("ip", "-n", uplink, "addr", "add", "192.168.78.2/30", "dev", "eth0")
    run("ip", "-n", uplink, "link", "set", "eth0", "up")
    run("ip", "-n", node, "route", "add", "default", "via", "192.168.78.2")
    run("ip", "-n", node, "link", "add", "br0", "type", "bridge")
    run("ip", "-n", node, "addr", "add", f"{GATEWAY}/24", "dev", "br0")
    run("ip", "-n", node, "link", "set", "br0", "up")
    for role, address in ENDPOINTS.items():
        ns = net.ns(role)
        run("ip", "-n", node, "link", "add", f"v{role}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "-n", node, "link", "set", f"v{role}", "master", "br0", "up")
        # as the CNI bridge plugin's hairpinMode does: with br_netfilter loaded (it usually is), a
        # pod's packet DNATed back to that same pod must be allowed out of the port it came in by
        run("ip", "-n", node, "link", "set", f"v{role}", "type", "bridge_slave", "hairpin", "on")
        run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "route", "add", "default", "via", GATEWAY)
    client = net.ns("client")
    run("ip", "-n", node, "link", "add", "vclient", "type", "veth", "peer", "name", "eth0", "netns", client)
    run("ip", "-n", node, "addr", "add", f"{NODE_IP}/24", "dev", "vclient")
    run("ip", "-n", node, "link", "set", "vclient", "up")
    run("ip", "-n", client, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
    run("ip", "-n", client, "link", "set", "eth0", "up")
    run("ip", "-n", client, "route", "add", "default", "via", NODE_IP)
    (net.workdir / "server.py").write_text(SERVER)
    (net.workdir / "probe.py").write_text(PROBE)
    for role in ENDPOINTS:
        argv = [sys.executable, str(net.workdir / "server.py"), role, str(HTTP_PORT), str(UDP_PORT)]
        server = subprocess.Popen(
            ["ip", "netns", "exec", net.ns(role), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        servers.append(server)
    for server in servers:
        assert server.stdout is not None
        line = server.stdout.readline()  # "ready", or "" if it died
        assert line.strip() == "ready", (
            f"an endpoint server did not start: {server.stderr.read() if server.stderr else ''}"
        )


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("CI=true and the proxy's integration test needs root (network namespaces)")
        pytest.skip("network namespaces need root")
    require(packages.NFT)
    created = Net(f"kl-px-{uuid.uuid4().hex[:6]}", tmp_path_factory.mktemp("proxy-net"))
    servers: list[subprocess.Popen[str]] = []
    try:
        _build(created, servers)
        yield created
    finally:
        for server in servers:
            stop(server)
        for role in ROLES:
            run("ip", "netns", "del", created.ns(role), check=False)


@pytest.fixture(scope="module")
def proxy(net: Net, lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The proxy process (host namespace, rules in the node namespace); yields this node's name."""
    node_name = f"{net.prefix}-node"
    port = free_port()
    log_path = tmp_path_factory.mktemp("proxy-log") / "proxy.log"
    argv = [
        sys.executable,
        "-m",
        "agents.proxy",
        "--kubeconfig",
        str(lab.kubeconfig),
        "--netns",
        net.node,
        "--node-name",
        node_name,
        "--node-ip",
        NODE_IP,
        "--cluster-cidr",
        CLUSTER_CIDR,
        "--healthz-port",
        str(port),
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, text=True)

    def ready() -> bool:
        assert process.poll() is None, f"the proxy exited: {log_path.read_text()[-2000:]}"
        return answers(f"http://127.0.0.1:{port}/readyz")

    try:
        eventually(ready, timeout=20, interval=0.05, what="the proxy's /readyz")
        yield node_name
    finally:
        stop(process)


# --- helpers -------------------------------------------------------------------------------------


def service(name: str, namespace: str, *, kind: str = "NodePort") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": kind,
            "ports": [
                {"name": "http", "port": 80, "targetPort": HTTP_PORT, "protocol": "TCP"},
                {"name": "echo", "port": 53, "targetPort": UDP_PORT, "protocol": "UDP"},
            ],
        },
    }


def endpoint_slice(name: str, namespace: str, ready: dict[str, bool]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-1", "namespace": namespace, "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": [ENDPOINTS[role]], "conditions": {"ready": is_ready}} for role, is_ready in ready.items()
        ],
        "ports": [
            {"name": "http", "port": HTTP_PORT, "protocol": "TCP"},
            {"name": "echo", "port": UDP_PORT, "protocol": "UDP"},
        ],
    }


@dataclass(frozen=True)
class Deployed:
    cluster_ip: str
    node_port: int


def deploy(kubectl: Kubectl, net: Net, namespace: str, name: str, ready: dict[str, bool] | None) -> Deployed:
    """A Service (with an EndpointSlice unless ``ready`` is None), once the proxy has programmed it."""
    documents = [service(name, namespace)]
    if ready is not None:
        documents.append(endpoint_slice(name, namespace, ready))
    kubectl.ok("apply", "-f", "-", stdin=manifest(*documents))
    spec = kubectl.json("-n", namespace, "get", "service", name)["spec"]
    deployed = Deployed(spec["clusterIP"], spec["ports"][0]["nodePort"])
    eventually(lambda: f"{deployed.cluster_ip} . tcp . 80" in net.table(), timeout=5, interval=0.02, what="the rules")
    return deployed


# --- the tests -----------------------------------------------------------------------------------


def test_a_cluster_ip_is_answered_by_every_ready_endpoint_in_turn(
    kubectl: Kubectl, net: Net, proxy: str, namespace: str
) -> None:
    svc = deploy(kubectl, net, namespace, "web", {"ep1": True, "ep2": True, "ep3": True})
    assert net.answers("client", "http", svc.cluster_ip, 80, 60) == {"ep1", "ep2", "ep3"}


def test_a_node_port_on_the_node_ip_is_answered_by_the_endpoints(
    kubectl: Kubectl, net: Net, proxy: str, namespace: str
) -> None:
    svc = deploy(kubectl, net, namespace, "web", {"ep1": True, "ep2": True, "ep3": True})
    assert net.answers("client", "http", NODE_IP, svc.node_port, 30) == {"ep1", "ep2", "ep3"}


def test_udp_to_a_cluster_ip_is_dnatted_to_the_endpoints(
    kubectl: Kubectl, net: Net, proxy: str, namespace: str
) -> None:
    svc = deploy(kubectl, net, namespace, "echo", {"ep1": True, "ep2": True, "ep3": True})
    assert net.answers("client", "udp", svc.cluster_ip, 53, 45) == {"ep1", "ep2", "ep3"}


def test_a_service_without_endpoints_is_refused_at_once_not_timed_out(
    kubectl: Kubectl, net: Net, proxy: str, namespace: str
) -> None:
    svc = deploy(kubectl, net, namespace, "empty", None)
    for address, port in ((svc.cluster_ip, 80), (NODE_IP, svc.node_port)):
        [result] = net.probe("client", "http", address, port)
        # refused (a reset or an ICMP error), where a dropped packet would end in a timeout after 3 s
        assert result.get("error") == "ConnectionRefusedError", result


def test_an_endpoint_change_reaches_the_rules_and_the_traffic(
    kubectl: Kubectl, net: Net, proxy: str, namespace: str
) -> None:
    svc = deploy(kubectl, net, namespace, "web", {"ep1": True, "ep2": False, "ep3": True})
    assert net.endpoints_in_rules(namespace, "web") == {"10.244.1.11", "10.244.1.13"}  # ep2 is not ready
    assert net.answers("client", "http", svc.cluster_ip, 80, 30) == {"ep1", "ep3"}

    kubectl.ok("apply", "-f", "-", stdin=manifest(endpoint_slice("web", namespace, {"ep2": True})))
    # how fast (the issue's 1 s) is measured by benchmarks.proxy, not asserted here
    eventually(
        lambda: net.endpoints_in_rules(namespace, "web") == {"10.244.1.12"}, timeout=5, interval=0.01, what="ep2 only"
    )
    assert net.answers("client", "http", svc.cluster_ip, 80, 10) == {"ep2"}


def draining_slice(name: str, namespace: str, conditions: dict[str, dict[str, bool]]) -> dict[str, Any]:
    """An EndpointSlice whose endpoints carry these ready/serving/terminating conditions."""
    body = endpoint_slice(name, namespace, {})
    body["endpoints"] = [{"addresses": [ENDPOINTS[role]], "conditions": c} for role, c in conditions.items()]
    return body


def test_with_no_ready_endpoint_left_new_connections_go_to_those_serving_while_terminating(
    kubectl: Kubectl, net: Net, proxy: str, namespace: str
) -> None:
    draining = {"ready": False, "serving": True, "terminating": True}
    stopped = {"ready": False, "serving": False, "terminating": True}
    svc = deploy(kubectl, net, namespace, "drain", {})
    body = draining_slice("drain", namespace, {"ep1": draining, "ep2": stopped})
    kubectl.ok("apply", "-f", "-", stdin=manifest(body))
    only_ep1 = {"10.244.1.11"}
    eventually(lambda: net.endpoints_in_rules(namespace, "drain") == only_ep1, timeout=5, interval=0.02, what="ep1")
    # rather than refused while a rollout replaces the last ready pods, the request reaches a draining one
    assert net.answers("client", "http", svc.cluster_ip, 80, 10) == {"ep1"}
    assert net.answers("client", "http", NODE_IP, svc.node_port, 10) == {"ep1"}

    ready = {"ready": True, "serving": True, "terminating": False}
    body = draining_slice("drain", namespace, {"ep1": draining, "ep2": stopped, "ep3": ready})
    kubectl.ok("apply", "-f", "-", stdin=manifest(body))
    only_ep3 = {"10.244.1.13"}
    eventually(lambda: net.endpoints_in_rules(namespace, "drain") == only_ep3, timeout=5, interval=0.02, what="ep3")
    assert net.answers("client", "http", svc.cluster_ip, 80, 10) == {"ep3"}  # a ready one again: only it


# A client that opens one connection, sends half a request, and finishes it only when told (a line on
# its standard input): the answer shows which endpoint the connection stayed with.
HALF_REQUEST = """
import socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
sock.sendall(b"GET / HTTP/1.0\\r\\n")
print("connected", flush=True)
sys.stdin.readline()
sock.sendall(b"\\r\\n")
answer = b""
while chunk := sock.recv(4096):
    answer += chunk
print(answer.split(b"\\r\\n\\r\\n", 1)[-1].decode(), flush=True)
"""


def test_an_established_connection_keeps_its_endpoint_when_the_table_is_rebuilt_without_it(
    kubectl: Kubectl, net: Net, proxy: str, namespace: str
) -> None:
    svc = deploy(kubectl, net, namespace, "kept", {"ep1": True})
    script = net.workdir / "half_request.py"
    script.write_text(HALF_REQUEST)
    argv = ["ip", "netns", "exec", net.ns("client"), sys.executable, str(script), svc.cluster_ip, "80"]
    client = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None and client.stdin is not None
        assert client.stdout.readline().strip() == "connected"
        kubectl.ok("apply", "-f", "-", stdin=manifest(endpoint_slice("kept", namespace, {"ep2": True})))
        only_ep2 = {"10.244.1.12"}
        eventually(lambda: net.endpoints_in_rules(namespace, "kept") == only_ep2, timeout=5, interval=0.02, what="ep2")
        assert net.answers("client", "http", svc.cluster_ip, 80, 3) == {"ep2"}  # new connections: the new rules
        out, err = client.communicate("go\n", timeout=10)
        assert client.returncode == 0, err
        assert out.strip() == "ep1"  # the old connection: still its endpoint, through conntrack
    finally:
        stop(client)


def test_an_endpoint_reaching_itself_through_its_service_is_answered(
    kubectl: Kubectl, net: Net, proxy: str, namespace: str
) -> None:
    svc = deploy(kubectl, net, namespace, "self", {"ep1": True})
    assert net.answers("ep1", "http", svc.cluster_ip, 80, 3) == {"ep1"}


def test_pod_cidrs_of_other_nodes_are_routed_via_their_ip_and_foreign_routes_left_alone(
    kubectl: Kubectl, net: Net, proxy: str
) -> None:
    peer, squatter = f"{net.prefix}-peer", f"{net.prefix}-squat"
    run("ip", "-n", net.node, "route", "add", "10.244.78.0/24", "via", CLIENT_IP)  # someone else's route

    def node(name: str, cidr: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": CLIENT_IP}]},
        }

    def route(cidr: str) -> dict[str, Any] | None:
        return next((r for r in net.routes() if r.get("dst") == cidr), None)

    nodes = [node(peer, "10.244.77.0/24"), node(squatter, "10.244.78.0/24"), node(proxy, "10.244.76.0/24")]
    try:
        kubectl.ok("apply", "-f", "-", stdin=manifest(*nodes))
        installed = eventually(lambda: route("10.244.77.0/24"), timeout=5, interval=0.02, what="the peer's route")
        assert installed["gateway"] == CLIENT_IP and installed["protocol"] == "75"
        assert route("10.244.76.0/24") is None  # the proxy's own node gets no route
        foreign = route("10.244.78.0/24")
        assert foreign is not None and "protocol" not in foreign  # still the "boot" route added above
        kubectl.ok("delete", "node", peer, squatter, "--wait=false")
        eventually(lambda: route("10.244.77.0/24") is None, timeout=5, interval=0.02, what="the peer's route removed")
        assert route("10.244.78.0/24") is not None
    finally:
        kubectl("delete", "node", peer, squatter, proxy, "--ignore-not-found", "--wait=false")
