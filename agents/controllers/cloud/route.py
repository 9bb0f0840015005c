"""The route controller: each node's pod CIDR routed by the cloud's router, as kube's route controller
programs a cloud's routes.

With routes in the cloud, pod traffic between nodes goes through the router of the lab network instead
of routes every node keeps for every other. ``plan`` (pure) compares the Nodes with the cloud's routes:
every Node with an IPv4 podCIDR wants one route, named ``<cluster-name>-<node UID>`` (kube names a
route after the cluster and a hint, the node's UID), sending its podCIDR to the instance of the Node's
name. A route that no Node wants, points elsewhere, or is a blackhole (its instance is gone) is deleted;
a wanted one the cloud lacks is created. Only routes this cluster owns are touched: their names start
with ``<cluster-name>-`` and their CIDRs lie in ``--cluster-cidr`` (kube leaves any other route
alone). Once a node's route exists its ``NetworkUnavailable`` condition says ``False``
(``RouteCreated``); a route the cloud refused makes it ``True`` (``NoRouteCreated``) with a
``FailedToCreateRoute`` Warning on the Node, and is tried again next period. The condition is written
only when it changes, through a strategic merge patch of the Node's status (conditions merge by type,
so the kubelet's stay).

The executor runs every ``--route-reconciliation-period`` and whenever a Node comes, goes or changes
its podCIDR, on one work-queue key (one reconciliation at a time): deletions first, so a route being
replaced frees its CIDR before its successor claims it, then creations, at most ``MAX_CONCURRENT``
cloud calls at a time. A cloud that does not answer the listing (or has no routes: 404) changes
nothing, neither routes nor conditions, until it does. The controller starts only with
``--configure-cloud-routes``, ``--allocate-node-cidrs`` and a ``--cluster-cidr`` (``not_started``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from agents.controllers.base import Context, Controller, Event, gather_limited, rfc3339
from agents.controllers.cloud.provider import CloudError, CloudProvider, Route
from agents.controllers.cloud.settings import CloudControllerManagerSettings
from agents.machinery.client import ApiError
from agents.machinery.events import WARNING
from agents.machinery.objects import Object
from agents.machinery.resources import NODES

log = logging.getLogger(__name__)

KEY = "routes"  # the one work-queue key: a reconciliation covers every node
MAX_CONCURRENT = 4  # cloud calls in flight at once
NETWORK_UNAVAILABLE = "NetworkUnavailable"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def cluster_networks(text: str) -> tuple[Network, ...]:
    """``--cluster-cidr`` (CIDRs, comma separated); a ``ValueError`` for one that is not a CIDR."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


def not_started(settings: CloudControllerManagerSettings) -> str:
    """Why the route controller does not run under ``settings`` (kube's rule), or "" when it does."""
    if not settings.configure_cloud_routes:
        return "configure-cloud-routes is false"
    if not settings.allocate_node_cidrs:
        return "allocate-node-cidrs is false: nodes get no podCIDRs to route"
    if not settings.cluster_cidr.strip():
        return "cluster-cidr is empty: which routes are the cluster's is unknown"
    return ""


@dataclass(frozen=True)
class WantedRoute:
    """The route a Node wants: ``cidr`` (its podCIDR) to the instance named ``node``."""

    name: str
    cidr: str
    node: str


@dataclass(frozen=True)
class Plan:
    delete: tuple[Route, ...] = ()
    create: tuple[WantedRoute, ...] = ()
    routed: frozenset[str] = frozenset()  # the nodes whose route the cloud already has


def route_name(cluster_name: str, node: Object) -> str:
    return f"{cluster_name}-{node['metadata'].get('uid', '')}"


def pod_cidr_v4(node: Object) -> str:
    """The node's IPv4 podCIDR (``spec.podCIDRs``, else ``spec.podCIDR``), or ""."""
    spec = node.get("spec") or {}
    for cidr in spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []):
        try:
            network = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            continue
        if network.version == 4:
            return str(network)
    return ""


def wanted_routes(nodes: Iterable[Object], *, cluster_name: str) -> list[WantedRoute]:
    """One route per Node that has an IPv4 podCIDR (and a UID to name it by), by node name."""
    out = []
    for node in nodes:
        meta = node.get("metadata") or {}
        cidr = pod_cidr_v4(node)
        if cidr and meta.get("uid") and meta.get("name"):
            out.append(WantedRoute(route_name(cluster_name, node), cidr, str(meta["name"])))
    return sorted(out, key=lambda w: w.node)


def responsible(route: Route, *, cluster_name: str, cluster_cidrs: tuple[Network, ...]) -> bool:
    """Whether the route is this cluster's to manage: named after it, its CIDR inside the cluster's
    (its first or last address, as kube checks)."""
    if not route["name"].startswith(f"{cluster_name}-"):
        return False
    try:
        cidr = ipaddress.ip_network(route["destinationCIDR"], strict=False)
    except ValueError:
        return False
    return any(
        cidr.version == net.version and (cidr.network_address in net or cidr.broadcast_address in net)
        for net in cluster_cidrs
    )


def _serves(route: Route | None, wanted: WantedRoute) -> bool:
    if route is None or route["blackhole"] or route["targetInstance"] != wanted.node:
        return False
    try:
        return ipaddress.ip_network(route["destinationCIDR"], strict=False) == ipaddress.ip_network(wanted.cidr)
    except ValueError:
        return False


