"""SPDY/3.1 framing (agents.machinery.spdy): the codec against bytes kubectl sent, round trips of
every frame kind, and the session's replies over an in-memory transport."""

from __future__ import annotations

import asyncio

import pytest

from agents.machinery import spdy

# The first bytes `kubectl port-forward pod/p 18556:80` (v1.32) sent through its WebSocket tunnel,
# captured: the SYN_STREAM of the error stream of its first connection. Decoding it checks the SPDY/3
# header dictionary against Go's own.
KUBECTL_SYN_STREAM = bytes.fromhex(
    "800300010000003d0000000100000000000078f9e3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45a024cc"
    "6461c0c0c0c0590489c44c50e2663400000000ffff"
)


def test_decodes_the_syn_stream_kubectl_sends() -> None:
    (frame,) = spdy.Decoder().feed(KUBECTL_SYN_STREAM)
    assert frame == spdy.SynStream(1, (("streamtype", "error"), ("port", "80"), ("requestid", "0")))
    assert spdy.header(frame.headers, "streamType") == "error"


def test_dictionary_is_spdy3s() -> None:
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


FRAMES: list[spdy.Frame] = [
    spdy.SynStream(3, (("streamtype", "data"), ("port", "8080"), ("requestid", "1")), priority=2, fin=True),
    spdy.SynReply(3, (("x", "y"),)),
    spdy.SynReply(5),
    spdy.RstStream(3, spdy.CANCEL),
    spdy.Settings(((0, 4, 100), (1, 7, 65536))),
    spdy.Ping(7),
    spdy.GoAway(9, 0),
    spdy.HeadersFrame(3, (("a", "b"),), fin=True),
    spdy.WindowUpdate(3, 4096),
    spdy.Data(3, b"hello", fin=False),
    spdy.Data(3, b"", fin=True),
]


def test_every_frame_kind_round_trips_through_one_encoder_and_decoder() -> None:
    encoder, decoder = spdy.Encoder(), spdy.Decoder()
    wire = b"".join(encoder.encode(frame) for frame in FRAMES)
    assert decoder.feed(wire) == FRAMES


def test_decoder_takes_bytes_in_any_pieces() -> None:
    encoder, decoder = spdy.Encoder(), spdy.Decoder()
    wire = b"".join(encoder.encode(frame) for frame in FRAMES)
    out: list[spdy.Frame] = []
    for i in range(len(wire)):
        out.extend(decoder.feed(wire[i : i + 1]))
    assert out == FRAMES


def test_unknown_control_frames_are_skipped() -> None:
    unknown = b"\x80\x03\x00\x0a\x00\x00\x00\x02xx"
    assert spdy.Decoder().feed(unknown + spdy.Encoder().encode(spdy.Ping(1))) == [spdy.Ping(1)]


def test_other_versions_are_refused() -> None:
    with pytest.raises(spdy.SpdyError, match="version 2"):
        spdy.Decoder().feed(b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01")


def test_a_corrupt_header_block_is_an_error() -> None:
    frame = b"\x80\x03\x00\x02\x00\x00\x00\x08\x00\x00\x00\x01junk"
    with pytest.raises(spdy.SpdyError):
        spdy.Decoder().feed(frame)


class Pipe:
    """An in-memory transport: the test plays the client with its own encoder and decoder."""

    def __init__(self) -> None:
        self.to_server: asyncio.Queue[bytes] = asyncio.Queue()
        self.from_server = spdy.Decoder()
        self.frames: asyncio.Queue[spdy.Frame] = asyncio.Queue()
        self.encoder = spdy.Encoder()

    async def read(self) -> bytes:
        return await self.to_server.get()

    async def write(self, data: bytes) -> None:
        for frame in self.from_server.feed(data):
            self.frames.put_nowait(frame)

    def send(self, frame: spdy.Frame) -> None:
        self.to_server.put_nowait(self.encoder.encode(frame))

    async def next(self) -> spdy.Frame:
        return await asyncio.wait_for(self.frames.get(), 5)


async def test_session_replies_to_streams_echoes_pings_and_carries_data() -> None:
    pipe = Pipe()

    async def echo(stream: spdy.Stream) -> None:
        while chunk := await stream.read():
            await stream.write(chunk.upper())
        await stream.close()

    session = spdy.Session(read=pipe.read, write=pipe.write, on_stream=echo)
    running = asyncio.create_task(session.run())
    pipe.send(spdy.SynStream(1, (("streamtype", "data"),)))
    assert await pipe.next() == spdy.SynReply(1)
    pipe.send(spdy.Ping(2))
    assert await pipe.next() == spdy.Ping(2)
    pipe.send(spdy.Data(1, b"abc"))
    assert await pipe.next() == spdy.Data(1, b"ABC")
    pipe.send(spdy.Data(1, b"", fin=True))
    assert await pipe.next() == spdy.Data(1, b"", fin=True)
    pipe.send(spdy.GoAway(1))
    await asyncio.wait_for(running, 5)
    assert session.closed


async def test_data_for_an_unknown_stream_is_refused_with_rst_stream() -> None:
    pipe = Pipe()

    async def nothing(stream: spdy.Stream) -> None:
        await stream.read()

    session = spdy.Session(read=pipe.read, write=pipe.write, on_stream=nothing)
    running = asyncio.create_task(session.run())
    pipe.send(spdy.Data(9, b"x"))
    assert await pipe.next() == spdy.RstStream(9, spdy.INVALID_STREAM)
    pipe.to_server.put_nowait(b"")  # the transport ends: the session ends
    await asyncio.wait_for(running, 5)


async def test_a_reset_stream_reads_end_and_writes_fail() -> None:
    pipe = Pipe()
    seen: asyncio.Queue[bytes] = asyncio.Queue()
    failed = asyncio.Event()

    async def handler(stream: spdy.Stream) -> None:
        seen.put_nowait(await stream.read())
        try:
            await stream.write(b"late")
        except ConnectionResetError:
            failed.set()

    session = spdy.Session(read=pipe.read, write=pipe.write, on_stream=handler)
    running = asyncio.create_task(session.run())
    pipe.send(spdy.SynStream(1))
    assert await pipe.next() == spdy.SynReply(1)
    pipe.send(spdy.RstStream(1, spdy.CANCEL))
    assert await asyncio.wait_for(seen.get(), 5) == b""
    await asyncio.wait_for(failed.wait(), 5)
    pipe.to_server.put_nowait(b"")
    await asyncio.wait_for(running, 5)
