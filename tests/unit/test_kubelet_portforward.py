"""The kubelet's port-forward (agents.kubelet.portforward), served by a real aiohttp server in this
process and forwarding to a TCP server on this host's loopback (a hostNetwork pod: no namespace to
enter): the three ways in (SPDY upgrade, SPDY in a WebSocket, WebSocket channels) and kube's words
for a port nothing listens on."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agents.kubelet.portforward import PodNetwork, parse_ports, port_forward
from agents.machinery import spdy

NETWORK = PodNetwork(sandbox="kl-node-1-uid", netns=None)


async def _upper_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data.upper())
        await writer.drain()
    writer.close()


@pytest.fixture
async def pod_port() -> AsyncIterator[int]:
    """A port on 127.0.0.1 answering each chunk in upper case, closing at the client's end of input."""
    server = await asyncio.start_server(_upper_echo, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


@pytest.fixture
async def free_port() -> int:
    server = await asyncio.start_server(_upper_echo, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()
    return port


@pytest.fixture
async def kubelet() -> AsyncIterator[TestServer]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await port_forward(request, NETWORK)

    app = web.Application()
    app.router.add_route("*", "/portForward/ns/pod", handler)
    server = TestServer(app)
    await server.start_server()
    yield server
    await server.close()


class SpdyClient:
    """kubectl's side of the session, for the test."""

    def __init__(self) -> None:
        self.encoder, self.decoder = spdy.Encoder(), spdy.Decoder()
        self.frames: list[spdy.Frame] = []

    def pair(self, request_id: str, port: int) -> bytes:
        base = (("port", str(port)), ("requestid", request_id))
        number = 2 * int(request_id)
        error = spdy.SynStream(2 * number + 1, (("streamtype", "error"), *base))
        data = spdy.SynStream(2 * number + 3, (("streamtype", "data"), *base))
        return self.encoder.encode(error) + self.encoder.encode(data)

    def encode(self, frame: spdy.Frame) -> bytes:
        return self.encoder.encode(frame)

    def received(self, data: bytes) -> None:
        self.frames.extend(self.decoder.feed(data))

    def data_of(self, stream_id: int) -> tuple[bytes, bool]:
        frames = [f for f in self.frames if isinstance(f, spdy.Data) and f.stream_id == stream_id]
        return b"".join(f.data for f in frames), any(f.fin for f in frames)


async def test_spdy_upgrade_forwards_a_connection_and_ends_both_streams(kubelet: TestServer, pod_port: int) -> None:
    reader, writer = await asyncio.open_connection(kubelet.host, kubelet.port)
    writer.write(
        b"POST /portForward/ns/pod HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        b"X-Stream-Protocol-Version: portforward.k8s.io\r\nContent-Length: 0\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    assert b"X-Stream-Protocol-Version: portforward.k8s.io" in head
    client = SpdyClient()
    writer.write(client.pair("0", pod_port) + client.encode(spdy.Data(3, b"hello")))
    writer.write(client.encode(spdy.Data(3, b"", fin=True)))

    async def until_both_closed() -> None:
        while not (client.data_of(3)[1] and client.data_of(1)[1]):
            client.received(await reader.read(4096))

    await asyncio.wait_for(until_both_closed(), 5)
    assert spdy.SynReply(1) in client.frames and spdy.SynReply(3) in client.frames
    assert client.data_of(3) == (b"HELLO", True)
    assert client.data_of(1) == (b"", True)  # the error stream: closed, nothing to say
    writer.close()


async def test_spdy_in_a_websocket_says_in_kubes_words_that_nothing_listens(
    kubelet: TestServer, free_port: int
) -> None:
    client = SpdyClient()
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(kubelet.make_url("/portForward/ns/pod"), protocols=("SPDY/3.1+portforward.k8s.io",)) as ws,
    ):
        assert ws.protocol == "SPDY/3.1+portforward.k8s.io"
        await ws.send_bytes(client.pair("0", free_port))
        while not client.data_of(1)[1]:
            message = await asyncio.wait_for(ws.receive(), 5)
            assert message.type == aiohttp.WSMsgType.BINARY
            client.received(message.data)
    error, _ = client.data_of(1)
    assert error.decode() == (
        f"error forwarding port {free_port} to pod kl-node-1-uid, uid : failed to connect to localhost:{free_port}"
        f' inside namespace "kl-node-1-uid", IPv4: dial tcp4 127.0.0.1:{free_port}: connect: connection refused'
        f" IPv6 dial tcp6 [::1]:{free_port}: connect: {client_v6_error(free_port)} "
    )


def client_v6_error(port: int) -> str:
    """What connecting to [::1]:port says on this host (refused, or no IPv6 loopback at all)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(("::1", port))
        except OSError as exc:
            text = os.strerror(exc.errno or 0)
            return text[:1].lower() + text[1:]
    return "connected"


async def test_websocket_channels_announce_the_port_then_carry_data(kubelet: TestServer, pod_port: int) -> None:
    url = kubelet.make_url("/portForward/ns/pod").with_query(ports=str(pod_port))
    async with aiohttp.ClientSession() as session, session.ws_connect(url, protocols=("v4.channel.k8s.io",)) as ws:
        assert ws.protocol == "v4.channel.k8s.io"
        first = [(await ws.receive_bytes(timeout=5)) for _ in range(2)]
        assert sorted(first) == [b"\x00" + struct.pack("<H", pod_port), b"\x01" + struct.pack("<H", pod_port)]
        await ws.send_bytes(b"\x00abc")
        assert await ws.receive_bytes(timeout=5) == b"\x00ABC"


async def test_a_websocket_without_ports_is_refused(kubelet: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await session.ws_connect(kubelet.make_url("/portForward/ns/pod"), protocols=("v4.channel.k8s.io",))
    assert caught.value.status == 400


def test_ports_are_parsed_as_kube_validates_them() -> None:
    assert parse_ports(["80,8080", "53"]) == [80, 8080, 53]
    with pytest.raises(ValueError, match='unable to parse "http"'):
        parse_ports(["http"])
    with pytest.raises(ValueError, match="must be > 0 and < 65536"):
        parse_ports(["70000"])


async def test_a_request_without_an_upgrade_is_refused_after_its_ports_are_checked(kubelet: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(kubelet.make_url("/portForward/ns/pod")) as answer:
            assert answer.status == 400 and await answer.text() == 'query parameter "port" is required'
        async with session.get(kubelet.make_url("/portForward/ns/pod").with_query(ports="80")) as answer:
            assert answer.status == 400 and await answer.text() == "Upgrade request required"
