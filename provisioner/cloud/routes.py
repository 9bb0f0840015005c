"""The cloud's routes, decided (pure): what a route controller may ask for, and the kernel's part in it.

Kubernetes' route controller gives every node's ``spec.podCIDR`` a route in the cloud's router, so
pods on different nodes reach each other without every node routing to every other. In the lab the
router is the lab network's gateway (the bridge's own address on the host side): a route sends a
pod CIDR to the instance that holds it (its address on the lab network is the next hop).

A route is asked for by name (the controller uses ``<cluster name>-<node uid>``, a DNS-1123 subdomain)
with a ``destinationCIDR`` (IPv4, normalised; it may not overlap the lab network, nor loopback,
link-local, multicast or reserved space) and a ``targetInstance`` (one of the lab's instances with an
address on the lab network). Two routes may not hold the same destination.

Labs share one network namespace (kubelab's, or the host's) and their pod CIDRs are usually the same
``10.244.0.0/16``, so each lab routes in a table of its own: table ``TABLE_BASE + the bridge's
ifindex`` (two bridges alive at once never share an ifindex in a namespace), consulted for packets
entering by the lab's bridge only (``ip rule``: ``iif <bridge> lookup <table>`` at ``RULE_PRIORITY``,
before the main table; a packet no route of the lab's matches falls through to it). Routes carry
protocol ``PROTOCOL`` (kubelab's routes' number, as the proxy's host-gw routes); only routes of that
protocol in the lab's table are ever changed or removed. :func:`plan` turns the wanted routes and what
the kernel has into actions; :func:`teardown` is what a stopping router undoes. :func:`isolation_ruleset`
keeps forwarding from leaking between labs or out of the lab network: what enters by the bridge leaves
by it, what leaves by it entered by it, and the router sends no ICMP redirects there (the nodes keep
sending pod traffic to the gateway, where the routes are).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from provisioner.cloud.instances import Instance

TABLE_BASE = 20000  # a lab's table: TABLE_BASE + its bridge's ifindex
RULE_PRIORITY = 20000  # every lab's rule (their ``iif`` keep them apart), before ``main`` (32766)
PROTOCOL = 75  # the routes' protocol number: kubelab's
NAME_MAX = 253
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_SPECIAL = tuple(
    ipaddress.IPv4Network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4")
)


class RouteError(ValueError):
    """A request the cloud's router cannot serve; ``status`` is what the API answers (400: wrong)."""

    status = 400


class UnknownTargetError(RouteError):
    """The target is not one of the lab's instances, or has no address on the lab network."""

    status = 404


class RouteConflictError(RouteError):
    """Another route already holds the destination."""

    status = 409


class RouteJSON(TypedDict):
    name: str
    destinationCIDR: str
    targetInstance: str
    nextHop: str
    blackhole: bool


@dataclass(frozen=True)
class Route:
    """One route as the cloud keeps it."""

    name: str
    destination: str  # normalised CIDR
    target: str  # instance name
    next_hop: str  # the instance's address on the lab network

    def json(self, *, blackhole: bool = False) -> RouteJSON:
        return {
            "name": self.name,
            "destinationCIDR": self.destination,
            "targetInstance": self.target,
            "nextHop": self.next_hop,
            "blackhole": blackhole,
        }


# --- validation ---------------------------------------------------------------------------------


def check_name(name: str) -> str:
    if len(name) > NAME_MAX or not _NAME.fullmatch(name):
        raise RouteError(
            f"route name {name!r} is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', "
            f"starting and ending with a letter or digit, at most {NAME_MAX} characters)"
        )
    return name


def destination(text: Any, *, network: ipaddress.IPv4Network) -> str:
    """``text`` as a normalised IPv4 CIDR a route may send somewhere."""
    if not isinstance(text, str) or not text:
        raise RouteError("destinationCIDR is required (an IPv4 CIDR such as 10.244.1.0/24)")
    try:
        parsed = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError as exc:
        raise RouteError(f"destinationCIDR {text!r} is not a CIDR: {exc}") from exc
    if not isinstance(parsed, ipaddress.IPv4Network):
        raise RouteError(f"destinationCIDR {text}: this cloud routes IPv4 only")
    if parsed.overlaps(network):
        raise RouteError(f"destinationCIDR {parsed} overlaps the lab network {network}")
    for special in _SPECIAL:
        if parsed.overlaps(special):
            raise RouteError(f"destinationCIDR {parsed} overlaps {special}, which is not routable")
    return str(parsed)


