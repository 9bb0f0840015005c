"""Persistent volumes on the kubelet's side: kube's names and paths, a claim resolved to its disk (or
kube's words for why not), the stage/publish/unpublish/unstage plans, ``volumesInUse``, the CSINode,
claim expansion, and the volume manager that ties them to the API.

The volume manager is driven with two fakes, declared openly: an API client holding objects in a
dictionary (answering 404 for what it lacks, recording patches), and a node whose "mounts" are a set
of paths changed by the actions applied (the real executor is tests/integration/test_kubelet_disks.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import pytest

from agents.kubelet import csi
from agents.kubelet.containers import ContainerId
from agents.kubelet.disks import DiskError, Disks, find_device, mount_points
from agents.kubelet.nodestatus import NodeStatus
from agents.kubelet.podcache import PodCache
from agents.kubelet.podworkers import PodWorkers
from agents.kubelet.settings import KubeletSettings
from agents.kubelet.volumemanager import VolumeManager
from agents.kubelet.volumes import VolumeError, mounts, plan_volumes
from agents.machinery.client import ApiError, Client
from agents.machinery.resources import ResourceRef
from tests.unit.test_kubelet_podworkers import OLD, FakeContainerd, _workers, running
from tests.unit.test_kubelet_podworkers import FakeClient as PodsApi

ROOT = Path("/var/lib/kubelab/kubelet")
BY_ID = Path("/dev/disk/by-id")
HANDLE = "vol-0123456789abcdef"
NODE = "worker-1"
UID = "0f6a7c2e-1111-2222-3333-444455556666"


def claim_volume(name: str = "data", claim: str = "data-web-0", *, read_only: bool = False) -> dict[str, Any]:
    source: dict[str, Any] = {"claimName": claim}
    if read_only:
        source["readOnly"] = True
    return {"name": name, "persistentVolumeClaim": source}


def a_pod(*volumes: dict[str, Any], uid: str = UID) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-0", "namespace": "app", "uid": uid},
        "spec": {"nodeName": NODE, "volumes": list(volumes), "containers": []},
    }


def a_claim(name: str = "data-web-0", *, pv: str = "pvc-1", phase: str = "Bound", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "app", "uid": "claim-uid"},
        "spec": {"volumeName": pv} if pv else {},
        "status": {"phase": phase, **status},
    }


def a_pv(name: str = "pvc-1", *, handle: str = HANDLE, size: str = "2Gi", driver: str = csi.DRIVER) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "csi": {"driver": driver, "volumeHandle": handle, "fsType": "ext4"},
            "claimRef": {"namespace": "app", "name": "data-web-0", "uid": "claim-uid"},
        },
    }


def an_attachment(pv: str = "pvc-1", *, node: str = NODE, attached: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": csi.attachment_name(pv, node)},
        "spec": {"attacher": csi.DRIVER, "nodeName": node, "source": {"persistentVolumeName": pv}},
        "status": {"attached": attached},
    }


# --- names and paths -----------------------------------------------------------------------------------


def test_names_and_paths_are_kubes() -> None:
    assert csi.unique_volume_name(HANDLE) == f"kubernetes.io/csi/disk.csi.kubelab.dev^{HANDLE}"
    digest = hashlib.sha256(f"pvc-1{csi.DRIVER}{NODE}".encode()).hexdigest()
    assert csi.attachment_name("pvc-1", NODE) == f"csi-{digest}"
    assert csi.global_path(ROOT, HANDLE) == (
        ROOT
        / "plugins/kubernetes.io/csi/disk.csi.kubelab.dev"
        / hashlib.sha256(HANDLE.encode()).hexdigest()
        / "globalmount"
    )
    target = csi.publish_path(ROOT / "pods" / UID, "pvc-1")
    assert target == ROOT / "pods" / UID / "volumes/kubernetes.io~csi/pvc-1/mount"
    assert csi.pod_of_publish_path(ROOT, target) == (UID, "pvc-1")
    assert csi.pod_of_publish_path(ROOT, ROOT / "pods" / UID / "volumes/empty-dir/x") is None
    assert csi.is_global_path(ROOT, csi.global_path(ROOT, HANDLE))
    assert not csi.is_global_path(ROOT, target)
    assert csi.device_path(BY_ID, HANDLE) == BY_ID / f"virtio-{HANDLE}"


# --- claims resolved -------------------------------------------------------------------------------------


def test_a_bound_claim_resolves_to_its_disk_read_only_when_the_pod_says_so() -> None:
    disk = csi.resolve(claim_volume(read_only=True), namespace="app", claim=a_claim(), pv=a_pv())
    assert disk == csi.DiskVolume("data", "app/data-web-0", "pvc-1", HANDLE, "ext4", read_only=True)
    assert disk.unique_name == csi.unique_volume_name(HANDLE)


@pytest.mark.parametrize(
    ("claim", "pv", "words"),
    [
        (None, None, 'failed to fetch PVC from API server: persistentvolumeclaims "data-web-0" not found'),
        (a_claim(pv="", phase="Pending"), None, "error processing PVC app/data-web-0: PVC is not bound"),
        (a_claim(), None, 'persistentvolumes "pvc-1" not found'),
        (a_claim(), a_pv(driver="other.csi.example"), "is not a volume of driver disk.csi.kubelab.dev"),
    ],
)
def test_a_claim_that_cannot_be_used_says_why_in_kubes_words(
    claim: dict[str, Any] | None, pv: dict[str, Any] | None, words: str
) -> None:
    with pytest.raises(csi.ClaimProblem, match=words.replace("(", r"\(").replace(")", r"\)")):
        csi.resolve(claim_volume(), namespace="app", claim=claim, pv=pv)


def test_the_failed_mount_message_is_kubes() -> None:
    assert csi.mount_failure(["data", "logs"], unattached=["data"]) == (
        "Unable to attach or mount volumes: unmounted volumes=[data logs], unattached volumes=[data],"
        " failed to process volumes=[]: timed out waiting for the condition"
    )
    assert csi.mount_failure(["data"], failed=["data"], why="error processing PVC app/x: PVC is not bound").endswith(
        "failed to process volumes=[data]: error processing PVC app/x: PVC is not bound"
    )


def test_an_attachment_counts_only_for_its_pv_and_node_once_attached() -> None:
    assert csi.is_attached(an_attachment(), pv_name="pvc-1", node_name=NODE)
    assert not csi.is_attached(an_attachment(attached=False), pv_name="pvc-1", node_name=NODE)
    assert not csi.is_attached(an_attachment(node="worker-2"), pv_name="pvc-1", node_name=NODE)
    assert not csi.is_attached(None, pv_name="pvc-1", node_name=NODE)


# --- plans -------------------------------------------------------------------------------------------------

DISK = csi.DiskVolume("data", "app/data-web-0", "pvc-1", HANDLE)
STAGED = csi.Staged(HANDLE, csi.global_path(ROOT, HANDLE))


def published(uid: str = UID, pv: str = "pvc-1", handle: str = HANDLE) -> csi.Published:
    return csi.Published(uid, pv, handle, csi.publish_path(ROOT / "pods" / uid, pv))


def test_a_pods_disk_is_staged_then_published_and_nothing_is_redone() -> None:
    pod_dir = ROOT / "pods" / UID
    plan = csi.plan_pod(UID, [DISK], csi.NodeMounts(), root=ROOT, pod_dir=pod_dir, by_id_dir=BY_ID)
    assert plan == [
        csi.Stage(HANDLE, BY_ID / f"virtio-{HANDLE}", STAGED.path, "ext4"),
        csi.Publish(HANDLE, "pvc-1", STAGED.path, csi.publish_path(pod_dir, "pvc-1"), False),
    ]
    staged_only = csi.NodeMounts(staged=(STAGED,))
    assert csi.plan_pod(UID, [DISK], staged_only, root=ROOT, pod_dir=pod_dir, by_id_dir=BY_ID) == plan[1:]
    everything = csi.NodeMounts(staged=(STAGED,), published=(published(),))
    assert csi.plan_pod(UID, [DISK], everything, root=ROOT, pod_dir=pod_dir, by_id_dir=BY_ID) == []


def test_a_second_pod_on_the_node_only_publishes_the_staged_disk() -> None:
    other = "aaaaaaaa-0000-0000-0000-000000000000"
    mounts_now = csi.NodeMounts(staged=(STAGED,), published=(published(),))
    plan = csi.plan_pod(other, [DISK], mounts_now, root=ROOT, pod_dir=ROOT / "pods" / other, by_id_dir=BY_ID)
    assert [type(a) for a in plan] == [csi.Publish]


def test_cleanup_unpublishes_gone_pods_and_unstages_what_nothing_uses() -> None:
    mounts_now = csi.NodeMounts(staged=(STAGED,), published=(published(),))
    assert csi.plan_cleanup(mounts_now, wanted={UID: (DISK,)}, live_pods={UID}) == []
    assert csi.plan_cleanup(mounts_now, wanted={}, live_pods={UID}) == []  # a running pod the kubelet adopted
    assert csi.plan_cleanup(mounts_now, wanted={}, live_pods=set()) == [
        csi.Unpublish(published().path),
        csi.Unstage(HANDLE, STAGED.path),
    ]
    only_staged = csi.NodeMounts(staged=(STAGED,))
    assert csi.plan_cleanup(only_staged, wanted={UID: (DISK,)}, live_pods=None) == []  # wanted: about to publish
    assert csi.plan_cleanup(only_staged, wanted={}, live_pods=None) == [csi.Unstage(HANDLE, STAGED.path)]


def test_a_staged_disk_of_unknown_handle_is_left_alone() -> None:
    unknown = csi.NodeMounts(staged=(csi.Staged("", STAGED.path),))
    assert csi.plan_cleanup(unknown, wanted={}, live_pods=set()) == []


def test_volumes_in_use_are_the_wanted_and_the_staged_in_kubes_form() -> None:
    other = csi.Staged("vol-fedcba9876543210", csi.global_path(ROOT, "vol-fedcba9876543210"))
    assert csi.volumes_in_use(csi.NodeMounts(staged=(other,)), {UID: (DISK,)}) == [
        "kubernetes.io/csi/disk.csi.kubelab.dev^vol-0123456789abcdef",
        "kubernetes.io/csi/disk.csi.kubelab.dev^vol-fedcba9876543210",
    ]
    assert csi.volumes_in_use(csi.NodeMounts(), {}) == []


# --- CSINode and expansion -----------------------------------------------------------------------------------


def test_the_csinode_names_the_driver_topology_key_and_attach_limit_and_is_owned_by_the_node() -> None:
    assert csi.csinode_object(NODE, node_uid="node-uid", attach_limit=16) == {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSINode",
        "metadata": {
            "name": NODE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": "node-uid"}],
        },
        "spec": {
            "drivers": [
                {
                    "name": "disk.csi.kubelab.dev",
                    "nodeID": NODE,
                    "topologyKeys": ["topology.kubernetes.io/zone"],
                    "allocatable": {"count": 16},
                }
            ]
        },
    }


def test_a_grown_file_system_gives_the_claim_the_pvs_capacity_and_drops_the_condition() -> None:
    pending = {"type": "FileSystemResizePending", "status": "True"}
    other = {"type": "ModifyingVolume", "status": "True"}
    claim = a_claim(
        capacity={"storage": "1Gi"},
        conditions=[pending, other],
        allocatedResourceStatuses={"storage": "NodeResizePending"},
    )
    assert csi.resize_pending(claim)
    assert not csi.resize_pending(a_claim())
    assert csi.resized_claim_status(claim, a_pv(size="2Gi")) == {
        "status": {
            "capacity": {"storage": "2Gi"},
            "conditions": [other],
            "allocatedResourceStatuses": {"storage": None},
        }
    }


# --- the pod's volume directories ----------------------------------------------------------------------------


async def no_objects(namespace: str, name: str) -> dict[str, Any] | None:
    return None


async def test_a_claim_volume_is_where_the_volume_manager_published_it_read_only_when_asked(tmp_path: Path) -> None:
    target = tmp_path / "mount"
    target.mkdir()
    pod = a_pod(claim_volume(read_only=True))
    planned = await plan_volumes(pod, tmp_path, configmaps=no_objects, secrets=no_objects, published={"data": target})
    assert [(v.path, v.create, v.read_only) for v in planned] == [(target, False, True)]
    container = {"volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    assert [(m.source, m.destination, m.read_only) for m in mounts(container, planned)] == [
        (str(target), "/data", True)
    ]
    with pytest.raises(VolumeError, match="not mounted yet"):
        await plan_volumes(pod, tmp_path, configmaps=no_objects, secrets=no_objects)


# --- the volume manager ---------------------------------------------------------------------------------------


class FakeApi:
    """Objects by (plural, namespace, name); what it lacks is a 404; patches are recorded."""

    def __init__(self, *objects: tuple[str, dict[str, Any]]) -> None:
        self.objects = {(plural, o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for plural, o in objects}
        self.patches: list[tuple[str, str, Mapping[str, Any], str]] = []
        self.forbidden: set[str] = set()  # plurals the Node authorizer refuses

    async def get(self, resource: ResourceRef, name: str, namespace: str = "") -> dict[str, Any]:
        if resource.plural in self.forbidden:
            raise ApiError({"code": 403, "reason": "Forbidden", "message": "no relationship found"}, 403)
        found = self.objects.get((resource.plural, namespace, name))
        if found is None:
            raise ApiError({"code": 404, "reason": "NotFound", "message": f'"{name}" not found'}, 404)
        return found

    async def patch(
        self, resource: ResourceRef, name: str, patch: Mapping[str, Any], namespace: str = "", **how: Any
    ) -> dict[str, Any]:
        self.patches.append((resource.plural, name, patch, str(how.get("subresource", ""))))
        return {}


class FakeNode(Disks):
    """A node whose mounts are a set of paths; the actions applied change it, in the order kept."""

    def __init__(self, root: Path = ROOT) -> None:
        super().__init__(root)
        self.mounted: dict[Path, csi.Action] = {}
        self.applied: list[csi.Action] = []
        self.resized: list[str] = []

    async def observe(self) -> csi.NodeMounts:
        staged = [csi.Staged(a.handle, a.path) for a in self.mounted.values() if isinstance(a, csi.Stage)]
        pubs = []
        for a in self.mounted.values():
            if isinstance(a, csi.Publish):
                owner = csi.pod_of_publish_path(self.root, a.path)
                assert owner is not None
                pubs.append(csi.Published(owner[0], owner[1], a.handle, a.path, a.read_only))
        return csi.NodeMounts(tuple(staged), tuple(pubs))

    async def apply(self, action: csi.Action) -> None:
        self.applied.append(action)
        if isinstance(action, csi.Stage | csi.Publish):
            self.mounted[action.path] = action
        else:
            self.mounted.pop(action.path, None)

    async def resize(self, handle: str, by_id_dir: Path) -> None:
        self.resized.append(handle)


def bound_objects(*, attached: bool = True, claim: dict[str, Any] | None = None) -> FakeApi:
    return FakeApi(
        ("persistentvolumeclaims", claim or a_claim()),
        ("persistentvolumes", a_pv()),
        ("volumeattachments", an_attachment(attached=attached)),
    )


def no_reports() -> list[list[str]]:
    return []


def manager(api: FakeApi, node: FakeNode, reports: list[list[str]], *, root: Path = ROOT) -> VolumeManager:
    async def report(names: list[str]) -> None:
        reports.append(names)

    return VolumeManager(
        cast(Client, api), node_name=NODE, root=root, by_id_dir=BY_ID, report=report, disks=node, attach_wait=0.0
    )


async def test_the_manager_reports_the_disk_in_use_before_it_stages_and_publishes_it() -> None:
    node, reports = FakeNode(), no_reports()
    volumes = manager(bound_objects(), node, reports)
    assert await volumes.mount_pod(a_pod(claim_volume())) == {"data": csi.publish_path(ROOT / "pods" / UID, "pvc-1")}
    assert reports == [[csi.unique_volume_name(HANDLE)]]
    assert [type(a) for a in node.applied] == [csi.Stage, csi.Publish]
    await volumes.mount_pod(a_pod(claim_volume()))  # a container's restart: nothing redone
    assert len(node.applied) == 2


async def test_an_unattached_disk_fails_the_mount_in_kubes_words_and_mounts_nothing() -> None:
    node, reports = FakeNode(), no_reports()
    volumes = manager(bound_objects(attached=False), node, reports)
    with pytest.raises(VolumeError) as failed:
        await volumes.mount_pod(a_pod(claim_volume()))
    assert failed.value.reason == "FailedMount"
    assert str(failed.value) == (
        "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[data],"
        " failed to process volumes=[]: timed out waiting for the condition"
    )
    assert node.applied == []
    assert reports == [[csi.unique_volume_name(HANDLE)]]  # in use already: the controller must not detach it


async def test_an_attachment_the_node_may_not_read_yet_is_one_not_attached() -> None:
    api = bound_objects()
    api.forbidden.add("volumeattachments")
    with pytest.raises(VolumeError, match=r"unattached volumes=\[data\]"):
        await manager(api, FakeNode(), []).mount_pod(a_pod(claim_volume()))


async def test_a_missing_claim_fails_the_mount_and_reports_nothing() -> None:
    node, reports = FakeNode(), no_reports()
    volumes = manager(FakeApi(), node, reports)
    with pytest.raises(VolumeError, match='persistentvolumeclaims "data-web-0" not found'):
        await volumes.mount_pod(a_pod(claim_volume()))
    assert reports == [] and node.applied == []


async def test_a_node_that_cannot_mount_is_a_failed_mount_not_a_crash() -> None:
    class BrokenNode(FakeNode):
        async def apply(self, action: csi.Action) -> None:
            raise DiskError("mount: /dev/vdb: wrong fs type")

    volumes = manager(bound_objects(), BrokenNode(), [])
    with pytest.raises(VolumeError, match=r'MountVolume.MountDevice failed for volume "vol-0123456789abcdef" : mount'):
        await volumes.mount_pod(a_pod(claim_volume()))


async def test_a_stopped_pods_disk_is_unpublished_then_unstaged_and_dropped_from_volumes_in_use() -> None:
    node, reports = FakeNode(), no_reports()
    volumes = manager(bound_objects(), node, reports)
    other = "aaaaaaaa-0000-0000-0000-000000000000"
    await volumes.mount_pod(a_pod(claim_volume()))
    await volumes.mount_pod(a_pod(claim_volume(), uid=other))
    await volumes.unmount_pod(UID)
    assert [type(a) for a in node.applied] == [csi.Stage, csi.Publish, csi.Publish, csi.Unpublish]
    assert reports[-1] == [csi.unique_volume_name(HANDLE)]  # the other pod still uses it
    await volumes.unmount_pod(other)
    assert [type(a) for a in node.applied[-2:]] == [csi.Unpublish, csi.Unstage]
    assert reports[-1] == []


async def test_cleanup_unmounts_what_pods_no_longer_here_left_mounted() -> None:
    node, reports = FakeNode(), no_reports()
    volumes = manager(bound_objects(), node, reports)
    await volumes.mount_pod(a_pod(claim_volume()))
    await volumes.cleanup(live_pods={UID})
    assert len(node.applied) == 2
    await volumes.cleanup(live_pods=set())
    assert [type(a) for a in node.applied[2:]] == [csi.Unpublish, csi.Unstage]
    assert volumes.wanted == {} and reports[-1] == []


async def test_the_disks_of_pods_running_before_a_restart_are_learnt_and_kept_in_use() -> None:
    node, reports = FakeNode(), no_reports()
    volumes = manager(bound_objects(), node, reports)
    finished = dict(a_pod(claim_volume(), uid="dddddddd-0000-0000-0000-000000000000"), status={"phase": "Succeeded"})
    await volumes.populate([a_pod(claim_volume()), finished, a_pod()])
    assert volumes.wanted == {UID: (DISK,)}
    await volumes.cleanup(live_pods={UID})
    assert reports == [[csi.unique_volume_name(HANDLE)]] and node.applied == []


async def test_a_claim_waiting_for_its_file_system_to_grow_is_resized_and_its_status_patched() -> None:
    pending = a_claim(capacity={"storage": "1Gi"}, conditions=[{"type": "FileSystemResizePending", "status": "True"}])
    api, node = bound_objects(claim=pending), FakeNode()
    volumes = manager(api, node, [])
    await volumes.mount_pod(a_pod(claim_volume()))
    assert node.resized == [HANDLE]
    assert api.patches == [
        (
            "persistentvolumeclaims",
            "data-web-0",
            {"status": {"capacity": {"storage": "2Gi"}, "conditions": []}},
            "status",
        )
    ]


async def test_a_read_only_claim_is_published_read_only_and_never_resized() -> None:
    pending = a_claim(conditions=[{"type": "FileSystemResizePending", "status": "True"}])
    api, node = bound_objects(claim=pending), FakeNode()
    await manager(api, node, []).mount_pod(a_pod(claim_volume(read_only=True)))
    publish = node.applied[-1]
    assert isinstance(publish, csi.Publish) and publish.read_only
    assert node.resized == [] and api.patches == []


# --- the pod worker's side ---------------------------------------------------------------------------------


class RecordingNode(FakeNode):
    """Notes, for each action, whether the file in the pod's volume was still there (and can fail)."""

    def __init__(self, root: Path, witness: Path, *, fail: bool = False) -> None:
        super().__init__(root)
        self.witness = witness
        self.fail = fail
        self.seen: list[tuple[str, bool]] = []

    async def apply(self, action: csi.Action) -> None:
        self.seen.append((type(action).__name__, self.witness.exists()))
        if self.fail:
            raise DiskError("umount: target is busy")
        await super().apply(action)


