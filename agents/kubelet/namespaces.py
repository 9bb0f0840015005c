"""The namespaces a pod keeps for its whole life, made and removed with system calls.

A pod's network namespace (its sandbox) and its UTS namespace (its hostname) outlive each of its
containers: each is held by a bind mount on a file, the way ``ip netns add NAME`` and ``unshare
--uts=FILE`` hold them. The kubelet makes them itself rather than running those programs: each
program is a process whose start costs a good part of a second of CPU on a lab node's emulated CPU,
and a pod took four of them (``ip netns add``, ``unshare ... hostname``, ``ip netns delete``,
``umount``) plus two runs of the CNI loopback plugin.

- A namespace is made by a thread of its own: for network and UTS namespaces ``unshare(2)`` moves
  only the calling thread. The thread prepares the namespace (``lo`` up in a network namespace, as
  the loopback plugin would; the hostname in a UTS namespace), bind-mounts its
  ``/proc/self/task/TID/ns/...`` on the file, goes back to the kubelet's namespaces and ends; the
  mount keeps the namespace.
- Before the first network namespace, ``/run/netns`` becomes a shared mount point of its own, as
  ``ip netns add`` makes it, so that the namespaces mounted there appear in mount namespaces made
  afterwards too.
- Removal detaches the mount and unlinks the file, as ``ip netns delete`` does.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

CLONE_NEWNET = 0x40000000
CLONE_NEWUTS = 0x04000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _mount(source: str, target: str, flags: int) -> None:
    _check(_libc.mount(source.encode(), target.encode(), b"none", flags, None), f"mount {target}")


def _thread_namespace(kind: str) -> str:
    return f"/proc/self/task/{threading.get_native_id()}/ns/{kind}"


async def _in_own_thread(work: Callable[[], None]) -> None:
    """Run ``work`` on a thread made for it, which ends with it: a thread that entered a namespace is
    never reused, even if going back failed."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # raised again in the awaiting coroutine
            failure.append(exc)

    def start_and_join() -> None:
        thread = threading.Thread(target=run, name="kubelet-namespace", daemon=True)
        thread.start()
        thread.join()

    await asyncio.to_thread(start_and_join)
    if failure:
        raise failure[0]


@contextmanager
def _entered_anew(flag: int, kind: str) -> Iterator[str]:
    """The calling thread in a new namespace of ``kind`` (its path under /proc while inside), and
    back in its own afterwards."""
    own = os.open(_thread_namespace(kind), os.O_RDONLY)
    try:
        _check(_libc.unshare(flag), "unshare")
        try:
            yield _thread_namespace(kind)
        finally:
            _check(_libc.setns(own, flag), "setns")
    finally:
        os.close(own)


def _loopback_up() -> None:
    """``lo`` up in the calling thread's network namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))


def _shared_mount_point(directory: Path) -> None:
    """``directory`` a shared mount point (bound on itself first when it is not a mount point)."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        _mount("", str(directory), MS_SHARED | MS_REC)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: not a mount point yet
            raise
        _mount(str(directory), str(directory), MS_BIND | MS_REC)
        _mount("", str(directory), MS_SHARED | MS_REC)


def _create_file(path: Path) -> None:
    """The empty file a namespace is mounted on; one that exists is an error (``File exists``)."""
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))


async def add_netns(path: Path) -> None:
    """A new network namespace with ``lo`` up, held on ``path`` (``ip netns add``); an ``OSError``
    with the system's words when it cannot be made, and then nothing is left behind."""

    def work() -> None:
        _shared_mount_point(path.parent)
        _create_file(path)
        try:
            with _entered_anew(CLONE_NEWNET, "net") as made:
                _loopback_up()
                _mount(made, str(path), MS_BIND)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    await _in_own_thread(work)


async def add_uts(path: Path, hostname: str) -> None:
    """A new UTS namespace whose hostname is ``hostname``, held on ``path`` (``unshare --uts=PATH
    hostname NAME``)."""
    name = hostname.encode()

    def work() -> None:
        path.touch()
        with _entered_anew(CLONE_NEWUTS, "uts") as made:
            _check(_libc.sethostname(name, len(name)), "sethostname")
            _mount(made, str(path), MS_BIND)

    await _in_own_thread(work)


def unmount(path: Path) -> None:
    """The namespace held on ``path`` released (a lazy unmount); not mounted is no error."""
    if _libc.umount2(str(path).encode(), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):  # not a mount point, no such file
            raise OSError(code, f"umount {path}: {os.strerror(code)}")


def delete_netns(path: Path) -> None:
    """The network namespace held on ``path`` released and its file removed (``ip netns delete``)."""
    unmount(path)
    path.unlink(missing_ok=True)
