"""Disruption controller: keeps each PodDisruptionBudget's status saying how many pods may go now.

The eviction subresource (agents/apiserver/eviction.py) lets a pod go only while its budget's
``status.disruptionsAllowed`` is above 0, so this controller is what makes budgets work, as kube's
disruption controller does. For a budget it works out:

- ``expectedPods``: how many pods there should be. For an integer ``minAvailable`` that is the number of
  pods the selector picks; for ``maxUnavailable`` or a percentage, the sum of the replicas of the pods'
  controllers, read from their scale subresource (a ReplicaSet a Deployment controls counts as the
  Deployment), each controller once;
- ``desiredHealthy``: ``minAvailable`` (a percentage of ``expectedPods``, rounded up), or
  ``expectedPods - maxUnavailable`` (a percentage rounded up too), at least 0;
- ``currentHealthy``: the picked pods that are Ready, not being deleted, and not named in
  ``disruptedPods``, the pods an eviction has spent the budget on and that are on their way out;
- ``disruptionsAllowed``: ``currentHealthy - desiredHealthy``, at least 0, and 0 while no pod is expected;
- ``disruptedPods``: pruned of pods gone or being deleted, and of pods still there two minutes after their
  eviction (kube's deletion timeout: the eviction did not delete them after all; an Event says so);
- the ``DisruptionAllowed`` condition (True SufficientPods / False InsufficientPods), and
  ``observedGeneration``, without which evictions are refused as "still being processed".

A budget whose pods' controllers cannot be found fails safe: no disruption allowed, reason SyncFailed.
``plan`` is pure over the budget, its pods and the expected scale; ``sync`` reads the scales and writes
the status. Informers on budgets and pods only enqueue budget keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from agents.controllers.base import Context, Controller, Event, rfc3339, write_status
from agents.controllers.podutil import is_ready
from agents.machinery.client import ApiError
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.informer import key_of
from agents.machinery.objects import Object, parse_time
from agents.machinery.resources import (
    DEPLOYMENTS,
    POD_DISRUPTION_BUDGETS,
    PODS,
    REPLICASETS,
    REPLICATION_CONTROLLERS,
    STATEFULSETS,
    ResourceRef,
)
from agents.machinery.selectors import SelectorError, from_structured

DELETION_TIMEOUT = timedelta(minutes=2)  # an evicted pod not deleted by then counts again (kube's)
CONDITION = "DisruptionAllowed"
# (group, kind) of a pod's controller -> the resource whose scale subresource says its replicas
SCALABLE: dict[tuple[str, str], ResourceRef] = {
    ("apps", "ReplicaSet"): REPLICASETS,
    ("apps", "Deployment"): DEPLOYMENTS,
    ("apps", "StatefulSet"): STATEFULSETS,
    ("", "ReplicationController"): REPLICATION_CONTROLLERS,
}


class ScaleError(Exception):
    """The expected number of pods cannot be known; ``reason`` names why, as kube's Events do."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Scale:
    """The replicas a pod controller wants; ``uid`` is that of the object scaled (a Deployment for
    the ReplicaSets it controls), so that it is counted once."""

    uid: str
    replicas: int


@dataclass
class Plan:
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


def controller_ref(pod: Object) -> dict[str, Any] | None:
    return next((r for r in (pod.get("metadata") or {}).get("ownerReferences") or [] if r.get("controller")), None)


def _group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def selected(pdb: Object, pods: list[Object]) -> list[Object]:
    """The pods of the budget's namespace it picks: all for an empty selector, none without one."""
    selector = (pdb.get("spec") or {}).get("selector")
    if selector is None:
        return []
    try:
        parsed = from_structured(selector)
    except SelectorError:
        return []
    return [p for p in pods if parsed.matches((p.get("metadata") or {}).get("labels") or {})]


def needs_scale(pdb: Object) -> bool:
    """Whether the budget's numbers depend on the replicas of its pods' controllers."""
    spec = pdb.get("spec") or {}
    return spec.get("maxUnavailable") is not None or isinstance(spec.get("minAvailable"), str)


