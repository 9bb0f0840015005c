"""The pod garbage collector (kube's ``podgc``, reporting as ``pod-garbage-collector``): pods that
nobody else will ever finish are force-deleted (grace period 0).

Why it exists: a graceful deletion ends when the pod's kubelet confirms its containers are gone. On a
machine that is off no kubelet ever confirms, so a pod evicted from it stays Terminating: its
StatefulSet does not make a new pod of that name and the attach/detach controller keeps its disk
attached. Kube's answer is non-graceful node shutdown: an operator who knows the machine is down
(powered off, not merely cut off) taints its Node ``node.kubernetes.io/out-of-service`` (usually
``=nodeshutdown:NoExecute``); this controller then force-deletes the pods terminating there, and the
attach/detach controller detaches their volumes at once.

Every 20 s (kube's check period) the pure ``plan`` looks at every pod and node and asks to
force-delete, as kube's PodGC does:

* terminating pods on a node that is not Ready and has the out-of-service taint (gcTerminating);
* terminating pods that were never scheduled (gcUnscheduledTerminating);
* the oldest terminated pods (Succeeded or Failed; evicted ones first) beyond
  ``terminated-pod-gc-threshold`` (gcTerminated; 12500 as kube, 0 turns it off).

A pod that is not yet Succeeded or Failed is first set to phase Failed (through its status), as kube
does, so whoever sees it last sees it ended; then it is deleted with grace period 0 and its uid as
precondition. Pods bound to a node that no longer exists (kube's gcOrphaned) are not collected here:
the node lifecycle controller (agents/controllers/nodelifecycle.py, ``plan_orphans``) already deletes
them after kube's 40 s quarantine, with the ``PodGC`` event of this component.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from agents.controllers.attachdetach import OUT_OF_SERVICE
from agents.controllers.base import Context, Controller, delete_object, gather_limited, ignore_not_found
from agents.controllers.nodelifecycle import ready_status
from agents.controllers.podutil import is_terminal
from agents.machinery.client import ApiError
from agents.machinery.objects import Object
from agents.machinery.resources import NODES, PODS

log = logging.getLogger(__name__)

CHECK_PERIOD = 20.0  # kube's gcCheckPeriod
KEY = "pods"  # the one key of the queue: each sync looks at every pod

# why a pod is collected (kube's PodGC reasons, as its metrics name them)
TERMINATING_OUT_OF_SERVICE = "terminating-out-of-service"
UNSCHEDULED_TERMINATING = "terminating-unscheduled"
TERMINATED = "terminated"


@dataclass(frozen=True)
class ForceDelete:
    """A pod to delete with grace period 0; ``fail_first``: set its phase to Failed before."""

    pod: Object
    reason: str
    fail_first: bool


def out_of_service(node: Mapping[str, Any]) -> bool:
    """Whether the node carries the out-of-service taint (any value and effect, as kube checks the key)."""
    taints = (node.get("spec") or {}).get("taints") or []
    return any(t.get("key") == OUT_OF_SERVICE for t in taints)


def _terminating(pod: Object) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def _evicted(pod: Object) -> bool:
    return (pod.get("status") or {}).get("reason") == "Evicted"


def _age_order(pod: Object) -> tuple[bool, str, str]:
    """kube's order for collecting terminated pods: evicted ones first, then the oldest."""
    meta = pod["metadata"]
    return (not _evicted(pod), str(meta.get("creationTimestamp") or ""), f"{meta.get('namespace')}/{meta['name']}")


def plan(pods: Iterable[Object], nodes: Mapping[str, Object], *, threshold: int) -> list[ForceDelete]:
    """The pods to force-delete, given every pod and the nodes by name."""
    pods = list(pods)
    out: list[ForceDelete] = []
    if threshold > 0:
        terminated = [p for p in pods if is_terminal(p)]
        if len(terminated) > threshold:
            ranked = sorted(terminated, key=_age_order)
            out += [ForceDelete(p, TERMINATED, fail_first=False) for p in ranked[: len(terminated) - threshold]]
    chosen = {step.pod["metadata"]["uid"] for step in out}
    for pod in pods:
        if not _terminating(pod) or pod["metadata"]["uid"] in chosen:
            continue
        node_name = (pod.get("spec") or {}).get("nodeName") or ""
        node = nodes.get(node_name)
        if not node_name:
            out.append(ForceDelete(pod, UNSCHEDULED_TERMINATING, fail_first=not is_terminal(pod)))
        elif node is not None and ready_status(node) != "True" and out_of_service(node):
            out.append(ForceDelete(pod, TERMINATING_OUT_OF_SERVICE, fail_first=not is_terminal(pod)))
    return out


class PodGcController(Controller):
    name = "podgc"
    source = "pod-garbage-collector"
    workers = 1
    period = CHECK_PERIOD

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.threshold = int(ctx.settings.terminated_pod_gc_threshold)
        self.pods = ctx.informer(PODS)
        self.nodes = ctx.informer(NODES)

    async def sync(self, key: str) -> None:
        nodes = {n["metadata"]["name"]: n for n in self.nodes.items()}
        decided = plan(self.pods.items(), nodes, threshold=self.threshold)
        if not decided:
            return
        results = await gather_limited([partial(self._force_delete, step) for step in decided])
        for step, result in zip(decided, results, strict=True):
            if isinstance(result, ApiError):
                meta = step.pod["metadata"]
                log.warning("pod %s/%s: force deletion failed: %s", meta.get("namespace"), meta["name"], result)
            elif isinstance(result, BaseException):
                raise result

    async def _force_delete(self, step: ForceDelete) -> None:
        meta = step.pod["metadata"]
        name, namespace = meta["name"], meta.get("namespace", "")
        log.info("PodGC is force deleting Pod %s/%s (%s)", namespace, name, step.reason)
        if step.fail_first:
            body = {"status": {"phase": "Failed"}}
            await ignore_not_found(partial(self.client.patch, PODS, name, body, namespace, subresource="status"))
        await delete_object(self.client, PODS, step.pod, grace_period=0, uid=meta["uid"])

    async def _tick(self) -> None:
        await asyncio.gather(self.pods.synced.wait(), self.nodes.synced.wait())
        while True:
            self.queue.add(KEY)
            await asyncio.sleep(self.period)

    async def run(self) -> None:
        await asyncio.gather(self._tick(), super().run())
