"""The kubelet's disk executor on a real block device: a loop device over a sparse file stands for the
attached virtio disk, found by its serial through a ``virtio-<volume id>`` link in a by-id directory of
the test's own. It is staged (an ext4 file system made only when the disk is blank), published into a
pod's directory (read-only when asked), written through, unpublished and unstaged, and grown with
resize2fs after its backing file grew. Every mount and the loop device are undone in the teardown.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from agents.kubelet import csi
from agents.kubelet.disks import DiskError, Disks
from agents.kubelet.volumemanager import VolumeManager
from agents.machinery.client import Client
from provisioner.system import packages
from tests.support.components import require
from tests.unit.test_kubelet_csi import NODE, a_pod, bound_objects, claim_volume

pytestmark = pytest.mark.integration

HANDLE = "vol-0123456789abcdef"
POD_UID = "5c9d0e1f-aaaa-bbbb-cccc-0123456789ab"
MIB = 1024 * 1024
CAP_SYS_RESOURCE = 24
TOOLS = (
    packages.Requirement("losetup", "mount", "loop devices standing for attached disks"),
    packages.Requirement("findmnt", "util-linux", "what is mounted"),
    packages.Requirement("blkid", "util-linux", "whether a disk holds a file system"),
    packages.Requirement("mkfs.ext4", "e2fsprogs", "a file system on a blank disk"),
    packages.Requirement("resize2fs", "e2fsprogs", "growing a file system"),
)


def sh(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Disk:
    backing: Path
    device: Path  # /dev/loopN
    by_id: Path  # the directory holding virtio-<handle>
    root: Path  # the kubelet's root directory


def fs_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_blocks * stats.f_frsize


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    if os.geteuid() != 0:
        pytest.skip("loop devices and mounts need root")
    require(*TOOLS)
    backing = tmp_path / "disk.img"
    with backing.open("wb") as f:
        f.truncate(64 * MIB)
    device = Path(sh("losetup", "--find", "--show", str(backing)).strip())
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    (by_id / f"virtio-{HANDLE}").symlink_to(device)
    root = tmp_path / "kubelet"
    try:
        yield Disk(backing, device, by_id, root)
    finally:
        mounted = subprocess.run(
            ["findmnt", "--list", "--noheadings", "--output", "TARGET"], capture_output=True, text=True, check=False
        ).stdout.split()
        for target in sorted((t for t in mounted if t.startswith(str(root))), key=len, reverse=True):
            subprocess.run(["umount", "--lazy", target], check=False)
        subprocess.run(["losetup", "--detach", str(device)], check=False)


def stage_action(disk: Disk) -> csi.Stage:
    return csi.Stage(HANDLE, csi.device_path(disk.by_id, HANDLE), csi.global_path(disk.root, HANDLE), "ext4")


def publish_action(disk: Disk, *, read_only: bool = False) -> csi.Publish:
    target = csi.publish_path(disk.root / "pods" / POD_UID, "pvc-1")
    return csi.Publish(HANDLE, "pvc-1", csi.global_path(disk.root, HANDLE), target, read_only)


async def test_a_blank_disk_is_formatted_staged_published_and_taken_down_again(disk: Disk) -> None:
    disks = Disks(disk.root)
    assert await disks.filesystem(disk.device) == ""
    stage, publish = stage_action(disk), publish_action(disk)
    await disks.apply(stage)
    assert await disks.filesystem(disk.device) == "ext4"
    await disks.apply(publish)
    assert await disks.observe() == csi.NodeMounts(
        staged=(csi.Staged(HANDLE, stage.path),), published=(csi.Published(POD_UID, "pvc-1", HANDLE, publish.path),)
    )
    (publish.path / "hello.txt").write_text("kept\n")
    assert (stage.path / "hello.txt").read_text() == "kept\n"  # one file system seen from both
    await disks.apply(csi.Unpublish(publish.path))
    assert not publish.path.exists()
    await disks.apply(csi.Unstage(HANDLE, stage.path))
    assert await disks.observe() == csi.NodeMounts()
    assert not stage.path.parent.exists()


async def test_a_formatted_disk_keeps_its_data_when_staged_again(disk: Disk) -> None:
    disks = Disks(disk.root)
    stage, publish = stage_action(disk), publish_action(disk)
    await disks.apply(stage)
    await disks.apply(publish)
    (publish.path / "data.txt").write_text("survives\n")
    await disks.apply(csi.Unpublish(publish.path))
    await disks.apply(csi.Unstage(HANDLE, stage.path))
    await disks.apply(stage)  # the same disk on its next node: no mkfs this time
    await disks.apply(publish)
    assert (publish.path / "data.txt").read_text() == "survives\n"


async def test_a_read_only_publication_refuses_writes(disk: Disk) -> None:
    disks = Disks(disk.root)
    await disks.apply(stage_action(disk))
    publish = publish_action(disk, read_only=True)
    await disks.apply(publish)
    observed = await disks.observe()
    assert [p.read_only for p in observed.published] == [True]
    with pytest.raises(OSError, match="Read-only file system"):
        (publish.path / "nope.txt").write_text("x")


async def test_a_disk_with_another_file_system_or_no_device_is_refused(disk: Disk) -> None:
    disks = Disks(disk.root)
    with pytest.raises(DiskError, match="is not on the node"):
        await disks.apply(
            csi.Stage("vol-ffffffffffffffff", disk.by_id / "virtio-vol-ffffffffffffffff", disk.root / "x", "ext4")
        )
    sh("mkfs.ext2", "-F", "-q", str(disk.device))
    with pytest.raises(DiskError, match='failed to mount the volume as "ext4", it already contains ext2'):
        await disks.apply(stage_action(disk))


def may_resize_online() -> bool:
    """Growing a mounted ext4 takes CAP_SYS_RESOURCE (a node's kubelet runs as root with it; some
    containers that run these tests withhold it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_RESOURCE & 1)
    return False


