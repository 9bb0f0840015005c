"""Reaching a lab's machines from the host when they live in a network namespace.

Two small programs, both run as ``python -m provisioner.drivers.libvirt.tunnel``:

``forward NETNS LOCAL_PORT=HOST:PORT ...``
    listens on 127.0.0.1:LOCAL_PORT in the host's own network namespace, then moves into NETNS and
    connects every accepted connection to HOST:PORT from there. A socket stays in the namespace it
    was made in, so the listeners are on the host and the outgoing connections inside the lab's
    namespace: kubectl and the image tools reach the API server and the registry at 127.0.0.1.

``connect NETNS HOST PORT``
    an ssh ProxyCommand: connects to HOST:PORT from inside NETNS and relays stdin and stdout.

NETNS may be ``-`` (stay in the host's namespace: labs on a system libvirtd).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.system.netns import enter
from provisioner.system.relay import pipe, relay


@dataclass(frozen=True)
class Forward:
    local_port: int
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Forward:
        local, _, target = text.partition("=")
        host, _, port = target.rpartition(":")
        if not local.isdigit() or not host or not port.isdigit():
            raise ValueError(f"expected LOCAL_PORT=HOST:PORT, got {text!r}")
        return cls(int(local), host, int(port))

    def argument(self) -> str:
        return f"{self.local_port}={self.host}:{self.port}"


async def _serve(listeners: list[tuple[Forward, socket.socket]]) -> None:
    servers = []
    for forward, sock in listeners:

        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter, forward: Forward = forward) -> None:
            await relay(forward.host, forward.port, r, w)

        servers.append(await asyncio.start_server(handle, sock=sock))
    await asyncio.gather(*(server.serve_forever() for server in servers))


def forward(netns: str, forwards: Sequence[Forward]) -> None:
    listeners = []
    for item in forwards:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", item.local_port))
        sock.listen(128)
        sock.setblocking(False)
        listeners.append((item, sock))
    enter(netns)
    print(f"forwarding {' '.join(f.argument() for f in forwards)} into {netns}", flush=True)
    asyncio.run(_serve(listeners))


async def _connect(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(host, port)
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    out_transport, out_protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    stdout = asyncio.StreamWriter(out_transport, out_protocol, None, loop)
    # ssh closes our stdin only when it is done, and a machine that is gone never closes the TCP
    # side: either end finishing ends the relay, so no ProxyCommand outlives its ssh or its machine.
    relays = {asyncio.create_task(pipe(stdin, writer)), asyncio.create_task(pipe(reader, stdout))}
    _done, pending = await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    writer.close()


def connect(netns: str, host: str, port: int) -> None:
    enter(netns)
    try:
        asyncio.run(_connect(host, port))
    except OSError as exc:  # what ssh shows as the reason it could not connect
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OSError(exc.errno, f"cannot reach {host}:{port}: {reason}") from exc


def main(argv: Sequence[str]) -> int:
    try:
        if len(argv) >= 3 and argv[0] == "forward":
            forward(argv[1], [Forward.parse(a) for a in argv[2:]])
            return 0
        if len(argv) == 4 and argv[0] == "connect" and argv[3].isdigit():
            connect(argv[1], argv[2], int(argv[3]))
            return 0
    except OSError as exc:
        print(f"kubelab tunnel: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"kubelab tunnel: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    print(
        "usage: python -m provisioner.drivers.libvirt.tunnel forward NETNS PORT=HOST:PORT... | connect NETNS HOST PORT",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
