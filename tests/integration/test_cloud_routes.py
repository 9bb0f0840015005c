"""The cloud's router with the real kernel, in network namespaces of this test's own.

The router's namespace holds two bridges like two labs' networks (each with its gateway address): lab
one has two "nodes" (each a namespace on a veth of the bridge, with an address on the lab network, a
pod address on its loopback and a default route via the gateway), lab two one. Packets between the
nodes' pod addresses go by the gateway, which routes them by lab one's table; lab two, with the same
pod CIDR, routes by its own, and nothing is forwarded from one bridge to the other. The second test
runs the cloud process itself (``python -m provisioner.drivers.libvirt.cloud``) over a state file: the
kernel routes as the file says while it runs, and not after it stopped.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from kubelab_testing.commands import stop
from kubelab_testing.waiting import eventually
from provisioner.cloud import instances as cloud
from provisioner.cloud import routes
from provisioner.cloud.router import Router, RouterError
from provisioner.lab.pki import Pki
from provisioner.system import netns as netns_module
from provisioner.system import packages
from tests.support.components import require

pytestmark = pytest.mark.integration

LAB1, LAB2 = "klrt1", "klrt2"  # the bridges
GW1, GW2 = "10.77.0.1", "10.78.0.1"
NODE_A, NODE_B, NODE_C = "10.77.0.11", "10.77.0.12", "10.78.0.11"
POD_A, POD_B = "10.244.1.1", "10.244.2.1"
PORT = 8080
T = TypeVar("T")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _in(ns: str, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], check=False, capture_output=True, text=True, timeout=timeout
    )


@dataclass(frozen=True)
class Namespaces:
    router: str
    a: str
    b: str
    c: str


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    require(packages.IPROUTE, packages.NFT, packages.CURL)
    base = f"kltest-rt-{uuid.uuid4().hex[:8]}"
    made = Namespaces(base, f"{base}-a", f"{base}-b", f"{base}-c")
    created: list[str] = []
    try:
        for name in (made.router, made.a, made.b, made.c):
            _ip("netns", "add", name)
            created.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        for bridge, gateway in ((LAB1, GW1), (LAB2, GW2)):
            _ip("-n", made.router, "link", "add", bridge, "type", "bridge")
            _ip("-n", made.router, "addr", "add", f"{gateway}/24", "dev", bridge)
            _ip("-n", made.router, "link", "set", bridge, "up")
        # strict reverse-path filtering: the router's tables must also say where pod sources are
        _in(made.router, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")
        _in(made.router, "sysctl", "-qw", "net.ipv4.ip_forward=0")  # whatever a new namespace inherits
        nodes = [(made.a, "a", LAB1, NODE_A, GW1, POD_A), (made.b, "b", LAB1, NODE_B, GW1, POD_B)]
        nodes.append((made.c, "c", LAB2, NODE_C, GW2, POD_A))  # lab two's node has lab one's pod address
        for ns, tag, bridge, address, gateway, pod in nodes:
            port = f"kltrt{tag}{uuid.uuid4().hex[:4]}"
            _ip("-n", made.router, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", made.router, "link", "set", port, "master", bridge, "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "addr", "add", f"{pod}/32", "dev", "lo")
            _ip("-n", ns, "route", "add", "default", "via", gateway)
            # a node asks for the gateway's MAC from its lab address, not from a pod address: the
            # router's strict rp_filter checks an ARP request's source against the main table only
            _in(ns, "sysctl", "-qw", "net.ipv4.conf.all.arp_announce=2")
        yield made
    finally:
        for name in reversed(created):
            subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


@pytest.fixture
def server_b(namespaces: Namespaces, tmp_path: Path) -> Iterator[None]:
    """An HTTP server in node B, on all its addresses (its pod address and its node address)."""
    root = tmp_path / "b"
    root.mkdir()
    (root / "index.html").write_text("node-b")
    argv = [sys.executable, "-m", "http.server", "--bind", "0.0.0.0", "--directory", str(root), str(PORT)]
    server = subprocess.Popen(
        ["ip", "netns", "exec", namespaces.b, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        eventually(
            lambda: _get(namespaces.b, f"http://{POD_B}:{PORT}/") == "node-b", timeout=20, what="node B's server"
        )
        yield
    finally:
        stop(server)


def _get(ns: str, url: str, *, source: str = "") -> str:
    argv = ["curl", "-s", "--max-time", "2", *(["--interface", source] if source else []), url]
    done = _in(ns, *argv)
    return done.stdout if done.returncode == 0 else ""


class InNamespace:
    """Runs calls on one thread that entered the namespace (the router's subprocesses and its
    /proc/sys writes then act there, as in the cloud process that runs inside it)."""

    def __init__(self, ns: str) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, initializer=netns_module.enter, initargs=(ns,))

    def __call__(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return self.pool.submit(call, *args, **kwargs).result(timeout=60)


def _machine(name: str, address: str) -> cloud.Instance:
    return cloud.instance(cloud.DomainFacts(name, f"uuid-{name}", 1, 1, 1 << 20), address=address, zone="z")


def _table(ns: str, table: int) -> dict[str, str]:
    text = _in(ns, "ip", "-json", "-4", "route", "show", "table", str(table)).stdout
    return {r.destination: r.via for r in routes.parse_routes(text) if r.ours}


def _rules(ns: str) -> list[routes.Rule]:
    rules = routes.parse_rules(_in(ns, "ip", "-json", "-4", "rule", "show").stdout)
    return [r for r in rules if r.priority == routes.RULE_PRIORITY]


def _sysctl(ns: str, path: str) -> str:
    return _in(ns, "cat", f"/proc/sys/{path}").stdout.strip()


def test_the_gateway_routes_pod_cidrs_to_their_nodes_and_keeps_labs_apart(
    namespaces: Namespaces, server_b: None, tmp_path: Path
) -> None:
    ns = namespaces
    inside = InNamespace(ns.router)
    lab1 = [_machine("lab-a", NODE_A), _machine("lab-b", NODE_B)]
    lab2 = [_machine("other-c", NODE_C)]
    one = Router(bridge=LAB1, network="10.77.0.0/24", state_dir=tmp_path / "one", own_namespace=True)
    two = Router(bridge=LAB2, network="10.78.0.0/24", state_dir=tmp_path / "two", own_namespace=True)
    try:
        # before any router: the gateway forwards nothing
        assert _sysctl(ns.router, "net/ipv4/ip_forward") == "0"
        assert not _get(ns.a, f"http://{POD_B}:{PORT}/", source=POD_A)
        inside(one.start)
        inside(two.start)
        assert one.table != two.table
        assert _sysctl(ns.router, "net/ipv4/ip_forward") == "1"
        assert _sysctl(ns.router, f"net/ipv4/conf/{LAB1}/send_redirects") == "0"
        assert _sysctl(ns.router, "net/ipv4/conf/all/send_redirects") == "0"
        listed = _in(ns.router, "nft", "list", "table", "inet", routes.nft_table(LAB1))
        assert listed.returncode == 0 and f'iifname "{LAB1}" oifname != "{LAB1}" drop' in listed.stdout

        inside(one.ensure, "lab-uid-a", {"destinationCIDR": "10.244.1.0/24", "targetInstance": "lab-a"}, instances=lab1)
        made = inside(
            one.ensure, "lab-uid-b", {"destinationCIDR": "10.244.2.0/24", "targetInstance": "lab-b"}, instances=lab1
        )
        assert made.next_hop == NODE_B
        # lab two has the same pod CIDR, sent to a machine of its own (none answers there)
        inside(
            two.ensure, "other-uid", {"destinationCIDR": "10.244.2.0/24", "targetInstance": "other-c"}, instances=lab2
        )
        assert _table(ns.router, one.table) == {"10.244.1.0/24": NODE_A, "10.244.2.0/24": NODE_B}
        assert _table(ns.router, two.table) == {"10.244.2.0/24": NODE_C}
        assert sorted((r.iif, r.table) for r in _rules(ns.router)) == [(LAB1, one.table), (LAB2, two.table)]

        # pod to pod across lab one's nodes, through the gateway both ways (strict rp_filter holds)
        assert _get(ns.a, f"http://{POD_B}:{PORT}/", source=POD_A) == "node-b"
        # lab two's node reaches neither lab one's pods nor its nodes through the gateway
        assert not _get(ns.c, f"http://{POD_B}:{PORT}/", source=POD_A)
        assert not _get(ns.c, f"http://{NODE_B}:{PORT}/")

        # a route moved to another node is replaced; one deleted leaves the table
        inside(one.ensure, "lab-uid-b", {"destinationCIDR": "10.244.2.0/24", "targetInstance": "lab-a"}, instances=lab1)
        assert _table(ns.router, one.table)["10.244.2.0/24"] == NODE_A
        assert not _get(ns.a, f"http://{POD_B}:{PORT}/", source=POD_A)
        inside(one.ensure, "lab-uid-b", {"destinationCIDR": "10.244.2.0/24", "targetInstance": "lab-b"}, instances=lab1)
        assert _get(ns.a, f"http://{POD_B}:{PORT}/", source=POD_A) == "node-b"
        assert inside(one.delete, "lab-uid-a") is not None
        assert _table(ns.router, one.table) == {"10.244.2.0/24": NODE_B}

        # stopped: rule, routes and isolation gone; forwarding stays on (lab two still routes)
        inside(one.close)
        assert _table(ns.router, one.table) == {} and [r.iif for r in _rules(ns.router)] == [LAB2]
        assert _in(ns.router, "nft", "list", "table", "inet", routes.nft_table(LAB1)).returncode != 0
        assert _sysctl(ns.router, "net/ipv4/ip_forward") == "1"
        assert not _get(ns.a, f"http://{POD_B}:{PORT}/", source=POD_A)
        inside(two.close)
        # with no router's isolation left, the same forwarding namespace does carry lab two into lab one:
        # what the isolation stopped above
        assert _get(ns.c, f"http://{NODE_B}:{PORT}/") == "node-b"
    finally:
        for router in (one, two):
            try:
                inside(router.close)
            except (RouterError, OSError) as exc:  # cleanup goes on: the namespaces go anyway
                print(f"closing the router on {router.bridge}: {exc}")
        inside.pool.shutdown()


def test_the_cloud_process_routes_from_its_state_file_until_it_stops(namespaces: Namespaces, tmp_path: Path) -> None:
    ns = namespaces.router
    state = tmp_path / "state"
    state.mkdir()
    kept = {"lab-uid-b": routes.Route("lab-uid-b", "10.244.2.0/24", "lab-b", NODE_B)}
    (state / "routes.json").write_text(routes.dump(kept))
    pki = Pki(tmp_path / "pki")
    pki.ensure_ca()
    pki.ensure_serving(dns_names=[], ips=[GW1], name="cloud", common_name="kubelab-cloud")
    token = secrets.token_hex(16)
    (tmp_path / "token").write_text(token)
    argv = [
        sys.executable, "-m", "provisioner.drivers.libvirt.cloud",
        "--lab", "rttest", "--uri", "test:///default", "--network-cidr", "10.77.0.0/24",
        "--address", GW1, "--port", "7443",
        "--cert", str(pki.serving_cert("cloud")), "--key", str(pki.serving_key("cloud")),
        "--token-file", str(tmp_path / "token"),
        "--bridge", LAB1, "--state-dir", str(state), "--router-namespace",
    ]  # fmt: skip
    process = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def api(method: str, path: str) -> tuple[int, Any]:
        curl = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, "--cacert", str(pki.ca_cert)]
        done = _in(ns, *curl, "-H", f"Authorization: Bearer {token}", f"https://{GW1}:7443{path}")
        text, _, code = done.stdout.rpartition("\n")
        return int(code or 0), json.loads(text) if text.strip() else None

    try:
        eventually(lambda: api("GET", "/v1/routes")[0] == 200, timeout=30, what="the cloud API")
        table = next(r.table for r in _rules(ns) if r.iif == LAB1)
        assert _table(ns, table) == {"10.244.2.0/24": NODE_B}
        items = api("GET", "/v1/routes")[1]["items"]
        # the test driver has none of the lab's machines: the route is kept, and said to lead nowhere
        assert [(r["name"], r["nextHop"], r["blackhole"]) for r in items] == [("lab-uid-b", NODE_B, True)]
        assert api("DELETE", "/v1/routes/nothing")[0] == 404
        stop(process)
        assert process.returncode == 0
        assert _table(ns, table) == {} and _rules(ns) == []
        assert _in(ns, "nft", "list", "table", "inet", routes.nft_table(LAB1)).returncode != 0
        assert json.loads((state / "routes.json").read_text()).keys() == {"lab-uid-b"}  # still recorded
    finally:
        stop(process)
        print((process.stdout.read() if process.stdout else b"").decode(errors="replace")[-3000:])