def stopped_pod_setup(tmp_path: Path, *, fail: bool = False) -> tuple[PodWorkers, RecordingNode, PodCache, Path]:
    cache = PodCache()
    cache.ensure(OLD, "default/web").record("main", running(OLD, "main"))
    workers = _workers(PodsApi(), FakeContainerd(str(ContainerId(OLD, "main", 0))), cache, tmp_path)
    target = csi.publish_path(tmp_path / "pods" / OLD, "pvc-1")
    witness = target / "kept.txt"
    witness.parent.mkdir(parents=True)
    witness.write_text("data on the disk\n")
    node = RecordingNode(tmp_path, witness, fail=fail)
    node.mounted[target] = csi.Publish(HANDLE, "pvc-1", csi.global_path(tmp_path, HANDLE), target, False)
    workers.volume_manager = manager(FakeApi(), node, [], root=tmp_path)
    return workers, node, cache, witness


async def test_a_gone_pods_disks_are_unpublished_before_its_directory_is_removed(tmp_path: Path) -> None:
    workers, node, cache, witness = stopped_pod_setup(tmp_path)
    await workers.sync(OLD)
    assert node.seen == [("Unpublish", True)]
    assert cache.get(OLD) is None and not witness.exists()


async def test_a_publication_that_cannot_be_unmounted_keeps_the_pods_directory(tmp_path: Path) -> None:
    workers, _node, cache, witness = stopped_pod_setup(tmp_path, fail=True)
    with pytest.raises(DiskError):
        await workers.sync(OLD)  # the pod worker retries it with back-off
    assert witness.read_text() == "data on the disk\n"
    assert cache.get(OLD) is not None


