"""ReplicaSet controller: keeps the number of running pods matching a selector at ``replicas``.

``plan`` is pure: from the ReplicaSet and the pods it controls it decides how many pods to create
and which to delete, what the status must say, and when to look again (a pod that becomes available
after ``minReadySeconds``). ``sync`` claims the pods (adopting matching orphans and releasing pods
that no longer match, through ``claim``), plans, then creates pods in batches that double (1, 2, 4,
...) so a broken template fails fast, and reports every action as an Event.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from agents.controllers import claim
from agents.controllers.base import Context, Controller, gather_limited, write_status
from agents.controllers.podutil import (
    Expectations,
    deletion_rank,
    is_active,
    is_available,
    is_ready,
    pod_from_template,
    seconds_until_available,
)
from agents.machinery import tracing
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.informer import key_of
from agents.machinery.objects import Object
from agents.machinery.resources import PODS, REPLICASETS, ResourceRef
from agents.machinery.selectors import LabelSelector, SelectorError, from_structured

BURST = 500
TRACER = "controller-manager"


@dataclass
class Plan:
    create: int = 0
    delete: list[Object] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    requeue_after: float | None = None


def replica_status(rs: Object, pods: list[Object], *, now: datetime, failure: str = "") -> dict[str, Any]:
    spec = rs.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    active = [p for p in pods if is_active(p)]
    min_ready = int(spec.get("minReadySeconds") or 0)
    status: dict[str, Any] = {
        "replicas": len(active),
        "fullyLabeledReplicas": sum(
            1
            for p in active
            if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in template_labels.items())
        ),
        "readyReplicas": sum(1 for p in active if is_ready(p)),
        "availableReplicas": sum(1 for p in active if is_available(p, min_ready, now)),
        "observedGeneration": (rs.get("metadata") or {}).get("generation", 1),
    }
    for name in ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
        if not status[name]:
            del status[name]
    previous = [c for c in (rs.get("status") or {}).get("conditions") or [] if c.get("type") != "ReplicaFailure"]
    if failure:
        previous.append({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": failure})
    if previous:
        status["conditions"] = previous
    return status


def plan(rs: Object, pods: list[Object], *, expectations_met: bool, now: datetime) -> Plan:
    """What to do for ``rs`` given the pods it controls."""
    desired = int((rs.get("spec") or {}).get("replicas", 1))
    active = [p for p in pods if is_active(p)]
    min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
    waits = [w for p in pods if (w := seconds_until_available(p, min_ready, now))]
    result = Plan(status=replica_status(rs, pods, now=now), requeue_after=min(waits) + 0.05 if waits else None)
    if not expectations_met or (rs.get("metadata") or {}).get("deletionTimestamp"):
        return result
    gap = desired - len(active)
    if gap > 0:
        result.create = min(gap, BURST)
    elif gap < 0:
        colocated = Counter((p.get("spec") or {}).get("nodeName") or "" for p in active)
        ranked = sorted(active, key=lambda p: deletion_rank(p, colocated, now=now))
        result.delete = ranked[: min(-gap, BURST)]
    return result


class ReplicaSetController(Controller):
    """Runs ReplicaSets; ``resource`` and ``selector_of`` let the same loop run the ReplicationControllers
    (agents/controllers/replicationcontroller.py), whose objects share every field ``plan`` reads."""

    name = "replicaset"
    workers = 4
    resource: ResourceRef = REPLICASETS  # what it runs; the pods it creates name this kind as their controller

    @staticmethod
    def selector_of(owner: Object) -> LabelSelector:
        return from_structured((owner.get("spec") or {}).get("selector"))

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.sets = ctx.informer(self.resource)
        self.pods = ctx.informer(PODS)
        self.expectations = Expectations()
        self.sets.on(add=self.enqueue, update=lambda _o, n: self.enqueue(n), delete=self._set_deleted)
        self.pods.on(add=self._pod_added, update=self._pod_updated, delete=self._pod_deleted)

    def _set_deleted(self, rs: Object) -> None:
        self.expectations.forget(key_of(rs))

    def _owner_key(self, pod: Object) -> str | None:
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == self.resource.kind:
                return f"{pod['metadata']['namespace']}/{ref['name']}"
        return None

    def _pod_added(self, pod: Object) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.observed_add(key)
            self.queue.add(key)
        else:
            self._enqueue_matching(pod)

    def _pod_updated(self, old: Object, new: Object) -> None:
        key = self._owner_key(new)
        if key is not None:
            if new["metadata"].get("deletionTimestamp"):
                self.expectations.observed_delete(key, new["metadata"]["uid"])
            self.queue.add(key)
        elif old["metadata"].get("labels") != new["metadata"].get("labels") or not self._owner_key(old):
            self._enqueue_matching(new)
        old_key = self._owner_key(old)
        if old_key is not None and old_key != key:
            self.queue.add(old_key)

    def _pod_deleted(self, pod: Object) -> None:
        key = self._owner_key(pod)
        if key is not None:
            self.expectations.observed_delete(key, pod["metadata"]["uid"])
            self.queue.add(key)

    def _enqueue_matching(self, pod: Object) -> None:
        """An orphan pod: the ReplicaSets of its namespace whose selector matches may adopt it."""
        labels = pod["metadata"].get("labels") or {}
        for rs in self.sets.by_index("namespace", pod["metadata"]["namespace"]):
            try:
                if self.selector_of(rs).matches(labels):
                    self.queue.add(key_of(rs))
            except SelectorError:
                continue

    async def sync(self, key: str) -> None:
        rs = self.sets.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        selector = self.selector_of(rs)
        claimed = claim.decide(
            rs, self.pods.by_index("namespace", rs["metadata"]["namespace"]), selector=selector, adoptable=is_active
        )
        pods = await claim.execute(self.client, PODS, rs, claimed)
        now = self.now()
        decided = plan(rs, pods, expectations_met=self.expectations.satisfied(key), now=now)
        failure = ""
        if decided.create or decided.delete:  # a settled ReplicaSet's syncs are not traced
            # the pods made inside the span continue the ReplicaSet's trace (the client sends its context)
            with tracing.span_for(rs, f"sync {self.resource.kind.lower()}", tracer_name=TRACER):
                if decided.create:
                    with tracing.child("create pods", tracer_name=TRACER, attributes={"count": decided.create}) as span:
                        failure = await self._create(rs, key, decided.create)
                        if failure:
                            tracing.fail(span, failure)
                if decided.delete:
                    with tracing.child("delete pods", tracer_name=TRACER, attributes={"count": len(decided.delete)}):
                        await self._delete(rs, key, decided.delete)
        status = replica_status(rs, pods, now=now, failure=failure) if failure else decided.status
        await write_status(self.client, self.resource, rs, status)
        if decided.requeue_after is not None:
            self.queue.add_after(key, decided.requeue_after)

    async def _create(self, rs: Object, key: str, count: int) -> str:
        template = (rs.get("spec") or {}).get("template") or {}
        self.expectations.expect(key, adds=count)
        created, batch, failure = 0, 1, ""
        while created < count and not failure:
            size = min(batch, count - created)
            results = await gather_limited(
                [partial(self.client.create, PODS, pod_from_template(template, rs)) for _ in range(size)]
            )
            errors = [r for r in results if isinstance(r, BaseException)]
            created += size - len(errors)
            if errors:
                failure = str(errors[0])
                self.expectations.lower(key, adds=count - created)
                self.recorder.record(rs, WARNING, "FailedCreate", f"Error creating: {failure}")
            batch *= 2
        if created:
            self.recorder.record(rs, NORMAL, "SuccessfulCreate", f"Created {created} pod(s)")
        return failure

    async def _delete(self, rs: Object, key: str, pods: list[Object]) -> None:
        self.expectations.expect(key, deletes=[p["metadata"]["uid"] for p in pods])
        results = await gather_limited(
            [partial(self.client.delete, PODS, p["metadata"]["name"], p["metadata"]["namespace"]) for p in pods]
        )
        failed = [p["metadata"]["uid"] for p, r in zip(pods, results, strict=True) if isinstance(r, BaseException)]
        if failed:
            self.expectations.lower(key, deletes=failed)
        names = ", ".join(
            p["metadata"]["name"] for p, r in zip(pods, results, strict=True) if not isinstance(r, BaseException)
        )
        if names:
            self.recorder.record(rs, NORMAL, "SuccessfulDelete", f"Deleted pod: {names}")
