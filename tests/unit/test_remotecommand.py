"""The kubelet's exec session (channel protocol over a WebSocket) against a local shell in place of
``ctr tasks exec`` (a declared fake of the runtime): stdin sent as text messages, as the official
Python client sends ``write_stdin("...")``, or as binary ones, as kubectl does, reaches the process;
stdout and stderr come back on their channels; v5's close message ends stdin; the exit status ends
the session on the error channel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from agents.kubelet.remotecommand import remote_command
from agents.kubelet.streams import CLOSE, ERROR, STDERR, STDIN, STDOUT, client_frame

Client = TestClient[Any, Any]


async def local_shell(_container: str, argv: list[str], *, tty: bool, **streams: Any) -> asyncio.subprocess.Process:
    """The fake runtime: runs ``argv`` here instead of in a container."""
    assert not tty
    return await asyncio.create_subprocess_exec(*argv, **streams)


async def handler(request: web.Request) -> web.StreamResponse:
    return await remote_command(
        request, local_shell, container_id="c", argv=request.query.getall("command"), tty=False, stdin=True
    )


@pytest.fixture
async def http() -> AsyncIterator[Client]:
    app = web.Application()
    app.router.add_get("/exec", handler)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


async def session(ws: Any) -> tuple[dict[int, bytes], dict[str, Any]]:
    """Everything the kubelet sends until it closes: output by channel, and the final Status."""
    out: dict[int, bytes] = {}
    status: dict[str, Any] = {}
    async for message in ws:
        if message.type != WSMsgType.BINARY:
            break
        channel, data = message.data[0], message.data[1:]
        if channel == ERROR:
            status = json.loads(data)
        else:
            out[channel] = out.get(channel, b"") + data
    return out, status


async def read_line(ws: Any, channel: int) -> bytes:
    buffered = b""
    while b"\n" not in buffered:
        message = await asyncio.wait_for(ws.receive(), 5)
        assert message.type == WSMsgType.BINARY, message
        if message.data[0] == channel:
            buffered += message.data[1:]
    return buffered


def test_a_text_message_is_read_as_its_channel_and_utf8_bytes() -> None:
    assert client_frame(WSMsgType.TEXT, "\x00echo é\n") == (STDIN, "echo é\n".encode())
    assert client_frame(WSMsgType.BINARY, b"\x00ls\n") == (STDIN, b"ls\n")
    assert client_frame(WSMsgType.BINARY, b"") is None
    assert client_frame(WSMsgType.PING, b"\x00") is None


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "v5.channel.k8s.io"])
async def test_lines_written_as_text_come_back_one_by_one(http: Client, protocol: str) -> None:
    async with http.ws_connect("/exec?command=/bin/sh", protocols=[protocol]) as ws:
        await ws.send_str("\x00echo x\n")
        assert await read_line(ws, STDOUT) == b"x\n"
        await ws.send_bytes(b"\x00echo oops >&2\n")
        assert await read_line(ws, STDERR) == b"oops\n"
        await ws.send_str("\x00exit 7\n")
        _, status = await session(ws)
    assert status["reason"] == "NonZeroExitCode" and status["details"]["causes"][0]["message"] == "7"


async def test_v5_close_ends_stdin_so_the_command_finishes(http: Client) -> None:
    async with http.ws_connect("/exec?command=cat", protocols=["v5.channel.k8s.io"]) as ws:
        await ws.send_bytes(bytes([STDIN]) + b"all of it\n")
        await ws.send_bytes(bytes([CLOSE, STDIN]))
        out, status = await session(ws)
    assert out[STDOUT] == b"all of it\n" and status["status"] == "Success"
