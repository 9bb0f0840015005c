"""exec's and attach's two transports (agents.kubelet.streams): which SPDY streams a request's flags
call for, the protocol chosen from the client's offer, resize sizes read from a byte stream, and an
exec session over a SPDY/3.1 upgrade as kubectl without WebSockets opens it, against a local shell in
place of ``ctr tasks exec`` (a declared fake of the runtime)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agents.kubelet.remotecommand import remote_command
from agents.kubelet.streams import Wanted, negotiate, sizes
from agents.machinery import spdy


def test_the_streams_a_spdy_client_opens_follow_its_flags() -> None:
    plain = Wanted.of({"stdin": "true", "stdout": "true", "stderr": "true"})
    assert plain.spdy_streams() == {"error", "stdin", "stdout", "stderr"}
    terminal = Wanted.of({"stdin": "1", "stdout": "true", "stderr": "true", "tty": "true"})
    assert terminal.spdy_streams() == {"error", "stdin", "stdout", "resize"}  # stderr goes through the terminal
    assert Wanted.of({"stdout": "false"}).spdy_streams() == {"error"}


def test_the_first_protocol_the_client_offers_that_is_served_is_chosen() -> None:
    assert negotiate(["v5.channel.k8s.io", "v4.channel.k8s.io"]) == "v5.channel.k8s.io"
    assert negotiate(["v4.channel.k8s.io", "v5.channel.k8s.io"]) == "v4.channel.k8s.io"
    assert negotiate(["v3.channel.k8s.io", "channel.k8s.io"]) is None
    assert negotiate([]) is None


def test_sizes_are_read_one_json_object_after_another_across_chunks() -> None:
    found, rest = sizes(b'{"Width":80,"Height":24}\n{"Width":100,')
    assert [json.loads(f) for f in found] == [{"Width": 80, "Height": 24}]
    found, rest = sizes(rest + b'"Height":30}\n')
    assert [json.loads(f) for f in found] == [{"Width": 100, "Height": 30}] and rest == b""


async def local_shell(_container: str, argv: list[str], *, tty: bool, **streams: Any) -> asyncio.subprocess.Process:
    """The fake runtime: runs ``argv`` here instead of in a container."""
    assert not tty
    return await asyncio.create_subprocess_exec(*argv, **streams)


@pytest.fixture
async def kubelet() -> AsyncIterator[TestServer]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await remote_command(
            request, local_shell, container_id="c", argv=request.query.getall("command"), tty=False, stdin=True
        )

    app = web.Application()
    app.router.add_route("*", "/exec", handler)
    server = TestServer(app)
    await server.start_server()
    yield server
    await server.close()


async def upgrade(server: TestServer, *versions: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    offered = "".join(f"X-Stream-Protocol-Version: {v}\r\n" for v in versions)
    script = quote("cat; echo oops >&2; exit 3")
    query = f"command=sh&command=-c&command={script}&stdin=true&stdout=true&stderr=true"
    writer.write(
        f"POST /exec?{query} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        f"{offered}Content-Length: 0\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return reader, writer, head


async def test_exec_over_spdy_carries_each_standard_stream_and_ends_with_the_status(kubelet: TestServer) -> None:
    reader, writer, head = await upgrade(kubelet, "v5.channel.k8s.io", "v4.channel.k8s.io")
    assert head.startswith(b"HTTP/1.1 101") and b"X-Stream-Protocol-Version: v5.channel.k8s.io" in head
    encoder, decoder = spdy.Encoder(), spdy.Decoder()
    kinds = {1: "error", 3: "stdin", 5: "stdout", 7: "stderr"}
    for stream_id, kind in kinds.items():
        writer.write(encoder.encode(spdy.SynStream(stream_id, (("streamtype", kind),))))
    writer.write(encoder.encode(spdy.Data(3, b"hello\n")) + encoder.encode(spdy.Data(3, b"", fin=True)))
    frames: list[spdy.Frame] = []

    def of(stream_id: int) -> tuple[bytes, bool]:
        data = [f for f in frames if isinstance(f, spdy.Data) and f.stream_id == stream_id]
        return b"".join(f.data for f in data), any(f.fin for f in data)

    async def until_the_status() -> None:
        while not of(1)[1]:
            chunk = await reader.read(4096)
            assert chunk, f"the connection ended before the status: {frames}"
            frames.extend(decoder.feed(chunk))

    await asyncio.wait_for(until_the_status(), 10)
    assert all(spdy.SynReply(stream_id) in frames for stream_id in kinds)
    assert of(5) == (b"hello\n", True) and of(7) == (b"oops\n", True)
    status = json.loads(of(1)[0])
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"][0]["message"] == "3"
    writer.close()


async def test_a_client_that_offers_no_served_version_is_refused_in_kubes_words(kubelet: TestServer) -> None:
    reader, writer, head = await upgrade(kubelet, "v3.channel.k8s.io")
    assert head.startswith(b"HTTP/1.1 403")
    body = await asyncio.wait_for(reader.read(4096), 5)
    assert b"unable to upgrade: unable to negotiate protocol" in body
    writer.close()
