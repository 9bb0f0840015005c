"""Deployment controller: rolls ReplicaSets forward (and back) to match the Deployment's template.

Each distinct pod template gets its own ReplicaSet, named after a hash of the template. RollingUpdate
grows the new ReplicaSet while the total stays within replicas + maxSurge, and shrinks old ones while
the available pods stay at least replicas - maxUnavailable; Recreate removes all old pods first.
ReplicaSets carry revision numbers, so ``kubectl rollout history`` lists them and ``kubectl rollout
undo`` (which puts an old template back) makes that ReplicaSet the newest revision again.

``plan`` is pure: from the Deployment and the ReplicaSets it controls it decides the next step (a
new ReplicaSet to create, which is all a plan says until it exists; or the annotations, scales and
clean-ups to make) and the status and conditions to write. ``sync`` claims the ReplicaSets (through
``claim``), plans, creates the new ReplicaSet and plans again with it, then applies the rest.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson

from agents.controllers import claim
from agents.controllers.base import Context, Controller, Event, ignore_not_found, owner_uid, rfc3339, write_status
from agents.controllers.podutil import controller_ref
from agents.machinery import tracing
from agents.machinery.client import ApiError
from agents.machinery.events import NORMAL
from agents.machinery.informer import key_of
from agents.machinery.objects import Object, deep_copy, parse_time
from agents.machinery.resources import DEPLOYMENTS, REPLICASETS
from agents.machinery.selectors import SelectorError, from_structured

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
TRACER = "controller-manager"

# --- pure arithmetic -----------------------------------------------------------------------------


def template_hash(template: Object, collisions: int = 0) -> str:
    """A short, stable, DNS-safe hash of a pod template (FNV-1a over its canonical JSON)."""
    value = 0x811C9DC5
    for byte in orjson.dumps(template, option=orjson.OPT_SORT_KEYS) + (str(collisions).encode() if collisions else b""):
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(_ALPHABET[ord(ch) % len(_ALPHABET)] for ch in str(value))


def without_hash(template: Object) -> Object:
    out = deep_copy(template or {})
    labels = (out.get("metadata") or {}).get("labels")
    if labels and HASH_LABEL in labels:
        del labels[HASH_LABEL]
        if not labels:
            del out["metadata"]["labels"]
    return out


def revision_of(rs: Object | None) -> int:
    if rs is None:
        return 0
    try:
        return int(((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION, "0"))
    except ValueError:
        return 0


def _scaled(value: Any, total: int, *, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    percent = int(str(value).rstrip("%"))
    whole, rest = divmod(percent * total, 100)
    return whole + (1 if round_up and rest else 0)


def surge_and_unavailable(deployment: Object) -> tuple[int, int]:
    """maxSurge (rounded up) and maxUnavailable (rounded down) as pod counts; never both 0."""
    spec = deployment.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0, replicas
    rolling = strategy.get("rollingUpdate") or {}
    surge = _scaled(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = _scaled(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, min(unavailable, replicas)


def _spec_replicas(rs: Object) -> int:
    return int((rs.get("spec") or {}).get("replicas", 0))


def _status(rs: Object, field: str) -> int:
    return int((rs.get("status") or {}).get(field, 0))


def new_replicas(deployment: Object, new: Object, olds: list[Object]) -> int:
    """How many replicas the new ReplicaSet should have now (RollingUpdate)."""
    desired = int(deployment["spec"].get("replicas", 1))
    current = _spec_replicas(new)
    if current >= desired:
        return desired
    surge, _ = surge_and_unavailable(deployment)
    # an old replica set that was just scaled down still has its pods until its controller deletes
    # them: count what it has, so that maxSurge bounds the pods that exist, not only the specs
    total = current + sum(max(_spec_replicas(rs), _status(rs, "replicas")) for rs in olds)
    room = desired + surge - total
    return current if room <= 0 else min(current + room, desired)


def old_scale_down(deployment: Object, new: Object | None, olds: list[Object]) -> dict[str, int]:
    """New replica counts for old ReplicaSets that may shrink now (RollingUpdate), by name."""
    desired = int(deployment["spec"].get("replicas", 1))
    _, unavailable = surge_and_unavailable(deployment)
    min_available = desired - unavailable
    total = sum(_spec_replicas(rs) for rs in olds) + (_spec_replicas(new) if new else 0)
    new_unavailable = (_spec_replicas(new) - _status(new, "availableReplicas")) if new else 0
    budget = total - min_available - new_unavailable
    if budget <= 0:
        return {}
    out: dict[str, int] = {}
    # First the old pods that are not available anyway: removing them costs no availability.
    for rs in sorted(olds, key=lambda r: r["metadata"].get("creationTimestamp", "")):
        unhealthy = _spec_replicas(rs) - _status(rs, "availableReplicas")
        if budget <= 0 or unhealthy <= 0:
            continue
        cut = min(unhealthy, budget)
        out[rs["metadata"]["name"]] = _spec_replicas(rs) - cut
        budget -= cut
    # An old replica set's status may still count pods it was just told to remove: it has at most
    # as many available pods as its spec allows.
    available = sum(min(_spec_replicas(rs), _status(rs, "availableReplicas")) for rs in olds) + (
        _status(new, "availableReplicas") if new else 0
    )
    room = min(available - min_available, budget)
    for rs in sorted(olds, key=lambda r: r["metadata"].get("creationTimestamp", "")):
        current = out.get(rs["metadata"]["name"], _spec_replicas(rs))
        if room <= 0 or current <= 0:
            continue
        cut = min(current, room)
        out[rs["metadata"]["name"]] = current - cut
        room -= cut
    return {
        name: n
        for name, n in out.items()
        if n != _spec_replicas(next(r for r in olds if r["metadata"]["name"] == name))
    }


def deployment_status(deployment: Object, new: Object | None, olds: list[Object]) -> dict[str, Any]:
    everything = ([new] if new else []) + olds
    available = sum(_status(rs, "availableReplicas") for rs in everything)
    status: dict[str, Any] = {
        "observedGeneration": deployment["metadata"].get("generation", 1),
        "replicas": sum(_status(rs, "replicas") for rs in everything),
        "updatedReplicas": _status(new, "replicas") if new else 0,
        "readyReplicas": sum(_status(rs, "readyReplicas") for rs in everything),
        "availableReplicas": available,
        # as kube: the pods the replica sets want, less those available (a surge pod that is not
        # available yet counts)
        "unavailableReplicas": max(sum(_spec_replicas(rs) for rs in everything) - available, 0),
    }
    collisions = (deployment.get("status") or {}).get("collisionCount")
    if collisions:
        status["collisionCount"] = collisions
    status = {k: v for k, v in status.items() if v or k in ("observedGeneration",)}
    return status


def complete(deployment: Object, status: dict[str, Any]) -> bool:
    desired = int(deployment["spec"].get("replicas", 1))
    return bool(
        status.get("updatedReplicas", 0) == desired
        and status.get("replicas", 0) == desired
        and status.get("availableReplicas", 0) == desired
    )


def set_condition(
    conditions: list[dict[str, Any]],
    kind: str,
    status: str,
    reason: str,
    message: str,
    *,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """``conditions`` with ``kind`` set; its times move only when its status (transition) or what it
    says (update) changes, to ``now`` (the clock when not given)."""
    stamp = rfc3339(now or datetime.now(UTC))
    out = []
    found = False
    for condition in conditions:
        if condition.get("type") != kind:
            out.append(condition)
            continue
        found = True
        updated = dict(condition)
        if condition.get("status") != status:
            updated["lastTransitionTime"] = stamp
        if (condition.get("status"), condition.get("reason"), condition.get("message")) != (status, reason, message):
            updated["lastUpdateTime"] = stamp
        updated.update(status=status, reason=reason, message=message)
        out.append(updated)
    if not found:
        out.append(
            {
                "type": kind,
                "status": status,
                "lastUpdateTime": stamp,
                "lastTransitionTime": stamp,
                "reason": reason,
                "message": message,
            }
        )
    return out


# --- the plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Annotate:
    """Give the new ReplicaSet these annotations (all of them: a merge patch)."""

    name: str
    annotations: dict[str, str]


@dataclass(frozen=True)
class Scale:
    """Set a ReplicaSet's replicas; ``event`` reports it."""

    name: str
    replicas: int
    event: Event


