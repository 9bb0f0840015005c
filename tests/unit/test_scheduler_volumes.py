"""The scheduler's volume plugins: VolumeBinding (bound claims' node affinity, WaitForFirstConsumer
claims matched to static volumes or provisioned, kube's reasons) and NodeVolumeLimits (CSI attach
limits), their PreBind writes and the wait for the claims to be bound."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestServer

from agents.apiserver.server import ApiServer
from agents.machinery.client import Client, ClientConfig
from agents.machinery.events import EventRecorder
from agents.machinery.objects import Object, deep_copy
from agents.machinery.resources import NODES, PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES, PODS, STORAGE_CLASSES
from agents.scheduler.framework import (
    HOSTNAME,
    ZONE,
    NodeInfo,
    PodInfo,
    failure_message,
    filter_node,
    prefilter_message,
)
from agents.scheduler.scheduler import Scheduler
from agents.scheduler.volumebinder import VolumeBinder, VolumeBindingError
from agents.scheduler.volumebinding import (
    BIND_COMPLETED,
    BIND_CONFLICT,
    BOUND_BY_CONTROLLER,
    MAX_VOLUME_COUNT,
    NODE_CONFLICT,
    PV_NOT_EXIST,
    SELECTED_NODE,
    UNBOUND_IMMEDIATE,
    PodVolumes,
    Storage,
    assumed,
    prefilter,
    progress,
)

DRIVER = "disk.csi.kubelab.dev"
T = TypeVar("T")

# --- builders: plain dicts shaped like the API's objects ----------------------------------------


def node(name: str, zone: str) -> NodeInfo:
    return NodeInfo.of(
        {
            "metadata": {"name": name, "labels": {HOSTNAME: name, ZONE: zone}},
            "spec": {},
            "status": {
                "allocatable": {"cpu": "2", "memory": "4Gi"},
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
    )


def pod(name: str, *claims: str) -> PodInfo:
    volumes = [{"name": f"v{i}", "persistentVolumeClaim": {"claimName": c}} for i, c in enumerate(claims)]
    return PodInfo.of(
        {
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"containers": [{"name": "main", "image": "busybox"}], "volumes": volumes},
        }
    )


def storage_class(name: str, *, mode: str = "WaitForFirstConsumer", provisioner: str = DRIVER, **extra: Any) -> Object:
    return {"metadata": {"name": name}, "provisioner": provisioner, "volumeBindingMode": mode, **extra}


def claim(
    name: str,
    *,
    size: str = "1Gi",
    klass: str | None = "standard",
    volume: str = "",
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    annotations: dict[str, str] | None = None,
    selector: dict[str, Any] | None = None,
    rv: str = "10",
) -> Object:
    spec: dict[str, Any] = {"accessModes": list(modes), "resources": {"requests": {"storage": size}}}
    if klass is not None:
        spec["storageClassName"] = klass
    if volume:
        spec["volumeName"] = volume
    if selector:
        spec["selector"] = selector
    meta: dict[str, Any] = {"name": name, "namespace": "default", "uid": f"uid-{name}", "resourceVersion": rv}
    notes = dict(annotations or {})
    if volume:
        notes[BIND_COMPLETED] = "yes"
    if notes:
        meta["annotations"] = notes
    return {"metadata": meta, "spec": spec, "status": {"phase": "Bound" if volume else "Pending"}}


def volume(
    name: str,
    *,
    size: str = "1Gi",
    zone: str | None = "z1",
    klass: str = "standard",
    phase: str = "Available",
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    handle: str = "",
    claim_ref: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    rv: str = "5",
) -> Object:
    spec: dict[str, Any] = {
        "capacity": {"storage": size},
        "accessModes": list(modes),
        "storageClassName": klass,
        "csi": {"driver": DRIVER, "volumeHandle": handle or f"vol-{name}"},
    }
    if zone is not None:
        term = {"matchExpressions": [{"key": ZONE, "operator": "In", "values": [zone]}]}
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [term]}}
    if claim_ref:
        spec["claimRef"] = claim_ref
    meta: dict[str, Any] = {"name": name, "resourceVersion": rv, "labels": labels or {}}
    return {"metadata": meta, "spec": spec, "status": {"phase": phase}}


def csi_node(name: str, count: int) -> Object:
    return {
        "metadata": {"name": name},
        "spec": {"drivers": [{"name": DRIVER, "nodeID": name, "allocatable": {"count": count}}]},
    }


def storage(
    claims: Sequence[Object],
    volumes: Sequence[Object] = (),
    classes: Sequence[Object] | None = None,
    csi: Sequence[Object] = (),
) -> Storage:
    if classes is None:
        classes = [storage_class("standard")]
    return Storage(
        claims={f"default/{c['metadata']['name']}": c for c in claims},
        volumes={v["metadata"]["name"]: v for v in volumes},
        classes={c["metadata"]["name"]: c for c in classes},
        csi_nodes={c["metadata"]["name"]: c for c in csi},
    )


def volumes_of(info: PodInfo, state: Storage) -> PodVolumes:
    decided = prefilter(info, state)
    assert isinstance(decided, PodVolumes), decided
    return decided


Z1, Z2 = node("w1", "z1"), node("w2", "z2")


# --- PreFilter: reasons no node can help with ----------------------------------------------------


def test_a_missing_claim_turns_the_pod_away_before_any_node_is_looked_at() -> None:
    why = prefilter(pod("p", "data"), storage([]))
    assert why == 'persistentvolumeclaim "data" not found'
    assert prefilter_message(2, str(why)) == '0/2 nodes are available: persistentvolumeclaim "data" not found.'


def test_a_claim_being_deleted_or_lost_turns_the_pod_away() -> None:
    going = claim("data")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert prefilter(pod("p", "data"), storage([going])) == 'persistentvolumeclaim "data" is being deleted'
    lost = claim("data", volume="pv-gone")
    lost["status"]["phase"] = "Lost"
    assert (
        prefilter(pod("p", "data"), storage([lost]))
        == 'persistentvolumeclaim "data" bound to non-existent persistentvolume "pv-gone"'
    )


@pytest.mark.parametrize(
    ("klass", "classes"),
    [
        ("fast", [storage_class("fast", mode="Immediate")]),
        (None, [storage_class("standard")]),  # no class at all: bound by the volume controller first
        ("missing", [storage_class("standard")]),
    ],
)
def test_an_unbound_claim_of_immediate_binding_waits_for_the_volume_controller(
    klass: str | None, classes: list[Object]
) -> None:
    assert prefilter(pod("p", "data"), storage([claim("data", klass=klass)], classes=classes)) == UNBOUND_IMMEDIATE


def test_a_pod_without_claims_has_nothing_to_check() -> None:
    decided = volumes_of(pod("p"), storage([]))
    assert decided.all_bound and decided.filter(Z1) == []


# --- Filter: bound claims --------------------------------------------------------------------------


def test_a_bound_claim_keeps_the_pod_where_its_volume_is_reachable() -> None:
    state = storage([claim("data", volume="pv-1")], [volume("pv-1", zone="z1", phase="Bound")])
    decided = volumes_of(pod("p", "data"), state)
    assert decided.filter(Z1) == []
    assert decided.filter(Z2) == [NODE_CONFLICT]


def test_a_claim_bound_to_a_volume_that_does_not_exist_fits_nowhere() -> None:
    decided = volumes_of(pod("p", "data"), storage([claim("data", volume="pv-gone")]))
    assert decided.filter(Z1) == [PV_NOT_EXIST]


def test_the_volume_reasons_read_as_kube_s_in_the_whole_message() -> None:
    state = storage([claim("data", volume="pv-1")], [volume("pv-1", zone="z1", phase="Bound")])
    info = pod("p", "data")
    decided = volumes_of(info, state)
    reasons: Counter[str] = Counter()
    for n in (Z2, node("w3", "z3")):
        reasons.update(filter_node(info, n, None, decided))
    assert failure_message(3, reasons) == "0/3 nodes are available: 2 node(s) had volume node affinity conflict."


# --- Filter: WaitForFirstConsumer -------------------------------------------------------------------


def test_an_available_static_volume_of_the_class_binds_on_the_node_that_reaches_it() -> None:
    static = volume("pv-z2", zone="z2")
    state = storage(
        [claim("data")], [static], classes=[storage_class("standard", provisioner="kubernetes.io/no-provisioner")]
    )
    decided = volumes_of(pod("p", "data"), state)
    assert decided.filter(Z1) == [BIND_CONFLICT]
    found = decided.find(Z2)
    assert found.reasons == () and [(c["metadata"]["name"], v["metadata"]["name"]) for c, v in found.bindings] == [
        ("data", "pv-z2")
    ]
    assert found.provisions == ()


def test_the_smallest_static_volume_that_fits_size_modes_selector_and_phase_is_chosen() -> None:
    want = claim("data", size="2Gi", modes=("ReadWriteOnce",), selector={"matchLabels": {"tier": "gold"}})
    candidates = [
        volume("too-small", size="1Gi", labels={"tier": "gold"}),
        volume("wrong-mode", size="2Gi", modes=("ReadOnlyMany",), labels={"tier": "gold"}),
        volume("unlabelled", size="2Gi"),
        volume("released", size="2Gi", phase="Released", labels={"tier": "gold"}),
        volume("other-class", size="2Gi", klass="slow", labels={"tier": "gold"}),
        volume("taken", size="2Gi", labels={"tier": "gold"}, claim_ref={"namespace": "default", "name": "else"}),
        volume("big", size="10Gi", labels={"tier": "gold"}),
        volume("right", size="3Gi", labels={"tier": "gold"}),
    ]
    decided = volumes_of(pod("p", "data"), storage([want], candidates))
    [(_, chosen)] = decided.find(Z1).bindings
    assert chosen["metadata"]["name"] == "right"


def test_two_claims_of_one_pod_never_take_the_same_volume() -> None:
    state = storage(
        [claim("a", size="1Gi"), claim("b", size="1Gi")],
        [volume("pv-1")],
        classes=[storage_class("standard", provisioner="kubernetes.io/no-provisioner")],
    )
    assert volumes_of(pod("p", "a", "b"), state).filter(Z1) == [BIND_CONFLICT]
    state = storage([claim("a"), claim("b")], [volume("pv-1")])  # the class provisions what is missing
    found = volumes_of(pod("p", "a", "b"), state).find(Z1)
    assert len(found.bindings) == 1 and len(found.provisions) == 1


def test_a_claim_without_a_static_volume_is_provisioned_where_the_class_allows() -> None:
    zoned = storage_class("standard", allowedTopologies=[{"matchLabelExpressions": [{"key": ZONE, "values": ["z2"]}]}])
    decided = volumes_of(pod("p", "data"), storage([claim("data")], classes=[zoned]))
    assert decided.filter(Z1) == [BIND_CONFLICT]
    found = decided.find(Z2)
    assert found.reasons == () and [c["metadata"]["name"] for c in found.provisions] == ["data"]


def test_a_class_without_a_provisioner_and_no_static_volume_fits_nowhere() -> None:
    static_only = storage_class("standard", provisioner="kubernetes.io/no-provisioner")
    decided = volumes_of(pod("p", "data"), storage([claim("data")], classes=[static_only]))
    assert decided.filter(Z1) == decided.filter(Z2) == [BIND_CONFLICT]


def test_a_claim_already_being_provisioned_for_a_node_keeps_the_pod_there() -> None:
    selected = claim("data", annotations={SELECTED_NODE: "w2"})
    decided = volumes_of(pod("p", "data"), storage([selected]))
    assert decided.filter(Z1) == [BIND_CONFLICT]
    assert decided.filter(Z2) == []


# --- NodeVolumeLimits ------------------------------------------------------------------------------


def on_node(n: NodeInfo, *pods: PodInfo) -> NodeInfo:
    for p in pods:
        n.add(p)
    return n


def test_a_node_at_its_attach_limit_takes_no_further_volume() -> None:
    state = storage(
        [claim("old", volume="pv-old"), claim("new", volume="pv-new")],
        [volume("pv-old", phase="Bound"), volume("pv-new", phase="Bound")],
        csi=[csi_node("w1", 1)],
    )
    full = on_node(node("w1", "z1"), pod("running", "old"))
    assert volumes_of(pod("p", "new"), state).filter(full) == [MAX_VOLUME_COUNT]
    # the volume the running pod has already counts once: sharing it adds nothing
    assert volumes_of(pod("p", "old"), state).filter(full) == []
    # a node whose CSINode says nothing of a limit takes any number
    assert volumes_of(pod("p", "new"), state).filter(on_node(node("w9", "z1"), pod("running", "old"))) == []


def test_unbound_claims_count_against_the_limit_of_their_class_s_provisioner() -> None:
    state = storage([claim("one"), claim("two"), claim("three")], csi=[csi_node("w1", 2)])
    crowded = on_node(node("w1", "z1"), pod("a", "one"), pod("b", "two"))
    assert volumes_of(pod("p", "three"), state).filter(crowded) == [MAX_VOLUME_COUNT]
    assert volumes_of(pod("p", "three"), state).filter(on_node(node("w1", "z1"), pod("a", "one"))) == []


def test_limits_are_checked_before_binding() -> None:
    state = storage(
        [claim("data", volume="pv-1"), claim("old", volume="pv-old")],
        [volume("pv-1", zone="z2"), volume("pv-old")],
        csi=[csi_node("w1", 1)],
    )
    full = on_node(node("w1", "z1"), pod("running", "old"))
    assert filter_node(pod("p", "data"), full, None, volumes_of(pod("p", "data"), state)) == [MAX_VOLUME_COUNT]


# --- PreBind ---------------------------------------------------------------------------------------


def test_binding_writes_the_claim_ref_of_a_static_volume_and_selects_the_node_of_a_provisioned_claim() -> None:
    state = storage([claim("a"), claim("b", size="5Gi")], [volume("pv-1")])
    found = volumes_of(pod("p", "a", "b"), state).find(Z1)
    decided = assumed(found, "w1")
    [pv] = decided.volumes
    assert pv["spec"]["claimRef"] == {
        "kind": "PersistentVolumeClaim",
        "namespace": "default",
        "name": "a",
        "uid": "uid-a",
        "apiVersion": "v1",
        "resourceVersion": "10",
    }
    assert pv["metadata"]["annotations"][BOUND_BY_CONTROLLER] == "yes"
    [provisioned] = decided.claims
    assert provisioned["metadata"]["name"] == "b" and provisioned["metadata"]["annotations"][SELECTED_NODE] == "w1"
    assert "claimRef" not in state.volumes["pv-1"]["spec"], "the cached object is never changed"


def test_a_volume_pre_bound_to_the_claim_is_chosen_without_the_bound_by_controller_mark() -> None:
    ref = {"namespace": "default", "name": "data"}
    state = storage([claim("data")], [volume("pv-big", size="9Gi"), volume("pv-mine", size="9Gi", claim_ref=ref)])
    [(_, chosen)] = volumes_of(pod("p", "data"), state).find(Z1).bindings
    assert chosen["metadata"]["name"] == "pv-mine"
    [pv] = assumed(volumes_of(pod("p", "data"), state).find(Z1), "w1").volumes
    assert pv["spec"]["claimRef"]["uid"] == "uid-data"
    assert BOUND_BY_CONTROLLER not in (pv["metadata"].get("annotations") or {})


def bound(c: Object, pv: str, rv: str = "20") -> Object:
    out = deep_copy(c)
    out["spec"]["volumeName"] = pv
    out["metadata"]["resourceVersion"] = rv
    out["metadata"].setdefault("annotations", {})[BIND_COMPLETED] = "yes"
    return out


def test_progress_waits_for_the_claims_to_be_bound_and_fails_when_provisioning_gave_up() -> None:
    data = claim("data")
    decided = assumed(volumes_of(pod("p", "data"), storage([data])).find(Z1), "w1")
    [written] = decided.claims
    written["metadata"]["resourceVersion"] = "11"
    assert progress(decided, Z1, storage([data])) == progress(decided, Z1, storage([data]))  # pure
    assert not progress(decided, Z1, storage([data])).done, "the cache has not seen the write yet"
    assert progress(decided, Z1, storage([written])).done is False  # selected, not yet bound
    provisioned = volume("pvc-uid-data", zone="z1", phase="Bound")
    assert progress(decided, Z1, storage([bound(written, "pvc-uid-data")], [provisioned])).done
    given_up = deep_copy(written)
    given_up["metadata"]["resourceVersion"] = "12"
    del given_up["metadata"]["annotations"][SELECTED_NODE]
    assert progress(decided, Z1, storage([given_up])).error == 'provisioning failed for PVC "data"'
    elsewhere = volume("pvc-uid-data", zone="z2")
    assert "node affinity" in progress(decided, Z1, storage([bound(written, "pvc-uid-data")], [elsewhere])).error


def test_progress_of_a_static_binding_fails_when_the_claim_ref_is_reset() -> None:
    data = claim("data")
    decided = assumed(volumes_of(pod("p", "data"), storage([data], [volume("pv-1")])).find(Z1), "w1")
    [pv] = decided.volumes
    pv["metadata"]["resourceVersion"] = "6"
    assert not progress(decided, Z1, storage([data], [pv])).done
    assert progress(decided, Z1, storage([bound(data, "pv-1")], [pv])).done
    reset = deep_copy(pv)
    reset["metadata"]["resourceVersion"] = "7"
    del reset["spec"]["claimRef"]
    assert progress(decided, Z1, storage([data], [reset])).error == 'ClaimRef got reset for pv "pv-1"'


# --- the executor: writes, then waits ---------------------------------------------------------------


class FakeClient:
    """Answers updates as the API server would (a new resourceVersion), and remembers them."""

    def __init__(self) -> None:
        self.updates: list[Object] = []
        self.revision = 100
        self.updated = asyncio.Event()

    async def update(self, _resource: Any, obj: Object, *, subresource: str = "") -> Object:
        self.revision += 1
        out = deep_copy(obj)
        out["metadata"]["resourceVersion"] = str(self.revision)
        self.updates.append(out)
        self.updated.set()
        return out


async def test_the_binder_writes_the_selected_node_and_returns_once_the_claim_is_bound() -> None:
    client = FakeClient()
    binder = VolumeBinder(client, bind_timeout=5)  # type: ignore[arg-type]
    binder.classes._put(storage_class("standard"))
    binder.claims._put(claim("data"))
    info = pod("p", "data")
    decided = binder.prefilter(info)
    assert isinstance(decided, PodVolumes)
    assumption = binder.assume(decided, Z1)
    assert assumption is not None
    # the next decision already sees the claim as selected for w1
    again = binder.prefilter(pod("q", "data"))
    assert isinstance(again, PodVolumes) and again.filter(Z2) == [BIND_CONFLICT]
    waiting = asyncio.create_task(binder.bind(assumption, node=lambda: Z1, pod_exists=lambda: True))
    await asyncio.wait_for(client.updated.wait(), 2)
    [written] = client.updates
    assert written["metadata"]["annotations"][SELECTED_NODE] == "w1"
    binder.claims._put(written)  # the watch brings the write back: still unbound
    await asyncio.sleep(0)
    assert not waiting.done()
    binder.volumes._put(volume("pvc-uid-data", phase="Bound"))
    binder.claims._put(bound(written, "pvc-uid-data", rv="200"))
    await asyncio.wait_for(waiting, 2)
    binder.forget(assumption)
    assert binder.storage().claims["default/data"] is binder.claims.store["default/data"], "the assumption is gone"


async def test_the_binder_gives_up_after_its_timeout_and_when_the_pod_is_gone() -> None:
    client = FakeClient()
    binder = VolumeBinder(client, bind_timeout=0.05)  # type: ignore[arg-type]
    binder.classes._put(storage_class("standard"))
    binder.claims._put(claim("data"))
    decided = binder.prefilter(pod("p", "data"))
    assert isinstance(decided, PodVolumes)
    assumption = binder.assume(decided, Z1)
    assert assumption is not None
    with pytest.raises(VolumeBindingError, match="timed out waiting for the condition"):
        await binder.bind(assumption, node=lambda: Z1, pod_exists=lambda: True)
    with pytest.raises(VolumeBindingError, match="pod does not exist any more"):
        await binder.bind(assumption, node=lambda: Z1, pod_exists=lambda: False)


# --- the scheduler against an API server on the in-memory store -------------------------------------


@pytest.fixture
async def running(server: ApiServer) -> AsyncIterator[Scheduler]:
    front = TestServer(server.application())
    await front.start_server()
    client = Client(ClientConfig(server=str(front.make_url("")).rstrip("/"), token=""), user_agent="scheduler-test")
    scheduler = Scheduler(client, EventRecorder(client, component="default-scheduler"), bind_timeout=10)
    node_body: Object = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "w1", "labels": {HOSTNAME: "w1", ZONE: "z1"}},
    }
    made = await client.create(NODES, node_body)
    made["status"] = {
        "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    await client.update_status(NODES, made)
    await client.create(
        STORAGE_CLASSES, {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", **storage_class("standard")}
    )
    ready = asyncio.Event()
    task = asyncio.create_task(scheduler.run(ready))
    await asyncio.wait_for(ready.wait(), 5)
    yield scheduler
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await client.close()
    await front.close()


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    answer: T | None = None
    try:
        async with asyncio.timeout(5):
            while not (answer := await probe()):  # noqa: ASYNC110 - what the scheduler wrote is read back
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"{what} not reached; last answer {answer!r}") from None
    return answer


def pod_body(name: str, claim_name: str) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "main", "image": "busybox:1.36"}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
        },
    }


def claim_body(name: str) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "standard",
        },
    }


async def test_a_pod_whose_claim_does_not_exist_is_reported_and_tried_again_when_it_appears(running: Scheduler) -> None:
    client = running.client
    await client.create(PODS, pod_body("orphan", "nothing"), "default")

    async def reported() -> str:
        obj = await client.get(PODS, "orphan", "default")
        conditions = (obj.get("status") or {}).get("conditions") or []
        return next((c["message"] for c in conditions if c["type"] == "PodScheduled"), "")

    message = await eventually(reported, "PodScheduled=False")
    assert message == '0/1 nodes are available: persistentvolumeclaim "nothing" not found.'
    # the claim appearing is a change that could help: the pod is tried again at once
    await client.create(PERSISTENT_VOLUME_CLAIMS, claim_body("nothing"), "default")

    async def selected() -> bool:
        obj = await client.get(PERSISTENT_VOLUME_CLAIMS, "nothing", "default")
        return (obj["metadata"].get("annotations") or {}).get(SELECTED_NODE) == "w1"

    await eventually(selected, "the selected-node annotation")


async def test_a_wait_for_first_consumer_claim_is_given_the_node_and_the_pod_is_bound_once_it_is_bound(
    running: Scheduler,
) -> None:
    client = running.client
    await client.create(PERSISTENT_VOLUME_CLAIMS, claim_body("data"), "default")
    await client.create(PODS, pod_body("user", "data"), "default")

    async def selected() -> Object | None:
        obj = await client.get(PERSISTENT_VOLUME_CLAIMS, "data", "default")
        return obj if (obj["metadata"].get("annotations") or {}).get(SELECTED_NODE) == "w1" else None

    pvc = await eventually(selected, "the selected-node annotation")
    assert not (await client.get(PODS, "user", "default"))["spec"].get("nodeName"), "bound before its claim"
    # the provisioner and the volume controller, played here: a volume in the node's zone, bound
    name = f"pvc-{pvc['metadata']['uid']}"
    pv = volume(name, zone="z1")
    pv.update(apiVersion="v1", kind="PersistentVolume")
    pv["metadata"] = {"name": name}
    pv["spec"]["claimRef"] = {
        "kind": "PersistentVolumeClaim",
        "namespace": "default",
        "name": "data",
        "uid": pvc["metadata"]["uid"],
    }
    await client.create(PERSISTENT_VOLUMES, pv)
    pvc["spec"]["volumeName"] = name
    pvc["metadata"]["annotations"][BIND_COMPLETED] = "yes"
    await client.update(PERSISTENT_VOLUME_CLAIMS, pvc)

    async def bound_pod() -> str:
        return str((await client.get(PODS, "user", "default"))["spec"].get("nodeName") or "")

    assert await eventually(bound_pod, "the pod bound") == "w1"
