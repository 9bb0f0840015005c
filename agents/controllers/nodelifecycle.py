"""Node lifecycle: notices nodes that stopped reporting, taints them, and evicts their pods.

Every ``monitor_period`` the controller checks how long, by its own clock, each node's heartbeat (its
Lease in kube-node-lease, or its Ready condition) has not changed against ``grace_period``. A silent
node's conditions become Unknown and its pods not ready. Taints follow the Ready condition:
``node.kubernetes.io/not-ready`` (Ready=False) or ``node.kubernetes.io/unreachable`` (Ready=Unknown),
each as NoSchedule and NoExecute.
A pod on a node with NoExecute taints is deleted at once if it does not tolerate them, or when the
shortest ``tolerationSeconds`` of its matching tolerations has passed (the API server gives every pod
300 s by default). Pods bound to a node that has not existed for 40 s are deleted (pod GC).

The controller remembers two clocks of its own (when each heartbeat last changed, when each missing
node was first missed) and hands what they say to pure plans: ``plan`` for a node (conditions,
taints, the pods to mark not ready, when each pod is to be evicted), ``eviction_due`` when an
eviction's time comes, ``plan_orphans`` for the pods of a node that is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from agents.controllers.base import Context, Controller, Delete, Event, delete_object, ignore_not_found, rfc3339
from agents.machinery import tasks
from agents.machinery.events import NORMAL
from agents.machinery.informer import key_of
from agents.machinery.objects import Object, deep_copy, parse_time
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


def wanted_taints(node: Object, existing: list[dict[str, Any]], *, now: datetime | None = None) -> list[dict[str, Any]]:
    """The node's taints with the condition taints set as its Ready condition and spec say; a new
    NoExecute taint is stamped ``now`` (the clock when not given)."""
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
                taint["timeAdded"] = rfc3339(now or datetime.now(UTC))
        keep.append(taint)
    return keep


def toleration_seconds(pod: Object, taints: list[dict[str, Any]], *, now: datetime | None = None) -> float | None:
    """Seconds the pod may stay despite the node's NoExecute taints (0: not tolerated; None: forever).

    As kube's taint manager: every NoExecute taint must be tolerated, and the shortest
    ``tolerationSeconds`` among the tolerations that match any of them wins; tolerations without it
    do not limit the stay. Counted from the latest of those taints' ``timeAdded`` to ``now`` (the
    clock when not given).
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
        limit -= ((now or datetime.now(UTC)) - max(added)).total_seconds()
    return max(limit, 0.0)


def _tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
        return False
    if not toleration.get("key"):
        return toleration.get("operator") == "Exists"
    if toleration.get("key") != taint.get("key"):
        return False
    return toleration.get("operator") == "Exists" or toleration.get("value", "") == taint.get("value", "")


def _ready(pod: Object) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def unknown(node: Object, *, now: datetime) -> Object:
    """The node with every condition (Ready and the pressure ones at least) Unknown: its kubelet
    stopped posting status."""
    body = deep_copy(node)
    stamp = rfc3339(now)
    conditions = body.setdefault("status", {}).get("conditions") or []
    types = {c.get("type") for c in conditions}
    for kind in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
        if kind not in types:
            conditions.append({"type": kind})
    for condition in conditions:
        if condition.get("status") != "Unknown":
            condition["lastTransitionTime"] = stamp
        condition.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.")
    body["status"]["conditions"] = conditions
    return body


def not_ready_condition(*, now: datetime) -> dict[str, Any]:
    """The Ready condition a pod on a silent node gets (a strategic merge by type)."""
    return {"type": "Ready", "status": "False", "lastTransitionTime": rfc3339(now), "reason": "NodeNotReady"}


@dataclass
class Plan:
    mark_unknown: Object | None = None  # the node's status to write: its kubelet went silent
    events: list[Event] = field(default_factory=list)  # recorded once that status is written
    not_ready: list[Object] = field(default_factory=list)  # its pods whose Ready condition turns False (below)
    taints: list[dict[str, Any]] | None = None  # the node's taints, when they must change
    evict: list[tuple[Object, float | None]] = field(default_factory=list)  # pod, seconds left (None: it stays)


def plan(node: Object, pods: list[Object], *, silent: bool, now: datetime) -> Plan:
    """What to do for ``node`` and the ``pods`` bound to it; ``silent``: its heartbeat has not changed
    for longer than the grace period."""
    result = Plan()
    if silent and ready_status(node) != "Unknown":
        node = result.mark_unknown = unknown(node, now=now)
        name = node["metadata"]["name"]
        result.events = [Event(NORMAL, "NodeNotReady", f"Node {name} status is now: NodeNotReady")]
        result.not_ready = [pod for pod in pods if _ready(pod)]
    taints = list((node.get("spec") or {}).get("taints") or [])
    wanted = wanted_taints(node, taints, now=now)
    if wanted != taints:
        result.taints = wanted
    result.evict = [
        (pod, toleration_seconds(pod, wanted, now=now)) for pod in pods if not pod["metadata"].get("deletionTimestamp")
    ]
    return result


