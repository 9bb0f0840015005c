"""Entering a network namespace from Python (setns), for programs that must act inside a lab's
namespace while having opened sockets outside it (the tunnel's forwarder, load probes)."""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNET = 0x40000000


def enter(netns: str) -> None:
    """Move this thread (and the threads it starts) into the network namespace ``netns``;
    ``""`` or ``"-"`` stays where it is."""
    if netns in ("", "-"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"setns into {netns}: {os.strerror(error)}")
    finally:
        os.close(fd)


def enter_fd(fd: int) -> None:
    """Move this thread into the network namespace open at ``fd`` (``/proc/self/ns/net`` opened
    before an :func:`enter`: the way back)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns back: {os.strerror(error)}")
