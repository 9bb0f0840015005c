"""The cloud node controller: a Node registered under an external cloud gets what the cloud knows.

A kubelet started with ``--cloud-provider=external`` registers its Node with the
``node.cloudprovider.kubernetes.io/uninitialized`` taint, so nothing is scheduled there yet. ``plan``
(pure) decides, from the Node and its machine as the cloud describes it: ``spec.providerID``; the
labels ``topology.kubernetes.io/region``, ``topology.kubernetes.io/zone`` and
``node.kubernetes.io/instance-type`` (and their older ``failure-domain.beta.kubernetes.io/*`` and
``beta.kubernetes.io/instance-type`` names, which kube still sets); the addresses; and the taint's
removal, all in one write guarded by the Node's resourceVersion. An initialized Node only has its
addresses refreshed (every ``--node-status-update-frequency``). A Node whose machine the cloud does
not know stays tainted, and is looked at again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from agents.controllers.base import Context, Controller, Event
from agents.controllers.cloud.provider import CloudError, CloudProvider, Instance
from agents.machinery.client import ApiError
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.objects import Object
from agents.machinery.resources import NODES

log = logging.getLogger(__name__)

UNINITIALIZED = "node.cloudprovider.kubernetes.io/uninitialized"
REGION, ZONE, INSTANCE_TYPE = (
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "node.kubernetes.io/instance-type",
)
LEGACY = {
    REGION: "failure-domain.beta.kubernetes.io/region",
    ZONE: "failure-domain.beta.kubernetes.io/zone",
    INSTANCE_TYPE: "beta.kubernetes.io/instance-type",
}
RETRY_SECONDS = 10.0  # a node whose machine could not be found is looked at again after this long


def tainted(node: Object) -> bool:
    return any(t.get("key") == UNINITIALIZED for t in (node.get("spec") or {}).get("taints") or [])


def cloud_labels(instance: Instance) -> dict[str, str]:
    labels = {REGION: str(instance.get("region") or ""), ZONE: str(instance.get("zone") or "")}
    labels[INSTANCE_TYPE] = str(instance.get("instanceType") or "")
    labels = {k: v for k, v in labels.items() if v}
    return {**labels, **{LEGACY[k]: v for k, v in labels.items()}}


def addresses(instance: Instance) -> list[dict[str, str]]:
    return [{"type": str(a["type"]), "address": str(a["address"])} for a in instance.get("addresses") or []]


@dataclass(frozen=True)
class Plan:
    patch: dict[str, Any] | None = None  # metadata and spec (labels, providerID, taints), one guarded write
    addresses: list[dict[str, str]] | None = None  # the status addresses to write
    event: Event | None = None
    retry: bool = False  # look again later (the cloud has no such machine yet)


def plan(node: Object, instance: Instance | None) -> Plan:
    """What to write on ``node`` given its machine (None: the cloud has no machine of that name)."""
    name = node["metadata"]["name"]
    initializing = tainted(node)
    if instance is None:
        if not initializing:
            return Plan()
        return Plan(
            event=Event(WARNING, "MissingInstance", f"failed to find the instance of node {name} in the cloud"),
            retry=True,
        )
    current = (node.get("status") or {}).get("addresses") or []
    wanted = addresses(instance)
    new_addresses = wanted if wanted and wanted != current else None
    if not initializing:
        return Plan(addresses=new_addresses)
    meta = node.get("metadata") or {}
    labels = {k: v for k, v in cloud_labels(instance).items() if (meta.get("labels") or {}).get(k) != v}
    spec: dict[str, Any] = {
        "taints": [t for t in (node.get("spec") or {}).get("taints") or [] if t.get("key") != UNINITIALIZED] or None
    }
    if not (node.get("spec") or {}).get("providerID"):
        spec["providerID"] = instance["providerID"]
    patch: dict[str, Any] = {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "spec": spec}
    if labels:
        patch["metadata"]["labels"] = labels
    message = f"Initialized node {name} from the cloud: {instance['providerID']}, zone {instance.get('zone', '')}"
    return Plan(patch=patch, addresses=new_addresses, event=Event(NORMAL, "Synced", message))


class CloudNodeController(Controller):
    name = "cloud-node"
    source = "cloud-node-controller"
    workers = 2

    def __init__(self, ctx: Context, cloud: CloudProvider) -> None:
        super().__init__(ctx)
        self.cloud = cloud
        self.period = float(ctx.settings.node_status_update_frequency)
        self.nodes = ctx.informer(NODES)
        self.nodes.on(add=self._changed, update=lambda _o, n: self._changed(n))

    def _changed(self, node: Object) -> None:
        if tainted(node):
            self.enqueue(node)

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            return
        try:
            instance = await self.cloud.instance(key)
        except CloudError as exc:
            log.warning("node %s: the cloud did not answer: %s", key, exc)
            self.queue.add_after(key, RETRY_SECONDS)
            return
        decided = plan(node, instance)
        try:
            if decided.addresses is not None:
                await self.client.patch(NODES, key, {"status": {"addresses": decided.addresses}}, subresource="status")
            if decided.patch is not None:
                await self.client.patch(NODES, key, decided.patch)
                log.info("node %s initialized from the cloud (%s)", key, (instance or {}).get("providerID"))
        except ApiError as exc:
            if exc.not_found:
                return
            if exc.code == 409:  # the node changed meanwhile: decide again on the new one
                self.queue.add_after(key, 0.5)
                return
            raise
        self.record(node, decided.event)
        if decided.retry:
            self.queue.add_after(key, RETRY_SECONDS)

    async def run(self) -> None:
        # every node-status-update-frequency, every node: its addresses follow the cloud's
        await asyncio.gather(self.resync(self.nodes, self.period), super().run())