def plan(
    nodes: Iterable[Object], routes: Iterable[Route], *, cluster_name: str, cluster_cidrs: tuple[Network, ...]
) -> Plan:
    """What the cloud's routes need for ``nodes``: the routes to delete, those to create, and the nodes
    already routed."""
    wanted = wanted_routes(nodes, cluster_name=cluster_name)
    existing = {r["name"]: r for r in routes}
    create = tuple(w for w in wanted if not _serves(existing.get(w.name), w))
    kept = {w.name for w in wanted if _serves(existing.get(w.name), w)}
    delete = tuple(
        r
        for r in existing.values()
        if r["name"] not in kept and responsible(r, cluster_name=cluster_name, cluster_cidrs=cluster_cidrs)
    )
    routed = frozenset(w.node for w in wanted if w.name in kept)
    return Plan(delete=delete, create=create, routed=routed)


def network_condition(node: Object, *, routed: bool, now: str) -> dict[str, Any] | None:
    """The status patch that sets the node's ``NetworkUnavailable`` condition after its route was made
    (``routed``) or not; None when the condition already says so."""
    conditions = (node.get("status") or {}).get("conditions") or []
    current = next((c for c in conditions if c.get("type") == NETWORK_UNAVAILABLE), None)
    if current is not None and current.get("status") == ("False" if routed else "True"):
        return None
    if routed:
        status, reason, message = "False", "RouteCreated", "RouteController created a route"
    else:
        status, reason, message = "True", "NoRouteCreated", "RouteController failed to create a route"
    condition = {
        "type": NETWORK_UNAVAILABLE,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
        "lastHeartbeatTime": now,
    }
    return {"status": {"conditions": [condition]}}


def failed_event(wanted: WantedRoute, error: CloudError) -> Event:
    message = f"Could not create route {wanted.name} {wanted.cidr} for node {wanted.node}: {error}"
    return Event(WARNING, "FailedToCreateRoute", message)


class RouteController(Controller):
    name = "route"
    source = "route_controller"  # kube's route controller reports as this
    workers = 1

    def __init__(self, ctx: Context, cloud: CloudProvider) -> None:
        super().__init__(ctx)
        self.cloud = cloud
        settings = ctx.settings
        self.period = float(settings.route_reconciliation_period)
        self.cluster_name = str(settings.cluster_name)
        self.cluster_cidrs = cluster_networks(str(settings.cluster_cidr))
        self.nodes = ctx.informer(NODES)
        self.nodes.on(add=self._changed, update=self._updated, delete=self._changed)

    def _changed(self, _node: Object) -> None:
        self.queue.add(KEY)

    def _updated(self, old: Object, new: Object) -> None:
        if pod_cidr_v4(old) != pod_cidr_v4(new):
            self.queue.add(KEY)

    async def sync(self, key: str) -> None:
        nodes = {n["metadata"]["name"]: n for n in self.nodes.items()}
        try:
            routes = await self.cloud.list_routes()
        except CloudError as exc:
            log.warning("could not list the cloud's routes (trying again in %.0fs): %s", self.period, exc)
            return
        decided = plan(nodes.values(), routes, cluster_name=self.cluster_name, cluster_cidrs=self.cluster_cidrs)
        await gather_limited([partial(self._delete, r) for r in decided.delete], limit=MAX_CONCURRENT)
        results = await gather_limited([partial(self._create, w) for w in decided.create], limit=MAX_CONCURRENT)
        outcome = dict.fromkeys(decided.routed, True)  # node name -> whether its route exists now
        for wanted, result in zip(decided.create, results, strict=True):
            if isinstance(result, CloudError):
                log.warning(
                    "could not create route %s %s for node %s: %s", wanted.name, wanted.cidr, wanted.node, result
                )
                self.record(nodes[wanted.node], failed_event(wanted, result))
            elif isinstance(result, BaseException):
                raise result
            outcome[wanted.node] = result is None
        stamp = rfc3339(self.now())
        patches = {
            name: patch
            for name, routed in outcome.items()
            if (patch := network_condition(nodes[name], routed=routed, now=stamp)) is not None
        }
        written = await gather_limited([partial(self._set_condition, n, p) for n, p in patches.items()])
        for result in written:
            if isinstance(result, BaseException):
                raise result

    async def _delete(self, route: Route) -> None:
        try:
            await self.cloud.delete_route(route["name"])
        except CloudError as exc:
            log.warning("could not delete route %s %s: %s", route["name"], route["destinationCIDR"], exc)
            return
        log.info("deleted route %s %s", route["name"], route["destinationCIDR"])

    async def _create(self, wanted: WantedRoute) -> None:
        await self.cloud.create_route(wanted.name, destination_cidr=wanted.cidr, target_instance=wanted.node)
        log.info("created route %s %s for node %s", wanted.name, wanted.cidr, wanted.node)

    async def _set_condition(self, node: str, patch: dict[str, Any]) -> None:
        try:
            await self.client.patch(NODES, node, patch, kind="strategic", subresource="status")
        except ApiError as exc:
            if not exc.not_found:  # a node deleted meanwhile needs no condition
                raise

    async def _every_period(self) -> None:
        await self.nodes.synced.wait()
        while True:
            self.queue.add(KEY)
            await asyncio.sleep(self.period)

    async def run(self) -> None:
        await asyncio.gather(self._every_period(), super().run())
