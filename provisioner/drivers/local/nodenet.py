"""The network namespace a local lab's node lives in.

Pods' bridge, routes and NodePorts belong to the node, not to the host: the local driver gives its
node a network namespace of its own (``kl-<lab>-node``) with an address on an interface inside it,
and the kubelet runs the CNI plugins there. Nothing of it touches the host's own network.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import HostError

NETNS_DIR = Path("/run/netns")


@dataclass(frozen=True)
class NodeNetwork:
    netns: str
    address: str  # with its prefix, e.g. 10.250.0.2/24
    interface: str = "eth0"

    @property
    def ip(self) -> str:
        return self.address.split("/", 1)[0]


def for_lab(lab: str) -> NodeNetwork:
    return NodeNetwork(f"kl-{lab}-node", "10.250.0.2/24")


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HostError(f"ip {' '.join(args)} failed: {done.stderr.strip() or done.returncode}")


def exists(network: NodeNetwork) -> bool:
    return (NETNS_DIR / network.netns).exists()


def ensure(network: NodeNetwork) -> bool:
    """Create the namespace and its interface unless they exist; return whether anything was made."""
    if exists(network):
        return False
    _ip("netns", "add", network.netns)
    try:
        _ip("-n", network.netns, "link", "set", "lo", "up")
        # a veth pair kept inside the namespace gives the node an interface that is up and
        # carries its address (a dummy interface needs a kernel module hosts may lack)
        _ip("-n", network.netns, "link", "add", network.interface, "type", "veth", "peer", "name", "peer0")
        _ip("-n", network.netns, "addr", "add", network.address, "dev", network.interface)
        _ip("-n", network.netns, "link", "set", network.interface, "up")
        _ip("-n", network.netns, "link", "set", "peer0", "up")
        # a default route that leads nowhere outside: traffic for a Service's ClusterIP is then
        # routed (and DNATed by the proxy's rules) instead of failing as "network unreachable"
        _ip("-n", network.netns, "route", "add", "default", "dev", network.interface)
    except HostError:
        remove(network)
        raise
    return True


def remove(network: NodeNetwork, *, pod_prefix: str = "") -> list[str]:
    """Delete the node's namespace and the pod namespaces named ``pod_prefix...``; return their names."""
    removed = []
    names = [p.name for p in NETNS_DIR.iterdir()] if NETNS_DIR.is_dir() else []
    for name in names:
        if (pod_prefix and name.startswith(pod_prefix)) or name == network.netns:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
            removed.append(name)
    return removed
