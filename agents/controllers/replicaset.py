"""ReplicaSet controller: keeps the number of running pods matching a selector at ``replicas``.

``plan`` is pure: from the ReplicaSet and its pods it decides how many pods to create and which to
delete, and what the status must say. The controller adopts orphans that match the selector and
releases pods that no longer do, creates pods in batches that double (1, 2, 4, ...) so a broken
template fails fast, and reports every action as an Event.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from agents.controllers.base import Context, Controller, gather_limited, ignore_not_found, owner_uid
from agents.controllers.podutil import (
    Expectations,
    controller_ref,
    deletion_rank,
    is_active,
    is_available,
    is_ready,
    pod_from_template,
    seconds_until_available,
)
from agents.machinery.client import ApiError
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.informer import key_of
from agents.machinery.objects import Object, deep_copy
from agents.machinery.resources import PODS, REPLICASETS
from agents.machinery.selectors import SelectorError, from_structured

BURST = 500


@dataclass
class Plan:
    create: int = 0
    delete: list[Object] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)


def replica_status(rs: Object, pods: list[Object], *, failure: str = "") -> dict[str, Any]:
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
        "availableReplicas": sum(1 for p in active if is_available(p, min_ready)),
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


def plan(rs: Object, pods: list[Object], *, expectations_met: bool) -> Plan:
    """What to do for ``rs`` given the pods it owns."""
    desired = int((rs.get("spec") or {}).get("replicas", 1))
    active = [p for p in pods if is_active(p)]
    result = Plan(status=replica_status(rs, pods))
    if not expectations_met or (rs.get("metadata") or {}).get("deletionTimestamp"):
        return result
    gap = desired - len(active)
    if gap > 0:
        result.create = min(gap, BURST)
    elif gap < 0:
        colocated = Counter((p.get("spec") or {}).get("nodeName") or "" for p in active)
        result.delete = sorted(active, key=lambda p: deletion_rank(p, colocated))[: min(-gap, BURST)]
    return result


class ReplicaSetController(Controller):
    name = "replicaset"
    workers = 4

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.sets = ctx.informer(REPLICASETS)
        self.pods = ctx.informer(PODS)
        self.expectations = Expectations()
        self.sets.on(add=self.enqueue, update=lambda _o, n: self.enqueue(n), delete=self._set_deleted)
        self.pods.on(add=self._pod_added, update=self._pod_updated, delete=self._pod_deleted)

    def _set_deleted(self, rs: Object) -> None:
        self.expectations.forget(key_of(rs))

    def _owner_key(self, pod: Object) -> str | None:
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "ReplicaSet":
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
                if from_structured((rs.get("spec") or {}).get("selector")).matches(labels):
                    self.queue.add(key_of(rs))
            except SelectorError:
                continue

    async def _claim(self, rs: Object) -> list[Object]:
        """The pods ``rs`` controls, after adopting matching orphans and releasing non-matching pods."""
        uid = rs["metadata"]["uid"]
        selector = from_structured((rs.get("spec") or {}).get("selector"))
        owned: list[Object] = []
        for pod in self.pods.by_index("namespace", rs["metadata"]["namespace"]):
            matches = selector.matches(pod["metadata"].get("labels") or {})
            controller = owner_uid(pod)
            if controller == uid:
                if matches or pod["metadata"].get("deletionTimestamp"):
                    owned.append(pod)
                else:
                    refs = [r for r in pod["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                    await ignore_not_found(
                        partial(
                            self.client.patch,
                            PODS,
                            pod["metadata"]["name"],
                            {"metadata": {"ownerReferences": refs or None}},
                            pod["metadata"]["namespace"],
                        )
                    )
            elif not controller and matches and is_active(pod) and not rs["metadata"].get("deletionTimestamp"):
                refs = [*(pod["metadata"].get("ownerReferences") or []), controller_ref(rs)]
                try:
                    adopted = await self.client.patch(
                        PODS,
                        pod["metadata"]["name"],
                        {"metadata": {"ownerReferences": refs, "resourceVersion": pod["metadata"]["resourceVersion"]}},
                        pod["metadata"]["namespace"],
                    )
                    owned.append(adopted)
                except ApiError as exc:
                    if not (exc.conflict or exc.not_found):
                        raise
        return owned

    async def sync(self, key: str) -> None:
        rs = self.sets.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        pods = await self._claim(rs)
        decided = plan(rs, pods, expectations_met=self.expectations.satisfied(key))
        failure = ""
        if decided.create:
            failure = await self._create(rs, key, decided.create)
        if decided.delete:
            await self._delete(rs, key, decided.delete)
        status = replica_status(rs, pods, failure=failure) if failure else decided.status
        if status != (rs.get("status") or {}):
            updated = deep_copy(rs)
            updated["status"] = status
            await ignore_not_found(lambda: self.client.update_status(REPLICASETS, updated))
        waits = [w for p in pods if (w := seconds_until_available(p, int(rs["spec"].get("minReadySeconds") or 0)))]
        if waits:
            self.queue.add_after(key, min(waits) + 0.05)

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
