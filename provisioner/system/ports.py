"""TCP ports on this host: whether one is taken, and a free one to hand out."""

from __future__ import annotations

import random
import socket
from collections.abc import Collection
from pathlib import Path


def in_use(address: str, port: int) -> bool:
    """Whether ``address:port`` cannot be bound now (another process listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return True
    return False


EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")
HANDED_OUT_FROM = 20000  # below: the well-known and registered ports labs use by default (2379, 5000, 6443)


def ephemeral_range() -> tuple[int, int]:
    """The ports the kernel gives outgoing connections as their source (Linux's default 32768-60999)."""
    try:
        low, high = (int(v) for v in EPHEMERAL.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def free(avoid: Collection[int] = ()) -> int:
    """A port on 127.0.0.1 that nothing listens on at this moment, not in ``avoid``, and outside the
    kernel's ephemeral range: a port from that range (what binding port 0 gives) can become the source
    port of any outgoing connection between the moment it is handed out and the moment a lab's
    component binds it, and the component then finds it taken."""
    low, high = ephemeral_range()
    start, stop = (HANDED_OUT_FROM, low) if low - HANDED_OUT_FROM >= 1000 else (high + 1, 65536)
    for _ in range(200):
        port = random.randrange(start, stop)
        if port not in avoid and not in_use("127.0.0.1", port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # a crowded range: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