async def test_a_grown_disk_grows_its_mounted_file_system(disk: Disk) -> None:
    """On a host that withholds CAP_SYS_RESOURCE (some containers running these tests), resize2fs
    refuses, and the kubelet must say so rather than report a grown file system; the VM lab's e2e
    grows one for real either way."""
    disks = Disks(disk.root)
    stage = stage_action(disk)
    await disks.apply(stage)
    before = fs_bytes(stage.path)
    with disk.backing.open("r+b") as f:
        f.truncate(128 * MIB)
    sh("losetup", "--set-capacity", str(disk.device))  # what a live blockresize does to the guest's disk
    if not may_resize_online():
        with pytest.raises(DiskError, match="resize2fs"):
            await disks.resize(HANDLE, disk.by_id)
        assert fs_bytes(stage.path) == before
        return
    await disks.resize(HANDLE, disk.by_id)
    after = fs_bytes(stage.path)
    assert before < 64 * MIB < after <= 128 * MIB


async def test_the_volume_manager_mounts_a_pods_claim_and_takes_it_down_when_the_pod_goes(disk: Disk) -> None:
    reports: list[list[str]] = []

    async def report(names: list[str]) -> None:
        reports.append(names)

    volumes = VolumeManager(
        cast(Client, bound_objects()),
        node_name=NODE,
        root=disk.root,
        by_id_dir=disk.by_id,
        report=report,
        disks=Disks(disk.root),
        attach_wait=0.0,
    )
    pod = a_pod(claim_volume(), uid=POD_UID)
    where = await volumes.mount_pod(pod)
    assert where == {"data": csi.publish_path(disk.root / "pods" / POD_UID, "pvc-1")}
    (where["data"] / "written-by-the-pod").write_text("yes\n")
    assert reports[-1] == [csi.unique_volume_name(HANDLE)]
    await volumes.unmount_pod(POD_UID)
    assert await Disks(disk.root).observe() == csi.NodeMounts()
    assert reports[-1] == []
    await volumes.mount_pod(pod)  # the pod's successor on this node finds the data
    assert (where["data"] / "written-by-the-pod").read_text() == "yes\n"