def next_hop(target: str, instances: Sequence[Instance], *, network: ipaddress.IPv4Network) -> str:
    """The address on the lab network of instance ``target``."""
    found = next((i for i in instances if i.name == target), None)
    if found is None:
        raise UnknownTargetError(f"no instance is named {target}")
    for kind, address in found.addresses:
        if kind == "InternalIP" and ipaddress.IPv4Address(address) in network:
            return address
    raise UnknownTargetError(f"instance {target} has no address on the lab network {network}")


def admit(
    name: str,
    body: Mapping[str, Any],
    *,
    network: ipaddress.IPv4Network,
    instances: Sequence[Instance],
    routes: Mapping[str, Route],
) -> Route:
    """The route ``name`` a request's body asks for, checked against the lab's instances and routes."""
    check_name(name)
    if body.get("name") not in (None, "", name):
        raise RouteError(f"the body names route {body.get('name')!r}, the URL {name!r}")
    cidr = destination(body.get("destinationCIDR"), network=network)
    target = body.get("targetInstance")
    if not isinstance(target, str) or not target:
        raise RouteError("targetInstance is required (the name of one of the lab's instances)")
    holder = next((r.name for r in routes.values() if r.destination == cidr and r.name != name), None)
    if holder is not None:
        raise RouteConflictError(f"route {holder} already holds {cidr}")
    return Route(name, cidr, target, next_hop(target, instances, network=network))


def blackhole(route: Route, instances: Sequence[Instance]) -> bool:
    """Whether ``route`` leads nowhere now: its instance is gone or no longer has its next hop."""
    found = next((i for i in instances if i.name == route.target), None)
    return found is None or ("InternalIP", route.next_hop) not in found.addresses


# --- state --------------------------------------------------------------------------------------


def dump(routes: Mapping[str, Route]) -> str:
    """The state file's text: the routes by name."""
    return json.dumps({name: r.json() for name, r in sorted(routes.items())}, indent=1) + "\n"


def load(text: str, *, network: ipaddress.IPv4Network) -> tuple[dict[str, Route], list[str]]:
    """The routes a state file keeps, and why any of them was dropped (it no longer fits)."""
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the routes' state is not a JSON object")
    kept: dict[str, Route] = {}
    dropped: list[str] = []
    for name, item in sorted(data.items()):
        try:
            if not isinstance(item, dict):
                raise RouteError("not an object")
            hop = str(item.get("nextHop") or "")
            if not hop or ipaddress.IPv4Address(hop) not in network:
                raise RouteError(f"next hop {hop!r} is not on the lab network {network}")
            route = Route(
                check_name(str(name)),
                destination(item.get("destinationCIDR"), network=network),
                str(item.get("targetInstance") or ""),
                hop,
            )
            if any(r.destination == route.destination for r in kept.values()):
                raise RouteConflictError(f"another route holds {route.destination}")
        except ValueError as exc:
            dropped.append(f"route {name}: {exc}")
            continue
        kept[route.name] = route
    return kept, dropped


# --- the kernel's part --------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A policy routing rule, as ``ip -json rule show`` has it."""

    priority: int
    iif: str
    table: int  # 0 when it names a table by name (local, main, ...)


@dataclass(frozen=True)
class KernelRoute:
    """A route of the lab's table, as ``ip -json route show table N`` has it."""

    destination: str
    via: str
    dev: str
    ours: bool  # of protocol PROTOCOL


@dataclass(frozen=True)
class AddRule:
    iif: str
    table: int
    priority: int = RULE_PRIORITY


@dataclass(frozen=True)
class DeleteRule:
    iif: str
    table: int
    priority: int = RULE_PRIORITY


@dataclass(frozen=True)
class ReplaceRoute:
    destination: str
    via: str
    dev: str
    table: int


@dataclass(frozen=True)
class DeleteRoute:
    destination: str
    table: int


@dataclass(frozen=True)
class FlushTable:
    """Remove every route of protocol PROTOCOL from ``table``."""

    table: int


Action = AddRule | DeleteRule | ReplaceRoute | DeleteRoute | FlushTable


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    blocked: tuple[Route, ...]  # wanted, but a route of another protocol holds the destination


def table_of(ifindex: int) -> int:
    return TABLE_BASE + ifindex