@dataclass
class Plan:
    create: Object | None = None  # the new ReplicaSet; a plan that creates says nothing else
    annotate: Annotate | None = None
    scale: list[Scale] = field(default_factory=list)
    delete: list[Object] = field(default_factory=list)  # idle old ReplicaSets beyond the history limit
    revision: str | None = None  # the Deployment's own revision annotation, when it must change
    status: dict[str, Any] = field(default_factory=dict)
    requeue_after: float | None = None  # when the progress deadline would pass


def new_replica_set(deployment: Object, olds: list[Object]) -> Object:
    """The ReplicaSet for the Deployment's template: named after its hash (salted with the
    Deployment's ``collisionCount``), at revision one above the old ones, with no replicas yet."""
    spec = deployment["spec"]
    collisions = int((deployment.get("status") or {}).get("collisionCount") or 0)
    digest = template_hash(without_hash(spec["template"]), collisions)
    template = deep_copy(spec["template"])
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = digest
    selector = deep_copy(spec["selector"])
    selector.setdefault("matchLabels", {})[HASH_LABEL] = digest
    surge, _ = surge_and_unavailable(deployment)
    desired = int(spec.get("replicas", 1))
    annotations = {
        REVISION: str(max((revision_of(rs) for rs in olds), default=0) + 1),
        DESIRED: str(desired),
        MAX_REPLICAS: str(desired + surge),
    }
    cause = (deployment["metadata"].get("annotations") or {}).get(CHANGE_CAUSE)
    if cause:
        annotations[CHANGE_CAUSE] = cause
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{deployment['metadata']['name']}-{digest}",
            "namespace": deployment["metadata"]["namespace"],
            "labels": dict(template["metadata"]["labels"]),
            "annotations": annotations,
            "ownerReferences": [controller_ref(deployment)],
        },
        "spec": {
            "replicas": 0,
            "minReadySeconds": int(spec.get("minReadySeconds") or 0),
            "selector": selector,
            "template": template,
        },
    }


