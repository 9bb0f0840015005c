"""``kubectl port-forward`` on the kubelet's side: connections to a port inside a pod's network.

Three ways in, as kube's kubelet and API server offer them, all at ``/portForward/{namespace}/{pod}``:

- SPDY/3.1 (:mod:`agents.machinery.spdy`), over a plain ``Upgrade: SPDY/3.1`` connection
  (``X-Stream-Protocol-Version: portforward.k8s.io``) or tunnelled in the binary messages of a
  WebSocket with subprotocol ``SPDY/3.1+portforward.k8s.io`` (kubectl's default since 1.31). Each
  forwarded connection is two streams the client opens, with headers ``streamType`` (``error`` or
  ``data``), ``port`` and ``requestID``: bytes go both ways on the data stream; a failure is written
  on the error stream, which is closed when the connection ends.
- WebSocket channels (``v4.channel.k8s.io``, or no subprotocol: what the official Python client
  speaks): the ports are the ``ports`` query parameter; port i has data channel 2i and error channel
  2i+1, each of which starts with the port number (two bytes, little endian). One connection per port.

The connection is made to 127.0.0.1 (then ::1) inside the pod's network namespace: a socket is made
by a thread that enters the namespace for that moment, and then used from the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from aiohttp import WSMsgType, web

from agents.machinery import spdy
from agents.machinery.upgrade import hijack

PROTOCOL = "portforward.k8s.io"
TUNNEL_PROTOCOL = f"SPDY/3.1+{PROTOCOL}"
CHANNEL_PROTOCOLS = ("v4.channel.k8s.io", PROTOCOL)
PAIR_SECONDS = 30.0  # how long one stream of a pair waits for the other (kube's stream creation timeout)
CHUNK = 32 * 1024
CLONE_NEWNET = 0x40000000
_setns_lock = threading.Lock()


@dataclass(frozen=True)
class PodNetwork:
    """Where a pod's ports are: its sandbox's network namespace (None: the node's, hostNetwork)."""

    sandbox: str  # the sandbox's name, as kube's messages name the "pod" being forwarded to
    netns: Path | None


class PortForwardError(Exception):
    """A connection to the pod's port could not be made (its message is kube's)."""


def _go_error(exc: OSError) -> str:
    """An OS error as Go's net package words it (``connect: connection refused``)."""
    text = os.strerror(exc.errno) if exc.errno else str(exc)
    return text[:1].lower() + text[1:]


def _sockets(netns: Path | None) -> list[socket.socket]:
    """An IPv4 and an IPv6 stream socket in ``netns`` (made on this thread, which goes back after)."""
    if netns is None:
        return _both()
    libc = ctypes.CDLL(None, use_errno=True)
    with _setns_lock:
        own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        target = -1
        try:
            target = os.open(netns, os.O_RDONLY)
            if libc.setns(target, CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"setns into {netns}: {os.strerror(code)}")
            try:
                return _both()
            finally:
                if libc.setns(own, CLONE_NEWNET) != 0:  # pragma: no cover - would leave the thread astray
                    raise OSError(ctypes.get_errno(), "setns back failed")
        finally:
            os.close(own)
            if target >= 0:
                os.close(target)


def _both() -> list[socket.socket]:
    """An IPv4 and an IPv6 stream socket; the first closed again when the second cannot be made."""
    first = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        return [first, socket.socket(socket.AF_INET6, socket.SOCK_STREAM)]
    except BaseException:
        first.close()
        raise


async def connect(network: PodNetwork, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to localhost:``port`` in the pod: 127.0.0.1 first, then ::1 (as kube's runtime)."""
    made: list[socket.socket] = []
    failure: list[BaseException] = []

    def work() -> None:
        try:
            made.extend(_sockets(network.netns))
        except BaseException as exc:  # raised again below
            failure.append(exc)

    def start_and_join() -> None:  # a thread of its own: one that entered a namespace is not reused
        thread = threading.Thread(target=work, name="kubelet-portforward", daemon=True)
        thread.start()
        thread.join()

    try:
        await asyncio.to_thread(start_and_join)
        if failure:
            raise PortForwardError(f"failed to enter the network namespace of {network.sandbox}: {failure[0]}")
        loop = asyncio.get_running_loop()
        errors = []
        targets = ((("127.0.0.1", port), "tcp4 127.0.0.1"), (("::1", port), "tcp6 [::1]"))
        for sock, (address, label) in zip(made, targets, strict=True):
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, address)
            except OSError as exc:
                errors.append(f"dial {label}:{port}: connect: {_go_error(exc)}")
                continue
            connection = await asyncio.open_connection(sock=sock)
            made.remove(sock)  # the connection owns it now
            return connection
    finally:  # whatever did not become the connection, also when the session ends meanwhile
        for sock in made:
            sock.close()
    raise PortForwardError(
        f'failed to connect to localhost:{port} inside namespace "{network.sandbox}", '
        f"IPv4: {errors[0]} IPv6 {errors[1]} "
    )


def failure_message(network: PodNetwork, port: int, error: str) -> str:
    """What the error stream says when forwarding fails (kube's kubelet's words)."""
    return f"error forwarding port {port} to pod {network.sandbox}, uid : {error}"


# --- SPDY ---------------------------------------------------------------------------------------


class _Pairs:
    """The streams of each forwarded connection, met by their requestID."""

    def __init__(self, network: PodNetwork) -> None:
        self.network = network
        self._waiting: dict[str, tuple[asyncio.Future[spdy.Stream], str]] = {}

    async def on_stream(self, stream: spdy.Stream) -> None:
        kind = stream.header("streamType")
        request_id = stream.header("requestID")
        if kind not in ("data", "error"):
            await stream.reset(spdy.PROTOCOL_ERROR)
            return
        waiting = self._waiting.get(request_id)
        if waiting is not None and waiting[1] != kind:
            del self._waiting[request_id]
            waiting[0].set_result(stream)
            return  # the first stream of the pair does the forwarding
        future: asyncio.Future[spdy.Stream] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = (future, kind)
        try:
            other = await asyncio.wait_for(future, PAIR_SECONDS)
        except TimeoutError:
            self._waiting.pop(request_id, None)
            await stream.reset()
            return
        data, error = (stream, other) if kind == "data" else (other, stream)
        await forward_streams(self.network, data=data, error=error)


async def forward_streams(network: PodNetwork, *, data: spdy.Stream, error: spdy.Stream) -> None:
    """Copy bytes between the data stream and the pod's port; failures go on the error stream."""
    port_text = data.header("port")
    try:
        port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        await _fail(error, data, f'invalid port "{port_text}"')
        return
    try:
        reader, writer = await connect(network, port)
    except PortForwardError as exc:
        await _fail(error, data, failure_message(network, port, str(exc)))
        return

    async def upstream() -> None:  # client -> pod
        while chunk := await data.read():
            writer.write(chunk)
            await writer.drain()
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()

    async def downstream() -> None:  # pod -> client
        while chunk := await reader.read(CHUNK):
            await data.write(chunk)

    sending = asyncio.create_task(upstream())
    try:
        with contextlib.suppress(ConnectionError, OSError):
            await downstream()
    finally:
        sending.cancel()
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
        await data.close()
        await error.close()


async def _fail(error: spdy.Stream, data: spdy.Stream, message: str) -> None:
    with contextlib.suppress(ConnectionError):
        await error.write(message.encode())
    await error.close()
    await data.close()


async def serve_spdy_upgrade(request: web.Request, network: PodNetwork) -> web.StreamResponse:
    """``Upgrade: SPDY/3.1`` (kubectl without WebSockets)."""
    raw = await hijack(request, {"Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": PROTOCOL})
    session = spdy.Session(read=raw.read, write=raw.write, on_stream=_Pairs(network).on_stream)
    try:
        await session.run()
    finally:
        raw.close()
    return raw.response


async def serve_spdy_tunnel(request: web.Request, network: PodNetwork) -> web.StreamResponse:
    """SPDY carried in a WebSocket's binary messages (kubectl's default)."""
    ws = web.WebSocketResponse(protocols=(TUNNEL_PROTOCOL,), max_msg_size=0)
    await ws.prepare(request)

    async def read() -> bytes:
        async for message in ws:
            if message.type == WSMsgType.BINARY and message.data:
                return bytes(message.data)
        return b""

    async def write(data: bytes) -> None:
        await ws.send_bytes(data)

    session = spdy.Session(read=read, write=write, on_stream=_Pairs(network).on_stream)
    try:
        await session.run()
    finally:
        await ws.close()
    return ws


# --- WebSocket channels ---------------------------------------------------------------------------


def parse_ports(values: list[str]) -> list[int]:
    """The ``ports`` query parameter(s), each a comma-separated list (kube's validation words)."""
    ports: list[int] = []
    for value in values:
        for item in value.split(","):
            try:
                port = int(item)
            except ValueError as exc:
                raise ValueError(f'unable to parse "{item}" as a port: invalid syntax') from exc
            if not 0 < port < 65536:
                raise ValueError(f"port {port} must be > 0 and < 65536")
            ports.append(port)
    if not ports:
        raise ValueError('query parameter "port" is required')
    return ports


async def serve_channels(request: web.Request, network: PodNetwork, ports: list[int]) -> web.StreamResponse:
    """One connection per port, data on channel 2i and failures on 2i+1."""
    ws = web.WebSocketResponse(protocols=CHANNEL_PROTOCOLS, max_msg_size=0)
    await ws.prepare(request)
    lock = asyncio.Lock()

    async def send(channel: int, data: bytes) -> None:
        async with lock:
            if not ws.closed:
                await ws.send_bytes(bytes([channel]) + data)

    loop = asyncio.get_running_loop()
    # port index -> its connection once made (None: it could not be); client data waits for it
    writers: dict[int, asyncio.Future[asyncio.StreamWriter | None]] = {
        i: loop.create_future() for i in range(len(ports))
    }

    async def one(index: int, port: int) -> None:
        await send(2 * index, struct.pack("<H", port))
        await send(2 * index + 1, struct.pack("<H", port))
        try:
            reader, writer = await connect(network, port)
        except PortForwardError as exc:
            writers[index].set_result(None)
            await send(2 * index + 1, failure_message(network, port, str(exc)).encode())
            return
        writers[index].set_result(writer)
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(CHUNK):
                await send(2 * index, chunk)

    pumps = [asyncio.create_task(one(i, p)) for i, p in enumerate(ports)]

    async def from_client() -> None:
        async for message in ws:
            if message.type != WSMsgType.BINARY or not message.data:
                continue
            channel, data = message.data[0], message.data[1:]
            made = writers.get(channel // 2)
            writer = await made if made is not None and channel % 2 == 0 and data else None
            if writer is not None:
                with contextlib.suppress(ConnectionError, OSError):
                    writer.write(data)
                    await writer.drain()

    async def all_pumps() -> None:
        await asyncio.gather(*pumps, return_exceptions=True)

    listener = asyncio.create_task(from_client())
    pumped = asyncio.create_task(all_pumps())
    try:
        await asyncio.wait({listener, pumped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        listener.cancel()
        pumped.cancel()
        for task in pumps:
            task.cancel()
        for made in writers.values():
            done = made.result() if made.done() else None
            if done is not None:
                done.close()
        await ws.close()
    return ws


def _offered(request: web.Request) -> list[str]:
    return [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]


async def port_forward(request: web.Request, network: PodNetwork) -> web.StreamResponse:
    """Serve a port-forward request in whichever of the three ways the client asked for."""
    upgrade = request.headers.get("Upgrade", "").lower()
    if upgrade == "spdy/3.1":
        return await serve_spdy_upgrade(request, network)
    if upgrade == "websocket" and TUNNEL_PROTOCOL in _offered(request):
        return await serve_spdy_tunnel(request, network)
    try:
        ports = parse_ports(request.query.getall("ports", []))
    except ValueError as exc:
        return web.Response(status=400, text=str(exc))
    if upgrade != "websocket":
        return web.Response(status=400, text="Upgrade request required")
    return await serve_channels(request, network, ports)
