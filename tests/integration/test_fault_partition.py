"""`kubelab fault partition` on a real bridge: three network namespaces stand for a lab's bridge and two
of its machines (veth pairs with the machines' MAC addresses); the partition's nftables table cuts the
one node off both ways, leaves the other alone, and healing restores it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from provisioner.drivers.libvirt import daemon as libvirthost
from provisioner.drivers.libvirt import partitions
from provisioner.drivers.libvirt import plan as vmplan
from provisioner.lab import spec as labspec
from provisioner.system import packages
from provisioner.system.waiting import wait_for
from tests.support.components import network_namespace, require

MACHINES = vmplan.machines(labspec.LabSpec(name="demo", workers=2))


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


PORT = 7000
CONNECT = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()"


def _pings(netns: str, address: str) -> bool:
    """Whether a TCP connection from ``netns`` to ``address`` is answered (every namespace listens)."""
    argv = ["ip", "netns", "exec", netns, sys.executable, "-c", CONNECT, address, str(PORT)]
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def _listen(stack: ExitStack, netns: str) -> None:
    argv = ["ip", "netns", "exec", netns, sys.executable, "-m", "http.server", "--bind", "0.0.0.0", str(PORT)]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stack.callback(server.wait, 10)
    stack.callback(server.kill)


@pytest.fixture
def bridged() -> Iterator[tuple[str, dict[str, str]]]:
    """(the bridge's namespace, node name -> its namespace), addressed as the lab plans them."""
    require(packages.IPROUTE, packages.NFT)
    with ExitStack() as stack:
        lab = stack.enter_context(network_namespace("kl-fault"))
        _ip("-n", lab, "link", "add", "br0", "type", "bridge")
        _ip("-n", lab, "addr", "add", "192.168.123.1/24", "dev", "br0")
        _ip("-n", lab, "link", "set", "br0", "up")
        nodes = {}
        for index, machine in enumerate(MACHINES[1:]):
            ns = stack.enter_context(network_namespace("kl-fault"))
            _ip("-n", lab, "link", "add", f"tap{index}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", lab, "link", "set", f"tap{index}", "master", "br0", "up")
            _ip("-n", ns, "link", "set", "eth0", "address", machine.mac)
            _ip("-n", ns, "addr", "add", f"{machine.ip}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            nodes[machine.name] = ns
        for netns in (lab, *nodes.values()):
            _listen(stack, netns)
        assert wait_for(lambda: all(_pings(ns, "127.0.0.1") for ns in (lab, *nodes.values())), timeout=15, interval=0.2)
        yield lab, nodes


def test_a_partitioned_node_is_cut_off_both_ways_and_healing_restores_it(
    bridged: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    lab, nodes = bridged
    _, worker1, worker2 = MACHINES
    wrap = libvirthost.Daemon(libvirthost.URI, lab).wrap
    ruleset = tmp_path / "faults.nft"
    assert _pings(nodes[worker2.name], worker1.ip) and _pings(lab, worker1.ip)

    partitions.apply(partitions.ruleset("demo", MACHINES, [worker1.name]), ruleset, wrap)
    assert not _pings(nodes[worker2.name], worker1.ip)  # from another machine
    assert not _pings(nodes[worker1.name], worker2.ip)  # to another machine
    assert not _pings(lab, worker1.ip)  # from the host's side of the bridge (ssh, the API tunnel)
    assert _pings(nodes[worker2.name], "192.168.123.1") and _pings(lab, worker2.ip)  # the rest is untouched

    partitions.apply(partitions.ruleset("demo", MACHINES, []), ruleset, wrap)
    assert _pings(nodes[worker2.name], worker1.ip) and _pings(lab, worker1.ip)
    listed = subprocess.run(wrap(["nft", "list", "tables"]), capture_output=True, text=True, check=True).stdout
    assert "kubelab-faults-demo" not in listed
