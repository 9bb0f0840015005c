"""The lab's CSI controllers' decisions: provisioning a claim, deleting a released volume, attaching,
detaching and resizing (the planners of agents/controllers/cloud/csi*.py)."""

from __future__ import annotations

from typing import Any

from agents.controllers.cloud import csi, csiattacher, csiprovisioner, csiresizer

GI = 1024**3


def _claim(**overrides: Any) -> dict[str, Any]:
    claim: dict[str, Any] = {
        "metadata": {
            "name": "data",
            "namespace": "ns",
            "uid": "1234-abcd",
            "resourceVersion": "7",
            "annotations": {csi.PROVISIONER_ANNOTATION: csi.DRIVER},
        },
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "100M"}},
            "storageClassName": "standard",
        },
        "status": {"phase": "Pending"},
    }
    for key, value in overrides.items():
        claim[key] = value
    return claim


def _class(mode: str = "WaitForFirstConsumer", provisioner: str = csi.DRIVER) -> dict[str, Any]:
    return {
        "metadata": {"name": "standard"},
        "provisioner": provisioner,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": mode,
        "parameters": {"csi.storage.k8s.io/fstype": "ext4"},
    }


def test_a_claim_is_provisioned_once_handed_over_and_its_node_chosen() -> None:
    claim = _claim()
    assert csiprovisioner.plan_claim(claim, _class(), volume_exists=False).why == (
        "waiting for the scheduler to choose a node"
    )
    claim["metadata"]["annotations"][csi.SELECTED_NODE_ANNOTATION] = "worker1"
    decided = csiprovisioner.plan_claim(claim, _class(), volume_exists=False)
    # 100 MB rounds up to whole MiB: 96 MiB
    assert decided.provision and decided.size == 96 * 1024 * 1024
    assert not csiprovisioner.plan_claim(claim, _class(), volume_exists=True).provision
    assert csiprovisioner.plan_claim(_claim(), _class("Immediate"), volume_exists=False).provision


def test_claims_not_handed_over_bound_or_of_another_driver_are_left_alone() -> None:
    other = _claim()
    other["metadata"]["annotations"] = {}
    assert not csiprovisioner.plan_claim(other, _class("Immediate"), volume_exists=False).provision
    bound = _claim()
    bound["spec"]["volumeName"] = "pv1"
    assert not csiprovisioner.plan_claim(bound, _class("Immediate"), volume_exists=False).provision
    foreign = _class("Immediate", provisioner="example.com/nfs")
    assert not csiprovisioner.plan_claim(_claim(), foreign, volume_exists=False).provision
    assert not csiprovisioner.plan_claim(_claim(), None, volume_exists=False).provision


def test_the_persistent_volume_is_pre_bound_with_the_cloud_volume_s_id_and_zone() -> None:
    claim = _claim()
    volume = {"name": "pvc-1234-abcd", "id": "vol-0123456789abcdef", "sizeBytes": GI, "zone": "host1"}
    pv = csiprovisioner.persistent_volume(claim, _class(), volume)
    assert pv["metadata"]["name"] == "pvc-1234-abcd" == csiprovisioner.volume_name(claim)
    assert pv["metadata"]["annotations"] == {csi.PROVISIONED_BY_ANNOTATION: csi.DRIVER}
    assert pv["spec"]["capacity"] == {"storage": "1Gi"}
    assert pv["spec"]["csi"] == {"driver": csi.DRIVER, "volumeHandle": "vol-0123456789abcdef", "fsType": "ext4"}
    assert pv["spec"]["claimRef"]["uid"] == "1234-abcd" and pv["spec"]["claimRef"]["namespace"] == "ns"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete" and pv["spec"]["storageClassName"] == "standard"
    (term,) = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["host1"]}]


