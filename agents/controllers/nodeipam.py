"""Node IPAM: gives each node a pod CIDR (``spec.podCIDR``) out of the cluster's pod network."""

from __future__ import annotations

import ipaddress
import logging

from agents.controllers.base import Context, Controller
from agents.machinery.client import ApiError
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.resources import NODES

log = logging.getLogger(__name__)


def next_free(cluster: ipaddress.IPv4Network, mask: int, used: set[str]) -> str | None:
    for subnet in cluster.subnets(new_prefix=mask):
        if str(subnet) not in used:
            return str(subnet)
    return None


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
        if node is None or (node.get("spec") or {}).get("podCIDR"):
            return
        used = {(n.get("spec") or {}).get("podCIDR") for n in self.nodes.items()} | self._taken
        cidr = next_free(self.cluster, self.mask, {c for c in used if c})
        if cidr is None:
            self.recorder.record(node, WARNING, "CIDRNotAvailable", f"No CIDR left in {self.cluster}")
            return
        try:
            await self.client.patch(NODES, key, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
        except ApiError as exc:
            if exc.not_found:
                return
            raise
        self._taken.add(cidr)
        self.recorder.record(node, NORMAL, "CIDRAssignmentSucceeded", f"Node {key} got pod CIDR {cidr}")
        log.info("node %s: pod CIDR %s", key, cidr)
