"""The attach/detach controller's plans (agents/controllers/attachdetach.py): which volumes pods need
where, attaching, safe and forced detaching, node.status.volumesAttached and the events on the pods.
Plain dicts stand for the objects the informers hold."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from agents.apiserver.server import ApiServer
from agents.controllers.attachdetach import AttachDetachController, Need, NodePlan, attachment, needs, plan_node
from agents.controllers.settings import ControllerManagerSettings
from agents.machinery.objects import Object
from agents.machinery.resources import NODES, PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES, PODS, VOLUME_ATTACHMENTS
from tests.support.controllerharness import running

DRIVER = "disk.csi.kubelab.dev"


def claim(name: str, volume: str = "", *, phase: str = "Bound") -> Object:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
        "spec": {"volumeName": volume},
        "status": {"phase": phase},
    }


def pv(name: str, owner: Object | None, *, modes: tuple[str, ...] = ("ReadWriteOnce",), driver: str = DRIVER) -> Object:
    spec: dict[str, Any] = {"accessModes": list(modes), "csi": {"driver": driver, "volumeHandle": f"vol-{name}"}}
    if owner is not None:
        spec["claimRef"] = {"namespace": "default", "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}
    return {"metadata": {"name": name}, "spec": spec}


def pod(name: str, *claims: str, node: str = "worker-1", **status: Any) -> Object:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
        "spec": {
            "nodeName": node,
            "volumes": [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)],
        },
        "status": {"phase": "Running", **status},
    }


def node(
    name: str = "worker-1", *, ready: bool = True, in_use: tuple[str, ...] = (), taints: tuple[str, ...] = ()
) -> Object:
    return {
        "metadata": {"name": name},
        "spec": {"taints": [{"key": t, "effect": "NoExecute"} for t in taints]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}],
            "volumesInUse": [f"kubernetes.io/csi/{DRIVER}^vol-{v}" for v in in_use],
        },
    }


def va(pv_name: str, node_name: str = "worker-1", *, attached: bool = True, **extra: Any) -> Object:
    body = attachment(pv_name, DRIVER, node_name)
    body["status"] = {"attached": attached, **extra}
    return body


def need(pv_name: str, *users: Object, multi: bool = False) -> Need:
    return Need(pv_name, DRIVER, multi, tuple(users))


def world(*objects: Object) -> dict[str, Object]:
    return {o["metadata"]["name"]: o for o in objects}


def plan(
    wanted: dict[str, Need],
    attachments: list[Object],
    *,
    at: Object | None = None,
    volumes: dict[str, Object] | None = None,
    **options: Any,
) -> NodePlan:
    default_volumes = world(pv("pv-a", None), pv("pv-b", None))
    return plan_node(
        "worker-1",
        node=at,
        wanted=wanted,
        attachments=attachments,
        volumes=volumes if volumes is not None else default_volumes,
        **options,
    )


# --- desired state --------------------------------------------------------------------------------


def test_the_name_of_an_attachment_is_kubes() -> None:
    expected = "csi-" + hashlib.sha256(f"pv-a{DRIVER}worker-1".encode()).hexdigest()
    body = attachment("pv-a", DRIVER, "worker-1")
    assert body["metadata"]["name"] == expected
    assert body["spec"] == {"attacher": DRIVER, "nodeName": "worker-1", "source": {"persistentVolumeName": "pv-a"}}


def test_scheduled_running_pods_need_their_bound_csi_volumes_on_their_node() -> None:
    data, logs = claim("data", "pv-a"), claim("logs", "pv-b")
    volumes = world(pv("pv-a", data), pv("pv-b", logs))
    pods = [pod("web", "data", "logs"), pod("db", "data", node="worker-2"), pod("twice", "data")]
    found = needs(pods, claims={"default/data": data, "default/logs": logs}, volumes=volumes, drivers={})
    assert set(found) == {"worker-1", "worker-2"}
    assert set(found["worker-1"]) == {"pv-a", "pv-b"}
    assert [p["metadata"]["name"] for p in found["worker-1"]["pv-a"].pods] == ["web", "twice"]
    assert found["worker-1"]["pv-a"].driver == DRIVER and not found["worker-1"]["pv-a"].multi_attach


def test_pods_that_do_not_need_an_attachment_are_left_out() -> None:
    data, pending = claim("data", "pv-a"), claim("pending", "", phase="Pending")
    stolen = claim("stolen", "pv-b")  # its volume is bound to another claim
    claims = {"default/data": data, "default/pending": pending, "default/stolen": stolen}
    volumes = world(pv("pv-a", data), pv("pv-b", claim("other")))
    deleting = pod("deleting", "data", containerStatuses=[{"state": {"terminated": {}}}])
    deleting["metadata"]["deletionTimestamp"] = "2026-12-07T20:00:00Z"
    pods = [
        pod("unscheduled", "data", node=""),
        pod("done", "data", phase="Succeeded"),
        deleting,
        pod("waits", "pending"),
        pod("wrong", "stolen"),
        pod("other", "missing"),
    ]
    assert needs(pods, claims=claims, volumes=volumes, drivers={}) == {}


def test_a_pod_being_deleted_whose_containers_still_run_keeps_its_volume() -> None:
    data = claim("data", "pv-a")
    running = pod("web", "data", containerStatuses=[{"state": {"running": {}}}])
    running["metadata"]["deletionTimestamp"] = "2026-12-07T20:00:00Z"
    found = needs([running], claims={"default/data": data}, volumes=world(pv("pv-a", data)), drivers={})
    assert set(found["worker-1"]) == {"pv-a"}


def test_a_csi_driver_that_does_not_attach_needs_no_attachment() -> None:
    data = claim("data", "pv-a")
    args: dict[str, Any] = {"claims": {"default/data": data}, "volumes": world(pv("pv-a", data))}
    no_attach = {DRIVER: {"metadata": {"name": DRIVER}, "spec": {"attachRequired": False}}}
    assert needs([pod("web", "data")], drivers=no_attach, **args) == {}
    attach = {DRIVER: {"metadata": {"name": DRIVER}, "spec": {"attachRequired": True}}}
    assert needs([pod("web", "data")], drivers=attach, **args) != {}


def test_shared_access_modes_allow_several_nodes() -> None:
    data = claim("data", "pv-a")
    volumes = world(pv("pv-a", data, modes=("ReadWriteMany",)))
    found = needs([pod("web", "data")], claims={"default/data": data}, volumes=volumes, drivers={})
    assert found["worker-1"]["pv-a"].multi_attach


# --- attaching ------------------------------------------------------------------------------------


def test_a_needed_volume_without_an_attachment_gets_one() -> None:
    decided = plan({"pv-a": need("pv-a", pod("web"))}, [], at=node())
    assert decided.create == [attachment("pv-a", DRIVER, "worker-1")]
    assert decided.delete == [] and decided.events == []


def test_an_attachment_that_exists_is_not_made_twice() -> None:
    decided = plan({"pv-a": need("pv-a", pod("web"))}, [va("pv-a", attached=False)], at=node())
    assert decided.create == [] and decided.delete == []


def test_success_is_told_once_on_every_pod_using_the_volume() -> None:
    users = (pod("web"), pod("sidecar"))
    decided = plan({"pv-a": need("pv-a", *users)}, [va("pv-a")], at=node())
    assert [(e.reason, e.message, e.about["metadata"]["name"]) for e in decided.events if e.about] == [
        ("SuccessfulAttachVolume", 'AttachVolume.Attach succeeded for volume "pv-a"', "web"),
        ("SuccessfulAttachVolume", 'AttachVolume.Attach succeeded for volume "pv-a"', "sidecar"),
    ]
    again = plan({"pv-a": need("pv-a", *users)}, [va("pv-a")], at=node(), announced=decided.announced)
    assert again.events == []


def test_an_attach_error_is_told_once_per_error() -> None:
    error = {"time": "2026-12-07T20:00:00Z", "message": "rpc error: instance worker-1 not found"}
    attachments = [va("pv-a", attached=False, attachError=error)]
    decided = plan({"pv-a": need("pv-a", pod("web"))}, attachments, at=node())
    assert [(e.type, e.reason, e.message) for e in decided.events] == [
        (
            "Warning",
            "FailedAttachVolume",
            'AttachVolume.Attach failed for volume "pv-a" : rpc error: instance worker-1 not found',
        )
    ]
    again = plan({"pv-a": need("pv-a", pod("web"))}, attachments, at=node(), announced=decided.announced)
    assert again.events == []
    later = [va("pv-a", attached=False, attachError={**error, "time": "2026-12-07T20:01:00Z"})]
    assert len(plan({"pv-a": need("pv-a", pod("web"))}, later, at=node(), announced=decided.announced).events) == 1


def test_a_single_node_volume_still_attached_elsewhere_waits_with_a_multi_attach_error() -> None:
    mover = pod("db-0")
    holder = pod("db-old", node="worker-2")
    attachments = [va("pv-a", "worker-2")]
    decided = plan({"pv-a": need("pv-a", mover)}, attachments, at=node(), users_elsewhere={"pv-a": [holder]})
    assert decided.create == []
    assert [(e.reason, e.message) for e in decided.events] == [
        ("FailedAttachVolume", 'Multi-Attach error for volume "pv-a" Volume is already used by pod(s) db-old')
    ]
    again = plan({"pv-a": need("pv-a", mover)}, attachments, at=node(), announced=decided.announced)
    assert again.events == [] and again.create == []
    alone = plan({"pv-a": need("pv-a", mover)}, attachments, at=node())
    assert alone.events[0].message == (
        'Multi-Attach error for volume "pv-a" Volume is already exclusively attached to one node'
        " and can't be attached to another"
    )
    released = plan({"pv-a": need("pv-a", mover)}, [], at=node(), announced=decided.announced)
    assert released.create == [attachment("pv-a", DRIVER, "worker-1")]


def test_a_shared_volume_is_attached_while_attached_elsewhere() -> None:
    decided = plan({"pv-a": need("pv-a", pod("web"), multi=True)}, [va("pv-a", "worker-2")], at=node())
    assert decided.create == [attachment("pv-a", DRIVER, "worker-1")]


def test_an_attachment_being_detached_is_not_attached_again_until_it_is_gone() -> None:
    detaching = va("pv-a")
    detaching["metadata"]["deletionTimestamp"] = "2026-12-07T20:00:00Z"
    decided = plan({"pv-a": need("pv-a", pod("web"))}, [detaching], at=node())
    assert decided.create == [] and decided.delete == [] and decided.events == []


# --- detaching ------------------------------------------------------------------------------------


def test_an_unneeded_volume_the_node_unmounted_is_detached() -> None:
    unused = va("pv-a")
    decided = plan({}, [unused, va("pv-b", "worker-2")], at=node(in_use=()))
    assert decided.delete == [unused] and decided.forced == []


def test_an_unneeded_volume_still_mounted_on_a_ready_node_waits_without_a_deadline() -> None:
    decided = plan({}, [va("pv-a")], at=node(in_use=("pv-a",)), waited={})
    assert decided.delete == [] and decided.waiting == [va("pv-a")["metadata"]["name"]]
    assert decided.requeue_after is None
    much_later = plan({}, [va("pv-a")], at=node(in_use=("pv-a",)), waited={va("pv-a")["metadata"]["name"]: 3600.0})
    assert much_later.delete == []  # a healthy node unmounts it itself


def test_a_not_ready_node_is_force_detached_after_the_max_wait() -> None:
    name = va("pv-a")["metadata"]["name"]
    crashed = node(ready=False, in_use=("pv-a",))
    early = plan({}, [va("pv-a")], at=crashed, waited={name: 100.0}, max_wait=360.0)
    assert early.delete == [] and early.waiting == [name]
    assert early.requeue_after is not None and 260.0 <= early.requeue_after <= 261.0
    due = plan({}, [va("pv-a")], at=crashed, waited={name: 360.0}, max_wait=360.0)
    assert due.delete == [va("pv-a")] and due.forced == [name]
    disabled = plan({}, [va("pv-a")], at=crashed, waited={name: 3600.0}, max_wait=360.0, force_detach=False)
    assert disabled.delete == [] and disabled.requeue_after is None


def test_a_volume_a_pod_on_a_crashed_node_still_needs_is_never_force_detached() -> None:
    name = va("pv-a")["metadata"]["name"]
    crashed = node(ready=False, in_use=("pv-a",))
    decided = plan({"pv-a": need("pv-a", pod("web"))}, [va("pv-a")], at=crashed, waited={name: 3600.0})
    assert decided.delete == []


def test_a_gone_node_or_an_out_of_service_one_is_detached_at_once() -> None:
    gone = plan({"pv-a": need("pv-a", pod("web"))}, [va("pv-a")], at=None)
    assert gone.delete == [va("pv-a")] and gone.create == [] and gone.volumes_attached is None
    fenced = node(ready=False, in_use=("pv-a",), taints=("node.kubernetes.io/out-of-service",))
    assert plan({}, [va("pv-a")], at=fenced).delete == [va("pv-a")]


def test_an_attachment_already_being_deleted_is_left_alone() -> None:
    detaching = va("pv-a")
    detaching["metadata"]["deletionTimestamp"] = "2026-12-07T20:00:00Z"
    assert plan({}, [detaching], at=node()).delete == []


# --- node status ------------------------------------------------------------------------------------


def test_volumes_attached_lists_the_attached_volumes_of_the_node() -> None:
    attachments = [va("pv-a"), va("pv-b", attached=False), va("pv-b", "worker-2")]
    decided = plan({"pv-a": need("pv-a", pod("web")), "pv-b": need("pv-b", pod("web"))}, attachments, at=node())
    assert decided.volumes_attached == [{"name": f"kubernetes.io/csi/{DRIVER}^vol-pv-a", "devicePath": ""}]
    current = node()
    current["status"]["volumesAttached"] = decided.volumes_attached
    unchanged = plan({"pv-a": need("pv-a", pod("web")), "pv-b": need("pv-b", pod("web"))}, attachments, at=current)
    assert unchanged.volumes_attached is None


def test_a_volume_about_to_be_detached_is_no_longer_reported_attached() -> None:
    current = node()
    current["status"]["volumesAttached"] = [{"name": f"kubernetes.io/csi/{DRIVER}^vol-pv-a", "devicePath": ""}]
    decided = plan({}, [va("pv-a")], at=current)
    assert decided.delete == [va("pv-a")] and decided.volumes_attached == []


def test_the_handle_falls_back_to_the_serial_the_attacher_reported() -> None:
    attached = va("pv-gone", attachmentMetadata={"serial": "vol-0123456789abcdef"})
    wanted = {"pv-gone": need("pv-gone", pod("web"))}
    decided = plan(wanted, [attached], at=node(), volumes={})
    assert decided.volumes_attached == [{"name": f"kubernetes.io/csi/{DRIVER}^vol-0123456789abcdef", "devicePath": ""}]


# --- the controller running against an in-process API server (tests/support/controllerharness.py) ---


async def test_a_pods_disk_is_attached_reported_and_detached_once_unmounted(server: ApiServer) -> None:
    async with running(server, AttachDetachController) as h:
        worker = node()
        worker["status"]["volumesInUse"] = []
        await h.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"}})
        await h.client.patch(NODES, "worker-1", {"status": worker["status"]}, subresource="status")
        data = await h.create(
            PERSISTENT_VOLUME_CLAIMS,
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            },
        )
        volume = pv("pv-a", data)
        volume.update(apiVersion="v1", kind="PersistentVolume")
        volume["spec"]["capacity"] = {"storage": "1Gi"}
        await h.create(PERSISTENT_VOLUMES, volume)
        data["spec"]["volumeName"] = "pv-a"
        data = await h.client.update(PERSISTENT_VOLUME_CLAIMS, data)
        data["status"] = {"phase": "Bound"}
        await h.client.update_status(PERSISTENT_VOLUME_CLAIMS, data)
        user = pod("web", "data")
        user["spec"]["containers"] = [{"name": "main", "image": "busybox"}]
        user["metadata"] = {"name": "web"}
        await h.create(PODS, user)

        name = attachment("pv-a", DRIVER, "worker-1")["metadata"]["name"]
        va_now = await h.eventually(lambda: h.get(VOLUME_ATTACHMENTS, name), what="a VolumeAttachment")
        assert va_now["spec"] == {
            "attacher": DRIVER,
            "nodeName": "worker-1",
            "source": {"persistentVolumeName": "pv-a"},
        }

        va_now["status"] = {"attached": True}  # what the external attacher reports
        await h.client.update_status(VOLUME_ATTACHMENTS, va_now)

        async def reported() -> bool:
            found = await h.get(NODES, "worker-1")
            return bool(found and found["status"].get("volumesAttached"))

        await h.eventually(reported, what="node.status.volumesAttached")
        found = await h.get(NODES, "worker-1")
        assert found is not None
        assert found["status"]["volumesAttached"] == [
            {"name": f"kubernetes.io/csi/{DRIVER}^vol-pv-a", "devicePath": ""}
        ]
        told = await h.eventually(lambda: h.events("web"), what="an event on the pod")
        assert ("SuccessfulAttachVolume", 'AttachVolume.Attach succeeded for volume "pv-a"') in told

        # the kubelet mounted it; the pod goes; the attachment stays until the kubelet unmounted it
        await h.client.patch(
            NODES,
            "worker-1",
            {"status": {"volumesInUse": [f"kubernetes.io/csi/{DRIVER}^vol-pv-a"]}},
            subresource="status",
        )
        await h.client.delete(PODS, "web", "default", grace_period=0)
        await asyncio.sleep(0.2)  # the controller saw the pod go (it must keep the attachment)
        assert await h.get(VOLUME_ATTACHMENTS, name) is not None
        await h.client.patch(NODES, "worker-1", {"status": {"volumesInUse": None}}, subresource="status")

        async def detached() -> bool:
            return await h.get(VOLUME_ATTACHMENTS, name) is None

        await h.eventually(detached, what="the VolumeAttachment deleted")


async def test_a_crashed_nodes_disk_no_pod_needs_is_force_detached_after_the_max_wait(server: ApiServer) -> None:
    settings = ControllerManagerSettings(max_wait_for_unmount_duration=1.0)
    async with running(server, AttachDetachController, settings=settings) as h:
        crashed = node(ready=False, in_use=("pv-a",))
        await h.create(NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"}})
        await h.client.patch(NODES, "worker-1", {"status": crashed["status"]}, subresource="status")
        volume = pv("pv-a", None)
        volume.update(apiVersion="v1", kind="PersistentVolume")
        volume["spec"]["capacity"] = {"storage": "1Gi"}
        await h.create(PERSISTENT_VOLUMES, volume)
        left_over = await h.create(VOLUME_ATTACHMENTS, attachment("pv-a", DRIVER, "worker-1"))
        left_over["status"] = {"attached": True}
        await h.client.update_status(VOLUME_ATTACHMENTS, left_over)
        name = left_over["metadata"]["name"]
        started = asyncio.get_running_loop().time()

        async def detached() -> bool:
            return await h.get(VOLUME_ATTACHMENTS, name) is None

        await h.eventually(detached, within=5.0, what="the VolumeAttachment force-deleted")
        assert asyncio.get_running_loop().time() - started >= 0.9  # not before the max wait
