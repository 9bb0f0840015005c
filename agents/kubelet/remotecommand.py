"""``kubectl exec`` on the kubelet's side: a command in a running container, its streams joined to
the client's session (:mod:`agents.kubelet.streams`: WebSocket channels or SPDY streams).

The command runs in the container through ``ctr tasks exec``; with a terminal (``-it``) ctr is given a
pseudo-terminal whose size follows the client's resize messages. The session ends with a Status:
Success, or kube's NonZeroExitCode naming the exit code.
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

from aiohttp import web

from agents.kubelet.streams import CLOSE, RESIZE, STDERR, STDIN, STDOUT, Wanted, accept

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


def resize(fd: int, message: bytes) -> None:
    size = json.loads(message)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0))


async def remote_command(
    request: web.Request, start: StartProcess, *, container_id: str, argv: list[str], tty: bool, stdin: bool
) -> web.StreamResponse:
    session = await accept(request, Wanted.of(request.query))
    if isinstance(session, web.StreamResponse):
        return session
    loop = asyncio.get_running_loop()

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
            await session.send(channel, chunk)

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
                await session.send(STDOUT, chunk)
        finally:
            loop.remove_reader(master)

    async def from_client() -> None:
        async for channel, data in session.incoming():
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
            await session.end(exit_status(ended.result()))
    finally:
        ended.cancel()
        listener.cancel()
        for task in outputs:
            task.cancel()
        if process.returncode is None:
            process.kill()
        if master >= 0:
            os.close(master)
        await session.close()
    return session.response
