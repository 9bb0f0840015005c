"""The node's side of persistent volumes: block devices, file systems and mounts, through the tools.

What :mod:`agents.kubelet.csi` plans is done here with the node's own programs, as kube's mount
utilities do: ``blkid`` says whether a disk holds a file system, ``mkfs.ext4`` makes one on a blank
disk only, ``mount``/``umount`` stage and publish (a bind mount, ``ro`` when the pod says so),
``resize2fs`` grows a mounted ext4 after the disk grew, and the kernel's mount table (``mountinfo``)
says what is mounted. The disk
is found by its serial: udev's ``virtio-<serial>`` link, else sysfs (:func:`find_device`). Each
staged or published directory gets a ``vol_data.json`` beside it, as kube's kubelet writes, so what
is mounted can be told apart after a restart. A program that fails is a :class:`DiskError` with its
own words.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from agents.kubelet import csi
from agents.kubelet.errors import KubeletError

log = logging.getLogger(__name__)

SYS_BLOCK = Path("/sys/block")
MOUNTINFO = Path("/proc/self/mountinfo")
_OCTAL = re.compile(r"\\([0-7]{3})")
BLKID_NOTHING_FOUND = 2  # blkid's exit status when the device holds no signature it knows


class DiskError(KubeletError):
    """A device, file system or mount could not be read or changed; the tool's words."""


