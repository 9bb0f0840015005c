"""Taking over an aiohttp server connection after an HTTP ``101 Switching Protocols``.

aiohttp serves WebSocket upgrades itself, but ``kubectl port-forward`` (and kubectl's other streaming
commands when WebSockets are turned off) ask for ``Upgrade: SPDY/3.1``: after the 101 the connection
carries SPDY frames, which aiohttp does not know. :func:`hijack` answers the 101 and then hands the
connection's bytes to the caller, through the same hook WebSocketResponse uses (the protocol's payload
parser), so that bytes the client sent right behind its request are not lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web


class _Feed:
    """Stands where aiohttp's WebSocket reader would: every byte received goes to a queue."""

    def __init__(self, queue: asyncio.Queue[bytes]) -> None:
        self._queue = queue

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        if data:
            self._queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self._queue.put_nowait(b"")


class RawConnection:
    """The connection's bytes after the 101: ``read`` (b"" when the peer is gone) and ``write``."""

    def __init__(self, request: web.Request, response: web.StreamResponse) -> None:
        self._request = request
        self.response = response
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._ended = False
        request.protocol.set_parser(_Feed(self._queue))  # type: ignore[arg-type]
        request.protocol.keep_alive(False)

    async def read(self) -> bytes:
        if self._ended:
            return b""
        data = await self._queue.get()
        if not data:
            self._ended = True
        return data

    async def write(self, data: bytes) -> None:
        transport = self._request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        transport.write(data)
        writer = self._request._payload_writer
        await writer.drain()

    def close(self) -> None:
        transport = self._request.transport
        if transport is not None:
            transport.close()


async def hijack(request: web.Request, headers: Mapping[str, str]) -> RawConnection:
    """Answer ``101 Switching Protocols`` with ``headers`` and take the connection over."""
    response = web.StreamResponse(status=101, headers={"Connection": "Upgrade", **headers})
    response.force_close()
    await response.prepare(request)
    return RawConnection(request, response)


HEAD_PATIENCE = 30.0  # seconds an upgraded backend has to answer its head


async def read_head(reader: asyncio.StreamReader) -> tuple[int, list[tuple[str, str]]]:
    """The status code and headers (as sent, in order) of the HTTP answer ``reader`` starts with."""
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_PATIENCE)).decode("latin-1")
    status_line, *lines = head.split("\r\n")
    parts = status_line.split(" ", 2)
    code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 500
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines if line)]
    return code, headers


async def splice(raw: RawConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Pass bytes both ways between a taken-over connection and one this server opened, until either
    side ends; both are closed at the end."""

    async def up() -> None:
        while data := await raw.read():
            writer.write(data)
            await writer.drain()

    async def down() -> None:
        while data := await reader.read(64 * 1024):
            await raw.write(data)

    tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        writer.close()
        raw.close()