def _pv(phase: str, policy: str = "Delete", *, ours: bool = True) -> dict[str, Any]:
    notes = {csi.PROVISIONED_BY_ANNOTATION: csi.DRIVER} if ours else {}
    return {
        "metadata": {"name": "pvc-1", "annotations": notes, "resourceVersion": "3"},
        "spec": {
            "csi": {"driver": csi.DRIVER, "volumeHandle": "vol-0000000000000001"},
            "persistentVolumeReclaimPolicy": policy,
            "capacity": {"storage": "1Gi"},
        },
        "status": {"phase": phase},
    }


def test_only_released_volumes_of_reclaim_policy_delete_provisioned_here_are_deleted() -> None:
    assert csiprovisioner.should_delete(_pv("Released"))
    assert not csiprovisioner.should_delete(_pv("Bound"))
    assert not csiprovisioner.should_delete(_pv("Released", "Retain"))
    assert not csiprovisioner.should_delete(_pv("Released", ours=False))


def _attachment(**meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "csi-abc", "resourceVersion": "1", **meta},
        "spec": {"attacher": csi.DRIVER, "nodeName": "worker1", "source": {"persistentVolumeName": "pvc-1"}},
    }


def _node(ready: bool) -> dict[str, Any]:
    return {"status": {"conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}]}}


def test_an_attachment_gets_the_finalizer_then_is_attached_and_detached_when_deleted() -> None:
    fresh = _attachment()
    assert csiattacher.plan(fresh, _node(True)) == csiattacher.AttachPlan(add_finalizer=True)
    held = _attachment(finalizers=[csi.ATTACHER_FINALIZER])
    assert csiattacher.plan(held, _node(True)) == csiattacher.AttachPlan(attach=True)
    held["status"] = {"attached": True}
    assert csiattacher.plan(held, _node(True)) == csiattacher.AttachPlan()
    going = _attachment(finalizers=[csi.ATTACHER_FINALIZER], deletionTimestamp="2026-12-07T00:00:00Z")
    assert csiattacher.plan(going, _node(True)) == csiattacher.AttachPlan(detach=True, force=False)
    # a crashed machine's node is not Ready (or gone): the disk leaves its configuration by force
    assert csiattacher.plan(going, _node(False)) == csiattacher.AttachPlan(detach=True, force=True)
    assert csiattacher.plan(going, None) == csiattacher.AttachPlan(detach=True, force=True)
    foreign = _attachment()
    foreign["spec"]["attacher"] = "example.com/other"
    assert csiattacher.plan(foreign, _node(True)) == csiattacher.AttachPlan()


def test_a_bound_claim_asking_more_than_its_volume_holds_is_grown() -> None:
    claim = _claim(status={"phase": "Bound", "capacity": {"storage": "1Gi"}})
    claim["spec"]["resources"]["requests"]["storage"] = "2Gi"
    assert csiresizer.plan(claim, _pv("Bound")) == csiresizer.ResizePlan(grow_to=2 * GI)
    claim["spec"]["resources"]["requests"]["storage"] = "1Gi"
    assert csiresizer.plan(claim, _pv("Bound")) == csiresizer.ResizePlan()
    pending = _claim(status={"phase": "Pending"})
    pending["spec"]["resources"]["requests"]["storage"] = "2Gi"
    assert csiresizer.plan(pending, _pv("Bound")) == csiresizer.ResizePlan()
    assert csiresizer.plan(claim, None) == csiresizer.ResizePlan()


def test_claims_a_disk_cannot_serve_are_refused_with_the_reason() -> None:
    shared = _claim()
    shared["spec"]["accessModes"] = ["ReadWriteMany"]
    decided = csiprovisioner.plan_claim(shared, _class("Immediate"), volume_exists=False)
    assert not decided.provision and "access mode ReadWriteMany is not supported" in decided.refuse
    block = _claim()
    block["spec"]["volumeMode"] = "Block"
    assert "volumeMode Block" in csiprovisioner.plan_claim(block, _class("Immediate"), volume_exists=False).refuse
    once = _claim()
    once["spec"]["accessModes"] = ["ReadWriteOncePod"]
    assert csiprovisioner.plan_claim(once, _class("Immediate"), volume_exists=False).provision
