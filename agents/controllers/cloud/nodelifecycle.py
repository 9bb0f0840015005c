"""The cloud node lifecycle controller: Nodes follow their machines.

Every ``--node-monitor-period`` it looks at each Node that has a provider ID. ``plan`` (pure): a
Ready Node loses the ``node.cloudprovider.kubernetes.io/shutdown`` taint if it has it; a Node that is
not Ready and whose machine the cloud no longer has is deleted (kube's ``DeletingNode`` event: the
machine was removed by hand, say, and its Node would otherwise stay for good); one whose machine is
stopped gets the shutdown taint (``NoSchedule``), so nothing new lands there while it is off.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from agents.controllers.base import Context, Controller, Event, delete_object, rfc3339
from agents.controllers.cloud.provider import CloudError, CloudProvider, Instance
from agents.machinery.client import ApiError
from agents.machinery.events import NORMAL
from agents.machinery.objects import Object
from agents.machinery.resources import NODES

log = logging.getLogger(__name__)

SHUTDOWN = "node.cloudprovider.kubernetes.io/shutdown"
SHUTDOWN_TAINT = {"key": SHUTDOWN, "effect": "NoSchedule"}
STOPPED = ("stopped", "crashed", "suspended", "paused")


def ready(node: Object) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _taints(node: Object) -> list[dict[str, Any]]:
    return list((node.get("spec") or {}).get("taints") or [])


@dataclass(frozen=True)
class Plan:
    delete: bool = False
    taints: list[dict[str, Any]] | None = None  # the node's new taints (a guarded write)
    event: Event | None = None


def plan(node: Object, instance: Instance | None, *, now: str) -> Plan:
    """What to do with ``node`` given its machine (None: the cloud has no machine of its provider ID)."""
    name = node["metadata"]["name"]
    has_shutdown = any(t.get("key") == SHUTDOWN for t in _taints(node))
    if ready(node):
        if has_shutdown:
            return Plan(taints=[t for t in _taints(node) if t.get("key") != SHUTDOWN])
        return Plan()
    if instance is None:
        message = f"Deleting node {name} because it does not exist in the cloud provider"
        return Plan(delete=True, event=Event(NORMAL, "DeletingNode", message))
    if str(instance.get("state")) in STOPPED and not has_shutdown:
        return Plan(taints=[*_taints(node), {**SHUTDOWN_TAINT, "timeAdded": now}])
    return Plan()


class CloudNodeLifecycleController(Controller):
    name = "cloud-node-lifecycle"
    source = "cloud-node-lifecycle-controller"
    workers = 1

    def __init__(self, ctx: Context, cloud: CloudProvider) -> None:
        super().__init__(ctx)
        self.cloud = cloud
        self.period = float(ctx.settings.node_monitor_period)
        self.nodes = ctx.informer(NODES)

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        provider_id = ((node or {}).get("spec") or {}).get("providerID")
        if node is None or not provider_id:
            return
        try:
            instance = None if ready(node) else await self.cloud.instance_by_provider_id(str(provider_id))
        except CloudError as exc:
            log.warning("node %s: the cloud did not answer: %s", key, exc)
            return
        decided = plan(node, instance, now=rfc3339(self.now()))
        if decided.delete:
            log.info("node %s: its machine %s is gone from the cloud; deleting the node", key, provider_id)
            self.record(node, decided.event)
            await delete_object(self.client, NODES, node, uid=node["metadata"].get("uid", ""))
            return
        if decided.taints is not None:
            body = {"metadata": {"resourceVersion": node["metadata"].get("resourceVersion")}}
            try:
                await self.client.patch(NODES, key, {**body, "spec": {"taints": decided.taints or None}})
            except ApiError as exc:
                if exc.code not in (404, 409):
                    raise
        self.record(node, decided.event)

    async def run(self) -> None:
        await asyncio.gather(self.resync(self.nodes, self.period), super().run())
