"""SPDY/3.1 framing, as ``kubectl port-forward`` and the kubelet's stream protocols speak it.

kubectl multiplexes a port-forward's connections over one SPDY/3.1 session: either a plain HTTP
``Upgrade: SPDY/3.1`` connection, or SPDY's bytes carried in the binary messages of a WebSocket
(subprotocol ``SPDY/3.1+portforward.k8s.io``). No maintained Python library speaks SPDY, so this
module does the part the streaming protocols use:

- a pure codec: :func:`encode` turns a frame into bytes, :class:`Decoder` turns bytes (in any
  chunking) back into frames. Header blocks are zlib streams primed with SPDY/3's dictionary, one
  stream per direction for the whole session, so the encoder and decoder are stateful objects;
- :class:`Session`, a thin asyncio endpoint over any byte transport (a read and a write coroutine):
  it answers PINGs, accepts the peer's streams (SYN_STREAM -> SYN_REPLY) and hands each to a
  callback as a :class:`Stream` with ``read``/``write``/``close``/``reset``.

Flow control: the Go implementation kubectl uses neither sends WINDOW_UPDATE nor waits for one, so
the session accepts WINDOW_UPDATE and SETTINGS frames and otherwise ignores them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import zlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
# RST_STREAM status codes
PROTOCOL_ERROR, INVALID_STREAM, REFUSED_STREAM, CANCEL, INTERNAL_ERROR, STREAM_ALREADY_CLOSED = 1, 2, 3, 5, 6, 9
MAX_DATA = 0xFFFFFF  # a frame's length field has 24 bits
CHUNK = 32 * 1024

_NAMES = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges age"
    " allow authorization cache-control connection content-base content-encoding content-language"
    " content-length content-location content-md5 content-range content-type date etag expect expires from"
    " host if-match if-modified-since if-none-match if-range if-unmodified-since last-modified location"
    " max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after server te trailer"
    " transfer-encoding upgrade user-agent vary via warning www-authenticate method get status"
)
_WORDS = [*_NAMES.split(), "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
# SPDY/3's zlib dictionary for header blocks: length-prefixed header names and values, then a tail.
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()

Headers = tuple[tuple[str, str], ...]


class SpdyError(Exception):
    """A peer sent what SPDY/3.1 does not allow (the session cannot go on)."""


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers = ()
    associated_id: int = 0
    priority: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers = ()
    fin: bool = False


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...] = ()  # (flags, id, value)
    clear: bool = False


@dataclass(frozen=True)
class Ping:
    ping_id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = 0


@dataclass(frozen=True)
class HeadersFrame:
    stream_id: int
    headers: Headers = ()
    fin: bool = False


@dataclass(frozen=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True)
class Data:
    stream_id: int
    data: bytes = b""
    fin: bool = False


Frame = SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate | Data


def header(headers: Headers, name: str) -> str:
    """The first value of header ``name`` (names are lower case on the wire), or ""."""
    wanted = name.lower()
    return next((value.split("\0")[0] for key, value in headers if key == wanted), "")


class Encoder:
    """Frames to bytes; one per direction of a session (its header compressor is shared by frames)."""

    def __init__(self) -> None:
        self._zlib = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, zdict=DICTIONARY)

    def _block(self, headers: Headers) -> bytes:
        plain = struct.pack(">I", len(headers)) + b"".join(
            struct.pack(">I", len(k)) + k.lower().encode() + struct.pack(">I", len(v.encode())) + v.encode()
            for k, v in headers
        )
        return self._zlib.compress(plain) + self._zlib.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(kind: int, flags: int, body: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(body)) + body

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, Data):
            if len(frame.data) > MAX_DATA:
                raise ValueError("a DATA frame carries at most 16 MiB")
            flags = FLAG_FIN if frame.fin else 0
            return struct.pack(">II", frame.stream_id & 0x7FFFFFFF, (flags << 24) | len(frame.data)) + frame.data
        if isinstance(frame, SynStream):
            flags = (FLAG_FIN if frame.fin else 0) | (FLAG_UNIDIRECTIONAL if frame.unidirectional else 0)
            body = struct.pack(">IIBB", frame.stream_id, frame.associated_id, (frame.priority & 7) << 5, 0)
            return self._control(SYN_STREAM, flags, body + self._block(frame.headers))
        if isinstance(frame, SynReply):
            body = struct.pack(">I", frame.stream_id) + self._block(frame.headers)
            return self._control(SYN_REPLY, FLAG_FIN if frame.fin else 0, body)
        if isinstance(frame, HeadersFrame):
            body = struct.pack(">I", frame.stream_id) + self._block(frame.headers)
            return self._control(HEADERS, FLAG_FIN if frame.fin else 0, body)
        if isinstance(frame, RstStream):
            return self._control(RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status))
        if isinstance(frame, Settings):
            body = struct.pack(">I", len(frame.entries)) + b"".join(
                struct.pack(">II", (flags << 24) | ident, value) for flags, ident, value in frame.entries
            )
            return self._control(SETTINGS, 1 if frame.clear else 0, body)
        if isinstance(frame, Ping):
            return self._control(PING, 0, struct.pack(">I", frame.ping_id))
        if isinstance(frame, GoAway):
            return self._control(GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id, frame.status))
        return self._control(WINDOW_UPDATE, 0, struct.pack(">II", frame.stream_id, frame.delta))


def _headers(plain: bytes) -> Headers:
    try:
        (count,) = struct.unpack_from(">I", plain, 0)
        offset, out = 4, []
        for _ in range(count):
            (size,) = struct.unpack_from(">I", plain, offset)
            name = plain[offset + 4 : offset + 4 + size].decode()
            offset += 4 + size
            (size,) = struct.unpack_from(">I", plain, offset)
            value = plain[offset + 4 : offset + 4 + size].decode()
            offset += 4 + size
            out.append((name.lower(), value))
    except (struct.error, UnicodeDecodeError) as exc:
        raise SpdyError(f"malformed header block: {exc}") from exc
    return tuple(out)


class Decoder:
    """Bytes, in whatever pieces they arrive, to frames; one per direction of a session."""

    def __init__(self) -> None:
        self._zlib = zlib.decompressobj(zdict=DICTIONARY)
        self._buffer = bytearray()

    def _block(self, data: bytes) -> Headers:
        try:
            return _headers(self._zlib.decompress(data))
        except zlib.error as exc:
            raise SpdyError(f"header block does not decompress: {exc}") from exc

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            first, second = struct.unpack_from(">II", self._buffer, 0)
            length = second & 0xFFFFFF
            if len(self._buffer) < 8 + length:
                break
            body = bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            flags = second >> 24
            if not first & 0x80000000:
                frames.append(Data(first & 0x7FFFFFFF, body, bool(flags & FLAG_FIN)))
                continue
            version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
            if version != VERSION:
                raise SpdyError(f"unsupported SPDY version {version}")
            frame = self._control(kind, flags, body)
            if frame is not None:
                frames.append(frame)
        return frames

    def _control(self, kind: int, flags: int, body: bytes) -> Frame | None:
        fin = bool(flags & FLAG_FIN)
        try:
            if kind == SYN_STREAM:
                stream_id, associated, priority = struct.unpack_from(">IIB", body, 0)
                return SynStream(
                    stream_id & 0x7FFFFFFF,
                    self._block(body[10:]),
                    associated & 0x7FFFFFFF,
                    priority >> 5,
                    fin,
                    bool(flags & FLAG_UNIDIRECTIONAL),
                )
            if kind in (SYN_REPLY, HEADERS):
                (stream_id,) = struct.unpack_from(">I", body, 0)
                if kind == SYN_REPLY:
                    return SynReply(stream_id & 0x7FFFFFFF, self._block(body[4:]), fin)
                return HeadersFrame(stream_id & 0x7FFFFFFF, self._block(body[4:]), fin)
            if kind == RST_STREAM:
                stream_id, status = struct.unpack_from(">II", body, 0)
                return RstStream(stream_id & 0x7FFFFFFF, status)
            if kind == SETTINGS:
                (count,) = struct.unpack_from(">I", body, 0)
                entries = []
                for i in range(count):
                    word, value = struct.unpack_from(">II", body, 4 + 8 * i)
                    entries.append((word >> 24, word & 0xFFFFFF, value))
                return Settings(tuple(entries), bool(flags & 1))
            if kind == PING:
                return Ping(struct.unpack_from(">I", body, 0)[0])
            if kind == GOAWAY:
                last, status = (
                    struct.unpack_from(">II", body, 0) if len(body) >= 8 else (*struct.unpack(">I", body[:4]), 0)
                )
                return GoAway(last & 0x7FFFFFFF, status)
            if kind == WINDOW_UPDATE:
                stream_id, delta = struct.unpack_from(">II", body, 0)
                return WindowUpdate(stream_id & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error as exc:
            raise SpdyError(f"control frame {kind} is too short") from exc
        return None  # unknown control frames are ignored, as SPDY asks


# --- the session --------------------------------------------------------------------------------

Read = Callable[[], Awaitable[bytes]]  # b"": the transport ended
Write = Callable[[bytes], Awaitable[None]]


@dataclass(eq=False)
class Stream:
    """One stream the peer opened: what it sends is read until its FIN (b"" then)."""

    session: Session
    stream_id: int
    headers: Headers
    _incoming: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    remote_closed: bool = False
    local_closed: bool = False
    reset_by_peer: bool = False

    def header(self, name: str) -> str:
        return header(self.headers, name)

    async def read(self) -> bytes:
        if self.remote_closed and self._incoming.empty():
            return b""
        return await self._incoming.get()

    async def write(self, data: bytes) -> None:
        if self.local_closed or self.reset_by_peer:
            raise ConnectionResetError(f"stream {self.stream_id} is closed")
        for start in range(0, len(data), CHUNK):
            await self.session.send(Data(self.stream_id, data[start : start + CHUNK]))

    async def close(self) -> None:
        """Half-close: no more data from this side (an empty DATA frame with FIN)."""
        if not self.local_closed and not self.reset_by_peer:
            self.local_closed = True
            with contextlib.suppress(ConnectionError):
                await self.session.send(Data(self.stream_id, b"", fin=True))
        self.session.forget(self)

    async def reset(self, status: int = CANCEL) -> None:
        if not self.local_closed:
            self.local_closed = True
            with contextlib.suppress(ConnectionError):
                await self.session.send(RstStream(self.stream_id, status))
        self._ended()
        self.session.forget(self)

    def _received(self, data: bytes, fin: bool) -> None:
        if data:
            self._incoming.put_nowait(data)
        if fin:
            self._ended()

    def _ended(self) -> None:
        if not self.remote_closed:
            self.remote_closed = True
            self._incoming.put_nowait(b"")


OnStream = Callable[[Stream], Coroutine[Any, Any, None]]


class Session:
    """The server's end of a SPDY session: accepts the peer's streams, one task per stream."""

    def __init__(self, *, read: Read, write: Write, on_stream: OnStream) -> None:
        self._read = read
        self._write = write
        self._on_stream = on_stream
        self._encoder = Encoder()
        self._decoder = Decoder()
        self._lock = asyncio.Lock()
        self._streams: dict[int, Stream] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed = False

    async def send(self, frame: Frame) -> None:
        if self.closed:
            raise ConnectionResetError("the SPDY session is closed")
        async with self._lock:  # the header compressor's state follows the order frames leave in
            await self._write(self._encoder.encode(frame))

    def forget(self, stream: Stream) -> None:
        if stream.local_closed and stream.remote_closed:
            self._streams.pop(stream.stream_id, None)

    async def run(self) -> None:
        """Serve until the transport ends or the peer says GOAWAY; the streams' tasks end with it."""
        try:
            while chunk := await self._read():
                for frame in self._decoder.feed(chunk):
                    if not await self._dispatch(frame):
                        return
        except SpdyError as exc:
            log.warning("SPDY session ends: %s", exc)
        finally:
            self.closed = True
            for stream in list(self._streams.values()):
                stream.reset_by_peer = True
                stream._ended()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=5)
            for task in self._tasks:
                task.cancel()

    async def _dispatch(self, frame: Frame) -> bool:
        if isinstance(frame, Data):
            stream = self._streams.get(frame.stream_id)
            if stream is None:
                await self.send(RstStream(frame.stream_id, INVALID_STREAM))
            else:
                stream._received(frame.data, frame.fin)
                self.forget(stream)
        elif isinstance(frame, SynStream):
            if frame.stream_id in self._streams or frame.stream_id % 2 == 0:
                await self.send(RstStream(frame.stream_id, PROTOCOL_ERROR))
                return True
            stream = Stream(self, frame.stream_id, frame.headers)
            self._streams[frame.stream_id] = stream
            await self.send(SynReply(frame.stream_id))
            if frame.fin:
                stream._ended()
            task = asyncio.create_task(self._on_stream(stream), name=f"spdy-stream-{frame.stream_id}")
            self._tasks.add(task)
            task.add_done_callback(self._task_done)
        elif isinstance(frame, RstStream):
            stream = self._streams.pop(frame.stream_id, None)
            if stream is not None:
                stream.reset_by_peer = True
                stream._ended()
        elif isinstance(frame, Ping):
            await self.send(frame)
        elif isinstance(frame, HeadersFrame) and frame.fin:
            stream = self._streams.get(frame.stream_id)
            if stream is not None:
                stream._received(b"", True)
        elif isinstance(frame, GoAway):
            return False
        return True  # SETTINGS, WINDOW_UPDATE, SYN_REPLY: nothing to do for a server of streams

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("SPDY stream handler failed", exc_info=task.exception())
