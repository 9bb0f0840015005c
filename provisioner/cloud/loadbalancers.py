"""The cloud's load balancers, decided (pure): addresses from the lab's pool, and haproxy's configuration.

A cloud-controller-manager asks for a load balancer per ``type: LoadBalancer`` Service: a name, its
ports (each forwarded to the same NodePort on every node) and the nodes. The cloud gives it an address
from the lab's pool (``--lb-range``, a range on the lab network that neither the machines nor DHCP
use), the same one for as long as it exists, and renders one haproxy configuration for all of the lab's
load balancers: a frontend per address and port, the nodes' NodePorts behind it, each node health
checked (every 2 s, out after 2 failures, back after 1 success) so a dead node stops getting
connections within seconds. A Service with ``externalTrafficPolicy: Local`` names its
``healthCheckNodePort``: the node is then checked by HTTP there (``/healthz``, which the proxy answers
200 only where the Service has a ready endpoint), so traffic goes only to nodes with endpoints, as a
cloud's load balancer does. TCP only: haproxy forwards no UDP, and such a port is refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CHECK_INTERVAL = "2s"  # haproxy's ``inter``: how often each node is checked
FALL, RISE = 2, 1  # checks failed before a node is out, passed before it is back
CONNECT_TIMEOUT, RETRIES = "500ms", 3  # a connection not answered in time is tried again elsewhere


class LoadBalancerError(ValueError):
    """A request the cloud cannot serve; the message says why (the API answers it as the error, with
    ``status``: 400 for a request that is wrong, 409 when the pool has no address left)."""

    status = 400


class PoolExhaustedError(LoadBalancerError):
    status = 409


@dataclass(frozen=True)
class Port:
    name: str
    port: int
    node_port: int


@dataclass(frozen=True)
class Node:
    name: str
    address: str


@dataclass(frozen=True)
class LoadBalancer:
    """One load balancer as the cloud keeps it."""

    name: str
    address: str
    ports: tuple[Port, ...]
    nodes: tuple[Node, ...]
    health_check_node_port: int = 0  # 0: each node is checked at the port's own NodePort (TCP)

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "address": self.address,
            "ports": [{"name": p.name, "protocol": "TCP", "port": p.port, "nodePort": p.node_port} for p in self.ports],
            "nodes": [{"name": n.name, "address": n.address} for n in self.nodes],
        }
        if self.health_check_node_port:
            out["healthCheckNodePort"] = self.health_check_node_port
        return out


def pool(text: str) -> list[str]:
    """The addresses of a range ``FIRST-LAST`` (or a CIDR's hosts), in order."""
    try:
        if "-" in text:
            first, last = (ipaddress.IPv4Address(x.strip()) for x in text.split("-", 1))
            if last < first:
                raise LoadBalancerError(f"load balancer range {text}: the last address comes before the first")
            return [str(ipaddress.IPv4Address(i)) for i in range(int(first), int(last) + 1)]
        return [str(a) for a in ipaddress.IPv4Network(text, strict=False).hosts()]
    except ValueError as exc:
        if isinstance(exc, LoadBalancerError):
            raise
        raise LoadBalancerError(f"load balancer range {text}: {exc}") from exc


def _number(value: Any, what: str, *, low: int = 1, high: int = 65535) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LoadBalancerError(f"{what} must be a number from {low} to {high}, got {value!r}")
    return value


def parse(name: str, body: Mapping[str, Any], *, address: str) -> LoadBalancer:
    """A request's body (``ports``, ``nodes``, ``healthCheckNodePort``) as the load balancer ``name`` at ``address``."""
    ports = []
    for i, item in enumerate(body.get("ports") or []):
        if not isinstance(item, Mapping):
            raise LoadBalancerError(f"ports[{i}] must be an object")
        protocol = item.get("protocol") or "TCP"
        if protocol != "TCP":
            raise LoadBalancerError(f"ports[{i}]: protocol {protocol} is not supported (this cloud balances TCP only)")
        ports.append(
            Port(
                str(item.get("name") or ""),
                _number(item.get("port"), f"ports[{i}].port"),
                _number(item.get("nodePort"), f"ports[{i}].nodePort"),
            )
        )
    if not ports:
        raise LoadBalancerError("a load balancer needs at least one port")
    if len({p.port for p in ports}) != len(ports):
        raise LoadBalancerError("ports: each port may be given once")
    nodes = []
    for i, item in enumerate(body.get("nodes") or []):
        if not isinstance(item, Mapping) or not item.get("address"):
            raise LoadBalancerError(f"nodes[{i}] must name an address")
        try:
            ipaddress.IPv4Address(str(item["address"]))
        except ValueError as exc:
            raise LoadBalancerError(f"nodes[{i}].address: {exc}") from exc
        nodes.append(Node(str(item.get("name") or item["address"]), str(item["address"])))
    check = body.get("healthCheckNodePort") or 0
    if check:
        check = _number(check, "healthCheckNodePort")
    return LoadBalancer(name, address, tuple(ports), tuple(sorted(nodes, key=lambda n: n.name)), check)


def allocate(name: str, addresses: Sequence[str], taken: Mapping[str, str]) -> str:
    """The address of load balancer ``name``: the one it has, else the first of the pool no other holds."""
    if name in taken:
        return taken[name]
    used = set(taken.values())
    for address in addresses:
        if address not in used:
            return address
    if not addresses:
        raise PoolExhaustedError("the lab has no load balancer pool (its network has no room for one: give --lb-range)")
    raise PoolExhaustedError(
        f"no address left in the load balancer pool {addresses[0]}-{addresses[-1]} ({len(used)} in use)"
    )


def _label(text: str) -> str:
    """A name haproxy takes for a section or a server (letters, digits, ``-_.:``)."""
    return "".join(c if c.isalnum() or c in "-_.:" else "_" for c in text)


def haproxy_config(balancers: Sequence[LoadBalancer], *, lab: str, stats_socket: str) -> str:
    """haproxy's whole configuration for the lab's load balancers (TCP mode, health-checked nodes)."""
    lines = [
        f"# generated by kubelab: the load balancers of lab {lab}, do not edit",
        "global",
        "    maxconn 4096",
        f"    stats socket {stats_socket} mode 600 level admin",
        "defaults",
        "    mode tcp",
        # a node that does not answer within CONNECT_TIMEOUT (a dead one, or a dead pod its NodePort
        # sent the connection to) is given up, and each retry goes to another node
        f"    timeout connect {CONNECT_TIMEOUT}",
        "    timeout client 1h",
        "    timeout server 1h",
        "    option redispatch 1",
        f"    retries {RETRIES}",
    ]
    for lb in sorted(balancers, key=lambda b: b.name):
        for port in lb.ports:
            section = _label(f"{lb.name}:{port.port}")
            lines += ["", f"listen {section}", f"    bind {lb.address}:{port.port}", "    balance roundrobin"]
            if lb.health_check_node_port:
                lines += ["    option httpchk GET /healthz", "    http-check expect status 200"]
            for node in lb.nodes:
                check = f"check inter {CHECK_INTERVAL} fall {FALL} rise {RISE}"
                if lb.health_check_node_port:
                    check += f" port {lb.health_check_node_port}"
                lines.append(f"    server {_label(node.name)} {node.address}:{port.node_port} {check}")
    return "\n".join(lines) + "\n"
