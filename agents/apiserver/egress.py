"""Where the API server's connections into the cluster network start: its own network namespace, or
the one ``egress-network-namespace`` names.

In a VM lab the control-plane machine is a node with routes to every pod, so the aggregation layer
connects from its own namespace. A local lab keeps the node's bridge and pod routes in a network
namespace of their own (the host's network is left alone), which the API server, a host process,
cannot route to. There its sockets for aggregated API servers are made inside the node's namespace
(``setns`` on a helper thread, for that moment only) and then used from the event loop as any other:
a socket keeps the namespace it was created in. kube reaches the same end with an egress selector
(konnectivity); a namespace is this project's smaller equivalent.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

CLONE_NEWNET = 0x40000000
_lock = threading.Lock()


def socket_in(netns: Path, family: int, kind: int = socket.SOCK_STREAM, proto: int = 0) -> socket.socket:
    """A socket that belongs to network namespace ``netns`` (this thread enters it and comes back)."""
    libc = ctypes.CDLL(None, use_errno=True)
    with _lock:
        own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        try:
            target = os.open(netns, os.O_RDONLY)
        except OSError:
            os.close(own)
            raise
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                error = ctypes.get_errno()
                raise OSError(error, f"setns into {netns}: {os.strerror(error)}")
            try:
                return socket.socket(family, kind, proto)
            finally:
                if libc.setns(own, CLONE_NEWNET) != 0:  # pragma: no cover - would leave the thread astray
                    raise OSError(ctypes.get_errno(), "setns back failed")
        finally:
            os.close(own)
            os.close(target)


def socket_factory(netns: Path | None) -> Callable[[Any], socket.socket] | None:
    """An aiohttp ``socket_factory`` making sockets in ``netns`` (None: the default, this namespace)."""
    if netns is None:
        return None

    def make(addr_info: Any) -> socket.socket:
        family, kind, proto = addr_info[0], addr_info[1], addr_info[2]
        return socket_in(netns, family, kind, proto)

    return make
