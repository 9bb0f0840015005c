"""``kubectl attach`` (and ``kubectl run -it``) on the kubelet's side: a running container's own streams.

A container whose spec says ``stdin: true`` is started with its standard input on a FIFO the kubelet
made (:class:`StdinPipes`) and holds open for writing: the container reads nothing but what attach
sessions write there, and no end of input while the kubelet holds it. With ``stdinOnce: true`` the
kubelet closes it when the first attach session ends (its client closed stdin or went): the container
then reads the end of its input, as kube's runtimes do. The container's output keeps going to its
log file (the runc shim writes it there, so ``kubectl logs`` is unchanged); an attach session sends
what the container writes there from the moment it joins, on the stdout channel, until the
container's run ends; then a Success status, as kube's kubelet ends an attach.

The session is exec's (:mod:`agents.kubelet.streams`): WebSocket channels or SPDY streams.

A container with ``tty: true`` gets a terminal: the shim then writes the terminal's output only to a
FIFO, which the kubelet makes and copies to the run's log file (:class:`Terminals`); resize
messages (channel 4) resize it.

A kubelet that starts again takes up the FIFOs of the containers still running (``adopt``): it holds
their stdin again and copies their terminals' output again (what they wrote meanwhile waited in the
FIFO, up to the pipe's 64 KiB).

Limit: a container's stdout and stderr share its log file, so both arrive on one channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from aiohttp import web

from agents.kubelet.streams import CLOSE, RESIZE, STDERR, STDIN, STDOUT, Wanted, accept

log = logging.getLogger(__name__)
POLL = 0.1
CHUNK = 32 * 1024


class StdinPipes:
    """The FIFOs that are containers' standard input, and the kubelet's write end of each."""

    def __init__(self, directory: Path, *, close_io: Callable[[str], Awaitable[None]] | None = None) -> None:
        self.directory = directory
        self._close_io = close_io  # the runtime's own end of a task's input (containerd's CloseIO)
        self._fds: dict[str, int] = {}

    def path(self, container: str) -> Path:
        return self.directory / f"{container}.stdin"

    def open(self, container: str) -> Path:
        """A new FIFO for ``container``'s stdin, held open for writing (what the task is given)."""
        self.close(container)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(container)
        path.unlink(missing_ok=True)
        os.mkfifo(path, 0o600)
        # read and write: opening does not wait for a reader, and the reader never sees an end of input
        self._fds[container] = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        return path

    def is_open(self, container: str) -> bool:
        return container in self._fds

    def adopt(self, container: str) -> bool:
        """Hold the FIFO of a container an earlier kubelet started again (True: there is one)."""
        path = self.path(container)
        if container in self._fds or not path.exists():
            return container in self._fds
        self._fds[container] = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        return True

    async def write(self, container: str, data: bytes) -> bool:
        """Write to the container's stdin (waiting while its pipe is full); False: it is closed."""
        while data:
            fd = self._fds.get(container)
            if fd is None:
                return False
            try:
                written = os.write(fd, data)
            except BlockingIOError:
                await asyncio.sleep(POLL)
                continue
            except OSError:
                return False
            data = data[written:]
        return True

    def close(self, container: str) -> None:
        """Let go of the write end (the FIFO file stays until :meth:`remove`)."""
        fd = self._fds.pop(container, None)
        if fd is not None:
            os.close(fd)

    async def end(self, container: str) -> None:
        """The end of the container's input: the write end goes, and the runtime closes the task's
        stdin (the shim keeps its FIFO open both ways, so letting go of ours alone is not enough)."""
        if container not in self._fds:
            return
        self.close(container)
        self.path(container).unlink(missing_ok=True)  # the shim keeps its end; no kubelet takes it up again
        if self._close_io is not None:
            try:
                await self._close_io(container)
            except Exception:
                log.warning("the stdin of %s could not be closed", container, exc_info=True)

    def remove(self, container: str) -> None:
        self.close(container)
        self.path(container).unlink(missing_ok=True)