def stamped(deployment: Object, new: Object, olds: list[Object]) -> dict[str, str] | None:
    """The annotations the new ReplicaSet must carry, or None when it has them: the highest revision
    (after a rollback it had an old one, which goes to the revision history), the desired replicas,
    the change cause."""
    highest = max((revision_of(rs) for rs in olds), default=0)
    annotations = dict(new["metadata"].get("annotations") or {})
    changed = False
    if revision_of(new) <= highest:
        old_revision = revision_of(new)
        history = [h for h in annotations.get(REVISION_HISTORY, "").split(",") if h]
        if old_revision:
            history.append(str(old_revision))
            annotations[REVISION_HISTORY] = ",".join(history)
        annotations[REVISION] = str(highest + 1)
        changed = True
    desired = str(deployment["spec"].get("replicas", 1))
    if annotations.get(DESIRED) != desired:
        annotations[DESIRED] = desired
        changed = True
    cause = (deployment["metadata"].get("annotations") or {}).get(CHANGE_CAUSE)
    if cause and annotations.get(CHANGE_CAUSE) != cause:
        annotations[CHANGE_CAUSE] = cause
        changed = True
    return annotations if changed else None


def _scale(rs: Object, replicas: int) -> Scale:
    current = _spec_replicas(rs)
    direction = "up" if replicas > current else "down"
    name = rs["metadata"]["name"]
    message = f"Scaled {direction} replica set {name} from {current} to {replicas}"
    return Scale(name, replicas, Event(NORMAL, "ScalingReplicaSet", message))


def _with_replicas(rs: Object, scales: list[Scale]) -> Object:
    """``rs`` as it is once ``scales`` are made."""
    step = next((s for s in scales if s.name == rs["metadata"]["name"]), None)
    if step is None:
        return rs
    out = deep_copy(rs)
    out["spec"]["replicas"] = step.replicas
    return out


def plan(deployment: Object, sets: list[Object], *, now: datetime, created: bool = False) -> Plan:
    """What to do for ``deployment`` given the ReplicaSets it controls (``created``: the new one
    among them was created by this sync)."""
    spec = deployment["spec"]
    template = without_hash(spec.get("template") or {})
    new = next((rs for rs in sets if without_hash(rs["spec"].get("template") or {}) == template), None)
    olds = [rs for rs in sets if rs is not new]
    recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
    result = Plan()
    if spec.get("paused"):
        _conclude(result, deployment, new, olds, now=now, paused=True)
        return result
    progress: tuple[str, str] | None = None
    if new is None and not recreate:
        return Plan(create=new_replica_set(deployment, olds))
    if new is not None and created:
        if not recreate:
            progress = ("NewReplicaSetCreated", f'Created new replica set "{new["metadata"]["name"]}"')
    elif new is not None and (annotations := stamped(deployment, new, olds)) is not None:
        result.annotate = Annotate(new["metadata"]["name"], annotations)
        new = deep_copy(new)
        new["metadata"]["annotations"] = annotations
    if recreate:
        result.scale = [_scale(rs, 0) for rs in olds if _spec_replicas(rs) > 0]
        desired = int(spec.get("replicas", 1))
        waiting = bool(result.scale) or any(_status(rs, "replicas") > 0 for rs in olds)  # old pods go first
        if not waiting and new is None:
            return Plan(create=new_replica_set(deployment, olds))
        if not waiting and new is not None and _spec_replicas(new) != desired:
            result.scale = [_scale(new, desired)]
        acted = waiting or bool(result.scale)
    else:
        assert new is not None
        target = new_replicas(deployment, new, olds)
        if target != _spec_replicas(new):
            result.scale = [_scale(new, target)]
        else:
            cuts = old_scale_down(deployment, new, olds)
            result.scale = [_scale(rs, cuts[rs["metadata"]["name"]]) for rs in olds if rs["metadata"]["name"] in cuts]
        acted = bool(result.scale)
    if acted and progress is None and new is not None:
        progress = ("ReplicaSetUpdated", f'ReplicaSet "{new["metadata"]["name"]}" is progressing.')
    result.delete = _beyond_history(deployment, olds)
    after = [_with_replicas(rs, result.scale) for rs in olds]
    _conclude(
        result,
        deployment,
        _with_replicas(new, result.scale) if new is not None else None,
        after,
        now=now,
        progress=progress,
    )
    return result


