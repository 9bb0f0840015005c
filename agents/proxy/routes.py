"""Routes between nodes' pod networks (host-gw style), planned from Node objects: pure functions.

Every node owns a pod CIDR (``spec.podCIDRs``, given by the node IPAM controller); a pod on another
node is reached by routing that node's CIDR via its InternalIP. This works when the nodes share one
link, as a lab's nodes do. The proxy marks the routes it installs with its own route protocol
number (``ROUTE_PROTOCOL``), which survives its restarts: the routes with that number are the ones
it added, and it never replaces or deletes any other route.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from agents.machinery.objects import Object, name_of

# The rtnetlink protocol number on the proxy's routes ("proto 75" in ``ip route``). Linux reserves
# 0-4 and names 8-18, 42, 99 and 186-192 for other routing daemons; 75 is unassigned (and 0x4b is "K").
ROUTE_PROTOCOL = 75


@dataclass(frozen=True, order=True)
class Route:
    cidr: str  # normalised IPv4 network, e.g. 10.244.2.0/24
    via: str  # the other node's InternalIP


@dataclass(frozen=True)
class InstalledRoute:
    """A route in the main table as observed: ours when it carries ``ROUTE_PROTOCOL``."""

    cidr: str
    via: str  # "" when the route has no gateway
    ours: bool


@dataclass(frozen=True)
class RouteAction:
    verb: Literal["replace", "delete"]
    route: Route


@dataclass(frozen=True)
class RoutePlan:
    actions: tuple[RouteAction, ...]
    blocked: tuple[Route, ...]  # wanted, but a route the proxy did not add holds the same CIDR


def _network(value: object) -> str | None:
    try:
        return str(ipaddress.IPv4Network(str(value), strict=False))
    except ValueError:
        return None


def _internal_ip(node: Object) -> str | None:
    for address in (node.get("status") or {}).get("addresses") or []:
        if address.get("type") == "InternalIP":
            try:
                return str(ipaddress.IPv4Address(str(address.get("address"))))
            except ValueError:
                continue
    return None


def pod_cidrs(node: Object) -> list[str]:
    spec = node.get("spec") or {}
    raw = spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else [])
    return [cidr for value in raw if (cidr := _network(value)) is not None]


def wanted_routes(nodes: Iterable[Object], *, node_name: str, node_ip: str = "") -> list[Route]:
    """One route per IPv4 pod CIDR of every other node that has an InternalIP, sorted.

    A CIDR claimed by two nodes (which the IPAM controller never does) goes to the first by name.
    """
    claimed: dict[str, Route] = {}
    for node in sorted(nodes, key=name_of):
        via = _internal_ip(node)
        if name_of(node) == node_name or via is None or (node_ip and via == node_ip):
            continue
        for cidr in pod_cidrs(node):
            claimed.setdefault(cidr, Route(cidr, via))
    return sorted(claimed.values(), key=lambda r: (int(ipaddress.IPv4Network(r.cidr).network_address), r.cidr))


def plan_routes(wanted: Sequence[Route], installed: Sequence[InstalledRoute]) -> RoutePlan:
    """What to change so that the proxy's routes are exactly ``wanted``, leaving other routes alone."""
    ours = {r.cidr: r for r in installed if r.ours}
    foreign = {r.cidr for r in installed if not r.ours}
    wanted_cidrs = {r.cidr for r in wanted}
    actions: list[RouteAction] = []
    blocked: list[Route] = []
    for route in wanted:
        if route.cidr in foreign:
            blocked.append(route)
            continue
        current = ours.get(route.cidr)
        if current is None or current.via != route.via:
            actions.append(RouteAction("replace", route))
    for cidr, current in sorted(ours.items()):
        if cidr not in wanted_cidrs or cidr in foreign:
            actions.append(RouteAction("delete", Route(cidr, current.via)))
    return RoutePlan(tuple(actions), tuple(blocked))
