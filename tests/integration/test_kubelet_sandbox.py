"""Pod sandboxes wired by the real CNI plugins (Debian's containernetworking-plugins).

Everything happens inside network namespaces these tests create and remove by name: a "node"
namespace in which the plugins run (so the bridge, the host ends of the veths and the portmap rules
live there), the pods' namespaces, and for hostPorts a "peer" namespace wired to the node by a veth
pair made inside the node namespace. The host's own namespace is never changed.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from agents.kubelet.cni import BridgeNetwork, CniClient, PodRef, PortMapping
from agents.kubelet.errors import CniError
from agents.kubelet.sandbox import NETNS_DIR, SandboxManager
from kubelab_testing.commands import stop
from provisioner.system import packages
from tests.support.components import require

pytestmark = pytest.mark.integration

POD_CIDR = IPv4Network("10.244.7.0/24")
NODE_ADDRESS = "192.0.2.1"  # TEST-NET-1, on the node<->peer veth only
PEER_ADDRESS = "192.0.2.2"


def sh(*argv: str, timeout: float = 10) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def wait_for(condition: Callable[[], bool], *, within: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        time.sleep(0.05)


def fetch(netns: str, url: str) -> str | None:
    """GET ``url`` from inside ``netns``; None if it cannot be reached (yet)."""
    code = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode(), end='')"
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", code, url],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return done.stdout if done.returncode == 0 else None


@dataclass(frozen=True)
class Node:
    """A node namespace of the test's own, and what a kubelet on it would be given."""

    netns: str
    pod_prefix: str
    root: Path

    def network(self, subnet: IPv4Network = POD_CIDR) -> BridgeNetwork:
        return BridgeNetwork(subnet=subnet, data_dir=self.root / "cni" / "networks")

    def sandboxes(self, subnet: IPv4Network = POD_CIDR) -> SandboxManager:
        return SandboxManager(
            cni=CniClient(node_netns=self.netns, timeout=10),
            network=self.network(subnet),
            state_dir=self.root / "sandboxes",
            netns_prefix=self.pod_prefix,
        )

    def reserved(self) -> set[str]:
        """The addresses host-local has handed out (one file per IP in its dataDir)."""
        directory = self.network().data_dir / self.network().name
        if not directory.is_dir():
            return set()
        return {p.name for p in directory.iterdir() if p.name[0].isdigit()}


def pod(name: str) -> PodRef:
    return PodRef(namespace="default", name=name, uid=str(uuid.uuid4()))


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    require(packages.CNI_BRIDGE)
    token = uuid.uuid4().hex[:8]
    node = Node(netns=f"kl-node-{token}", pod_prefix=f"kl-pod-{token}-", root=tmp_path / "kubelet")
    ours = (node.netns, node.pod_prefix, f"kl-peer-{token}")
    try:
        sh("ip", "netns", "add", node.netns)
        sh("ip", "-n", node.netns, "link", "set", "lo", "up")
        yield node
    finally:
        names = sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []
        for name in names:
            if name.startswith(ours):
                subprocess.run(["ip", "netns", "delete", name], capture_output=True, timeout=10, check=False)