def _beyond_history(deployment: Object, olds: list[Object]) -> list[Object]:
    """Idle old ReplicaSets (no replicas, no pods) beyond ``revisionHistoryLimit``, oldest first."""
    limit = int(deployment["spec"].get("revisionHistoryLimit", 10))
    idle = sorted(
        (
            rs
            for rs in olds
            if _spec_replicas(rs) == 0 and _status(rs, "replicas") == 0 and not rs["metadata"].get("deletionTimestamp")
        ),
        key=revision_of,
    )
    return idle[: max(len(idle) - limit, 0)]


def _conclude(
    result: Plan,
    deployment: Object,
    new: Object | None,
    olds: list[Object],
    *,
    now: datetime,
    progress: tuple[str, str] | None = None,
    paused: bool = False,
) -> None:
    """The status, the conditions, the Deployment's revision annotation and when to look again, for
    the ReplicaSets as ``result`` leaves them."""
    status = deployment_status(deployment, new, olds)
    conditions = list((deployment.get("status") or {}).get("conditions") or [])
    desired = int(deployment["spec"].get("replicas", 1))
    _, unavailable = surge_and_unavailable(deployment)
    if status.get("availableReplicas", 0) >= desired - unavailable:
        conditions = set_condition(
            conditions,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            now=now,
        )
    else:
        conditions = set_condition(
            conditions,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            now=now,
        )
    name = new["metadata"]["name"] if new else ""
    progressing = next((c for c in conditions if c.get("type") == "Progressing"), None)
    if paused:
        conditions = set_condition(
            conditions, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", now=now
        )
    elif complete(deployment, status) and not [rs for rs in olds if _status(rs, "replicas")]:
        conditions = set_condition(
            conditions,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            f'ReplicaSet "{name}" has successfully progressed.',
            now=now,
        )
    elif progress is not None:
        conditions = set_condition(conditions, "Progressing", "True", *progress, now=now)
    elif progressing is not None and progressing.get("reason") == "DeploymentPaused":
        conditions = set_condition(
            conditions, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed", now=now
        )
    elif progressing is None and new is not None:
        conditions = set_condition(
            conditions, "Progressing", "True", "FoundNewReplicaSet", f'Found new replica set "{name}"', now=now
        )
    else:
        conditions, result.requeue_after = _check_deadline(deployment, conditions, name, now=now)
    status["conditions"] = conditions
    result.status = status
    annotations = deployment["metadata"].get("annotations") or {}
    if new is not None and annotations.get(REVISION) != str(revision_of(new)):
        result.revision = str(revision_of(new))


def _check_deadline(
    deployment: Object, conditions: list[dict[str, Any]], name: str, *, now: datetime
) -> tuple[list[dict[str, Any]], float | None]:
    """Progressing turns False (ProgressDeadlineExceeded) once it has not moved for
    ``progressDeadlineSeconds``; until then, the seconds left."""
    deadline = deployment["spec"].get("progressDeadlineSeconds")
    progressing = next((c for c in conditions if c.get("type") == "Progressing"), None)
    if (
        deadline is None
        or progressing is None
        or progressing.get("reason") in ("NewReplicaSetAvailable", "ProgressDeadlineExceeded")
    ):
        return conditions, None
    updated = parse_time(progressing.get("lastUpdateTime") or rfc3339(now))
    left = updated.timestamp() + int(deadline) - now.timestamp()
    if left <= 0:
        message = f'ReplicaSet "{name}" has timed out progressing.'
        return set_condition(conditions, "Progressing", "False", "ProgressDeadlineExceeded", message, now=now), None
    return conditions, left + 0.1


# --- the controller ------------------------------------------------------------------------------