def parse_rules(text: str) -> list[Rule]:
    """``ip -json rule show`` -> rules."""
    found = []
    for entry in json.loads(text or "[]"):
        table = str(entry.get("table") or "")
        found.append(
            Rule(int(entry.get("priority", 0)), str(entry.get("iif") or ""), int(table) if table.isdigit() else 0)
        )
    return found


def parse_routes(text: str) -> list[KernelRoute]:
    """``ip -json -4 route show table N`` -> routes, ours when of protocol PROTOCOL."""
    found = []
    for entry in json.loads(text or "[]"):
        dst = str(entry.get("dst") or "")
        cidr = "0.0.0.0/0" if dst == "default" else (dst if "/" in dst else f"{dst}/32")
        ours = str(entry.get("protocol") or "") == str(PROTOCOL)
        found.append(KernelRoute(cidr, str(entry.get("gateway") or ""), str(entry.get("dev") or ""), ours))
    return found


def plan(
    wanted: Sequence[Route], *, bridge: str, table: int, rules: Sequence[Rule], installed: Sequence[KernelRoute]
) -> Plan:
    """The actions that make the lab's table and rule what ``wanted`` says, from what the kernel has.

    A rule of the bridge's into another table (left by an earlier bridge of the same name that went
    without its router stopping) goes, with that table's routes.
    """
    actions: list[Action] = []
    for rule in rules:
        if rule.priority == RULE_PRIORITY and rule.iif == bridge and rule.table != table:
            actions += [DeleteRule(bridge, rule.table), FlushTable(rule.table)]
    ours = {r.destination: r for r in installed if r.ours}
    foreign = {r.destination for r in installed if not r.ours}
    by_destination = {r.destination: r for r in wanted}
    for dst in sorted(set(ours) - set(by_destination)):
        actions.append(DeleteRoute(dst, table))
    blocked = []
    for dst, route in sorted(by_destination.items()):
        if dst in foreign:
            blocked.append(route)
            continue
        have = ours.get(dst)
        if have is None or have.via != route.next_hop or have.dev != bridge:
            actions.append(ReplaceRoute(dst, route.next_hop, bridge, table))
    if not any(r.priority == RULE_PRIORITY and r.iif == bridge and r.table == table for r in rules):
        actions.append(AddRule(bridge, table))
    return Plan(tuple(actions), tuple(blocked))


def teardown(*, bridge: str, table: int, rules: Sequence[Rule]) -> list[Action]:
    """What a stopping router undoes: the bridge's rules and its table's routes."""
    actions: list[Action] = []
    tables = {table}
    for rule in rules:
        if rule.priority == RULE_PRIORITY and rule.iif == bridge:
            actions.append(DeleteRule(bridge, rule.table))
            tables.add(rule.table)
    return actions + [FlushTable(t) for t in sorted(tables)]


def nft_table(bridge: str) -> str:
    return f"kubelab-router-{bridge}"


def isolation_ruleset(bridge: str) -> str:
    """The lab's nftables table, whole (``nft -f -``: replaced in one transaction): forwarding stays on
    the bridge, and no ICMP redirect leaves by it."""
    name = nft_table(bridge)
    return (
        "\n".join(
            [
                f"# generated by kubelab: the cloud router's isolation for {bridge}, do not edit",
                f"table inet {name}",
                f"delete table inet {name}",
                f"table inet {name} {{",
                "    chain forward {",
                "        type filter hook forward priority filter; policy accept;",
                f'        iifname "{bridge}" oifname != "{bridge}" drop',
                f'        oifname "{bridge}" iifname != "{bridge}" drop',
                "    }",
                "    chain output {",
                "        type filter hook output priority filter; policy accept;",
                f'        oifname "{bridge}" icmp type redirect drop',
                "    }",
                "}",
            ]
        )
        + "\n"
    )


def removal_ruleset(bridge: str) -> str:
    """Delete the lab's nftables table (present or not)."""
    name = nft_table(bridge)
    return f"table inet {name}\ndelete table inet {name}\n"


def sysctls(bridge: str, *, own_namespace: bool) -> list[tuple[str, str]]:
    """(path under /proc/sys, value): forwarding on; no ICMP redirects from the bridge (a namespace of
    kubelab's own also gets ``all``, which the kernel ORs with each interface's)."""
    wanted = [("net/ipv4/ip_forward", "1"), (f"net/ipv4/conf/{bridge}/send_redirects", "0")]
    if own_namespace:
        wanted.append(("net/ipv4/conf/all/send_redirects", "0"))
    return wanted