@pytest.fixture
def web_servers() -> Iterator[Callable[[str, str], None]]:
    """Start ``python3 -m http.server`` in a namespace, serving a directory; stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(netns: str, directory: str) -> None:
        argv = ["ip", "netns", "exec", netns, sys.executable, "-m", "http.server", "8000", "--directory", directory]
        started.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    yield start
    for process in started:
        stop(process, timeout=5)


def serve(tmp_path: Path, text: str) -> str:
    directory = tmp_path / uuid.uuid4().hex
    directory.mkdir()
    (directory / "who").write_text(text)
    return str(directory)


async def test_the_debian_plugins_speak_the_spec_version_the_kubelet_writes(node: Node) -> None:
    client = CniClient(node_netns=node.netns)

    for plugin in ("bridge", "host-local", "portmap"):
        assert "1.0.0" in await client.versions(plugin)


async def test_two_sandboxes_get_distinct_pod_cidr_ips_and_reach_each_other_over_the_bridge(
    node: Node, tmp_path: Path, web_servers: Callable[[str, str], None]
) -> None:
    sandboxes = node.sandboxes()

    a = await sandboxes.ensure(pod("a"))
    b = await sandboxes.ensure(pod("b"))

    assert isinstance(a.ip, IPv4Address)
    assert a.ip in POD_CIDR
    assert b.ip in POD_CIDR
    assert a.ip != b.ip
    assert {str(a.ip), str(b.ip)} <= node.reserved()
    assert "kubelab0" in sh("ip", "-n", node.netns, "-br", "link"), "the bridge is in the node namespace"
    web_servers(a.netns, serve(tmp_path, "pod a"))
    wait_for(lambda: fetch(b.netns, f"http://{a.ip}:8000/who") == "pod a", within=10, what="pod a from pod b")
    assert fetch(a.netns, "http://127.0.0.1:8000/who") == "pod a", "the sandbox has its own localhost"
    assert fetch(b.netns, "http://127.0.0.1:8000/who") is None, "and it is not the other pod's"


async def test_a_host_port_makes_the_pod_reachable_on_the_node_address(
    node: Node, tmp_path: Path, web_servers: Callable[[str, str], None]
) -> None:
    peer = f"kl-peer-{node.netns.removeprefix('kl-node-')}"
    sh("ip", "netns", "add", peer)
    # the veth pair is made inside the node namespace and one end moved to the peer: never on the host
    sh("ip", "-n", node.netns, "link", "add", "kl-uplink", "type", "veth", "peer", "name", "kl-peer", "netns", peer)
    sh("ip", "-n", node.netns, "addr", "add", f"{NODE_ADDRESS}/24", "dev", "kl-uplink")
    sh("ip", "-n", node.netns, "link", "set", "kl-uplink", "up")
    sh("ip", "-n", peer, "addr", "add", f"{PEER_ADDRESS}/24", "dev", "kl-peer")
    sh("ip", "-n", peer, "link", "set", "kl-peer", "up")
    sandboxes = node.sandboxes()

    web = await sandboxes.ensure(pod("web"), port_mappings=(PortMapping(host_port=18080, container_port=8000),))
    web_servers(web.netns, serve(tmp_path, "web"))

    url = f"http://{NODE_ADDRESS}:18080/who"
    wait_for(lambda: fetch(peer, url) == "web", within=10, what="the hostPort from outside the node")
    await sandboxes.remove(web.pod.uid)
    assert fetch(peer, url) is None, "the hostPort rules go with the sandbox"


async def test_removing_a_sandbox_releases_its_ip_and_namespace_and_removing_again_is_harmless(node: Node) -> None:
    sandboxes = node.sandboxes()
    gone = await sandboxes.ensure(pod("gone"))
    assert str(gone.ip) in node.reserved()

    await sandboxes.remove(gone.pod.uid)

    assert str(gone.ip) not in node.reserved()
    assert not (NETNS_DIR / gone.netns).exists()
    assert sandboxes.existing() == []
    await sandboxes.remove(gone.pod.uid)
    await sandboxes.remove(str(uuid.uuid4()))


async def test_ensuring_an_existing_sandbox_returns_it_and_a_restarted_kubelet_adopts_it(node: Node) -> None:
    sandboxes = node.sandboxes()
    web = pod("web")
    first = await sandboxes.ensure(web, port_mappings=(PortMapping(host_port=18081, container_port=80),))

    again = await sandboxes.ensure(web, port_mappings=(PortMapping(host_port=18081, container_port=80),))
    restarted = node.sandboxes()

    assert again == first
    assert len(node.reserved()) == 1
    assert restarted.existing() == [first]
    assert restarted.stale() == []
    await restarted.remove(web.uid)
    assert node.reserved() == set()


async def test_check_passes_for_an_intact_sandbox_and_fails_once_its_interface_is_gone(node: Node) -> None:
    # no hostPorts here: the portmap plugin of containernetworking-plugins 1.1.1 fails CHECK for
    # IPv4-only pods with port mappings (containernetworking/plugins#819, fixed after 1.1.1)
    sandboxes = node.sandboxes()
    web = await sandboxes.ensure(pod("web"))
    await sandboxes.check(web.pod.uid)

    sh("ip", "-n", web.netns, "link", "delete", "eth0")

    with pytest.raises(CniError) as caught:
        await sandboxes.check(web.pod.uid)
    assert caught.value.command == "CHECK"


async def test_a_namespace_left_without_state_is_stale_and_remove_cleans_it(node: Node) -> None:
    sandboxes = node.sandboxes()
    uid = str(uuid.uuid4())
    sh("ip", "netns", "add", sandboxes.netns_name(uid))  # as if the kubelet died right after creating it

    assert sandboxes.stale() == [uid]
    await sandboxes.remove(uid)

    assert sandboxes.stale() == []
    assert not (NETNS_DIR / sandboxes.netns_name(uid)).exists()


async def test_a_sandbox_whose_namespace_vanished_is_stale_and_remove_still_releases_its_ip(node: Node) -> None:
    sandboxes = node.sandboxes()
    lost = await sandboxes.ensure(pod("lost"))
    sh("ip", "netns", "delete", lost.netns)  # someone removed it behind the kubelet's back

    assert sandboxes.existing() == []
    assert sandboxes.stale() == [lost.pod.uid]
    await sandboxes.remove(lost.pod.uid)

    assert sandboxes.stale() == []
    assert str(lost.ip) not in node.reserved()


async def test_a_subnet_the_plugin_rejects_is_a_cni_error_with_its_message_and_leaves_nothing(node: Node) -> None:
    sandboxes = node.sandboxes(IPv4Network("10.244.7.0/32"))
    bad = pod("bad")

    with pytest.raises(CniError) as caught:
        await sandboxes.ensure(bad)

    assert caught.value.plugin == "bridge"
    assert caught.value.command == "ADD"
    assert "10.244.7.0/32 too small to allocate from" in caught.value.msg
    assert caught.value.__cause__ is not None
    assert not (NETNS_DIR / sandboxes.netns_name(bad.uid)).exists()
    assert sandboxes.existing() == []
    assert sandboxes.stale() == []
    assert "veth" not in sh("ip", "-n", node.netns, "-br", "link"), "no veth is left on the node's side"
