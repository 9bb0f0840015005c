"""The persistent volume controller's plans (agents/controllers/persistentvolume.py) and the protection
controllers' (pvcprotection.py, pvprotection.py): binding, waiting, provisioning, release and reclaim,
finalizers. Plain dicts stand for the objects the informers hold."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from agents.apiserver.server import ApiServer
from agents.controllers import pvcprotection, pvprotection
from agents.controllers import volumeutil as vu
from agents.controllers.persistentvolume import (
    PersistentVolumeController,
    Plan,
    best_match,
    external_provisioning_message,
    plan_claim,
    plan_volume,
)
from agents.controllers.pvcprotection import PvcProtectionController
from agents.controllers.pvprotection import PvProtectionController
from agents.machinery.objects import Object
from agents.machinery.resources import PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES, PODS, STORAGE_CLASSES
from tests.support.controllerharness import running

NOW = datetime(2026, 12, 7, 20, 0, 0, tzinfo=UTC)
DRIVER = "disk.csi.kubelab.dev"


def pv(
    name: str,
    size: str = "1Gi",
    *,
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    cls: str = "",
    phase: str = "Available",
    labels: dict[str, str] | None = None,
    claim: Object | None = None,
    claim_uid: str | None = None,
    policy: str = "Retain",
    annotations: dict[str, str] | None = None,
    mode: str = "Filesystem",
) -> Object:
    spec: dict[str, Any] = {
        "capacity": {"storage": size},
        "accessModes": list(modes),
        "persistentVolumeReclaimPolicy": policy,
        "volumeMode": mode,
        "csi": {"driver": DRIVER, "volumeHandle": f"vol-{name}"},
    }
    if cls:
        spec["storageClassName"] = cls
    if claim is not None:
        meta = claim["metadata"]
        spec["claimRef"] = {
            "kind": "PersistentVolumeClaim",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"] if claim_uid is None else claim_uid,
            "apiVersion": "v1",
        }
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name, "uid": f"uid-{name}", "labels": labels or {}, "annotations": annotations or {}},
        "spec": spec,
        "status": {"phase": phase},
    }


def pvc(
    name: str,
    size: str = "1Gi",
    *,
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    cls: str | None = None,
    volume: str = "",
    selector: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    phase: str = "Pending",
    mode: str = "Filesystem",
) -> Object:
    spec: dict[str, Any] = {
        "accessModes": list(modes),
        "resources": {"requests": {"storage": size}},
        "volumeMode": mode,
    }
    if cls is not None:
        spec["storageClassName"] = cls
    if volume:
        spec["volumeName"] = volume
    if selector:
        spec["selector"] = selector
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "resourceVersion": "7",
            "annotations": annotations or {},
        },
        "spec": spec,
        "status": {"phase": phase},
    }


def storage_class(name: str, *, provisioner: str = DRIVER, wffc: bool = False, default: bool = False) -> Object:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": name,
            "annotations": {vu.DEFAULT_CLASS: "true"} if default else {},
            "creationTimestamp": "2026-12-07T10:00:00Z",
        },
        "provisioner": provisioner,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer" if wffc else "Immediate",
    }


def claim_plan(claim: Object, *volumes: Object, classes: tuple[Object, ...] = (), pods: tuple[str, ...] = ()) -> Plan:
    return plan_claim(
        claim, volumes=list(volumes), classes={c["metadata"]["name"]: c for c in classes}, pending_pods=pods, now=NOW
    )


def events(plan: Plan) -> list[tuple[str, str, str]]:
    return [(e.type, e.reason, e.message) for e in plan.events]


def bound_volume_of(plan: Plan) -> str:
    assert plan.claim is not None and plan.claim.body is not None
    return str(plan.claim.body["spec"]["volumeName"])


# --- choosing a volume ----------------------------------------------------------------------------


def test_the_smallest_available_volume_big_enough_is_chosen() -> None:
    claim = pvc("data", "2Gi")
    chosen = best_match(
        claim, [pv("big", "10Gi"), pv("small", "1Gi"), pv("fits", "3Gi"), pv("exact", "2Gi")], delay_binding=False
    )
    assert chosen is not None and chosen["metadata"]["name"] == "exact"


def test_capacity_is_compared_as_quantities_not_text() -> None:
    claim = pvc("data", "1500Mi")
    chosen = best_match(claim, [pv("a", "1Gi"), pv("b", "2G")], delay_binding=False)
    assert chosen is not None and chosen["metadata"]["name"] == "b"


def test_a_volume_must_offer_every_access_mode_of_the_claim_and_fewer_modes_win() -> None:
    claim = pvc("data", modes=("ReadWriteOnce",))
    many = pv("many", "1Gi", modes=("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany"))
    one = pv("one", "5Gi", modes=("ReadWriteOnce",))
    only_rox = pv("rox", "1Gi", modes=("ReadOnlyMany",))
    chosen = best_match(claim, [many, one, only_rox], delay_binding=False)
    assert chosen is not None and chosen["metadata"]["name"] == "one"  # the smaller mode set beats the smaller size
    rwx = pvc("shared", modes=("ReadWriteMany",))
    chosen = best_match(rwx, [many, one, only_rox], delay_binding=False)
    assert chosen is not None and chosen["metadata"]["name"] == "many"
    assert best_match(pvc("x", modes=("ReadWriteOncePod",)), [many, one], delay_binding=False) is None


def test_the_class_must_be_equal_and_no_class_matches_only_volumes_without_one() -> None:
    fast, plain = pv("fast", cls="fast"), pv("plain")
    assert best_match(pvc("a", cls="fast"), [fast, plain], delay_binding=False) is fast
    assert best_match(pvc("b", cls=""), [fast, plain], delay_binding=False) is plain
    assert best_match(pvc("c"), [fast], delay_binding=False) is None
    assert best_match(pvc("d", cls="slow"), [fast, plain], delay_binding=False) is None


def test_the_beta_class_annotation_counts_as_the_class() -> None:
    old = pv("old", annotations={vu.BETA_STORAGE_CLASS: "fast"})
    assert best_match(pvc("a", cls="fast"), [old], delay_binding=False) is old


def test_the_label_selector_filters_volumes() -> None:
    ssd = pv("ssd", "5Gi", labels={"disk": "ssd", "zone": "a"})
    hdd = pv("hdd", "1Gi", labels={"disk": "hdd", "zone": "a"})
    by_labels = pvc("a", selector={"matchLabels": {"disk": "ssd"}})
    assert best_match(by_labels, [ssd, hdd], delay_binding=False) is ssd
    by_expression = pvc("b", selector={"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]})
    assert best_match(by_expression, [ssd, hdd], delay_binding=False) is hdd
    nothing = pvc("c", selector={"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]})
    assert best_match(nothing, [ssd, hdd], delay_binding=False) is None


def test_the_volume_mode_must_match() -> None:
    block = pv("block", mode="Block")
    assert best_match(pvc("fs"), [block], delay_binding=False) is None
    assert best_match(pvc("raw", mode="Block"), [block], delay_binding=False) is block


def test_volumes_that_are_not_available_claimed_or_being_deleted_are_skipped() -> None:
    other = pvc("other")
    released = pv("released", phase="Released")
    taken = pv("taken", claim=other)
    deleting = pv("deleting")
    deleting["metadata"]["deletionTimestamp"] = "2026-12-07T19:00:00Z"
    assert best_match(pvc("data"), [released, taken, deleting], delay_binding=False) is None


def test_a_volume_pre_bound_to_the_claim_wins_even_when_bigger_and_when_binding_waits() -> None:
    claim = pvc("data", "1Gi", cls="standard")
    mine = pv("pvc-uid-data", "10Gi", cls="standard", claim=claim, phase="Pending")
    free = pv("free", "1Gi", cls="standard")
    assert best_match(claim, [free, mine], delay_binding=False) is mine
    assert best_match(claim, [free, mine], delay_binding=True) is mine
    assert best_match(claim, [free], delay_binding=True) is None  # the scheduler binds those


# --- binding --------------------------------------------------------------------------------------


def test_binding_writes_both_sides_as_kube_does() -> None:
    claim = pvc("data", "1Gi")
    volume = pv("pv1", "2Gi")
    plan = claim_plan(claim, volume)
    assert plan.volume is not None and plan.volume.body is not None
    ref = plan.volume.body["spec"]["claimRef"]
    assert ref == {
        "kind": "PersistentVolumeClaim",
        "namespace": "default",
        "name": "data",
        "uid": "uid-data",
        "apiVersion": "v1",
        "resourceVersion": "7",
    }
    assert plan.volume.body["metadata"]["annotations"] == {vu.BOUND_BY_CONTROLLER: "yes"}
    assert plan.volume.status is not None and plan.volume.status["phase"] == "Bound"
    assert plan.volume.status["lastPhaseTransitionTime"] == "2026-12-07T20:00:00Z"
    assert plan.claim is not None and plan.claim.body is not None
    assert plan.claim.body["spec"]["volumeName"] == "pv1"
    assert plan.claim.body["metadata"]["annotations"] == {vu.BIND_COMPLETED: "yes", vu.BOUND_BY_CONTROLLER: "yes"}
    assert plan.claim.status == {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "2Gi"}}
    assert plan.events == []  # kube records no event for a binding


def test_a_volume_pre_bound_by_its_creator_is_not_marked_bound_by_controller() -> None:
    claim = pvc("data", cls="standard")
    provisioned = pv(
        "pvc-uid-data", cls="standard", claim=claim, phase="Pending", annotations={vu.PROVISIONED_BY: DRIVER}
    )
    plan = claim_plan(claim, provisioned, classes=(storage_class("standard", wffc=True),))
    assert plan.volume is not None
    assert plan.volume.body is None  # its claimRef is right already
    assert plan.volume.status is not None and plan.volume.status["phase"] == "Bound"
    assert plan.claim is not None and plan.claim.body is not None
    assert plan.claim.body["spec"]["volumeName"] == "pvc-uid-data"
    assert vu.BOUND_BY_CONTROLLER in plan.claim.body["metadata"]["annotations"]


def test_a_volume_pre_bound_by_name_only_gets_the_claims_uid() -> None:
    claim = pvc("data")
    volume = pv("pv1", claim=claim, claim_uid="")
    plan = claim_plan(claim, volume)
    assert plan.volume is not None and plan.volume.body is not None
    assert plan.volume.body["spec"]["claimRef"]["uid"] == "uid-data"
    assert vu.BOUND_BY_CONTROLLER not in plan.volume.body["metadata"]["annotations"]


def test_a_claim_naming_its_volume_is_bound_to_it_when_it_fits() -> None:
    claim = pvc("data", "1Gi", volume="wanted")
    plan = claim_plan(claim, pv("other", "1Gi"), pv("wanted", "5Gi"))
    assert bound_volume_of(plan) == "wanted"
    assert plan.volume is not None and plan.volume.observed["metadata"]["name"] == "wanted"
    assert plan.claim is not None and plan.claim.body is not None
    assert vu.BOUND_BY_CONTROLLER not in plan.claim.body["metadata"]["annotations"]  # the user bound it
    assert plan.claim.body["metadata"]["annotations"][vu.BIND_COMPLETED] == "yes"


def test_a_claim_naming_a_volume_that_does_not_fit_stays_pending_with_kubes_reason() -> None:
    claim = pvc("data", "10Gi", volume="small")
    plan = claim_plan(claim, pv("small", "1Gi"))
    assert events(plan) == [
        ("Warning", "VolumeMismatch", 'Cannot bind to requested volume "small": requested PV is too small')
    ]
    assert plan.volume is None
    wrong_class = claim_plan(pvc("c", cls="fast", volume="v"), pv("v"))
    assert events(wrong_class)[0][2].endswith("storageClassName does not match")


def test_a_claim_naming_a_missing_volume_or_one_held_by_another_claim_waits() -> None:
    claim = pvc("data", volume="nowhere", phase="")
    plan = claim_plan(claim)
    assert plan.claim is not None and plan.claim.status == {"phase": "Pending"} and plan.events == []
    held = pv("held", claim=pvc("other"))
    plan = claim_plan(pvc("data", volume="held"), held)
    assert plan.volume is None and plan.events == []


def test_a_bound_claim_only_keeps_its_status_current() -> None:
    claim = pvc("data", volume="pv1", annotations={vu.BIND_COMPLETED: "yes"}, phase="Bound")
    claim["status"].update(accessModes=["ReadWriteOnce"], capacity={"storage": "1Gi"})
    volume = pv("pv1", claim=claim, phase="Bound")
    plan = claim_plan(claim, volume)
    assert plan.volume is None and plan.claim is None and plan.events == []


def test_a_bound_claims_capacity_is_not_clobbered_once_bound() -> None:
    claim = pvc("data", volume="pv1", annotations={vu.BIND_COMPLETED: "yes"}, phase="Bound")
    claim["status"].update(accessModes=["ReadWriteOnce"], capacity={"storage": "1Gi"})
    grown = pv("pv1", "2Gi", claim=claim, phase="Bound")  # expanded; the file system grows later
    assert claim_plan(claim, grown).claim is None


def test_a_bound_claim_whose_volume_is_gone_is_lost_once() -> None:
    claim = pvc("data", volume="pv1", annotations={vu.BIND_COMPLETED: "yes"}, phase="Bound")
    plan = claim_plan(claim)
    assert plan.claim is not None and plan.claim.status == {"phase": "Lost"}
    assert events(plan) == [
        ("Warning", "ClaimLost", "Bound claim has lost its PersistentVolume. Data on the volume is lost!")
    ]
    lost = pvc("data", volume="pv1", annotations={vu.BIND_COMPLETED: "yes"}, phase="Lost")
    assert claim_plan(lost).events == []


def test_a_bound_claim_whose_volume_went_to_another_claim_is_misbound() -> None:
    claim = pvc("data", volume="pv1", annotations={vu.BIND_COMPLETED: "yes"}, phase="Bound")
    volume = pv("pv1", claim=pvc("thief"), phase="Bound")
    assert [e.reason for e in claim_plan(claim, volume).events] == ["ClaimMisbound"]


# --- waiting, provisioning, failing ---------------------------------------------------------------


def test_a_wait_for_first_consumer_claim_is_left_to_the_scheduler() -> None:
    wffc = storage_class("standard", wffc=True)
    claim = pvc("data", cls="standard", phase="")
    plan = claim_plan(claim, pv("free", cls="standard"), classes=(wffc,))
    assert plan.volume is None
    assert plan.claim is not None and plan.claim.status == {"phase": "Pending"}
    assert events(plan) == [
        ("Normal", "WaitForFirstConsumer", "waiting for first consumer to be created before binding")
    ]


def test_a_wait_for_first_consumer_claim_names_the_pods_that_wait_to_be_scheduled() -> None:
    wffc = storage_class("standard", wffc=True)
    claim = pvc("data", cls="standard")
    assert events(claim_plan(claim, classes=(wffc,), pods=("web-0",))) == [
        ("Normal", "WaitForPodScheduled", "waiting for pod web-0 to be scheduled")
    ]
    assert events(claim_plan(claim, classes=(wffc,), pods=("a", "b")))[0][2] == "waiting for pods a,b to be scheduled"


def test_an_external_provisioner_is_asked_through_the_claims_annotations() -> None:
    claim = pvc("data", cls="standard")
    plan = claim_plan(claim, classes=(storage_class("standard"),))
    assert plan.claim is not None and plan.claim.body is not None
    annotations = plan.claim.body["metadata"]["annotations"]
    assert annotations[vu.STORAGE_PROVISIONER] == DRIVER
    assert annotations[vu.BETA_STORAGE_PROVISIONER] == DRIVER
    assert events(plan) == [("Normal", "ExternalProvisioning", external_provisioning_message(DRIVER))]
    assert events(plan)[0][2].startswith(
        "Waiting for a volume to be created either by the external provisioner 'disk.csi.kubelab.dev' or manually"
        " by the system administrator."
    )
    annotated = pvc(
        "data", cls="standard", annotations={vu.STORAGE_PROVISIONER: DRIVER, vu.BETA_STORAGE_PROVISIONER: DRIVER}
    )
    again = claim_plan(annotated, classes=(storage_class("standard"),))
    assert again.claim is None and [e.reason for e in again.events] == ["ExternalProvisioning"]


def test_a_wait_for_first_consumer_claim_is_provisioned_once_the_scheduler_chose_a_node() -> None:
    wffc = storage_class("standard", wffc=True)
    claim = pvc("data", cls="standard", annotations={vu.SELECTED_NODE: "worker-1"})
    plan = claim_plan(claim, pv("free", cls="standard"), classes=(wffc,))
    assert plan.volume is None  # a free static volume is the scheduler's to bind, not this controller's
    assert plan.claim is not None and plan.claim.body is not None
    assert plan.claim.body["metadata"]["annotations"][vu.STORAGE_PROVISIONER] == DRIVER


def test_a_claim_nothing_satisfies_and_without_a_class_stays_pending_with_kubes_words() -> None:
    plan = claim_plan(pvc("data", "5Gi", cls=""), pv("small", "1Gi"))
    assert events(plan) == [
        ("Normal", "FailedBinding", "no persistent volumes available for this claim and no storage class is set")
    ]
    assert plan.claim is None or plan.claim.status == {"phase": "Pending"}


def test_a_claim_of_a_missing_class_says_so() -> None:
    plan = claim_plan(pvc("data", cls="gold"))
    assert events(plan) == [("Warning", "ProvisioningFailed", 'storageclass.storage.k8s.io "gold" not found')]
    assert plan.claim is None


def test_an_in_tree_provisioner_has_no_plugin_here() -> None:
    local = storage_class("local", provisioner="kubernetes.io/no-provisioner")
    plan = claim_plan(pvc("data", cls="local"), classes=(local,))
    assert events(plan) == [
        ("Warning", "ProvisioningFailed", "no volume plugin matched name: kubernetes.io/no-provisioner")
    ]


def test_a_claim_without_any_class_gets_the_default_class_when_one_appears() -> None:
    claim = pvc("data")  # created before any default class existed
    plan = claim_plan(claim, classes=(storage_class("standard", default=True), storage_class("other")))
    assert plan.claim is not None and plan.claim.body is not None
    assert plan.claim.body["spec"]["storageClassName"] == "standard"
    assert plan.events == []
    explicit = claim_plan(pvc("data", cls=""), classes=(storage_class("standard", default=True),))
    assert [e.reason for e in explicit.events] == ["FailedBinding"]  # "" asks for no class: it stays so


# --- volumes: release and reclaim ------------------------------------------------------------------


def volume_plan(volume: Object, claim: Object | None) -> Plan:
    return plan_volume(volume, claim=claim, now=NOW)


def test_a_new_volume_becomes_available() -> None:
    plan = volume_plan(pv("pv1", phase="Pending"), None)
    assert plan.volume is not None and plan.volume.status is not None
    assert plan.volume.status["phase"] == "Available"
    assert volume_plan(pv("pv1"), None).volume is None


def test_a_pre_bound_volume_waits_available_for_its_claim() -> None:
    claim = pvc("data")
    plan = volume_plan(pv("pv1", claim=claim, claim_uid="", phase="Pending"), None)
    assert plan.volume is not None and plan.volume.status is not None and plan.volume.status["phase"] == "Available"


def test_a_volume_whose_claim_is_not_bound_yet_hands_over_to_the_claim() -> None:
    claim = pvc("data")
    plan = volume_plan(pv("pvc-uid-data", claim=claim, phase="Pending"), claim)
    assert plan.enqueue == ["pvc:default/data"] and plan.volume is None


def test_a_volume_whose_claim_is_gone_is_released_and_retained() -> None:
    claim = pvc("data")
    volume = pv("pv1", claim=claim, phase="Bound", policy="Retain")
    plan = volume_plan(volume, None)
    assert plan.volume is not None and plan.volume.status is not None
    assert plan.volume.status["phase"] == "Released" and plan.events == []
    released = pv("pv1", claim=claim, phase="Released", policy="Retain")
    assert volume_plan(released, None).volume is None


def test_a_claim_of_the_same_name_but_another_uid_does_not_hold_the_volume() -> None:
    old = pvc("data")
    volume = pv("pv1", claim=old, phase="Bound")
    new = pvc("data")
    new["metadata"]["uid"] = "uid-new"
    plan = volume_plan(volume, new)
    assert plan.volume is not None and plan.volume.status is not None and plan.volume.status["phase"] == "Released"


def test_an_externally_provisioned_volume_with_delete_is_left_to_its_provisioner() -> None:
    claim = pvc("data")
    volume = pv("pvc-uid-data", claim=claim, phase="Bound", policy="Delete", annotations={vu.PROVISIONED_BY: DRIVER})
    plan = volume_plan(volume, None)
    assert plan.volume is not None and plan.volume.status is not None and plan.volume.status["phase"] == "Released"
    assert plan.events == []
    released = pv(
        "pvc-uid-data", claim=claim, phase="Released", policy="Delete", annotations={vu.PROVISIONED_BY: DRIVER}
    )
    assert volume_plan(released, None).volume is None


def test_a_static_volume_with_delete_fails_as_kube_says_once() -> None:
    claim = pvc("data")
    volume = pv("static", claim=claim, phase="Bound", policy="Delete")
    plan = volume_plan(volume, None)
    message = 'error getting deleter volume plugin for volume "static": no deletable volume plugin matched'
    assert plan.volume is not None and plan.volume.status is not None
    assert plan.volume.status["phase"] == "Failed" and plan.volume.status["message"] == message
    assert events(plan) == [("Warning", "VolumeFailedDelete", message)]
    failed = pv("static", claim=claim, phase="Failed", policy="Delete")
    assert volume_plan(failed, None).volume is None and volume_plan(failed, None).events == []


def test_a_bound_volume_gets_bound_phase_and_an_unknown_policy_fails() -> None:
    claim = pvc("data", volume="pv1")
    plan = volume_plan(pv("pv1", claim=claim, phase="Available"), claim)
    assert plan.volume is not None and plan.volume.status is not None and plan.volume.status["phase"] == "Bound"
    odd = pv("odd", claim=claim, phase="Bound", policy="Shred")
    assert [e.reason for e in volume_plan(odd, None).events] == ["VolumeUnknownReclaimPolicy"]


def test_a_volume_the_controller_bound_to_a_claim_that_went_elsewhere_is_freed() -> None:
    claim = pvc("data", volume="other")
    mine = pv("pv1", claim=claim, phase="Bound", annotations={vu.BOUND_BY_CONTROLLER: "yes"})
    plan = volume_plan(mine, claim)
    assert plan.volume is not None and plan.volume.body is not None
    assert "claimRef" not in plan.volume.body["spec"]
    assert plan.volume.status is not None and plan.volume.status["phase"] == "Available"
    users = pv("pv2", claim=claim, phase="Bound")  # pre-bound by a user: the name stays, the uid goes
    plan = volume_plan(users, claim)
    assert plan.volume is not None and plan.volume.body is not None
    assert plan.volume.body["spec"]["claimRef"]["uid"] == "" and plan.volume.body["spec"]["claimRef"]["name"] == "data"


# --- protection -----------------------------------------------------------------------------------


def pod(name: str, claim: str, *, node: str = "worker-1", phase: str = "Running") -> Object:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
        "spec": {"nodeName": node, "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]},
        "status": {"phase": phase},
    }


def deleted(obj: Object, *finalizers: str) -> Object:
    obj["metadata"]["deletionTimestamp"] = "2026-12-07T19:59:00Z"
    obj["metadata"]["finalizers"] = list(finalizers)
    return obj


def test_a_deleted_claim_keeps_its_finalizer_while_a_running_pod_uses_it() -> None:
    claim = deleted(pvc("data"), vu.PVC_PROTECTION)
    assert pvcprotection.plan(claim, [pod("web", "data")]) is None
    assert pvcprotection.plan(claim, [pod("web", "other")]) == "remove-finalizer"
    assert pvcprotection.plan(claim, [pod("done", "data", phase="Succeeded")]) == "remove-finalizer"
    assert pvcprotection.plan(claim, [pod("pending", "data", node="")]) == "remove-finalizer"  # never started
    gone = pod("gone", "data")
    gone["metadata"].update(deletionTimestamp="2026-12-07T19:59:00Z", deletionGracePeriodSeconds=0)
    assert pvcprotection.plan(claim, [gone]) == "remove-finalizer"


def test_an_ephemeral_volumes_claim_is_protected_by_its_pod() -> None:
    claim = deleted(pvc("web-scratch"), vu.PVC_PROTECTION)
    user = pod("web", "unused")
    user["spec"]["volumes"] = [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {}}}]
    assert pvcprotection.plan(claim, [user]) is None


def test_a_live_claim_without_the_finalizer_gets_it() -> None:
    assert pvcprotection.plan(pvc("data"), []) == "add-finalizer"
    protected = pvc("data")
    protected["metadata"]["finalizers"] = [vu.PVC_PROTECTION]
    assert pvcprotection.plan(protected, []) is None
    body = pvcprotection.with_finalizer(protected, vu.PVC_PROTECTION, present=False)
    assert body["metadata"]["finalizers"] == [] and protected["metadata"]["finalizers"] == [vu.PVC_PROTECTION]


def test_a_deleted_volume_keeps_its_finalizer_while_bound() -> None:
    assert pvprotection.plan(deleted(pv("pv1", phase="Bound"), vu.PV_PROTECTION)) is None
    assert pvprotection.plan(deleted(pv("pv1", phase="Released"), vu.PV_PROTECTION)) == "remove-finalizer"
    assert pvprotection.plan(deleted(pv("pv1", phase="Released"), "other")) is None
    assert pvprotection.plan(pv("pv1")) == "add-finalizer"


# --- the controllers running against an in-process API server (tests/support/controllerharness.py) --


def _new(obj: Object) -> Object:
    """An object as a client sends it: no uid, resourceVersion or status."""
    body = {k: v for k, v in obj.items() if k != "status"}
    body["metadata"] = {k: v for k, v in obj["metadata"].items() if k not in ("uid", "resourceVersion", "namespace")}
    return body


async def test_a_claim_is_bound_to_a_static_volume_and_the_volume_released_when_it_goes(server: ApiServer) -> None:
    async with running(server, PersistentVolumeController, PvcProtectionController, PvProtectionController) as h:
        await h.create(PERSISTENT_VOLUMES, _new(pv("small", "1Gi")))
        await h.create(PERSISTENT_VOLUMES, _new(pv("fits", "5Gi")))
        await h.create(PERSISTENT_VOLUME_CLAIMS, _new(pvc("data", "2Gi", cls="")))

        async def bound() -> Object | None:
            claim = await h.get(PERSISTENT_VOLUME_CLAIMS, "data")
            return claim if claim and claim["status"].get("phase") == "Bound" else None

        claim = await h.eventually(bound, what="claim Bound")
        assert claim["spec"]["volumeName"] == "fits"
        assert claim["status"]["capacity"] == {"storage": "5Gi"}
        volume = await h.get(PERSISTENT_VOLUMES, "fits")
        assert volume is not None and volume["status"]["phase"] == "Bound"
        assert volume["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]

        await h.client.delete(PERSISTENT_VOLUME_CLAIMS, "data", "default")

        async def released() -> bool:
            found = await h.get(PERSISTENT_VOLUMES, "fits")
            return found is not None and found["status"]["phase"] == "Released"

        await h.eventually(released, what="volume Released")
        assert await h.get(PERSISTENT_VOLUME_CLAIMS, "data") is None  # nothing used it: its finalizer went


async def test_a_claim_waits_for_the_external_provisioner_and_binds_the_volume_it_makes(server: ApiServer) -> None:
    async with running(server, PersistentVolumeController) as h:
        await h.create(STORAGE_CLASSES, _new(storage_class("fast")))
        await h.create(PERSISTENT_VOLUME_CLAIMS, _new(pvc("data", "1Gi", cls="fast")))

        async def annotated() -> Object | None:
            claim = await h.get(PERSISTENT_VOLUME_CLAIMS, "data")
            return claim if claim and vu.STORAGE_PROVISIONER in claim["metadata"].get("annotations", {}) else None

        claim = await h.eventually(annotated, what="provisioner annotation")
        assert claim["metadata"]["annotations"][vu.BETA_STORAGE_PROVISIONER] == DRIVER
        reasons = await h.eventually(lambda: h.events("data"), what="an event")
        assert ("ExternalProvisioning", external_provisioning_message(DRIVER)) in reasons

        made = pv(f"pvc-{claim['metadata']['uid']}", "1Gi", cls="fast", policy="Delete", claim=claim)
        made["metadata"]["annotations"] = {vu.PROVISIONED_BY: DRIVER}
        await h.create(PERSISTENT_VOLUMES, _new(made))

        async def bound() -> Object | None:
            found = await h.get(PERSISTENT_VOLUME_CLAIMS, "data")
            return found if found and found["status"].get("phase") == "Bound" else None

        claim = await h.eventually(bound, what="claim Bound to the provisioned volume")
        assert claim["spec"]["volumeName"] == made["metadata"]["name"]


async def test_a_claim_in_use_is_kept_until_its_pod_is_gone(server: ApiServer) -> None:
    async with running(server, PvcProtectionController) as h:
        await h.create(PERSISTENT_VOLUME_CLAIMS, _new(pvc("data")))
        user = pod("web", "data")
        user["spec"]["containers"] = [{"name": "main", "image": "busybox"}]
        await h.create(PODS, _new(user))
        await h.client.delete(PERSISTENT_VOLUME_CLAIMS, "data", "default")
        await asyncio.sleep(0.2)  # the controller had its chance to let it go (it must not)
        claim = await h.get(PERSISTENT_VOLUME_CLAIMS, "data")
        assert claim is not None and claim["metadata"].get("deletionTimestamp")
        await h.client.delete(PODS, "web", "default", grace_period=0)

        async def gone() -> bool:
            return await h.get(PERSISTENT_VOLUME_CLAIMS, "data") is None

        await h.eventually(gone, what="claim deleted")
