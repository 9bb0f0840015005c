"""Node lifecycle: notices nodes that stopped reporting, taints them, and evicts their pods.

Every ``monitor_period`` the controller checks how long, by its own clock, each node's heartbeat (its
Lease in kube-node-lease, or its Ready condition) has not changed against ``grace_period``. A silent
node's conditions become Unknown and its pods not ready. Taints follow the Ready condition:
``node.kubernetes.io/not-ready`` (Ready=False) or ``node.kubernetes.io/unreachable`` (Ready=Unknown),
each as NoSchedule and NoExecute.
A pod on a node with NoExecute taints is deleted at once if it does not tolerate them, or when the
shortest ``tolerationSeconds`` of its matching tolerations has passed (the API server gives every pod
300 s by default). Pods bound to a node that has not existed for 40 s are deleted (pod GC).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from agents.controllers.base import Context, Controller, delete_object, ignore_not_found
from agents.machinery import tasks
from agents.machinery.events import NORMAL
from agents.machinery.informer import key_of
from agents.machinery.objects import Object, deep_copy, now, parse_time
from agents.machinery.resources import LEASES, NODES, PODS

log = logging.getLogger(__name__)

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
CONDITION_TAINTS = (NOT_READY, UNREACHABLE, UNSCHEDULABLE)
NODE_LEASES = "kube-node-lease"
ORPHAN_QUARANTINE = 40.0  # seconds a node must stay missing before its pods are deleted


def ready_status(node: Object) -> str:
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status", "Unknown"))
    return ""


def heartbeat(node: Object, lease: Object | None) -> tuple[str, str]:
    """What the kubelet last wrote to say it is alive: its Lease's renewTime and its Ready condition's
    lastHeartbeatTime (as written: they come from the node's clock)."""
    ready = ""
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            ready = str(condition.get("lastHeartbeatTime") or "")
    return str(((lease or {}).get("spec") or {}).get("renewTime") or ""), ready


class Heartbeats:
    """When this controller last saw each node's heartbeat change, by its own clock.

    As kube's node lifecycle controller: the stamps a kubelet writes come from the node's clock, which
    may be off (a VM resumed after a pause runs behind until it catches up), so they are only compared
    with what was seen before, never with this clock. A node first seen gets a whole grace period.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._seen: dict[str, tuple[tuple[str, str], float]] = {}

    def silent_for(self, name: str, beat: tuple[str, str]) -> float:
        """Seconds since ``name``'s heartbeat last changed (0 when it just did)."""
        at = self._clock()
        seen = self._seen.get(name)
        if seen is None or seen[0] != beat:
            self._seen[name] = (beat, at)
            return 0.0
        return at - seen[1]

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)