# --- finding the disk ---------------------------------------------------------------------------------------


def test_a_disk_is_found_by_its_by_id_link_else_by_its_serial_in_sysfs(tmp_path: Path) -> None:
    by_id, sys_block = tmp_path / "by-id", tmp_path / "sys-block"
    for name, serial in (("vda", ""), ("vdb", "vol-fedcba9876543210"), ("vdc", HANDLE)):
        (sys_block / name).mkdir(parents=True)
        (sys_block / name / "serial").write_text(serial + "\n")
    (sys_block / "loop0").mkdir()  # no serial at all
    assert find_device(by_id / f"virtio-{HANDLE}", HANDLE, sys_block=sys_block) == Path("/dev/vdc")
    by_id.mkdir()
    device = tmp_path / "dev-vdq"
    device.touch()
    (by_id / f"virtio-{HANDLE}").symlink_to(device)
    assert find_device(by_id / f"virtio-{HANDLE}", HANDLE, sys_block=sys_block) == device
    with pytest.raises(DiskError, match="is not on the node"):
        find_device(by_id / "virtio-vol-0000000000000000", "vol-0000000000000000", sys_block=sys_block)


# --- the node status side ---------------------------------------------------------------------------------------


class StatusApi:
    """Records node status patches; the CSINode calls answer as an API server does."""

    def __init__(self, *, csinode: dict[str, Any] | None = None) -> None:
        self.patches: list[Mapping[str, Any]] = []
        self.created: list[dict[str, Any]] = []
        self.updated: list[dict[str, Any]] = []
        self.csinode = csinode

    async def patch(self, resource: ResourceRef, name: str, patch: Mapping[str, Any], **how: Any) -> dict[str, Any]:
        assert (resource.plural, how.get("subresource")) == ("nodes", "status")
        self.patches.append(patch)
        return {}

    async def get(self, resource: ResourceRef, name: str, namespace: str = "") -> dict[str, Any]:
        if resource.plural == "nodes":
            return {"metadata": {"name": name, "uid": "node-uid"}}
        assert self.csinode is not None
        return self.csinode

    async def create(self, resource: ResourceRef, body: dict[str, Any]) -> dict[str, Any]:
        if self.csinode is not None:
            raise ApiError({"code": 409, "reason": "AlreadyExists", "message": "exists"}, 409)
        self.created.append(body)
        return body

    async def update(self, resource: ResourceRef, body: dict[str, Any]) -> dict[str, Any]:
        self.updated.append(body)
        return body


