"""The cloud's load balancers with the real haproxy, in a network namespace of this test's own.

The namespace holds a bridge like a lab network's (the cloud's address on it) and two "nodes" (two
addresses, each with an HTTP server on the same NodePort). The cloud process
(``python -m provisioner.drivers.libvirt.cloud``) runs inside it, as it runs inside kubelab's namespace
for a VM lab; every request to it and through its load balancers is made inside the namespace too.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelab_testing.commands import stop
from kubelab_testing.waiting import eventually
from provisioner.lab.pki import Pki
from provisioner.system import packages
from tests.support.components import require

SUBNET = "10.77.0"
GATEWAY, NODES, POOL = f"{SUBNET}.1", {"node-a": f"{SUBNET}.11", "node-b": f"{SUBNET}.12"}, f"{SUBNET}.200-{SUBNET}.201"
NODE_PORT, PORT = 30080, 7443


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def netns() -> Iterator[tuple[str, str]]:
    """(namespace, bridge): a bridge with the cloud's address, and the nodes' two on a veth of their own."""
    require(packages.IPROUTE, packages.CURL, packages.HAPROXY)
    name, bridge = f"klb-{uuid.uuid4().hex[:8]}", "klbtest0"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "add", bridge, "type", "bridge")
        _ip("-n", name, "addr", "add", f"{GATEWAY}/24", "dev", bridge)
        _ip("-n", name, "link", "set", bridge, "up")
        _ip("-n", name, "link", "add", "nodes0", "type", "veth", "peer", "name", "nodes1")
        for address in NODES.values():
            _ip("-n", name, "addr", "add", f"{address}/32", "dev", "nodes0")
        for link in ("nodes0", "nodes1"):
            _ip("-n", name, "link", "set", link, "up")
        yield name, bridge
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def _in(netns: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    argv = ("ip", "netns", "exec", netns, *argv)
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def node_servers(netns: tuple[str, str], tmp_path: Path) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    servers = {}
    for node, address in NODES.items():
        root = tmp_path / node
        root.mkdir()
        (root / "index.html").write_text(node)
        argv = [sys.executable, "-m", "http.server", "--bind", address, "--directory", str(root), str(NODE_PORT)]
        servers[node] = subprocess.Popen(
            ["ip", "netns", "exec", netns[0], *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    try:

        def serving() -> bool:
            return all(_get(netns[0], f"http://{a}:{NODE_PORT}/") for a in NODES.values())

        eventually(serving, timeout=20, what="the node servers")
        yield servers
    finally:
        for server in servers.values():
            stop(server)


@pytest.fixture
def cloud(netns: tuple[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    name, bridge = netns
    pki = Pki(tmp_path / "pki")
    pki.ensure_ca()
    pki.ensure_serving(dns_names=[], ips=[GATEWAY], name="cloud", common_name="kubelab-cloud")
    token = secrets.token_hex(16)
    (tmp_path / "token").write_text(token)
    argv = [
        sys.executable, "-m", "provisioner.drivers.libvirt.cloud",
        "--lab", "lbtest", "--uri", "test:///default", "--network-cidr", f"{SUBNET}.0/24",
        "--address", GATEWAY, "--port", str(PORT),
        "--cert", str(pki.serving_cert("cloud")), "--key", str(pki.serving_key("cloud")),
        "--token-file", str(tmp_path / "token"),
        "--lb-range", POOL, "--bridge", bridge, "--state-dir", str(tmp_path / "state"),
    ]  # fmt: skip
    process = subprocess.Popen(["ip", "netns", "exec", name, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    found = {
        "netns": name,
        "bridge": bridge,
        "token": token,
        "ca": str(pki.ca_cert),
        "process": process,
        "config": str(tmp_path / "state" / "haproxy.cfg"),
    }
    try:
        eventually(lambda: _api(found, "GET", "/v1/loadbalancers")[0] == 200, timeout=30, what="the cloud API")
        yield found
    finally:
        stop(process)
        print((process.stdout.read() if process.stdout else b"").decode(errors="replace")[-3000:])


def _api(cloud: dict[str, Any], method: str, path: str, body: Any = None) -> tuple[int, Any]:
    argv = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "--cacert", cloud["ca"]]
    argv += ["-H", f"Authorization: Bearer {cloud['token']}", f"https://{GATEWAY}:{PORT}{path}"]
    if body is not None:
        argv += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
    done = _in(cloud["netns"], *argv)
    text, _, code = done.stdout.rpartition("\n")
    return int(code or 0), json.loads(text) if text.strip() else None


def _get(netns: str, url: str) -> str:
    done = _in(netns, "curl", "-s", "--max-time", "3", url)
    return done.stdout if done.returncode == 0 else ""


def _haproxy_running(config: str) -> bool:
    """Whether an haproxy with this configuration file runs (the cloud's)."""
    found = subprocess.run(["ps", "-ww", "-eo", "args"], check=True, capture_output=True, text=True).stdout
    return any(line.split(" ", 1)[0].endswith("haproxy") and config in line for line in found.splitlines())


def test_a_load_balancer_spreads_over_healthy_nodes_and_goes_with_its_address(
    cloud: dict[str, Any], node_servers: dict[str, subprocess.Popen[bytes]]
) -> None:
    ns = cloud["netns"]
    assert not _haproxy_running(cloud["config"])  # none before the first load balancer
    body = {
        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "nodePort": NODE_PORT}],
        "nodes": [{"name": n, "address": a} for n, a in NODES.items()],
    }
    code, made = _api(cloud, "PUT", "/v1/loadbalancers/default-web", body)
    assert code == 200 and made["address"] == f"{SUBNET}.200", made
    assert _api(cloud, "PUT", "/v1/loadbalancers/default-web", body)[1]["address"] == made["address"]  # kept
    url = f"http://{made['address']}/"
    eventually(lambda: _get(ns, url) in NODES, timeout=20, what="the load balancer to answer")
    seen = {_get(ns, url) for _ in range(10)}
    assert seen == set(NODES), seen  # round robin over both nodes

    # a node that dies stops getting connections once its checks fail (2 of them, 2 s apart)
    stop(node_servers["node-b"])
    began = time.monotonic()
    eventually(lambda: all(_get(ns, url) == "node-a" for _ in range(4)), timeout=20, what="node-b taken out")
    print(f"node-b out of the load balancer after {time.monotonic() - began:.1f}s")
    assert all(_get(ns, url) == "node-a" for _ in range(20))

    # the pool has two addresses: a second load balancer gets the other, a third none (409, said why)
    assert _api(cloud, "PUT", "/v1/loadbalancers/other", body)[1]["address"] == f"{SUBNET}.201"
    code, refused = _api(cloud, "PUT", "/v1/loadbalancers/third", body)
    assert code == 409 and "no address left in the load balancer pool" in refused["error"], refused
    code, bad = _api(
        cloud, "PUT", "/v1/loadbalancers/udp", {**body, "ports": [{"protocol": "UDP", "port": 53, "nodePort": 30053}]}
    )
    assert code == 400 and "TCP only" in bad["error"], bad  # fmt: skip

    # deleting one frees its address: the bridge no longer has it, and the pool hands it out again
    assert _api(cloud, "DELETE", "/v1/loadbalancers/default-web")[0] == 200
    assert f"{SUBNET}.200/32" not in _in(ns, "ip", "addr", "show", "dev", cloud["bridge"]).stdout
    assert _api(cloud, "GET", "/v1/loadbalancers/default-web")[0] == 404
    assert not _get(ns, url)
    assert _api(cloud, "PUT", "/v1/loadbalancers/third", body)[1]["address"] == f"{SUBNET}.200"

    # the cloud stopped: haproxy ends with it and the addresses leave the bridge
    assert _haproxy_running(cloud["config"])
    stop(cloud["process"])
    eventually(lambda: not _haproxy_running(cloud["config"]), timeout=10, what="haproxy to end with the cloud")
    assert f"{SUBNET}.201/32" not in _in(ns, "ip", "addr", "show", "dev", cloud["bridge"]).stdout
