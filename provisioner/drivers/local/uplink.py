"""The local node's way to the control plane's ports: what the lab network is to a VM's node.

A local lab's node lives in a network namespace of its own (:mod:`provisioner.drivers.local.nodenet`)
while the API server listens on the host's loopback; pods (add-ons, in-cluster clients) reach the API
server as in any cluster, through the ``kubernetes`` Service, whose endpoint is then the node's own
address; the metrics-server add-on reaches the kubelet's port at the node's address, as on a VM. This
small program (``python -m provisioner.drivers.local.uplink NETNS ADDRESS PORT...``) listens on
ADDRESS:PORT inside NETNS for each PORT and relays every connection to 127.0.0.1:PORT on the host: a
socket stays in the namespace it was made in, so the listeners are made inside and the connections
out are made after the thread went back to the host's namespace.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import sys
from collections.abc import Sequence

from provisioner.system.netns import enter, enter_fd
from provisioner.system.relay import relay


async def _serve(listeners: dict[int, socket.socket]) -> None:
    servers = [
        await asyncio.start_server(functools.partial(relay, "127.0.0.1", port), sock=sock)
        for port, sock in listeners.items()
    ]
    await asyncio.gather(*(server.serve_forever() for server in servers))


def listen_in(netns: str, address: str, port: int) -> socket.socket:
    """A listening socket on ADDRESS:PORT inside NETNS; the calling thread is back home after."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        enter(netns)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((address, port))
            sock.listen(128)
            sock.setblocking(False)
        finally:
            enter_fd(home)
    finally:
        os.close(home)
    return sock


def main(argv: Sequence[str]) -> int:
    if len(argv) < 3 or not all(port.isdigit() for port in argv[2:]):
        print("usage: python -m provisioner.drivers.local.uplink NETNS ADDRESS PORT...", file=sys.stderr)
        return 2
    netns, address = argv[0], argv[1]
    listeners = {int(port): listen_in(netns, address, int(port)) for port in argv[2:]}
    for port in listeners:
        print(f"relaying {address}:{port} in {netns} to 127.0.0.1:{port}", flush=True)
    asyncio.run(_serve(listeners))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