def expected_scale(pods: list[Object], found: Mapping[str, Scale | None]) -> int:
    """The pods' controllers' replicas, each controller once; ``found`` maps a controller reference's
    uid to its scale (None: no controller of a kind with replicas)."""
    scales: dict[str, int] = {}
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "")
        ref = controller_ref(pod)
        if ref is None:
            raise ScaleError("NoControllerRef", f'found no controller ref for pod "{name}"')
        scale = found.get(str(ref.get("uid", "")))
        if scale is None:
            raise ScaleError("NoControllers", f'found no controllers for pod "{name}"')
        scales[scale.uid] = scale.replicas
    return sum(scales.values())


def _scaled(value: Any, total: int) -> int:
    """An int-or-percent against ``total``, percentages rounded up (kube's GetScaledValueFromIntOrPercent)."""
    if isinstance(value, int):
        return value
    percent = int(str(value).rstrip("%"))
    return -(-percent * total // 100)


def counts(pdb: Object, pods: list[Object], scale: int | None) -> tuple[int, int]:
    """(expectedPods, desiredHealthy) for the budget; ``scale`` is needed where ``needs_scale`` says."""
    spec = pdb.get("spec") or {}
    low, high = spec.get("minAvailable"), spec.get("maxUnavailable")
    if high is not None:
        expected = scale or 0
        return expected, max(0, expected - _scaled(high, expected))
    if isinstance(low, int):
        return len(pods), low
    if low is not None:
        expected = scale or 0
        return expected, _scaled(low, expected)
    return 0, 0


def _deleting(pod: Object) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def still_disrupted(pdb: Object, pods: list[Object], now: datetime) -> tuple[dict[str, str], list[Event], float | None]:
    """``disruptedPods`` pruned: pods gone, going, or overdue (an Event each) leave it; also when to look
    again (the first of the rest to become overdue)."""
    recorded: dict[str, str] = (pdb.get("status") or {}).get("disruptedPods") or {}
    kept: dict[str, str] = {}
    events: list[Event] = []
    first_due: datetime | None = None
    meta = pdb.get("metadata") or {}
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "")
        if _deleting(pod) or name not in recorded:
            continue
        try:
            due = parse_time(recorded[name]) + DELETION_TIMEOUT
        except ValueError:
            continue
        if due < now:
            where = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
            message = f"Pod was expected by PDB {where} to be deleted but it wasn't"
            events.append(Event(WARNING, "NotDeleted", message, about=pod))
            continue
        kept[name] = recorded[name]
        first_due = due if first_due is None or due < first_due else first_due
    wait = (first_due - now).total_seconds() + 0.05 if first_due is not None else None
    return kept, events, wait


def with_condition(
    conditions: list[dict[str, Any]], *, status: str, reason: str, message: str, generation: int, now: datetime
) -> list[dict[str, Any]]:
    """The DisruptionAllowed condition set as kube's SetStatusCondition does: its transition time moves
    only when its status changes."""
    current = next((c for c in conditions if c.get("type") == CONDITION), None)
    moved = current is None or current.get("status") != status
    condition = {
        "type": CONDITION,
        "status": status,
        "observedGeneration": generation,
        "lastTransitionTime": rfc3339(now) if moved else (current or {}).get("lastTransitionTime", rfc3339(now)),
        "reason": reason,
        "message": message,
    }
    return [*(c for c in conditions if c.get("type") != CONDITION), condition]


def plan(pdb: Object, pods: list[Object], *, scale: int | None, now: datetime) -> Plan:
    """The status ``pdb`` must have given the pods of its namespace and, where ``needs_scale``, the
    expected scale of their controllers."""
    picked = selected(pdb, pods)
    expected, desired = counts(pdb, picked, scale)
    disrupted, events, wait = still_disrupted(pdb, picked, now)
    healthy = sum(1 for p in picked if not _deleting(p) and p["metadata"].get("name") not in disrupted and is_ready(p))
    allowed = healthy - desired if expected > 0 and healthy > desired else 0
    generation = int((pdb.get("metadata") or {}).get("generation") or 0)
    previous = pdb.get("status") or {}
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
    }
    if disrupted:
        status["disruptedPods"] = disrupted
    status["conditions"] = with_condition(
        list(previous.get("conditions") or []),
        status="True" if allowed > 0 else "False",
        reason="SufficientPods" if allowed > 0 else "InsufficientPods",
        message="",
        generation=generation,
        now=now,
    )
    if not picked:
        events.append(Event(NORMAL, "NoPods", "No matching pods found"))
    return Plan(status=status, events=events, requeue_after=wait)


