"""The persistent volume controller (kube's ``persistentvolume-binder``): binds claims to volumes,
asks external provisioners for new ones, and releases and reclaims volumes whose claims are gone.

Two pure plans, as kube's controller has two loops:

* ``plan_claim`` for a PersistentVolumeClaim: an unbound claim gets the smallest Available volume
  that satisfies it (access modes, capacity, class, selector, volume mode; the volume or the claim
  may be pre-bound to the other); a claim of a ``WaitForFirstConsumer`` class is left to the
  scheduler until it chose a node (``volume.kubernetes.io/selected-node``); a claim nothing
  satisfies is handed to its class's external provisioner (annotated, the CSI provisioner creates a
  volume pre-bound to it) or stays Pending with an event that says why. A bound claim keeps its
  status current, or goes Lost when its volume went.
* ``plan_volume`` for a PersistentVolume: Available without a claim, Bound with one, Released once
  its claim is gone, then its reclaim policy: Retain keeps it, Delete leaves a volume of an external
  provisioner to that provisioner and fails any other (there is no in-tree deleter here).

A plan is the volume's and the claim's new metadata/spec and status and the events to record; the
executor writes them in kube's order (volume, its status, claim, its status), each an update on the
version seen, so two syncs racing for one volume end in a conflict and a retry, never a double bind.
Keys are ``pv:<name>`` and ``pvc:<namespace>/<name>``; every claim and volume is synced again every
``pvclaimbinder-sync-period`` (kube's resync, which also lets pending claims find new volumes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from agents.controllers import volumeutil as vu
from agents.controllers.base import Context, Controller, Event, ignore_not_found, rfc3339, write_status
from agents.machinery import quantity
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.informer import key_of
from agents.machinery.objects import Object, deep_copy
from agents.machinery.resources import (
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    PODS,
    STORAGE_CLASSES,
    ResourceRef,
)
from agents.machinery.selectors import SelectorError, from_structured

log = logging.getLogger(__name__)

WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"
NO_CLASS = "no persistent volumes available for this claim and no storage class is set"
FIRST_CONSUMER = "waiting for first consumer to be created before binding"


@dataclass(frozen=True)
class Write:
    """One object's new state: ``body`` its new metadata and spec (None: they stay), ``status`` its
    new status (None: it stays); ``observed`` is the version the plan was made from."""

    observed: Object
    body: Object | None = None
    status: dict[str, Any] | None = None


@dataclass
class Plan:
    volume: Write | None = None
    claim: Write | None = None
    events: list[Event] = field(default_factory=list)  # each about the claim or the volume it names
    enqueue: list[str] = field(default_factory=list)  # keys to sync next (a claim a volume waits for)


# --- facts ---------------------------------------------------------------------------------------


def phase_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase") or "Pending")


def storage_of(resources: Mapping[str, Any] | None) -> Any:
    return (resources or {}).get("storage")


def requested(claim: Mapping[str, Any]) -> Any:
    return storage_of(((claim.get("spec") or {}).get("resources") or {}).get("requests"))


def _size(text: Any) -> Any:
    try:
        return quantity.value(text) if text is not None else 0
    except quantity.QuantityError:
        return 0


def claim_ref(volume: Mapping[str, Any]) -> dict[str, Any]:
    return dict((volume.get("spec") or {}).get("claimRef") or {})


def bound_to(volume: Mapping[str, Any], claim: Mapping[str, Any]) -> bool:
    """The volume's claimRef names the claim (and its uid, when the ref has one): kube's IsVolumeBoundToClaim."""
    ref = claim_ref(volume)
    meta = claim.get("metadata") or {}
    if not ref or ref.get("name") != meta.get("name") or ref.get("namespace") != meta.get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == meta.get("uid")


def modes(obj: Mapping[str, Any]) -> frozenset[str]:
    return frozenset((obj.get("spec") or {}).get("accessModes") or [])


def mismatch(volume: Mapping[str, Any], claim: Mapping[str, Any]) -> str:
    """Why ``volume`` cannot serve ``claim`` (kube's checkVolumeSatisfyClaim), or ""."""
    if _size(storage_of((volume.get("spec") or {}).get("capacity"))) < _size(requested(claim)):
        return "requested PV is too small"
    if vu.volume_class(volume) != vu.claim_class(claim):
        return "storageClassName does not match"
    if vu.volume_mode(volume) != vu.volume_mode(claim):
        return "incompatible volumeMode"
    if not modes(claim) <= modes(volume):
        return "incompatible accessMode"
    return ""


def _selected(volume: Mapping[str, Any], claim: Mapping[str, Any]) -> bool:
    selector = (claim.get("spec") or {}).get("selector")
    if not selector:
        return True
    try:
        return from_structured(selector).matches((volume.get("metadata") or {}).get("labels") or {})
    except SelectorError:
        return False


def best_match(claim: Object, volumes: Iterable[Object], *, delay_binding: bool) -> Object | None:
    """The volume to bind ``claim`` to, as kube's findBestMatchForClaim chooses it.

    Volumes are grouped by their access modes; the groups holding all of the claim's modes are tried
    from the fewest modes up. In a group a volume pre-bound to the claim wins at once; otherwise the
    smallest Available, unclaimed volume of the claim's class, volume mode and selector that is big
    enough. With ``delay_binding`` (a WaitForFirstConsumer class) only pre-bound volumes count: the
    scheduler binds the others once it chose a node.
    """
    wanted = modes(claim)
    need = _size(requested(claim))
    groups: dict[frozenset[str], list[Object]] = {}
    for volume in volumes:
        groups.setdefault(modes(volume), []).append(volume)
    for group_modes in sorted((m for m in groups if wanted <= m), key=lambda m: (len(m), sorted(m))):
        best: Object | None = None
        for volume in sorted(groups[group_modes], key=lambda v: v["metadata"]["name"]):
            size = _size(storage_of((volume.get("spec") or {}).get("capacity")))
            if size < need or vu.volume_mode(volume) != vu.volume_mode(claim):
                continue
            if volume["metadata"].get("deletionTimestamp"):
                continue
            if bound_to(volume, claim):
                return volume
            if delay_binding:
                continue
            if phase_of(volume) != "Available" or claim_ref(volume) or not _selected(volume, claim):
                continue
            if vu.volume_class(volume) != vu.claim_class(claim):
                continue
            if best is None or size < _size(storage_of(best["spec"].get("capacity"))):
                best = volume
        if best is not None:
            return best
    return None


def reference(claim: Mapping[str, Any]) -> dict[str, Any]:
    """The claimRef a volume bound to ``claim`` carries."""
    meta = claim.get("metadata") or {}
    ref = {
        "kind": "PersistentVolumeClaim",
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "apiVersion": "v1",
    }
    if meta.get("resourceVersion"):
        ref["resourceVersion"] = meta["resourceVersion"]
    return ref


def volume_status(volume: Mapping[str, Any], phase: str, *, now: datetime, message: str = "") -> dict[str, Any] | None:
    """The volume's status in ``phase`` (None when it is in it already), stamped with the transition."""
    if phase_of(volume) == phase:
        return None
    status = {k: v for k, v in (volume.get("status") or {}).items() if k not in ("phase", "message")}
    status.update(phase=phase, lastPhaseTransitionTime=rfc3339(now))
    if message:
        status["message"] = message
    return status


def claim_status(claim: Mapping[str, Any], phase: str, volume: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The claim's status in ``phase`` (kube's updateClaimStatus), None when nothing changes: bound to
    ``volume``, it shows the volume's access modes, and its capacity when it becomes Bound (later the
    capacity may differ on purpose, while the file system grows); without one, neither."""
    old = dict(claim.get("status") or {})
    status = deep_copy(old)
    status["phase"] = phase
    if volume is None:
        status.pop("accessModes", None)
        status.pop("capacity", None)
    else:
        volume_modes = list((volume.get("spec") or {}).get("accessModes") or [])
        if status.get("accessModes") != volume_modes:
            status["accessModes"] = volume_modes
        if phase_of(claim) != phase:
            capacity = dict((volume.get("spec") or {}).get("capacity") or {})
            have = storage_of(status.get("capacity"))
            if have is None or _size(have) != _size(storage_of(capacity)):
                status["capacity"] = capacity
    if status == old and "phase" in old:
        return None
    return status


def _annotate(obj: Object, **values: str) -> None:
    obj.setdefault("metadata", {}).setdefault("annotations", {}).update(values)


def bind(volume: Object, claim: Object, *, now: datetime) -> Plan:
    """Bind ``volume`` and ``claim`` to each other, writing only what is not so yet (kube's bind)."""
    plan = Plan()
    body = deep_copy(volume)
    dirty = False
    ref = claim_ref(volume)
    meta = claim["metadata"]
    if (ref.get("name"), ref.get("namespace"), ref.get("uid")) != (meta["name"], meta.get("namespace"), meta["uid"]):
        body["spec"]["claimRef"] = reference(claim)
        dirty = True
    if not bound_to(volume, claim) and vu.BOUND_BY_CONTROLLER not in vu.annotations_of(volume):
        _annotate(body, **{vu.BOUND_BY_CONTROLLER: "yes"})
        dirty = True
    status = volume_status(volume, "Bound", now=now)
    if dirty or status is not None:
        plan.volume = Write(volume, body if dirty else None, status)
    claim_body = deep_copy(claim)
    dirty = False
    if (claim.get("spec") or {}).get("volumeName") != volume["metadata"]["name"]:
        claim_body.setdefault("spec", {})["volumeName"] = volume["metadata"]["name"]
        dirty = True
        if vu.BOUND_BY_CONTROLLER not in vu.annotations_of(claim):
            _annotate(claim_body, **{vu.BOUND_BY_CONTROLLER: "yes"})
    if vu.BIND_COMPLETED not in vu.annotations_of(claim):
        _annotate(claim_body, **{vu.BIND_COMPLETED: "yes"})
        dirty = True
    cstatus = claim_status(claim, "Bound", volume)
    if dirty or cstatus is not None:
        plan.claim = Write(claim, claim_body if dirty else None, cstatus)
    return plan


# --- claims --------------------------------------------------------------------------------------


def _lost(claim: Object, message: str, reason: str = "ClaimLost") -> Plan:
    """The claim goes Lost; the event is told once, when it does (kube's updateClaimStatusWithEvent)."""
    status = claim_status(claim, "Lost", None)
    if phase_of(claim) == "Lost":
        return Plan(claim=Write(claim, None, status) if status is not None else None)
    return Plan(claim=Write(claim, None, status), events=[Event(WARNING, reason, message, about=claim)])


def _pending(claim: Object, *events: Event) -> Plan:
    status = claim_status(claim, "Pending", None)
    return Plan(claim=Write(claim, None, status) if status is not None else None, events=list(events))


def waiting_message(pending_pods: Sequence[str]) -> tuple[str, str]:
    """(reason, message) for a WaitForFirstConsumer claim: kube names the pods that wait to be scheduled."""
    if not pending_pods:
        return "WaitForFirstConsumer", FIRST_CONSUMER
    if len(pending_pods) == 1:
        return "WaitForPodScheduled", f"waiting for pod {pending_pods[0]} to be scheduled"
    return "WaitForPodScheduled", f"waiting for pods {','.join(pending_pods)} to be scheduled"


def external_provisioning_message(provisioner: str) -> str:
    return (
        f"Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by"
        " the system administrator. If volume creation is delayed, please verify that the provisioner is running"
        " and correctly registered."
    )


def _provision(claim: Object, class_name: str, storage_class: Object | None) -> Plan:
    """Hand the claim to its class's provisioner (kube's provisionClaim): an external one is told by
    the claim's annotations; an unknown class or an in-tree provisioner (none here) fails."""
    if storage_class is None:
        message = f'storageclass.storage.k8s.io "{class_name}" not found'
        return Plan(events=[Event(WARNING, "ProvisioningFailed", message, about=claim)])
    provisioner = str(storage_class.get("provisioner") or "")
    if provisioner.startswith("kubernetes.io/"):
        message = f"no volume plugin matched name: {provisioner}"
        return Plan(events=[Event(WARNING, "ProvisioningFailed", message, about=claim)])
    plan = Plan(events=[Event(NORMAL, "ExternalProvisioning", external_provisioning_message(provisioner), about=claim)])
    current = vu.annotations_of(claim)
    if current.get(vu.STORAGE_PROVISIONER) != provisioner or current.get(vu.BETA_STORAGE_PROVISIONER) != provisioner:
        body = deep_copy(claim)
        _annotate(body, **{vu.STORAGE_PROVISIONER: provisioner, vu.BETA_STORAGE_PROVISIONER: provisioner})
        plan.claim = Write(claim, body)
    return plan


def _has_class(claim: Mapping[str, Any]) -> bool:
    """The claim asked for a class, even "" (kube's PersistentVolumeClaimHasClass)."""
    return (
        vu.BETA_STORAGE_CLASS in vu.annotations_of(claim)
        or (claim.get("spec") or {}).get("storageClassName") is not None
    )


def plan_claim(
    claim: Object,
    *,
    volumes: Iterable[Object],
    classes: Mapping[str, Object],
    pending_pods: Sequence[str] = (),
    now: datetime,
) -> Plan:
    """What to do for ``claim`` given every volume and StorageClass; ``pending_pods``: the names of
    the not yet scheduled pods that use it."""
    by_name = {v["metadata"]["name"]: v for v in volumes}
    volume_name = (claim.get("spec") or {}).get("volumeName") or ""
    if vu.BIND_COMPLETED in vu.annotations_of(claim):
        if not volume_name:
            return _lost(claim, "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!")
        volume = by_name.get(volume_name)
        if volume is None:
            return _lost(claim, "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
        if not claim_ref(volume) or bound_to(volume, claim):
            return bind(volume, claim, now=now)
        return _lost(claim, "Two claims are bound to the same volume, this one is bound incorrectly", "ClaimMisbound")
    if volume_name:
        return _pre_bound_claim(claim, by_name.get(volume_name), now=now)
    class_name = vu.claim_class(claim)
    storage_class = classes.get(class_name) if class_name else None
    delay = storage_class is not None and storage_class.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER
    volume = best_match(claim, by_name.values(), delay_binding=delay)
    if volume is not None:
        return bind(volume, claim, now=now)
    if not _has_class(claim) and (default := vu.default_class(classes.values())) is not None:
        body = deep_copy(claim)
        body.setdefault("spec", {})["storageClassName"] = default["metadata"]["name"]
        return Plan(claim=Write(claim, body))  # retroactive default class; the next sync goes on
    if delay and vu.SELECTED_NODE not in vu.annotations_of(claim):
        reason, message = waiting_message(pending_pods)
        return _pending(claim, Event(NORMAL, reason, message, about=claim))
    if class_name:
        return _provision(claim, class_name, storage_class)
    return _pending(claim, Event(NORMAL, "FailedBinding", NO_CLASS, about=claim))


def _pre_bound_claim(claim: Object, volume: Object | None, *, now: datetime) -> Plan:
    """A claim that names its volume (``spec.volumeName``) and is not bound yet."""
    if volume is None:
        return _pending(claim)  # the volume may appear later
    if not claim_ref(volume):
        why = mismatch(volume, claim)
        if why:
            name = volume["metadata"]["name"]
            event = Event(WARNING, "VolumeMismatch", f'Cannot bind to requested volume "{name}": {why}', about=claim)
            return _pending(claim, event)
        return bind(volume, claim, now=now)
    if bound_to(volume, claim):
        return bind(volume, claim, now=now)
    if vu.BOUND_BY_CONTROLLER not in vu.annotations_of(claim):
        return _pending(claim)  # the user asked for a volume another claim holds: wait for it
    return Plan()  # bound by this controller to a volume bound elsewhere: kube reports it, nothing to fix


def volume_name(volume: Mapping[str, Any]) -> str:
    return str((volume.get("metadata") or {}).get("name", ""))


# --- volumes -------------------------------------------------------------------------------------


def reclaim(volume: Object, plan: Plan, *, now: datetime) -> Plan:
    """Apply the reclaim policy of a Released (or Failed) volume onto ``plan`` (kube's reclaimVolume)."""
    policy = (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy") or "Retain"
    if policy == "Retain":
        return plan
    if policy == "Delete":
        provisioner = vu.annotations_of(volume).get(vu.PROVISIONED_BY, "")
        if provisioner and not provisioner.startswith("kubernetes.io/"):
            return plan  # its external provisioner deletes it
        if provisioner:
            return _fail(volume, plan, "VolumeFailedDelete", f"no volume plugin matched name: {provisioner}", now=now)
        name = volume_name(volume)
        message = f'error getting deleter volume plugin for volume "{name}": no deletable volume plugin matched'
        return _fail(volume, plan, "VolumeFailedDelete", message, now=now)
    if policy == "Recycle":
        return _fail(volume, plan, "VolumeFailedRecycle", "No recycler plugin found for the volume!", now=now)
    return _fail(
        volume, plan, "VolumeUnknownReclaimPolicy", "Volume has unrecognized PersistentVolumeReclaimPolicy", now=now
    )


def _fail(volume: Object, plan: Plan, reason: str, message: str, *, now: datetime) -> Plan:
    """The volume goes Failed with ``message``; the event is told once, when it does."""
    if phase_of(volume) == "Failed":
        return plan
    status = volume_status(volume, "Failed", now=now, message=message)
    plan.volume = Write(volume, None, status)
    plan.events.append(Event(WARNING, reason, message, about=volume))
    return plan


def _release(volume: Object, *, now: datetime) -> Plan:
    """The volume's claim is gone: Released (a Failed volume stays Failed), then reclaimed."""
    plan = Plan()
    if phase_of(volume) not in ("Released", "Failed"):
        status = volume_status(volume, "Released", now=now)
        plan.volume = Write(volume, None, status)
        volume = deep_copy(volume)
        volume["status"] = status
    return reclaim(volume, plan, now=now)


def plan_volume(volume: Object, *, claim: Object | None, now: datetime) -> Plan:
    """What to do for ``volume``; ``claim``: the claim its claimRef names, if it exists."""
    ref = claim_ref(volume)
    if not ref or not ref.get("uid"):
        status = volume_status(volume, "Available", now=now)  # unclaimed, or pre-bound and waiting
        return Plan(volume=Write(volume, None, status) if status is not None else None)
    if claim is not None and claim["metadata"].get("uid") != ref.get("uid"):
        claim = None  # a claim of that name, but not the one it was bound to
    if claim is None:
        return _release(volume, now=now)
    name = volume_name(volume)
    bound_name = (claim.get("spec") or {}).get("volumeName") or ""
    if not bound_name:
        if vu.volume_mode(volume) != vu.volume_mode(claim):
            claim_name = claim["metadata"]["name"]
            return Plan(
                events=[
                    Event(
                        WARNING,
                        "VolumeMismatch",
                        f'Cannot bind PersistentVolume to requested PersistentVolumeClaim "{claim_name}"'
                        " due to incompatible volumeMode.",
                        about=volume,
                    ),
                    Event(
                        WARNING,
                        "VolumeMismatch",
                        f'Cannot bind PersistentVolume "{name}" to requested PersistentVolumeClaim'
                        " due to incompatible volumeMode.",
                        about=claim,
                    ),
                ]
            )
        return Plan(enqueue=[f"pvc:{key_of(claim)}"])  # the claim's sync completes the binding
    if bound_name == name:
        status = volume_status(volume, "Bound", now=now)
        return Plan(volume=Write(volume, None, status) if status is not None else None)
    # the claim went to another volume
    policy = (volume.get("spec") or {}).get("persistentVolumeReclaimPolicy")
    if vu.PROVISIONED_BY in vu.annotations_of(volume) and policy == "Delete":
        return _release(volume, now=now)
    return unbind(volume, now=now)


def unbind(volume: Object, *, now: datetime) -> Plan:
    """Undo a binding (kube's unbindVolume): one the controller made goes whole; a user's pre-binding
    stays, without the uid."""
    body = deep_copy(volume)
    if vu.BOUND_BY_CONTROLLER in vu.annotations_of(volume):
        body["spec"].pop("claimRef", None)
        annotations = body["metadata"].get("annotations") or {}
        annotations.pop(vu.BOUND_BY_CONTROLLER, None)
        body["metadata"]["annotations"] = annotations or None
    else:
        body["spec"]["claimRef"]["uid"] = ""
    status = volume_status(volume, "Available", now=now)
    return Plan(volume=Write(volume, body, status))


# --- the controller ------------------------------------------------------------------------------


def claim_key_of_volume(volume: Object) -> list[str]:
    ref = claim_ref(volume)
    return [f"{ref.get('namespace', '')}/{ref['name']}"] if ref.get("name") else []


class PersistentVolumeController(Controller):
    name = "persistentvolume-binder"
    source = "persistentvolume-controller"
    workers = 1  # as kube's: one claim (and volume) at a time; bindings never race each other

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.period = float(ctx.settings.pvclaimbinder_sync_period)
        self.volumes = ctx.informer(PERSISTENT_VOLUMES)
        self.claims = ctx.informer(PERSISTENT_VOLUME_CLAIMS)
        self.classes = ctx.informer(STORAGE_CLASSES)
        self.pods = ctx.informer(PODS)
        self.volumes.add_index("claim", claim_key_of_volume)
        self.pods.add_index("claims", vu.claim_keys)
        self.claims.on(add=self._claim_changed, update=lambda _o, n: self._claim_changed(n), delete=self._claim_deleted)
        self.volumes.on_any(self._volume_changed)
        self.classes.on_any(lambda _c: self._unbound_claims())

    def _claim_changed(self, claim: Object) -> None:
        self.queue.add(f"pvc:{key_of(claim)}")

    def _claim_deleted(self, claim: Object) -> None:
        name = (claim.get("spec") or {}).get("volumeName")
        if name:
            self.queue.add(f"pv:{name}")
        for volume in self.volumes.by_index("claim", key_of(claim)):
            self.queue.add(f"pv:{volume_name(volume)}")

    def _volume_changed(self, volume: Object) -> None:
        self.queue.add(f"pv:{volume_name(volume)}")
        for key in claim_key_of_volume(volume):
            if self.claims.get(key) is not None:
                self.queue.add(f"pvc:{key}")
        if not claim_ref(volume):
            self._unbound_claims()  # a free volume: the claims that wait may take it

    def _unbound_claims(self) -> None:
        for claim in self.claims.items():
            if vu.BIND_COMPLETED not in vu.annotations_of(claim):
                self.queue.add(f"pvc:{key_of(claim)}")

    async def sync(self, key: str) -> None:
        kind, _, rest = key.partition(":")
        if kind == "pvc":
            claim = self.claims.get(rest)
            if claim is not None:
                await self._execute(self._plan_claim(claim))
        elif kind == "pv":
            volume = self.volumes.get(rest)
            if volume is not None:
                await self._execute(plan_volume(volume, claim=await self._claim_of(volume), now=self.now()))

    def _plan_claim(self, claim: Object) -> Plan:
        pending = sorted(
            p["metadata"]["name"]
            for p in self.pods.by_index("claims", key_of(claim))
            if not (p.get("spec") or {}).get("nodeName") and not p["metadata"].get("deletionTimestamp")
        )
        classes = {c["metadata"]["name"]: c for c in self.classes.items()}
        return plan_claim(claim, volumes=self.volumes.items(), classes=classes, pending_pods=pending, now=self.now())

    async def _claim_of(self, volume: Object) -> Object | None:
        """The claim the volume's claimRef names; asked of the API server when the cache does not have
        that one (the cache may lag, and releasing a volume on a stale cache would be wrong)."""
        ref = claim_ref(volume)
        if not ref.get("uid"):
            return None
        claim = self.claims.get(f"{ref.get('namespace', '')}/{ref.get('name', '')}")
        if claim is not None and claim["metadata"].get("uid") == ref["uid"]:
            return claim
        found: Object | None = await ignore_not_found(
            partial(self.client.get, PERSISTENT_VOLUME_CLAIMS, ref.get("name", ""), ref.get("namespace", ""))
        )
        return found

    async def _execute(self, plan: Plan) -> None:
        if plan.volume is not None:
            await self._write(PERSISTENT_VOLUMES, plan.volume)
        if plan.claim is not None:
            await self._write(PERSISTENT_VOLUME_CLAIMS, plan.claim)
        for event in plan.events:
            self.record(event.about or {}, event)
        for key in plan.enqueue:
            self.queue.add(key)

    async def _write(self, resource: ResourceRef, write: Write) -> None:
        current = write.observed
        if write.body is not None:
            current = await self.client.update(resource, write.body)
            log.info("%s %s updated", resource.kind, key_of(current))
        if write.status is not None:
            await write_status(self.client, resource, current, write.status)
            log.info("%s %s is %s", resource.kind, key_of(current), write.status.get("phase"))

    async def _resync(self) -> None:
        await asyncio.gather(self.volumes.synced.wait(), self.claims.synced.wait())
        while True:
            for volume in self.volumes.items():
                self.queue.add(f"pv:{volume_name(volume)}")
            for claim in self.claims.items():
                self.queue.add(f"pvc:{key_of(claim)}")
            await asyncio.sleep(self.period)

    async def run(self) -> None:
        await asyncio.gather(self._resync(), super().run())
