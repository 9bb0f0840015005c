"""The two transports of ``kubectl exec`` and ``kubectl attach``, behind one interface.

kubectl 1.32 speaks WebSocket channels by default and falls back to a SPDY/3.1 upgrade (or uses it
alone with ``KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false``, as older clients and client-go's SPDY
executor do). Both carry the same things, laid out differently:

- WebSocket (subprotocol ``v5.channel.k8s.io`` or ``v4.channel.k8s.io``): every message starts with
  its channel: 0 stdin, 1 stdout, 2 stderr, 3 the final Status, 4 a terminal resize, and in v5 255
  to close a stream (``[255, 0]``: no more stdin).
- SPDY/3.1 (``X-Stream-Protocol-Version`` v5 or v4 ``.channel.k8s.io``, chosen from those the client
  offers): the client opens one stream per standard stream, named by its ``streamType`` header:
  ``error``, ``stdin``, ``stdout``, ``stderr`` (none with a terminal), ``resize`` (with one). The
  command's output goes on stdout and stderr, which are closed when it ends; then the final Status
  goes on the error stream, which is closed after it. The client half-closes stdin at the end of its
  input; the resize stream carries one JSON size after another.

:func:`accept` answers either and gives a :class:`Session`: ``send(channel, data)`` for output,
``incoming()`` for what the client sends, as (channel, payload) pairs in the WebSocket's numbering
(end of input is ``(CLOSE, b"\\x00")`` on both), ``end(status)`` and ``close()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from agents.machinery import spdy
from agents.machinery.upgrade import RawConnection, hijack

log = logging.getLogger(__name__)

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
STREAM_SECONDS = 30.0  # how long the client has to open its streams (kube's stream creation timeout)
_OUTPUT = {STDOUT: "stdout", STDERR: "stderr"}


def client_frame(kind: WSMsgType, data: object) -> tuple[int, bytes] | None:
    """A caller's WebSocket message as (channel, payload), or None for one that carries no stream data.

    kubectl sends binary messages; the official Python client sends ``write_stdin("text")`` as a text
    message whose first character is the channel (``"\\x00echo x\\n"``) and bytes as binary. kube reads
    both kinds alike: the first byte of the message's bytes is the channel.
    """
    if kind == WSMsgType.TEXT and isinstance(data, str):
        raw = data.encode()
    elif kind == WSMsgType.BINARY and isinstance(data, bytes | bytearray):
        raw = bytes(data)
    else:
        return None
    if not raw:
        return None
    return raw[0], raw[1:]


@dataclass(frozen=True)
class Wanted:
    """The standard streams a request asks for (its ``stdin``, ``stdout``, ``stderr``, ``tty`` flags)."""

    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Wanted:
        def flag(name: str) -> bool:
            return (query.get(name) or "").lower() in ("1", "true", "yes")

        return cls(stdin=flag("stdin"), stdout=flag("stdout"), stderr=flag("stderr"), tty=flag("tty"))

    def spdy_streams(self) -> frozenset[str]:
        """The streams a SPDY client opens for these flags (stderr goes through the terminal with one)."""
        names = {"error"}
        names |= {"stdin"} if self.stdin else set()
        names |= {"stdout"} if self.stdout else set()
        names |= {"stderr"} if self.stderr and not self.tty else set()
        names |= {"resize"} if self.tty else set()
        return frozenset(names)


def negotiate(offered: list[str]) -> str | None:
    """The first protocol the client offers that is served (kube's handshake: the client's order)."""
    return next((p for p in offered if p in PROTOCOLS), None)


def offered_versions(request: web.Request) -> list[str]:
    """The ``X-Stream-Protocol-Version`` values, whether sent as several headers or one list."""
    return [v.strip() for h in request.headers.getall("X-Stream-Protocol-Version", []) for v in h.split(",") if v]


def sizes(buffer: bytes) -> tuple[list[bytes], bytes]:
    """The whole JSON sizes at the front of a resize stream's bytes, and what is left of the next one."""
    decoder = json.JSONDecoder()
    text, at = buffer.decode(errors="replace"), 0
    found: list[bytes] = []
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return found, b""
        try:
            value, end = decoder.raw_decode(text, at)
        except ValueError:
            return found, text[at:].encode()
        found.append(json.dumps(value).encode())
        at = end


class Session(Protocol):
    response: web.StreamResponse

    async def send(self, channel: int, data: bytes) -> None: ...

    def incoming(self) -> AsyncIterator[tuple[int, bytes]]: ...

    async def end(self, status: Mapping[str, Any]) -> None: ...

    async def close(self) -> None: ...


