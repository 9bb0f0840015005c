"""Node IPAM: gives each node a pod CIDR (``spec.podCIDR``) out of the cluster's pod network.

``plan`` (pure) picks the first subnet no node holds and none this controller handed out already
(the informer may not show its last assignment yet); ``sync`` writes it onto the node.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from agents.controllers.base import Context, Controller, Event
from agents.machinery.client import ApiError
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.objects import Object
from agents.machinery.resources import NODES

log = logging.getLogger(__name__)


def next_free(cluster: ipaddress.IPv4Network, mask: int, used: set[str]) -> str | None:
    for subnet in cluster.subnets(new_prefix=mask):
        if str(subnet) not in used:
            return str(subnet)
    return None


@dataclass(frozen=True)
class Plan:
    assign: str = ""  # the pod CIDR to give the node
    event: Event | None = None  # recorded once it is assigned (at once when there is nothing to assign)


def plan(node: Object, nodes: list[Object], *, cluster: ipaddress.IPv4Network, mask: int, taken: set[str]) -> Plan:
    """The pod CIDR for ``node``, if it has none, given every node and the CIDRs handed out already."""
    if (node.get("spec") or {}).get("podCIDR"):
        return Plan()
    used = {(n.get("spec") or {}).get("podCIDR") for n in nodes} | taken
    cidr = next_free(cluster, mask, {c for c in used if c})
    name = node["metadata"]["name"]
    if cidr is None:
        return Plan(event=Event(WARNING, "CIDRNotAvailable", f"No CIDR left in {cluster}"))
    return Plan(assign=cidr, event=Event(NORMAL, "CIDRAssignmentSucceeded", f"Node {name} got pod CIDR {cidr}"))


class NodeIpamController(Controller):
    name = "nodeipam"
    workers = 1  # allocations are decided one at a time

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        network = ipaddress.ip_network(ctx.settings.cluster_cidr)
        if not isinstance(network, ipaddress.IPv4Network):
            raise ValueError("cluster-cidr must be an IPv4 network")
        self.cluster = network
        self.mask = int(ctx.settings.node_cidr_mask_size)
        self.nodes = ctx.informer(NODES)
        self.nodes.on(add=self.enqueue, update=lambda _o, n: self.enqueue(n))
        self._taken: set[str] = set()

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            return
        decided = plan(node, self.nodes.items(), cluster=self.cluster, mask=self.mask, taken=self._taken)
        if decided.assign:
            try:
                await self.client.patch(NODES, key, {"spec": {"podCIDR": decided.assign, "podCIDRs": [decided.assign]}})
            except ApiError as exc:
                if exc.not_found:
                    return
                raise
            self._taken.add(decided.assign)
            log.info("node %s: pod CIDR %s", key, decided.assign)
        self.record(node, decided.event)
