"""TCP ports on this host: whether one is taken, and a free one to hand out."""

from __future__ import annotations

import socket


def in_use(address: str, port: int) -> bool:
    """Whether ``address:port`` cannot be bound now (another process listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return True
    return False


def free() -> int:
    """A port on 127.0.0.1 that nothing listens on at this moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