def eviction_due(pod: Object, node: Object | None, *, now: datetime) -> bool:
    """Whether a pod whose eviction time has come must go: its node is gone, or it still does not
    tolerate the node's NoExecute taints (they may have gone meanwhile)."""
    return node is None or toleration_seconds(pod, (node.get("spec") or {}).get("taints") or [], now=now) == 0.0


@dataclass
class OrphanPlan:
    requeue_after: float | None = None  # the node has not been missing for the quarantine yet
    delete: list[Delete] = field(default_factory=list)  # once the API server confirms the node is gone


def plan_orphans(node_name: str, pods: list[Object], *, missing_for: float) -> OrphanPlan:
    """The pods bound to ``node_name``, a node missing for ``missing_for`` seconds: deleted once it has
    stayed missing for the quarantine (40 s, as kube's pod GC)."""
    if not pods:
        return OrphanPlan()
    if (wait := ORPHAN_QUARANTINE - missing_for) > 0:
        return OrphanPlan(requeue_after=wait)
    message = f"Deleting pod bound to node {node_name}, which does not exist"
    return OrphanPlan(
        delete=[
            Delete(pod, Event(NORMAL, "PodGC", message, about=pod, component="pod-garbage-collector")) for pod in pods
        ]
    )


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
        now = self.now()
        decided = plan(node, self.pods.by_index("node", key), silent=silent, now=now)
        if decided.mark_unknown is not None:
            await self.client.update_status(NODES, decided.mark_unknown)
            self.record(node, *decided.events)
            log.info("node %s stopped reporting (grace %.0fs): conditions set to Unknown", key, self.grace)
        for pod in decided.not_ready:
            await self._mark_pod_not_ready(pod, now=now)
        if decided.taints is not None:
            await self.client.patch(NODES, key, {"spec": {"taints": decided.taints or None}})
        for pod, wait in decided.evict:
            pending = self._evictions.pop(key_of(pod), None)
            if pending is not None:
                pending.cancel()
            if wait is not None:
                self._evictions[key_of(pod)] = asyncio.get_running_loop().call_later(wait, self._schedule_delete, pod)

    async def _mark_pod_not_ready(self, pod: Object, *, now: datetime) -> None:
        status = {"conditions": [not_ready_condition(now=now)]}
        await ignore_not_found(
            partial(
                self.client.patch,
                PODS,
                pod["metadata"]["name"],
                {"status": status},
                pod["metadata"]["namespace"],
                kind="strategic",
                subresource="status",
            )
        )

    def _schedule_delete(self, pod: Object) -> None:
        tasks.spawn(self._delete_pod(pod), name=f"evict {key_of(pod)}")

    async def _delete_pod(self, pod: Object) -> None:
        key = key_of(pod)
        self._evictions.pop(key, None)
        current = self.pods.get(key)
        if current is None or current["metadata"].get("uid") != pod["metadata"].get("uid"):
            return
        if not eviction_due(current, self.nodes.get((current.get("spec") or {}).get("nodeName", "")), now=self.now()):
            return
        message = f"Marking for deletion Pod {key}"
        self.recorder.record(current, NORMAL, "TaintManagerEviction", message, component="taint-eviction-controller")
        await delete_object(self.client, PODS, current, uid=current["metadata"]["uid"])

    async def _collect_orphans(self, node_name: str) -> None:
        """Pods bound to a node that does not exist are deleted once it has stayed missing for the
        quarantine and the API server confirms it is gone: a node that is being registered, or an
        informer that lags, costs no pods."""
        pods = self.pods.by_index("node", node_name)
        clock = asyncio.get_running_loop().time()
        if pods:
            missing_for = clock - self._missing_since.setdefault(node_name, clock)
        else:
            missing_for = 0.0
            self._missing_since.pop(node_name, None)
        decided = plan_orphans(node_name, pods, missing_for=missing_for)
        if decided.requeue_after is not None:
            self.queue.add_after(node_name, decided.requeue_after)
        if not decided.delete:
            return
        if await ignore_not_found(partial(self.client.get, NODES, node_name)) is not None:
            self._missing_since.pop(node_name, None)
            return
        del self._missing_since[node_name]
        for step in decided.delete:
            await delete_object(self.client, PODS, step.target, grace_period=0)
            self.record(step.target, step.event)

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
