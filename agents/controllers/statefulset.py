"""StatefulSet controller: pods with stable names (``<set>-0``, ``<set>-1``, ...) in order.

With the OrderedReady policy a pod is created only when every lower ordinal is running and ready,
and scaling down removes the highest ordinal first, one at a time. Parallel creates and removes
them all at once. RollingUpdate replaces pods whose template revision is not the newest, from the
highest ordinal down to ``partition``, one at a time; OnDelete leaves that to the user. Pods get
``hostname``/``subdomain`` from their name and the governing ``serviceName``.

``sync`` first makes sure the current template has its ControllerRevision (``history``), then
``plan`` decides, purely, the ordered steps (create or delete one pod each, with its event), the
status and the old revisions to drop; a create that fails stops the steps after it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agents.controllers import claim, history
from agents.controllers.base import (
    Context,
    Controller,
    Create,
    Delete,
    Event,
    delete_object,
    write_status,
)
from agents.controllers.podutil import is_available, is_ready, is_terminal, pod_from_template
from agents.machinery.client import ApiError
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.objects import Object, deep_copy
from agents.machinery.resources import CONTROLLER_REVISIONS, PODS, STATEFULSETS

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def ordinal_of(set_name: str, pod_name: str) -> int | None:
    match = re.fullmatch(re.escape(set_name) + r"-(\d+)", pod_name)
    return int(match.group(1)) if match else None


def _revision(pod: Object) -> str:
    return str((pod["metadata"].get("labels") or {}).get(history.HASH_LABEL, ""))


def new_pod(sts: Object, ordinal: int, revision: Object) -> Object:
    """The pod of ``ordinal``, from the template ``revision`` holds."""
    template = deep_copy(sts["spec"]["template"])
    if revision.get("data"):
        template = deep_copy(revision["data"]["spec"]["template"])
        template.pop("$patch", None)
    name = f"{sts['metadata']['name']}-{ordinal}"
    pod = pod_from_template(
        template,
        sts,
        name=name,
        labels={
            POD_NAME_LABEL: name,
            POD_INDEX_LABEL: str(ordinal),
            history.HASH_LABEL: revision["metadata"]["name"],
        },
    )
    pod["spec"]["hostname"] = name
    if sts["spec"].get("serviceName"):
        pod["spec"]["subdomain"] = sts["spec"]["serviceName"]
    return pod


@dataclass
class Plan:
    steps: list[Create | Delete] = field(default_factory=list)  # pods, in order
    status: dict[str, Any] = field(default_factory=dict)
    trim: list[Object] = field(default_factory=list)  # revisions beyond the history limit


def plan(sts: Object, pods: Iterable[Object], *, revisions: list[Object], update: Object, now: datetime) -> Plan:
    """What to do for ``sts`` given the pods it controls, its revisions and ``update``, the revision
    of its current template."""
    spec = sts["spec"]
    name, namespace = sts["metadata"]["name"], sts["metadata"]["namespace"]
    current_name = (sts.get("status") or {}).get("currentRevision") or update["metadata"]["name"]
    current = next((r for r in history.owned(sts, revisions) if r["metadata"]["name"] == current_name), update)
    by_ordinal: dict[int, Object] = {}
    for candidate in pods:
        if (ordinal := ordinal_of(name, candidate["metadata"]["name"])) is not None:
            by_ordinal[ordinal] = candidate
    start = int((spec.get("ordinals") or {}).get("start", 0))
    wanted = range(start, start + int(spec.get("replicas", 1)))
    ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
    partition = int(((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition", 0))
    steps: list[Create | Delete] = []

    def delete(pod: Object) -> Delete:
        message = f"delete Pod {pod['metadata']['name']} in StatefulSet {name} successful"
        return Delete(pod, Event(NORMAL, "SuccessfulDelete", message))

    # create (or recreate failed) pods, lowest ordinal first
    for ordinal in wanted:
        pod: Object | None = by_ordinal.get(ordinal)
        if pod is not None and is_terminal(pod) and not pod["metadata"].get("deletionTimestamp"):
            message = f"StatefulSet {namespace}/{name} is recreating failed Pod {pod['metadata']['name']}"
            steps.append(Delete(pod, Event(NORMAL, "RecreatingFailedPod", message)))
            if ordered:
                break
            continue
        if pod is None:
            body = new_pod(sts, ordinal, update if ordinal - start >= partition else current)
            message = f"create Pod {name}-{ordinal} in StatefulSet {name} successful"
            steps.append(Create(body, Event(NORMAL, "SuccessfulCreate", message)))
            by_ordinal[ordinal] = body
            if ordered:
                break
            continue
        if ordered and not (is_ready(pod) and not pod["metadata"].get("deletionTimestamp")):
            break  # wait for this one before going on

    # scale down: highest ordinal first
    excess = sorted((o for o in by_ordinal if o not in wanted), reverse=True)
    all_ready = all(is_ready(by_ordinal[o]) for o in wanted if o in by_ordinal) and all(o in by_ordinal for o in wanted)
    for ordinal in excess:
        extra = by_ordinal[ordinal]
        if extra["metadata"].get("deletionTimestamp"):
            if ordered:
                break
            continue
        if ordered and not all_ready:
            break
        steps.append(delete(extra))
        if ordered:
            break

    # rolling update: highest ordinal down to the partition, one at a time, when everything is ready
    if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate" and all_ready and not excess:
        for ordinal in sorted(wanted, reverse=True):
            old = by_ordinal.get(ordinal)
            if old is None or ordinal - start < partition:
                continue
            if old["metadata"].get("deletionTimestamp"):
                break
            if _revision(old) != update["metadata"]["name"]:
                steps.append(delete(old))
                break
    return Plan(
        steps=steps,
        status=statefulset_status(
            sts, list(by_ordinal.values()), wanted=len(wanted), current=current, update=update, now=now
        ),
        trim=history.beyond_limit(sts, revisions, {current["metadata"]["name"], update["metadata"]["name"]}),
    )


def statefulset_status(
    sts: Object, pods: list[Object], *, wanted: int, current: Object, update: Object, now: datetime
) -> dict[str, Any]:
    """The status for ``pods`` (as they are once the plan's creates are made)."""
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    min_ready = int(sts["spec"].get("minReadySeconds") or 0)
    updated = sum(1 for p in live if _revision(p) == update["metadata"]["name"])
    at_current = sum(1 for p in live if _revision(p) == current["metadata"]["name"])
    current_name = current["metadata"]["name"]
    if updated == wanted and len(live) == wanted:
        current_name, at_current = update["metadata"]["name"], updated
    status: dict[str, Any] = {
        "observedGeneration": sts["metadata"].get("generation", 1),
        "replicas": len(live),
        "readyReplicas": sum(1 for p in live if is_ready(p)),
        "availableReplicas": sum(1 for p in live if is_available(p, min_ready, now)),
        "currentReplicas": at_current,
        "updatedReplicas": updated,
        "currentRevision": current_name,
        "updateRevision": update["metadata"]["name"],
        "collisionCount": 0,
    }
    return {
        k: v
        for k, v in status.items()
        if v or k in ("observedGeneration", "replicas", "availableReplicas", "collisionCount")
    }


class StatefulSetController(Controller):
    name = "statefulset"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.sets = ctx.informer(STATEFULSETS)
        self.pods = ctx.informer(PODS)
        self.revisions = ctx.informer(CONTROLLER_REVISIONS)
        self.sets.on_any(self.enqueue)
        self.pods.on_any(lambda pod: self.enqueue_owner(pod, "StatefulSet", self.sets))

    async def sync(self, key: str) -> None:
        sts = self.sets.get(key)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        namespace = sts["metadata"]["namespace"]
        step = history.revision_step(sts, self.revisions.by_index("namespace", namespace))
        update = await history.ensure(self.client, step)
        decided = plan(
            sts,
            claim.controlled(sts, self.pods.by_index("namespace", namespace)),
            revisions=self.revisions.by_index("namespace", namespace),
            update=update,
            now=self.now(),
        )
        for action in decided.steps:
            if isinstance(action, Delete):
                await delete_object(self.client, PODS, action.target)
            else:
                try:
                    await self.client.create(PODS, action.body)
                except ApiError as exc:
                    if not exc.already_exists:
                        pod = action.body["metadata"]["name"]
                        self.recorder.record(sts, WARNING, "FailedCreate", f"create Pod {pod}: {exc}")
                        raise
                    continue
            self.record(sts, action.event)
        await write_status(self.client, STATEFULSETS, sts, decided.status, latest=self.sets.get(key))
        await history.trim(self.client, decided.trim)