def wanted_taints(node: Object, existing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The node's taints with the condition taints set as its Ready condition and spec say."""
    status = ready_status(node)
    keep = [t for t in existing if t.get("key") not in CONDITION_TAINTS]
    previous = {(t.get("key"), t.get("effect")): t for t in existing}
    wanted: list[tuple[str, str]] = []
    if status == "False":
        wanted = [(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]
    elif status in ("Unknown", ""):
        key = UNREACHABLE if status == "Unknown" else NOT_READY
        wanted = [(key, "NoSchedule"), (key, "NoExecute")]
    if (node.get("spec") or {}).get("unschedulable"):
        wanted.append((UNSCHEDULABLE, "NoSchedule"))
    for key, effect in wanted:
        taint = previous.get((key, effect))
        if taint is None:
            taint = {"key": key, "effect": effect}
            if effect == "NoExecute":
                taint["timeAdded"] = now()
        keep.append(taint)
    return keep


def toleration_seconds(pod: Object, taints: list[dict[str, Any]]) -> float | None:
    """Seconds the pod may stay despite the node's NoExecute taints (0: not tolerated; None: forever).

    As kube's taint manager: every NoExecute taint must be tolerated, and the shortest
    ``tolerationSeconds`` among the tolerations that match any of them wins; tolerations without it
    do not limit the stay. Counted from the latest of those taints' ``timeAdded``.
    """
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    used: list[dict[str, Any]] = []
    added: list[datetime] = []
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        matching = [t for t in tolerations if _tolerates(t, taint)]
        if not matching:
            return 0.0
        used.extend(matching)
        if taint.get("timeAdded"):
            added.append(parse_time(taint["timeAdded"]))
    limits = [float(t["tolerationSeconds"]) for t in used if t.get("tolerationSeconds") is not None]
    if not limits:
        return None
    limit = min(limits)
    if limit <= 0:
        return 0.0
    if added:
        limit -= (datetime.now(UTC) - max(added)).total_seconds()
    return max(limit, 0.0)


def _tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
        return False
    if not toleration.get("key"):
        return toleration.get("operator") == "Exists"
    if toleration.get("key") != taint.get("key"):
        return False
    return toleration.get("operator") == "Exists" or toleration.get("value", "") == taint.get("value", "")


class NodeLifecycleController(Controller):
    name = "nodelifecycle"
    source = "node-controller"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.grace = float(ctx.settings.node_monitor_grace_period)
        self.period = float(ctx.settings.node_monitor_period)
        self.nodes = ctx.informer(NODES)
        self.leases = ctx.informer(LEASES)
        self.pods = ctx.informer(PODS)
        self.pods.add_index("node", lambda p: [(p.get("spec") or {}).get("nodeName") or ""])
        self.nodes.on_any(self.enqueue)
        self.pods.on(add=self._pod_changed, update=lambda _o, n: self._pod_changed(n))
        self._evictions: dict[str, asyncio.TimerHandle] = {}
        self.heartbeats = Heartbeats()
        self._missing_since: dict[str, float] = {}  # node name -> when its pods were first seen orphaned

    def _pod_changed(self, pod: Object) -> None:
        """A pod matters here only when its node has NoExecute taints (its eviction clock) or is gone."""
        name = (pod.get("spec") or {}).get("nodeName")
        if not name:
            return
        node = self.nodes.get(name)
        if node is None or any(t.get("effect") == "NoExecute" for t in (node.get("spec") or {}).get("taints") or []):
            self.queue.add(name)

    async def sync(self, key: str) -> None:
        node = self.nodes.get(key)
        if node is None:
            self.heartbeats.forget(key)
            await self._collect_orphans(key)
            return
        self._missing_since.pop(key, None)
        lease = self.leases.get(f"{NODE_LEASES}/{key}")
        silent = self.heartbeats.silent_for(key, heartbeat(node, lease)) > self.grace
        if silent and ready_status(node) != "Unknown":
            node = await self._mark_unknown(node)
        taints = list((node.get("spec") or {}).get("taints") or [])
        wanted = wanted_taints(node, taints)
        if wanted != taints:
            node = await self.client.patch(NODES, key, {"spec": {"taints": wanted or None}})
        self._evict(node, wanted)

    async def _mark_unknown(self, node: Object) -> Object:
        body = deep_copy(node)
        stamp = now()
        conditions = body.setdefault("status", {}).get("conditions") or []
        types = {c.get("type") for c in conditions}
        for kind in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
            if kind not in types:
                conditions.append({"type": kind})
        for condition in conditions:
            if condition.get("status") != "Unknown":
                condition["lastTransitionTime"] = stamp
            condition.update(
                status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status."
            )
        body["status"]["conditions"] = conditions
        updated = await self.client.update_status(NODES, body)
        self.recorder.record(
            node, NORMAL, "NodeNotReady", f"Node {node['metadata']['name']} status is now: NodeNotReady"
        )
        log.info(
            "node %s stopped reporting (grace %.0fs): conditions set to Unknown", node["metadata"]["name"], self.grace
        )
        for pod in self.pods.by_index("node", node["metadata"]["name"]):
            await self._mark_pod_not_ready(pod)
        return updated

    async def _mark_pod_not_ready(self, pod: Object) -> None:
        conditions = (pod.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            return
        await ignore_not_found(
            partial(
                self.client.patch,
                PODS,
                pod["metadata"]["name"],
                {
                    "status": {
                        "conditions": [
                            {"type": "Ready", "status": "False", "lastTransitionTime": now(), "reason": "NodeNotReady"}
                        ]
                    }
                },
                pod["metadata"]["namespace"],
                kind="strategic",
                subresource="status",
            )
        )

    def _evict(self, node: Object, taints: list[dict[str, Any]]) -> None:
        for pod in self.pods.by_index("node", node["metadata"]["name"]):
            key = key_of(pod)
            if pod["metadata"].get("deletionTimestamp"):
                continue
            wait = toleration_seconds(pod, taints)
            pending = self._evictions.pop(key, None)
            if pending is not None:
                pending.cancel()
            if wait is None:
                continue
            handle = asyncio.get_running_loop().call_later(wait, self._schedule_delete, pod)
            self._evictions[key] = handle

    def _schedule_delete(self, pod: Object) -> None:
        tasks.spawn(self._delete_pod(pod), name=f"evict {key_of(pod)}")

    async def _delete_pod(self, pod: Object) -> None:
        key = key_of(pod)
        self._evictions.pop(key, None)
        current = self.pods.get(key)
        if current is None or current["metadata"].get("uid") != pod["metadata"].get("uid"):
            return
        node = self.nodes.get((current.get("spec") or {}).get("nodeName", ""))
        if node is not None and toleration_seconds(current, (node.get("spec") or {}).get("taints") or []) != 0.0:
            return  # the taint went away (or the pod tolerates it longer) since the eviction was planned
        message = f"Marking for deletion Pod {key}"
        self.recorder.record(current, NORMAL, "TaintManagerEviction", message, component="taint-eviction-controller")
        await delete_object(self.client, PODS, current, uid=current["metadata"]["uid"])

    async def _collect_orphans(self, node_name: str) -> None:
        """Pods bound to a node that does not exist are deleted once it has stayed missing for the
        quarantine (40 s, as kube's pod GC) and the API server confirms it is gone: a node that is
        being registered, or an informer that lags, costs no pods."""
        pods = self.pods.by_index("node", node_name)
        if not pods:
            self._missing_since.pop(node_name, None)
            return
        loop = asyncio.get_running_loop()
        first = self._missing_since.setdefault(node_name, loop.time())
        if (wait := first + ORPHAN_QUARANTINE - loop.time()) > 0:
            self.queue.add_after(node_name, wait)
            return
        if await ignore_not_found(partial(self.client.get, NODES, node_name)) is not None:
            self._missing_since.pop(node_name, None)
            return
        del self._missing_since[node_name]
        for pod in pods:
            self.recorder.record(
                pod,
                NORMAL,
                "PodGC",
                f"Deleting pod bound to node {node_name}, which does not exist",
                component="pod-garbage-collector",
            )
            await delete_object(self.client, PODS, pod, grace_period=0)

    async def _monitor(self) -> None:
        await asyncio.gather(self.nodes.synced.wait(), self.leases.synced.wait(), self.pods.synced.wait())
        while True:
            for node in self.nodes.items():
                self.enqueue(node)
            for name in {n for n in (p.get("spec", {}).get("nodeName") for p in self.pods.items()) if n}:
                if self.nodes.get(name) is None:
                    self.queue.add(name)
            await asyncio.sleep(self.period)

    async def run(self) -> None:
        await asyncio.gather(self._monitor(), super().run())
