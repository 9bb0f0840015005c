"""Deployment controller: rolls ReplicaSets forward (and back) to match the Deployment's template.

Each distinct pod template gets its own ReplicaSet, named after a hash of the template. RollingUpdate
grows the new ReplicaSet while the total stays within replicas + maxSurge, and shrinks old ones while
the available pods stay at least replicas - maxUnavailable; Recreate removes all old pods first.
ReplicaSets carry revision numbers, so ``kubectl rollout history`` lists them and ``kubectl rollout
undo`` (which puts an old template back) makes that ReplicaSet the newest revision again. The
arithmetic lives in pure functions; ``sync`` reads state, applies their answers and writes status.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson

from agents.controllers.base import Context, Controller, ignore_not_found, owner_uid
from agents.controllers.podutil import controller_ref
from agents.machinery.client import ApiError
from agents.machinery.events import NORMAL
from agents.machinery.informer import key_of
from agents.machinery.objects import Object, deep_copy, now, parse_time
from agents.machinery.resources import DEPLOYMENTS, REPLICASETS
from agents.machinery.selectors import SelectorError, from_structured

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
CHANGE_CAUSE = "kubernetes.io/change-cause"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

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
    conditions: list[dict[str, Any]], kind: str, status: str, reason: str, message: str
) -> list[dict[str, Any]]:
    stamp = now()
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

    async def _claim(self, deployment: Object) -> list[Object]:
        uid = deployment["metadata"]["uid"]
        selector = from_structured(deployment["spec"].get("selector"))
        owned = []
        for rs in self.sets.by_index("namespace", deployment["metadata"]["namespace"]):
            controller = owner_uid(rs)
            if controller == uid:
                owned.append(rs)
            elif (
                not controller
                and selector.matches(rs["metadata"].get("labels") or {})
                and not deployment["metadata"].get("deletionTimestamp")
            ):
                refs = [*(rs["metadata"].get("ownerReferences") or []), controller_ref(deployment)]
                try:
                    owned.append(
                        await self.client.patch(
                            REPLICASETS,
                            rs["metadata"]["name"],
                            {
                                "metadata": {
                                    "ownerReferences": refs,
                                    "resourceVersion": rs["metadata"]["resourceVersion"],
                                }
                            },
                            rs["metadata"]["namespace"],
                        )
                    )
                except ApiError as exc:
                    if not (exc.conflict or exc.not_found):
                        raise
        return owned

    async def sync(self, key: str) -> None:
        deployment = self.deployments.get(key)
        if deployment is None or deployment["metadata"].get("deletionTimestamp"):
            return
        deployment = deep_copy(deployment)
        sets = await self._claim(deployment)
        template = without_hash(deployment["spec"].get("template") or {})
        new = next((rs for rs in sets if without_hash(rs["spec"].get("template") or {}) == template), None)
        olds = [rs for rs in sets if rs is not new]
        progress: tuple[str, str] | None = None
        if deployment["spec"].get("paused"):
            await self._write_status(deployment, new, olds, paused=True)
            return
        if new is None and (deployment["spec"].get("strategy") or {}).get("type") != "Recreate":
            new = await self._create_new(deployment, olds)
            progress = ("NewReplicaSetCreated", f'Created new replica set "{new["metadata"]["name"]}"')
        elif new is not None:
            new = await self._stamp_revision(deployment, new, olds)
        if (deployment["spec"].get("strategy") or {}).get("type") == "Recreate":
            acted, new = await self._recreate(deployment, new, olds)
        else:
            assert new is not None
            acted = await self._roll(deployment, new, olds)
        if acted and progress is None and new is not None:
            progress = ("ReplicaSetUpdated", f'ReplicaSet "{new["metadata"]["name"]}" is progressing.')
        await self._cleanup(deployment, new, olds)
        await self._write_status(deployment, new, olds, progress=progress)

    async def _create_new(self, deployment: Object, olds: list[Object]) -> Object:
        collisions = int((deployment.get("status") or {}).get("collisionCount") or 0)
        while True:
            digest = template_hash(without_hash(deployment["spec"]["template"]), collisions)
            template = deep_copy(deployment["spec"]["template"])
            template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = digest
            selector = deep_copy(deployment["spec"]["selector"])
            selector.setdefault("matchLabels", {})[HASH_LABEL] = digest
            surge, _ = surge_and_unavailable(deployment)
            desired = int(deployment["spec"].get("replicas", 1))
            annotations = {
                REVISION: str(max((revision_of(rs) for rs in olds), default=0) + 1),
                DESIRED: str(desired),
                MAX_REPLICAS: str(desired + surge),
            }
            cause = (deployment["metadata"].get("annotations") or {}).get(CHANGE_CAUSE)
            if cause:
                annotations[CHANGE_CAUSE] = cause
            body: dict[str, Any] = {
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
                    "minReadySeconds": int(deployment["spec"].get("minReadySeconds") or 0),
                    "selector": selector,
                    "template": template,
                },
            }
            try:
                created = await self.client.create(REPLICASETS, body)
                return created
            except ApiError as exc:
                if not exc.already_exists:
                    raise
                existing = self.sets.get(f"{deployment['metadata']['namespace']}/{body['metadata']['name']}")
                if (
                    existing is not None
                    and owner_uid(existing) == deployment["metadata"]["uid"]
                    and without_hash(existing["spec"]["template"]) == without_hash(template)
                ):
                    return existing
                collisions += 1  # a different template hashed to the same name: try the next hash
                deployment.setdefault("status", {})["collisionCount"] = collisions

    async def _stamp_revision(self, deployment: Object, new: Object, olds: list[Object]) -> Object:
        """The new ReplicaSet carries the highest revision (after a rollback it did not)."""
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
        if not changed:
            return new
        return await self.client.patch(
            REPLICASETS,
            new["metadata"]["name"],
            {"metadata": {"annotations": annotations, "resourceVersion": new["metadata"]["resourceVersion"]}},
            new["metadata"]["namespace"],
        )

    async def _scale(self, deployment: Object, rs: Object, replicas: int) -> Object:
        current = _spec_replicas(rs)
        if current == replicas:
            return rs
        updated = await self.client.patch(
            REPLICASETS,
            rs["metadata"]["name"],
            {"metadata": {"resourceVersion": rs["metadata"]["resourceVersion"]}, "spec": {"replicas": replicas}},
            rs["metadata"]["namespace"],
        )
        direction = "up" if replicas > current else "down"
        self.recorder.record(
            deployment,
            NORMAL,
            "ScalingReplicaSet",
            f"Scaled {direction} replica set {rs['metadata']['name']} from {current} to {replicas}",
        )
        return updated

    async def _roll(self, deployment: Object, new: Object, olds: list[Object]) -> bool:
        target = new_replicas(deployment, new, olds)
        if target != _spec_replicas(new):
            await self._scale(deployment, new, target)
            return True
        cuts = old_scale_down(deployment, new, olds)
        for rs in olds:
            if rs["metadata"]["name"] in cuts:
                await self._scale(deployment, rs, cuts[rs["metadata"]["name"]])
        return bool(cuts)

    async def _recreate(self, deployment: Object, new: Object | None, olds: list[Object]) -> tuple[bool, Object | None]:
        acted = False
        for rs in olds:
            if _spec_replicas(rs) > 0:
                await self._scale(deployment, rs, 0)
                acted = True
        if acted or any(_status(rs, "replicas") > 0 for rs in olds):
            return True, new  # wait until every old pod is gone
        if new is None:
            new = await self._create_new(deployment, olds)
        desired = int(deployment["spec"].get("replicas", 1))
        if _spec_replicas(new) != desired:
            await self._scale(deployment, new, desired)
            return True, new
        return False, new

    async def _cleanup(self, deployment: Object, new: Object | None, olds: list[Object]) -> None:
        limit = int(deployment["spec"].get("revisionHistoryLimit", 10))
        idle = sorted(
            (
                rs
                for rs in olds
                if _spec_replicas(rs) == 0
                and _status(rs, "replicas") == 0
                and not rs["metadata"].get("deletionTimestamp")
            ),
            key=revision_of,
        )
        for rs in idle[: max(len(idle) - limit, 0)]:
            await ignore_not_found(
                partial(self.client.delete, REPLICASETS, rs["metadata"]["name"], rs["metadata"]["namespace"])
            )

    async def _write_status(
        self,
        deployment: Object,
        new: Object | None,
        olds: list[Object],
        *,
        progress: tuple[str, str] | None = None,
        paused: bool = False,
    ) -> None:
        if new is not None:
            new = self.sets.get(key_of(new)) or new
        olds = [self.sets.get(key_of(rs)) or rs for rs in olds]
        status = deployment_status(deployment, new, olds)
        conditions = list((deployment.get("status") or {}).get("conditions") or [])
        desired = int(deployment["spec"].get("replicas", 1))
        _, unavailable = surge_and_unavailable(deployment)
        if status.get("availableReplicas", 0) >= desired - unavailable:
            conditions = set_condition(
                conditions, "Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."
            )
        else:
            conditions = set_condition(
                conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        name = new["metadata"]["name"] if new else ""
        progressing = next((c for c in conditions if c.get("type") == "Progressing"), None)
        if paused:
            conditions = set_condition(conditions, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
        elif complete(deployment, status) and not [rs for rs in olds if _status(rs, "replicas")]:
            conditions = set_condition(
                conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{name}" has successfully progressed.',
            )
        elif progress is not None:
            conditions = set_condition(conditions, "Progressing", "True", *progress)
        elif progressing is not None and progressing.get("reason") == "DeploymentPaused":
            conditions = set_condition(
                conditions, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed"
            )
        elif progressing is None and new is not None:
            conditions = set_condition(
                conditions, "Progressing", "True", "FoundNewReplicaSet", f'Found new replica set "{name}"'
            )
        else:
            conditions = self._check_deadline(deployment, conditions, name)
        status["conditions"] = conditions
        annotations = deployment["metadata"].get("annotations") or {}
        if new is not None and annotations.get(REVISION) != str(revision_of(new)):
            await ignore_not_found(
                lambda: self.client.patch(
                    DEPLOYMENTS,
                    deployment["metadata"]["name"],
                    {"metadata": {"annotations": {REVISION: str(revision_of(new))}}},
                    deployment["metadata"]["namespace"],
                )
            )
        if status != (deployment.get("status") or {}):
            latest = self.deployments.get(key_of(deployment)) or deployment
            body = deep_copy(latest)
            body["status"] = status
            await ignore_not_found(lambda: self.client.update_status(DEPLOYMENTS, body))

    def _check_deadline(self, deployment: Object, conditions: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
        deadline = deployment["spec"].get("progressDeadlineSeconds")
        progressing = next((c for c in conditions if c.get("type") == "Progressing"), None)
        if (
            deadline is None
            or progressing is None
            or progressing.get("reason") in ("NewReplicaSetAvailable", "ProgressDeadlineExceeded")
        ):
            return conditions
        updated = parse_time(progressing.get("lastUpdateTime") or now())
        left = updated.timestamp() + int(deadline) - datetime.now(UTC).timestamp()
        if left <= 0:
            return set_condition(
                conditions,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{name}" has timed out progressing.',
            )
        self.queue.add_after(key_of(deployment), left + 0.1)
        return conditions
