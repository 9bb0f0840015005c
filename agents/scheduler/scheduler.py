"""The scheduling loop: watch pods and nodes, decide one pod at a time, bind asynchronously.

Decisions are sequential and work on the scheduler's cache, where a pod is counted on its node as
soon as it is chosen ("assumed"), before its binding is confirmed: the next decision already sees
it. Bindings go to the API server in parallel through the pods/binding subresource; a failed one
forgets the assumption and retries the pod with backoff. A pod with volume claims to bind first has
them bound on the chosen node in its binding task (``volumebinder``: kube's PreBind), so waiting for
a volume never holds up the next decision.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agents.machinery import tasks, tracing
from agents.machinery.client import ApiError, ApiUnavailableError, Client
from agents.machinery.events import NORMAL, WARNING, EventRecorder
from agents.machinery.informer import Informer, key_of
from agents.machinery.objects import Object, now
from agents.machinery.resources import NODES, PODS
from agents.scheduler.framework import (
    NodeInfo,
    PodInfo,
    failure_message,
    filter_node,
    prefilter_message,
    score_nodes,
    topology_for,
)
from agents.scheduler.queue import SchedulingQueue
from agents.scheduler.volumebinder import BIND_TIMEOUT, VolumeBinder, VolumeBindingError
from agents.scheduler.volumebinding import Assumption

log = logging.getLogger(__name__)

TRACER = "scheduler"


def _terminal(pod: Object) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class Scheduler:
    def __init__(
        self,
        client: Client,
        recorder: EventRecorder,
        *,
        name: str = "default-scheduler",
        most_allocated: bool = False,
        bind_concurrency: int = 64,
        bind_timeout: float = BIND_TIMEOUT,
    ) -> None:
        self.client = client
        self.recorder = recorder
        self.name = name
        self.most_allocated = most_allocated
        self.pods = Informer(client, PODS)
        self.nodes = Informer(client, NODES)
        self.volumes = VolumeBinder(client, bind_timeout=bind_timeout)
        self.volumes.on_change(self._cluster_changed)
        self.queue = SchedulingQueue()
        self.cache: dict[str, NodeInfo] = {}
        self.placed: dict[str, str] = {}  # pod key -> node, bound or assumed
        self.assumed: set[str] = set()
        self.anti_affinity_pods: set[str] = set()
        self._binds = asyncio.Semaphore(bind_concurrency)
        self._reported: dict[str, str] = {}  # pod key -> the unschedulable message last written
        self.scheduled_count = 0
        self.pods.on(add=self._pod_changed, update=lambda _old, new: self._pod_changed(new), delete=self._pod_deleted)
        self.nodes.on(add=self._node_changed, update=self._node_updated, delete=self._node_deleted)

    # --- cache ---------------------------------------------------------------------------------

    def _pod_changed(self, pod: Object) -> None:
        key = key_of(pod)
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        if node:
            self.queue.remove(key)
            self._reported.pop(key, None)
            if _terminal(pod):
                self._unplace(key)
                self._cluster_changed()
                return
            self.assumed.discard(key)
            if self.placed.get(key) != node or key not in self.cache.get(node, _NO_NODE).pods:
                self._place(key, node, PodInfo.of(pod))
            return
        if spec.get("schedulerName", "default-scheduler") != self.name or _terminal(pod):
            return
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            self.queue.remove(key)
            return
        if key not in self.assumed:
            self.queue.add(key, int(spec.get("priority") or 0))

    def _pod_deleted(self, pod: Object) -> None:
        key = key_of(pod)
        self.volumes.poke()  # a binding waiting for its volumes ends
        self.queue.remove(key)
        self.assumed.discard(key)
        self._reported.pop(key, None)
        if key in self.placed:
            self._unplace(key)
            self._cluster_changed()

    def _place(self, key: str, node: str, info: PodInfo) -> None:
        previous = self.placed.get(key)
        if previous and previous != node and previous in self.cache:
            self.cache[previous].remove(key)
        self.placed[key] = node
        target = self.cache.get(node)
        if target is None:  # bound to a node not seen yet: keep the pod, attach it when the node shows up
            return
        target.add(info)
        if info.anti_affinity:
            self.anti_affinity_pods.add(key)

    def _unplace(self, key: str) -> None:
        node = self.placed.pop(key, None)
        self.anti_affinity_pods.discard(key)
        if node and node in self.cache:
            self.cache[node].remove(key)

    def _node_changed(self, node: Object) -> None:
        name = node["metadata"]["name"]
        info = self.cache.get(name)
        if info is None:
            info = NodeInfo.of(node)
            self.cache[name] = info
            for key, placed_on in self.placed.items():
                pod = self.pods.get(key)
                if placed_on == name and pod is not None:
                    info.add(PodInfo.of(pod))
        else:
            info.update_node(node)
        self._cluster_changed()

    def _node_updated(self, old: Object, new: Object) -> None:
        relevant = (
            old.get("spec") != new.get("spec")
            or (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels")
            or (old.get("status") or {}).get("allocatable") != (new.get("status") or {}).get("allocatable")
            or _ready(old) != _ready(new)
        )
        if relevant:
            self._node_changed(new)
        else:
            self.cache[new["metadata"]["name"]].node = new

    def _node_deleted(self, node: Object) -> None:
        self.cache.pop(node["metadata"]["name"], None)
        self.volumes.poke()  # a binding waiting for volumes on it ends

    def _cluster_changed(self) -> None:
        if self.queue.unschedulable:
            self.queue.move_all_to_active()

    # --- decisions -----------------------------------------------------------------------------

    def decide(self, pod: Object, info: PodInfo | None = None) -> tuple[str | None, str]:
        """The node for ``pod`` (and ""), or None and the reason it fits nowhere."""
        decided = self.decision(pod, info)
        return decided.node, decided.message

    def decision(self, pod: Object, info: PodInfo | None = None) -> Decision:
        """The node for ``pod`` and how it was found: the nodes filtered out and why, the scores."""
        info = info or PodInfo.of(pod)
        nodes = list(self.cache.values())
        volumes = self.volumes.prefilter(info)
        if isinstance(volumes, str):
            return Decision(None, prefilter_message(len(nodes), volumes))
        needs_topology = bool(info.affinity or info.anti_affinity or self.anti_affinity_pods)
        topology = topology_for(info, self.cache) if needs_topology else None
        feasible: list[NodeInfo] = []
        reasons: Counter[str] = Counter()
        filtered: list[tuple[str, list[str]]] = []
        for node in nodes:
            why = filter_node(info, node, topology, volumes)
            if why:
                reasons.update(why)
                filtered.append((node.name, why))
            else:
                feasible.append(node)
        if not feasible:
            return Decision(None, failure_message(len(nodes), reasons), filtered=filtered)
        if len(feasible) == 1:
            return Decision(feasible[0].name, "", filtered=filtered, feasible=1)
        zones = any("topology.kubernetes.io/zone" in n.labels for n in feasible)
        scores = score_nodes(info, feasible, most_allocated=self.most_allocated, zones=zones)
        return Decision(scores[0][1], "", filtered=filtered, feasible=len(feasible), scores=scores)

    async def schedule_one(self) -> None:
        key = await self.queue.pop()
        pod = self.pods.get(key)
        if pod is None or (pod.get("spec") or {}).get("nodeName") or key in self.assumed:
            return
        # the binding task, spawned inside the span, continues it (a task keeps the context it began in)
        with tracing.span_for(pod, "schedule pod", tracer_name=TRACER) as span:
            info = PodInfo.of(pod)
            decided = self.decision(pod, info)
            if span.is_recording():
                _trace_decision(decided)
            node = decided.node
            if node is None:
                tracing.fail(span, decided.message)
                self.queue.mark_unschedulable(key)
                tasks.spawn(self._report_unschedulable(pod, decided.message), name=f"unschedulable {key}")
                return
            volumes = self.volumes.prefilter(info)
            assumption = (
                self.volumes.assume(volumes, self.cache[node])
                if volumes is not None and not isinstance(volumes, str)
                else None
            )
            self.assumed.add(key)
            self._place(key, node, info)
            await self._binds.acquire()
            tasks.spawn(self._bind(pod, node, assumption), name=f"bind {key}")

    async def _bind(self, pod: Object, node: str, volumes: Assumption | None = None) -> None:
        key = key_of(pod)
        meta = pod["metadata"]
        try:
            if volumes is not None:  # PreBind: the claims are bound on the node first
                await self.volumes.bind(
                    volumes, node=lambda: self.cache.get(node), pod_exists=lambda: self.pods.get(key) is not None
                )
            with tracing.child("bind", tracer_name=TRACER, attributes={"k8s.node.name": node}) as span:
                try:
                    await self.client.bind(meta["namespace"], meta["name"], node)
                except (ApiError, ApiUnavailableError) as exc:
                    tracing.fail(span, str(exc))
                    raise
        except VolumeBindingError as exc:
            self.assumed.discard(key)
            self._unplace(key)
            log.info("binding the volumes of %s on %s failed: %s", key, node, exc)
            if self.pods.get(key) is not None:
                self.recorder.record(pod, WARNING, "FailedScheduling", f'running PreBind plugin "VolumeBinding": {exc}')
                self.queue.backoff(key, int((pod.get("spec") or {}).get("priority") or 0))
            return
        except (ApiError, ApiUnavailableError) as exc:
            self.assumed.discard(key)
            self._unplace(key)
            if isinstance(exc, ApiError) and exc.not_found:
                return
            log.info("binding %s to %s failed: %s", key, node, exc)
            self.queue.backoff(key, int((pod.get("spec") or {}).get("priority") or 0))
            return
        finally:
            self._binds.release()
            if volumes is not None:
                self.volumes.forget(volumes)
        self.scheduled_count += 1
        self.queue.scheduled(key)
        self.recorder.record(pod, NORMAL, "Scheduled", f"Successfully assigned {key} to {node}")

    async def _report_unschedulable(self, pod: Object, message: str) -> None:
        key = key_of(pod)
        self.recorder.record(pod, WARNING, "FailedScheduling", message)
        if self._reported.get(key) == message:
            return
        condition: dict[str, Any] = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": now(),
        }
        # pinned to the version decided on: a pod bound (or changed) since is not marked unschedulable
        # over it (409); a pod still pending is decided again and reported then
        pinned = {"resourceVersion": pod["metadata"]["resourceVersion"]}
        try:
            await self.client.patch(
                PODS,
                pod["metadata"]["name"],
                {"metadata": pinned, "status": {"conditions": [condition]}},
                pod["metadata"]["namespace"],
                kind="strategic",
                subresource="status",
            )
            self._reported[key] = message
        except (ApiError, ApiUnavailableError) as exc:
            log.debug("recording that %s is unschedulable failed: %s", key, exc)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(30)
            self.queue.flush_stale()

    async def run(self, ready: asyncio.Event | None = None) -> None:
        tasks = [
            asyncio.create_task(self.nodes.run()),
            asyncio.create_task(self.pods.run()),
            *(asyncio.create_task(informer.run()) for informer in self.volumes.informers),
            asyncio.create_task(self.recorder.run()),
            asyncio.create_task(self._flush_periodically()),
        ]
        try:
            await asyncio.gather(
                self.nodes.synced.wait(),
                self.pods.synced.wait(),
                *(informer.synced.wait() for informer in self.volumes.informers),
            )
            log.info("scheduler %s ready: %d nodes, %d pods waiting", self.name, len(self.cache), len(self.queue))
            if ready is not None:
                ready.set()
            while True:
                await self.schedule_one()
        finally:
            for task in tasks:
                task.cancel()


_NO_NODE = NodeInfo.of({"metadata": {"name": ""}})


@dataclass(frozen=True)
class Decision:
    """Where a pod goes (None: nowhere, ``message`` says why, kube's FailedScheduling text), and how
    that was found: the nodes filtered out with their reasons, how many were feasible, the scores
    (best first; empty when there was nothing to compare)."""

    node: str | None
    message: str
    filtered: list[tuple[str, list[str]]] = field(default_factory=list)
    feasible: int = 0
    scores: list[tuple[float, str]] = field(default_factory=list)


def _trace_decision(decided: Decision) -> None:
    """The decision as spans under the current one: "filter" with an event per node filtered out,
    "score" with an event per node scored."""
    with tracing.child("filter", tracer_name=TRACER, attributes={"scheduler.feasible_nodes": decided.feasible}) as span:
        for node, reasons in decided.filtered:
            span.add_event("filtered out", {"k8s.node.name": node, "reason": ", ".join(reasons)})
    if decided.node is None:
        return
    with tracing.child("score", tracer_name=TRACER) as span:
        for score, node in decided.scores:
            span.add_event("scored", {"k8s.node.name": node, "score": score})


def _ready(node: Object) -> str:
    return next(
        (c.get("status", "") for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"),
        "",
    )