def fail_safe(pdb: Object, message: str, *, now: datetime) -> dict[str, Any]:
    """The status of a budget that could not be worked out: no disruption allowed, and why."""
    status = dict(pdb.get("status") or {})
    status["disruptionsAllowed"] = 0
    status["conditions"] = with_condition(
        list(status.get("conditions") or []),
        status="False",
        reason="SyncFailed",
        message=message,
        generation=int(status.get("observedGeneration") or 0),
        now=now,
    )
    return status


class DisruptionController(Controller):
    name = "disruption"
    workers = 2

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.budgets = ctx.informer(POD_DISRUPTION_BUDGETS)
        self.pods = ctx.informer(PODS)
        self.budgets.on(add=self.enqueue, update=lambda _o, n: self.enqueue(n), delete=lambda _o: None)
        self.pods.on(add=self._pod_changed, update=self._pod_updated, delete=self._pod_changed)

    def _pod_changed(self, pod: Object) -> None:
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        for pdb in self.budgets.by_index("namespace", namespace):
            if selected(pdb, [pod]):
                self.queue.add(key_of(pdb))

    def _pod_updated(self, old: Object, new: Object) -> None:
        self._pod_changed(new)
        if (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get("labels"):
            self._pod_changed(old)

    async def sync(self, key: str) -> None:
        pdb = self.budgets.get(key)
        if pdb is None:
            return
        namespace = pdb["metadata"]["namespace"]
        pods = self.pods.by_index("namespace", namespace)
        now = self.now()
        scale: int | None = None
        try:
            if needs_scale(pdb):
                picked = selected(pdb, pods)
                scale = expected_scale(picked, await self._scales(picked, namespace))
        except ScaleError as exc:
            self.recorder.record(pdb, WARNING, exc.reason, str(exc))
            await write_status(self.client, POD_DISRUPTION_BUDGETS, pdb, fail_safe(pdb, str(exc), now=now))
            return
        decided = plan(pdb, pods, scale=scale, now=now)
        self.record(pdb, *decided.events)
        await write_status(self.client, POD_DISRUPTION_BUDGETS, pdb, decided.status)
        if decided.requeue_after is not None:
            self.queue.add_after(key, decided.requeue_after)

    async def _scales(self, pods: list[Object], namespace: str) -> dict[str, Scale | None]:
        """The scale of each distinct controller of ``pods``, by the controller reference's uid."""
        found: dict[str, Scale | None] = {}
        for pod in pods:
            ref = controller_ref(pod)
            if ref is None or str(ref.get("uid", "")) in found:
                continue
            found[str(ref.get("uid", ""))] = await self._scale_of(ref, namespace)
        return found

    async def _scale_of(self, ref: Mapping[str, Any], namespace: str) -> Scale | None:
        """The replicas of the controller ``ref`` names (a Deployment's for a ReplicaSet it controls);
        None when it is of no kind with replicas, gone, or another object of the same name."""
        group, kind, name = _group(str(ref.get("apiVersion", ""))), str(ref.get("kind", "")), str(ref.get("name", ""))
        resource = SCALABLE.get((group, kind))
        if resource is None:
            return None
        try:
            if resource == REPLICASETS:
                rs = await self.client.get(REPLICASETS, name, namespace)
                if rs["metadata"].get("uid") != ref.get("uid"):
                    return None
                owner = controller_ref(rs)
                if owner is not None and (_group(str(owner.get("apiVersion", ""))), owner.get("kind")) == (
                    "apps",
                    "Deployment",
                ):
                    return await self._scale_of(owner, namespace)
            scale = await self.client.get(resource, name, namespace, subresource="scale")
        except ApiError as exc:
            if exc.not_found:
                return None
            raise
        if scale["metadata"].get("uid") != ref.get("uid"):
            return None
        return Scale(str(ref.get("uid", "")), int((scale.get("spec") or {}).get("replicas") or 0))
