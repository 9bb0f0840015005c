"""StatefulSet controller: pods with stable names (``<set>-0``, ``<set>-1``, ...) in order.

With the OrderedReady policy a pod is created only when every lower ordinal is running and ready,
and scaling down removes the highest ordinal first, one at a time. Parallel creates and removes
them all at once. RollingUpdate replaces pods whose template revision is not the newest, from the
highest ordinal down to ``partition``, one at a time; OnDelete leaves that to the user. Pods get
``hostname``/``subdomain`` from their name and the governing ``serviceName``.

Each ``volumeClaimTemplates`` entry gives every ordinal its own PersistentVolumeClaim,
``<template>-<set>-<ordinal>``, created before the pod and named in its volumes; claims outlive their
pods. ``persistentVolumeClaimRetentionPolicy`` decides, as in kube, whether the garbage collector
deletes them: ``whenDeleted: Delete`` gives them an owner reference to the StatefulSet,
``whenScaled: Delete`` gives the claims of ordinals scaled away one to their pod before it is
deleted. A claim still owned by an earlier pod of the same name (waiting for the collector) holds
back the new pod, and a claim being deleted stops its pod from being made.

``sync`` first makes sure the current template has its ControllerRevision (``history``), then
``plan`` decides, purely, the claims' owner references to set, the ordered steps (create a claim,
create or delete a pod, each with its event), the status and the old revisions to drop; a create
that fails stops the steps after it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from agents.controllers import claim, history
from agents.controllers.base import (
    Context,
    Controller,
    Create,
    Delete,
    Event,
    delete_object,
    ignore_not_found,
    write_status,
)
from agents.controllers.podutil import is_available, is_ready, is_terminal, pod_from_template
from agents.machinery.client import ApiError
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.objects import Object, deep_copy
from agents.machinery.resources import CONTROLLER_REVISIONS, PERSISTENT_VOLUME_CLAIMS, PODS, STATEFULSETS

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
    # the templates' claims replace any volume of the same name (kube's updateStorage)
    claims = {t["metadata"]["name"]: claim_name(t, sts, ordinal) for t in sts["spec"].get("volumeClaimTemplates") or []}
    if claims:
        volumes = [{"name": v, "persistentVolumeClaim": {"claimName": c}} for v, c in claims.items()]
        pod["spec"]["volumes"] = volumes + [v for v in pod["spec"].get("volumes") or [] if v.get("name") not in claims]
    return pod


# --- claims from volumeClaimTemplates --------------------------------------------------------------

RETAIN, DELETE = "Retain", "Delete"


def claim_name(template: Object, sts: Object, ordinal: int) -> str:
    return f"{template['metadata']['name']}-{sts['metadata']['name']}-{ordinal}"


def retention(sts: Object) -> tuple[str, str]:
    """(whenDeleted, whenScaled) of the set's ``persistentVolumeClaimRetentionPolicy``; Retain by default."""
    policy = sts["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
    return policy.get("whenDeleted") or RETAIN, policy.get("whenScaled") or RETAIN


def owner_ref(owner: Object, *, api_version: str, kind: str) -> dict[str, Any]:
    """A plain (non-controller) owner reference: what the retention policy puts on claims."""
    return {"apiVersion": api_version, "kind": kind, "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}


def new_claims(sts: Object, ordinal: int) -> list[Object]:
    """The claims of ``ordinal``, from the set's templates: labelled with the set's selector labels (over
    the template's own), owned by the set when ``whenDeleted`` is Delete."""
    out = []
    selector_labels = (sts["spec"].get("selector") or {}).get("matchLabels") or {}
    for template in sts["spec"].get("volumeClaimTemplates") or []:
        tmeta = template.get("metadata") or {}
        meta: dict[str, Any] = {
            "name": claim_name(template, sts, ordinal),
            "namespace": sts["metadata"]["namespace"],
            "labels": {**(tmeta.get("labels") or {}), **selector_labels},
        }
        if tmeta.get("annotations"):
            meta["annotations"] = dict(tmeta["annotations"])
        if retention(sts)[0] == DELETE:
            meta["ownerReferences"] = [owner_ref(sts, api_version="apps/v1", kind="StatefulSet")]
        out.append(
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta, "spec": deep_copy(template["spec"])}
        )
    return out


def stale(claim: Object, pod_name: str, pod_uid: str) -> bool:
    """The claim is owned by an earlier pod of this name (the collector is about to delete it)."""
    return any(
        r.get("kind") == "Pod" and r.get("name") == pod_name and r.get("uid") != pod_uid
        for r in claim["metadata"].get("ownerReferences") or []
    )


def claim_owners(claim: Object, sts: Object, pod: Object, *, scaled_away: bool) -> list[dict[str, Any]] | None:
    """The owner references the retention policy wants on a claim of ``pod`` (None: as they are).

    Retain/Retain: neither the set nor the pod; whenDeleted Delete: the set, while the pod is in range;
    whenScaled Delete: the pod, once its ordinal is scaled away (kube's updateClaimOwnerRefForSetAndPod).
    A claim another object controls is left alone.
    """
    refs = list(claim["metadata"].get("ownerReferences") or [])
    set_uid, pod_uid = sts["metadata"]["uid"], pod["metadata"].get("uid", "")
    if any(r.get("controller") and r.get("uid") not in (set_uid, pod_uid) for r in refs):
        return None
    when_deleted, when_scaled = retention(sts)
    want_pod = when_scaled == DELETE and scaled_away and bool(pod_uid)
    want_set = when_deleted == DELETE and not (when_scaled == DELETE and scaled_away)
    out = [
        r
        for r in refs
        if not ((r.get("uid") == set_uid and not want_set) or (pod_uid and r.get("uid") == pod_uid and not want_pod))
    ]
    if want_set and not any(r.get("uid") == set_uid for r in out):
        out.append(owner_ref(sts, api_version="apps/v1", kind="StatefulSet"))
    if want_pod and not any(r.get("uid") == pod_uid for r in out):
        out.append(owner_ref(pod, api_version="v1", kind="Pod"))
    return None if out == refs else out


@dataclass(frozen=True)
class SetClaimOwners:
    """A claim whose owner references become ``references`` (written before any pod is deleted)."""

    claim: Object
    references: list[dict[str, Any]]


@dataclass
class Plan:
    steps: list[Create | Delete] = field(default_factory=list)  # claims and pods, in order
    owners: list[SetClaimOwners] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # about what held a pod back
    status: dict[str, Any] = field(default_factory=dict)
    trim: list[Object] = field(default_factory=list)  # revisions beyond the history limit


def plan(
    sts: Object,
    pods: Iterable[Object],
    *,
    revisions: list[Object],
    update: Object,
    now: datetime,
    claims: Iterable[Object] = (),
) -> Plan:
    """What to do for ``sts`` given the pods it controls, its revisions, ``update`` (the revision of
    its current template) and ``claims``, the PersistentVolumeClaims of its namespace."""
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
    events: list[Event] = []
    by_name = {c["metadata"]["name"]: c for c in claims}
    when_scaled = retention(sts)[1]

    def held_back(ordinal: int) -> bool:
        """Whether a claim of ``ordinal`` keeps its pod from being made now (stale, or being deleted)."""
        pod_name = f"{name}-{ordinal}"
        for wanted_claim in new_claims(sts, ordinal):
            found = by_name.get(wanted_claim["metadata"]["name"])
            if found is None:
                continue
            if when_scaled == DELETE and stale(found, pod_name, ""):
                return True
            if found["metadata"].get("deletionTimestamp"):
                message = (
                    f"create Pod {pod_name} in StatefulSet {name} failed error: "
                    f"pvc {found['metadata']['name']} is being deleted"
                )
                events.append(Event(WARNING, "FailedCreate", message))
                return True
        return False

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
            if held_back(ordinal):
                if ordered:
                    break
                continue
            for wanted_claim in new_claims(sts, ordinal):
                claim_of = wanted_claim["metadata"]["name"]
                if claim_of not in by_name:
                    message = f"create Claim {claim_of} Pod {name}-{ordinal} in StatefulSet {name} success"
                    steps.append(Create(wanted_claim, Event(NORMAL, "SuccessfulCreate", message)))
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
    # the retention policy's owner references, on the claims of every pod there is (scaled away or not)
    owners = []
    for ordinal, existing in sorted(by_ordinal.items()):
        if not existing["metadata"].get("uid"):
            continue  # made by this plan
        for wanted_claim in new_claims(sts, ordinal):
            found = by_name.get(wanted_claim["metadata"]["name"])
            if found is None or found["metadata"].get("deletionTimestamp"):
                continue
            references = claim_owners(found, sts, existing, scaled_away=ordinal not in wanted)
            if references is not None:
                owners.append(SetClaimOwners(found, references))
    return Plan(
        steps=steps,
        owners=owners,
        events=events,
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
        self.claims = ctx.informer(PERSISTENT_VOLUME_CLAIMS)
        self.sets.on_any(self.enqueue)
        self.pods.on_any(lambda pod: self.enqueue_owner(pod, "StatefulSet", self.sets))
        self.claims.on(update=lambda _old, new: self._claim_changed(new), delete=self._claim_changed)

    def _claim_changed(self, claim: Object) -> None:
        """A set waiting for one of its claims to go (or to stop being deleted) looks again."""
        meta = claim["metadata"]
        for sts in self.sets.by_index("namespace", meta.get("namespace", "")):
            for template in sts["spec"].get("volumeClaimTemplates") or []:
                prefix = f"{template['metadata']['name']}-{sts['metadata']['name']}-"
                if meta["name"].startswith(prefix) and meta["name"][len(prefix) :].isdigit():
                    self.enqueue(sts)

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
            claims=self.claims.by_index("namespace", namespace) if sts["spec"].get("volumeClaimTemplates") else (),
        )
        self.record(sts, *decided.events)
        for owners in decided.owners:  # before any pod goes: a claim scaled away is then the pod's
            meta = owners.claim["metadata"]
            patch = {"metadata": {"ownerReferences": owners.references, "resourceVersion": meta["resourceVersion"]}}
            await ignore_not_found(partial(self.client.patch, PERSISTENT_VOLUME_CLAIMS, meta["name"], patch, namespace))
        for action in decided.steps:
            if isinstance(action, Delete):
                await delete_object(self.client, PODS, action.target)
            else:
                claim_step = action.body["kind"] == "PersistentVolumeClaim"
                try:
                    await self.client.create(PERSISTENT_VOLUME_CLAIMS if claim_step else PODS, action.body)
                except ApiError as exc:
                    if not exc.already_exists:
                        made = action.body["metadata"]["name"]
                        set_name = sts["metadata"]["name"]
                        message = (
                            f"create Claim {made} for Pod {set_name}-{made.rsplit('-', 1)[1]} in StatefulSet"
                            f" {set_name} failed error: {exc}"
                            if claim_step
                            else f"create Pod {made}: {exc}"
                        )
                        self.recorder.record(sts, WARNING, "FailedCreate", message)
                        raise
                    continue
            self.record(sts, action.event)
        await write_status(self.client, STATEFULSETS, sts, decided.status, latest=self.sets.get(key))
        await history.trim(self.client, decided.trim)