async def _run(*argv: str, check: bool = True) -> tuple[int, str]:
    """Run a tool; its exit status and output (stdout, stderr after it)."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    except OSError as exc:
        raise DiskError(f"{argv[0]}: {exc.strerror or exc}") from exc
    out, err = await process.communicate()
    code = process.returncode if process.returncode is not None else -1
    text = out.decode(errors="replace") + err.decode(errors="replace")
    if check and code != 0:
        raise DiskError(f"{' '.join(argv)} failed (exit status {code}): {text.strip()}")
    return code, text


def _write_data(directory: Path, data: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / csi.VOLUME_DATA).write_text(json.dumps(data, sort_keys=True) + "\n")


def _read_handle(directory: Path) -> str:
    try:
        data = json.loads((directory / csi.VOLUME_DATA).read_text())
    except (OSError, ValueError):
        return ""
    return str(data.get("volumeHandle") or "") if isinstance(data, dict) else ""


def find_device(link: Path, handle: str, *, sys_block: Path = SYS_BLOCK) -> Path:
    """The disk of serial ``handle``: udev's by-id link when there is one, else the block device whose
    ``serial`` in sysfs is the handle (virtio-blk shows it there; a node whose udev does not make
    the persistent-storage links still finds its disks)."""
    if link.exists():
        return link.resolve()
    try:
        entries = sorted(sys_block.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        try:
            serial = (entry / "serial").read_text().strip()
        except OSError:
            continue
        if serial == handle:
            return Path("/dev") / entry.name
    raise DiskError(f"device {link} is not on the node (nor a disk of serial {handle} in {sys_block})")


class Disks:
    """Stage, publish, unpublish, unstage and resize, under the kubelet's root directory."""

    def __init__(self, root: Path, *, sys_block: Path = SYS_BLOCK, mountinfo: Path = MOUNTINFO) -> None:
        self.root = root
        self.sys_block = sys_block
        self.mountinfo = mountinfo

    async def observe(self) -> csi.NodeMounts:
        """What is mounted under the root: staged disks and their publications (read from the kernel's
        mount table, no process spawned: the volume manager looks every few seconds on every node)."""
        try:
            table = self.mountinfo.read_text()
        except OSError as exc:
            raise DiskError(f"{self.mountinfo}: {exc}") from exc
        staged: list[csi.Staged] = []
        published: list[csi.Published] = []
        for target, options in mount_points(table):
            if csi.is_global_path(self.root, target):
                staged.append(csi.Staged(_read_handle(target.parent), target))
                continue
            owner = csi.pod_of_publish_path(self.root, target)
            if owner is not None:
                handle = _read_handle(target.parent)
                published.append(csi.Published(owner[0], owner[1], handle, target, "ro" in options))
        return csi.NodeMounts(tuple(dict.fromkeys(staged)), tuple(dict.fromkeys(published)))

    async def apply(self, action: csi.Action) -> None:
        if isinstance(action, csi.Stage):
            await self.stage(action)
        elif isinstance(action, csi.Publish):
            await self.publish(action)
        else:
            await self.unmount(action.path)
            _remove_empty(action.path.parent)

    async def filesystem(self, device: Path) -> str:
        """The file system on the device ("" when blank); a partitioned disk is refused."""
        code, text = await _run("blkid", "-p", "-s", "TYPE", "-s", "PTTYPE", "-o", "export", str(device), check=False)
        if code == BLKID_NOTHING_FOUND:
            return ""
        if code != 0:
            raise DiskError(f"blkid {device} failed (exit status {code}): {text.strip()}")
        found = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        if found.get("TYPE"):
            return found["TYPE"]
        if found.get("PTTYPE"):
            raise DiskError(f"{device} holds a partition table ({found['PTTYPE']}): not formatting it")
        return ""

    async def stage(self, action: csi.Stage) -> None:
        """Mount the disk at its global path, making an ext4 file system on it first when it has none."""
        real = find_device(action.device, action.handle, sys_block=self.sys_block)
        found = await self.filesystem(real)
        if not found:
            log.info("formatting %s (%s) as %s", action.device, real, action.fs_type)
            await _run(f"mkfs.{action.fs_type}", "-F", "-q", "-m0", str(real))
        elif found != action.fs_type:
            raise DiskError(f'failed to mount the volume as "{action.fs_type}", it already contains {found}')
        _write_data(action.path.parent, {"driverName": csi.DRIVER, "volumeHandle": action.handle})
        action.path.mkdir(parents=True, exist_ok=True)
        await _run("mount", "-t", action.fs_type, "-o", "defaults", str(real), str(action.path))
        log.info("staged %s at %s", action.handle, action.path)

    async def publish(self, action: csi.Publish) -> None:
        """Bind-mount the staged disk into the pod's directory (read-only when asked)."""
        _write_data(
            action.path.parent,
            {
                "driverName": csi.DRIVER,
                "volumeHandle": action.handle,
                "specVolID": action.pv,
                "volumeLifecycleMode": "Persistent",
            },
        )
        action.path.mkdir(parents=True, exist_ok=True)
        await _run("mount", "--bind", str(action.source), str(action.path))
        if action.read_only:
            await _run("mount", "-o", "remount,bind,ro", str(action.path))
        log.info("published %s at %s%s", action.handle, action.path, " (read-only)" if action.read_only else "")

    async def unmount(self, path: Path) -> None:
        """Unmount ``path`` (nothing to do when it is not mounted) and remove its directory."""
        mounted, _ = await _run("findmnt", "--mountpoint", str(path), check=False)
        if mounted == 0:
            await _run("umount", str(path))
        _remove_dir(path)
        log.info("unmounted %s", path)

    async def resize(self, handle: str, by_id_dir: Path) -> None:
        """Grow the staged ext4 file system to the size of its (grown) disk."""
        device = find_device(csi.device_path(by_id_dir, handle), handle, sys_block=self.sys_block)
        await _run("resize2fs", str(device))


def _remove_dir(path: Path) -> None:
    """The mount point once unmounted (it is empty then)."""
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise DiskError(f"removing {path} after unmounting it: {exc.strerror or exc}") from exc


def _remove_empty(directory: Path) -> None:
    """The directory of an unmounted (and removed) mount point: its record, and itself once empty."""
    (directory / csi.VOLUME_DATA).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        directory.rmdir()


def mount_points(table: str) -> list[tuple[Path, set[str]]]:
    """Each mount point of a ``/proc/<pid>/mountinfo`` table with its per-mount options (``ro``/``rw``,
    ...); the kernel writes a space, tab, newline or backslash of a path as an octal escape."""
    out = []
    for line in table.splitlines():
        fields = line.split(" ")
        if len(fields) > 5:
            out.append((Path(_OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[4])), set(fields[5].split(","))))
    return out