class WebSocketSession:
    """The channel protocol over a WebSocket the request was upgraded to."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.response: web.StreamResponse = ws
        self._ws = ws
        self._lock = asyncio.Lock()

    async def send(self, channel: int, data: bytes) -> None:
        async with self._lock:
            if not self._ws.closed:
                await self._ws.send_bytes(bytes([channel]) + data)

    async def incoming(self) -> AsyncIterator[tuple[int, bytes]]:
        async for message in self._ws:
            framed = client_frame(message.type, message.data)
            if framed is not None:
                yield framed

    async def end(self, status: Mapping[str, Any]) -> None:
        await self.send(ERROR, json.dumps(status).encode())

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()


class SpdySession:
    """The streams of a SPDY/3.1 connection: one per standard stream, opened by the client."""

    def __init__(self, raw: RawConnection, wanted: Wanted) -> None:
        self.response: web.StreamResponse = raw.response
        self._raw = raw
        self._expected = wanted.spdy_streams()
        self._streams: dict[str, spdy.Stream] = {}
        self._complete = asyncio.Event()
        self._gone = asyncio.Event()
        self._session = spdy.Session(read=raw.read, write=raw.write, on_stream=self._on_stream)
        self._running = asyncio.create_task(self._run(), name="spdy-remotecommand")

    async def _run(self) -> None:
        try:
            await self._session.run()
        finally:
            self._gone.set()

    async def _on_stream(self, stream: spdy.Stream) -> None:
        kind = stream.header("streamType").lower()
        if kind not in self._expected or kind in self._streams:
            await stream.reset(spdy.PROTOCOL_ERROR)
            return
        self._streams[kind] = stream
        if set(self._streams) == self._expected:
            self._complete.set()
        await self._gone.wait()  # the stream lives as long as the session

    async def ready(self) -> bool:
        """Whether the client opened every stream it should have, within :data:`STREAM_SECONDS`."""
        waiting = asyncio.create_task(self._complete.wait())
        gone = asyncio.create_task(self._gone.wait())
        try:
            await asyncio.wait({waiting, gone}, timeout=STREAM_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
            gone.cancel()
        return self._complete.is_set() and not self._gone.is_set()

    async def send(self, channel: int, data: bytes) -> None:
        stream = self._streams.get(_OUTPUT.get(channel, ""))
        if stream is not None:
            with contextlib.suppress(ConnectionError):
                await stream.write(data)

    async def incoming(self) -> AsyncIterator[tuple[int, bytes]]:
        queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()

        async def stdin(stream: spdy.Stream) -> None:
            while data := await stream.read():
                queue.put_nowait((STDIN, data))
            if not stream.reset_by_peer:
                queue.put_nowait((CLOSE, bytes([STDIN])))

        async def resize(stream: spdy.Stream) -> None:
            pending = b""
            while data := await stream.read():
                found, pending = sizes(pending + data)
                pending = pending if len(pending) < 4096 else b""  # not a size: dropped, not kept growing
                for size in found:
                    queue.put_nowait((RESIZE, size))

        async def gone() -> None:
            await self._gone.wait()
            queue.put_nowait(None)

        readers = [asyncio.create_task(gone())]
        if "stdin" in self._streams:
            readers.append(asyncio.create_task(stdin(self._streams["stdin"])))
        if "resize" in self._streams:
            readers.append(asyncio.create_task(resize(self._streams["resize"])))
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            for task in readers:
                task.cancel()

    async def end(self, status: Mapping[str, Any]) -> None:
        """Output ends, then the Status on the error stream (the client reads it to its end)."""
        for name in ("stdout", "stderr"):
            if name in self._streams:
                await self._streams[name].close()
        error = self._streams.get("error")
        if error is not None:
            with contextlib.suppress(ConnectionError):
                await error.write(json.dumps(status).encode())
            await error.close()

    async def close(self) -> None:
        self._raw.close()  # what was written goes out first; the client sees its streams end
        self._gone.set()
        self._running.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._running


async def accept(request: web.Request, wanted: Wanted) -> Session | web.StreamResponse:
    """Upgrade the request to whichever transport it asks for; a response instead of a session is
    the whole answer already (a refusal in kube's words, or a SPDY client that never opened its
    streams)."""
    upgrade = request.headers.get("Upgrade", "").lower()
    if upgrade == "spdy/3.1":
        offered = offered_versions(request)
        chosen = negotiate(offered)
        if chosen is None:
            return web.Response(
                status=403,
                text=f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                f"server supports {list(PROTOCOLS)}",
            )
        raw = await hijack(request, {"Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": chosen})
        session = SpdySession(raw, wanted)
        if not await session.ready():
            log.warning("a SPDY client did not open its streams %s in time", sorted(wanted.spdy_streams()))
            await session.close()
            return session.response
        return session
    ws = web.WebSocketResponse(protocols=PROTOCOLS)
    if not ws.can_prepare(request).ok:
        return web.Response(status=400, text="Upgrade request required")
    await ws.prepare(request)
    return WebSocketSession(ws)
