"""``kubectl exec`` on the kubelet's side: Kubernetes' channel protocol over a WebSocket.

Each message (binary, or text from clients that send strings) starts with its channel: 0 stdin,
1 stdout, 2 stderr, 3 the final Status (JSON), 4 a terminal resize (``{"Width": w, "Height": h}``),
and in v5 255 to close a stream (``[255, 0]``: no more stdin). The command runs in the container
through ``ctr tasks exec``; with a terminal (``-it``) ctr is given a pseudo-terminal whose size
follows the resize messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import signal
import struct
import termios
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255

StartProcess = Callable[..., Awaitable[asyncio.subprocess.Process]]


def exit_status(code: int) -> dict[str, Any]:
    """The Status that ends an exec: Success, or kube's NonZeroExitCode with the code as its cause."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: exit status {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def client_frame(kind: WSMsgType, data: object) -> tuple[int, bytes] | None:
    """A caller's message as (channel, payload), or None for one that carries no stream data.

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


def resize(fd: int, message: bytes) -> None:
    size = json.loads(message)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0))


async def remote_command(
    request: web.Request, start: StartProcess, *, container_id: str, argv: list[str], tty: bool, stdin: bool
) -> web.StreamResponse:
    ws = web.WebSocketResponse(protocols=PROTOCOLS)
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    lock = asyncio.Lock()

    async def send(channel: int, data: bytes) -> None:
        async with lock:
            if not ws.closed:
                await ws.send_bytes(bytes([channel]) + data)

    master = -1
    if tty:
        master, slave = pty.openpty()
        process = await start(container_id, argv, tty=True, stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
    else:
        process = await start(
            container_id,
            argv,
            tty=False,
            stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def pump(reader: asyncio.StreamReader, channel: int) -> None:
        while chunk := await reader.read(32 * 1024):
            await send(channel, chunk)

    async def pump_pty() -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        def readable() -> None:
            try:
                queue.put_nowait(os.read(master, 32 * 1024))
            except OSError:  # the other side closed: the command ended
                queue.put_nowait(b"")

        loop.add_reader(master, readable)
        try:
            while chunk := await queue.get():
                await send(STDOUT, chunk)
        finally:
            loop.remove_reader(master)

    async def from_client() -> None:
        async for message in ws:
            framed = client_frame(message.type, message.data)
            if framed is None:
                continue
            channel, data = framed
            if channel == STDIN and data:
                if tty:
                    os.write(master, data)
                elif process.stdin is not None:
                    process.stdin.write(data)
                    await process.stdin.drain()
            elif channel == RESIZE and tty:
                with contextlib.suppress(ValueError, KeyError, OSError):
                    resize(master, data)
                    process.send_signal(signal.SIGWINCH)
            elif channel == CLOSE and data[:1] == bytes([STDIN]) and process.stdin is not None:
                process.stdin.close()

    outputs = [asyncio.create_task(pump_pty())] if tty else []
    if not tty:
        assert process.stdout is not None and process.stderr is not None
        outputs = [asyncio.create_task(pump(process.stdout, STDOUT)), asyncio.create_task(pump(process.stderr, STDERR))]
    listener = asyncio.create_task(from_client())
    ended = asyncio.create_task(process.wait())
    try:
        await asyncio.wait({ended, listener}, return_when=asyncio.FIRST_COMPLETED)
        if ended.done():
            await asyncio.wait(outputs, timeout=5)
            await send(ERROR, json.dumps(exit_status(ended.result())).encode())
    finally:
        ended.cancel()
        listener.cancel()
        for task in outputs:
            task.cancel()
        if process.returncode is None:
            process.kill()
        if master >= 0:
            os.close(master)
        await ws.close()
    return ws