class Terminals:
    """The output of containers with a terminal: the shim writes a terminal's output only to a FIFO
    (not to a log file as it does for pipes), so the kubelet makes that FIFO, holds it open and
    appends what comes out of it to the run's log file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._open: dict[str, tuple[int, int]] = {}  # container -> (the FIFO, the log file)

    def open(self, container: str, log_file: Path) -> Path:
        """A new output FIFO for ``container``, copied from now on to ``log_file`` (which a link beside
        the FIFO names, for a kubelet that starts again: :meth:`adopt`)."""
        self.close(container)
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{container}.tty"
        path.unlink(missing_ok=True)
        os.mkfifo(path, 0o600)
        link = self.directory / f"{container}.tty.log"
        link.unlink(missing_ok=True)
        link.symlink_to(log_file)
        self._copy(container, path, log_file)
        return path

    def adopt(self, container: str) -> bool:
        """Copy again the output of a container an earlier kubelet started (True: it has a terminal)."""
        path = self.directory / f"{container}.tty"
        if container in self._open or not path.exists():
            return container in self._open
        try:
            log_file = (self.directory / f"{container}.tty.log").readlink()
        except OSError:
            return False
        self._copy(container, path, log_file)
        return True

    def is_open(self, container: str) -> bool:
        return container in self._open

    def _copy(self, container: str, path: Path, log_file: Path) -> None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        fifo = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        log = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._open[container] = (fifo, log)

        def readable() -> None:
            with contextlib.suppress(BlockingIOError):
                while chunk := os.read(fifo, CHUNK):
                    os.write(log, chunk)

        asyncio.get_running_loop().add_reader(fifo, readable)

    def close(self, container: str) -> None:
        fds = self._open.pop(container, None)
        if fds is not None:
            asyncio.get_running_loop().remove_reader(fds[0])
            for fd in fds:
                os.close(fd)
        (self.directory / f"{container}.tty").unlink(missing_ok=True)
        (self.directory / f"{container}.tty.log").unlink(missing_ok=True)


class AttachRuntime(Protocol):
    """What an attach session asks of the container runtime (:class:`~agents.kubelet.containerd.Containerd`)."""

    stdin: StdinPipes

    def has_terminal(self, container: str) -> bool: ...

    async def resize(self, container: str, width: int, height: int) -> None: ...


def log_size(path: Path) -> int:
    """How long a run's log file is now (0 before it exists)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def read_log(path: Path, offset: int, chunk: int = CHUNK) -> bytes:
    """At most ``chunk`` bytes of a log file from ``offset`` (a local file: quick enough on the loop)."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read(chunk)
    except FileNotFoundError:
        return b""


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


async def attach(
    request: web.Request,
    *,
    container: str,
    log_file: Path,
    running: Callable[[], bool],
    runtime: AttachRuntime | None,
    stdin_once: bool,
) -> web.StreamResponse:
    """Serve one attach session until the container's run ends or the client goes."""
    pipes = runtime.stdin if runtime is not None else None
    terminal = runtime is not None and runtime.has_terminal(container)
    session = await accept(request, Wanted.of(request.query))
    if isinstance(session, web.StreamResponse):
        return session
    wants_stdin = _flag(request.query.get("stdin")) and pipes is not None and pipes.is_open(container)
    query = request.query
    out_channel = STDOUT if _flag(query.get("stdout")) else STDERR if _flag(query.get("stderr")) else -1

    async def end_of_input() -> None:
        if stdin_once and pipes is not None and wants_stdin:
            await pipes.end(container)

    async def output() -> None:
        offset = log_size(log_file)
        while True:
            chunk = read_log(log_file, offset)
            if chunk:
                offset += len(chunk)
                if out_channel >= 0:
                    await session.send(out_channel, chunk)
                continue
            if not running():
                return
            await asyncio.sleep(POLL)

    async def from_client() -> None:
        async for channel, data in session.incoming():
            if channel == STDIN and data and wants_stdin and pipes is not None:
                await pipes.write(container, bytes(data))
            elif channel == CLOSE and data[:1] == bytes([STDIN]):
                await end_of_input()
            elif channel == RESIZE and terminal and runtime is not None:
                try:
                    size = json.loads(data)
                    await runtime.resize(container, int(size["Width"]), int(size["Height"]))
                except (ValueError, KeyError, TypeError):
                    continue
                except Exception:
                    log.warning("the terminal of %s could not be resized", container, exc_info=True)

    pumping = asyncio.create_task(output())
    listening = asyncio.create_task(from_client())
    try:
        await asyncio.wait({pumping, listening}, return_when=asyncio.FIRST_COMPLETED)
        if pumping.done() and pumping.exception() is None:
            await session.end({"metadata": {}, "status": "Success"})
    finally:
        pumping.cancel()
        listening.cancel()
        await end_of_input()  # the first session is over: a stdinOnce container reads the end of its input
        await session.close()
    return session.response