class DeploymentController(Controller):
    name = "deployment"
    workers = 4

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.deployments = ctx.informer(DEPLOYMENTS)
        self.sets = ctx.informer(REPLICASETS)
        self.deployments.on_any(self.enqueue)
        self.sets.on_any(self._set_changed)

    def _set_changed(self, rs: Object) -> None:
        if owner_uid(rs):
            self.enqueue_owner(rs, "Deployment", self.deployments)
            return
        labels = rs["metadata"].get("labels") or {}
        for deployment in self.deployments.by_index("namespace", rs["metadata"]["namespace"]):
            try:
                if from_structured(deployment["spec"].get("selector")).matches(labels):
                    self.enqueue(deployment)
            except SelectorError:
                continue

    async def sync(self, key: str) -> None:
        cached = self.deployments.get(key)
        if cached is None or cached["metadata"].get("deletionTimestamp"):
            return
        deployment = deep_copy(cached)
        selector = from_structured(deployment["spec"].get("selector"))
        found = self.sets.by_index("namespace", deployment["metadata"]["namespace"])
        sets = await claim.execute(
            self.client, REPLICASETS, deployment, claim.decide(deployment, found, selector=selector, release=False)
        )
        now = self.now()
        decided = plan(deployment, sets, now=now)
        with contextlib.ExitStack() as traced:
            if decided.create is not None or decided.scale:  # syncs that only report status are not traced
                # the ReplicaSet writes inside the span continue the Deployment's trace (the client sends it)
                traced.enter_context(tracing.span_for(deployment, "sync deployment", tracer_name=TRACER))
            while decided.create is not None:
                with tracing.child("create replicaset", tracer_name=TRACER) as span:
                    created = await self._create(deployment, decided.create)
                    if span.is_recording():
                        span.set_attribute("k8s.replicaset.name", decided.create["metadata"]["name"])
                if created is None:  # the name was taken by another template: the next hash, then plan again
                    status = deployment.setdefault("status", {})
                    status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
                    decided = plan(deployment, sets, now=now)
                    continue
                sets = [*sets, created]
                decided = plan(deployment, sets, now=now, created=True)
            await self._apply(deployment, sets, decided)
        if decided.requeue_after is not None:
            self.queue.add_after(key, decided.requeue_after)

    async def _create(self, deployment: Object, body: Object) -> Object | None:
        """The new ReplicaSet; one of the same name and template that exists already (the informer
        had not seen it) serves as well; None when the name belongs to another template."""
        try:
            created: Object = await self.client.create(REPLICASETS, body)
            return created
        except ApiError as exc:
            if not exc.already_exists:
                raise
        existing = self.sets.get(f"{body['metadata']['namespace']}/{body['metadata']['name']}")
        if (
            existing is not None
            and owner_uid(existing) == deployment["metadata"]["uid"]
            and without_hash(existing["spec"]["template"]) == without_hash(body["spec"]["template"])
        ):
            return existing
        return None

    async def _apply(self, deployment: Object, sets: list[Object], decided: Plan) -> None:
        latest = {rs["metadata"]["name"]: rs for rs in sets}  # each write's answer carries the next resourceVersion
        namespace = deployment["metadata"]["namespace"]
        if decided.annotate is not None:
            rs = latest[decided.annotate.name]
            meta = {"annotations": decided.annotate.annotations, "resourceVersion": rs["metadata"]["resourceVersion"]}
            latest[rs["metadata"]["name"]] = await self.client.patch(
                REPLICASETS, rs["metadata"]["name"], {"metadata": meta}, namespace
            )
        for step in decided.scale:
            rs = latest[step.name]
            patch = {
                "metadata": {"resourceVersion": rs["metadata"]["resourceVersion"]},
                "spec": {"replicas": step.replicas},
            }
            attributes = {"k8s.replicaset.name": step.name, "replicas": step.replicas}
            with tracing.child("scale replicaset", tracer_name=TRACER, attributes=attributes):
                latest[step.name] = await self.client.patch(REPLICASETS, step.name, patch, namespace)
            self.record(deployment, step.event)
        for rs in decided.delete:
            await ignore_not_found(partial(self.client.delete, REPLICASETS, rs["metadata"]["name"], namespace))
        if decided.revision is not None:
            annotations = {"metadata": {"annotations": {REVISION: decided.revision}}}
            await ignore_not_found(
                partial(self.client.patch, DEPLOYMENTS, deployment["metadata"]["name"], annotations, namespace)
            )
        await write_status(
            self.client, DEPLOYMENTS, deployment, decided.status, latest=self.deployments.get(key_of(deployment))
        )