def node_status(api: StatusApi, tmp_path: Path) -> NodeStatus:
    settings = KubeletSettings(node_name=NODE, root_dir=tmp_path, volume_attach_limit=8)
    return NodeStatus(cast(Client, api), settings, runtime_version=lambda: "containerd", on_pod_network=lambda _n: None)


async def test_volumes_in_use_are_written_to_the_node_status_only_when_they_change(tmp_path: Path) -> None:
    api = StatusApi()
    status = node_status(api, tmp_path)
    names = [csi.unique_volume_name(HANDLE)]
    await status.report_volumes_in_use(names)
    await status.report_volumes_in_use(list(names))
    await status.report_volumes_in_use([])
    assert api.patches == [{"status": {"volumesInUse": names}}, {"status": {"volumesInUse": []}}]


async def test_the_kubelet_creates_its_csinode_and_corrects_one_that_differs(tmp_path: Path) -> None:
    api = StatusApi()
    await node_status(api, tmp_path).ensure_csinode()
    assert api.created == [csi.csinode_object(NODE, node_uid="node-uid", attach_limit=8)]
    stale = csi.csinode_object(NODE, node_uid="node-uid", attach_limit=16)
    stale["metadata"]["resourceVersion"] = "7"
    api = StatusApi(csinode=stale)
    status = node_status(api, tmp_path)
    await status.ensure_csinode()
    assert [u["spec"]["drivers"][0]["allocatable"] for u in api.updated] == [{"count": 8}]
    assert api.updated[0]["metadata"]["resourceVersion"] == "7" and status.csinode_done


def test_the_kernel_s_mount_table_is_read_with_its_octal_escapes() -> None:
    table = (
        "22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        "90 22 254:16 / /var/lib/a\\040b/globalmount ro,relatime shared:40 - ext4 /dev/vdb rw\n"
    )
    assert mount_points(table) == [
        (Path("/"), {"rw", "relatime"}),
        (Path("/var/lib/a b/globalmount"), {"ro", "relatime"}),
    ]
