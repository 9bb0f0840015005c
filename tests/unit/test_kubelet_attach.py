"""The kubelet's attach (agents.kubelet.attach), served by a real aiohttp server in this process: a
"container" is a log file that grows and a stdin FIFO, as containerd's shim would make them. What is
written to the log after the session joins comes out on stdout, stdin goes to the FIFO, stdinOnce
closes it (and asks the runtime to close the task's stdin) when the session ends, and the end of the
run ends the session with a Success status."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agents.kubelet.attach import StdinPipes, Terminals, attach
from agents.kubelet.containers import ContainerId, ContainerSpec
from agents.kubelet.oci import runtime_spec

CID = "pod-uid_main_0"


class FakeContainer:
    def __init__(self, tmp_path: Path) -> None:
        self.log = tmp_path / "0.log"
        self.log.write_bytes(b"before the session\n")
        self.closed_io: list[str] = []  # the runtime's CloseIO, recorded
        self.stdin = StdinPipes(tmp_path / "fifo", close_io=self.close_io)
        self.fifo = self.stdin.open(CID)
        self.reader = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)  # the shim's end
        self.running = True
        self.terminal = False
        self.sizes: list[tuple[int, int]] = []
        self.stdin_once = False

    def has_terminal(self, container: str) -> bool:
        return self.terminal

    async def resize(self, container: str, width: int, height: int) -> None:
        self.sizes.append((width, height))

    async def close_io(self, container: str) -> None:
        self.closed_io.append(container)

    def write(self, data: bytes) -> None:
        with self.log.open("ab") as handle:
            handle.write(data)

    def read_stdin(self) -> bytes:
        try:
            return os.read(self.reader, 4096)
        except BlockingIOError:
            return b"<nothing yet>"


@pytest.fixture
async def container(tmp_path: Path) -> AsyncIterator[FakeContainer]:
    made = FakeContainer(tmp_path)
    yield made
    os.close(made.reader)
    made.stdin.remove(CID)


@pytest.fixture
async def kubelet(container: FakeContainer) -> AsyncIterator[TestServer]:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await attach(
            request,
            container=CID,
            log_file=container.log,
            running=lambda: container.running,
            runtime=container,
            stdin_once=container.stdin_once,
        )

    app = web.Application()
    app.router.add_get("/attach/ns/pod/main", handler)
    server = TestServer(app)
    await server.start_server()
    yield server
    await server.close()


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait (at most 5 s) for ``check`` to hold; the attach session works on the loop meanwhile."""
    for _ in range(100):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_output_from_the_join_on_then_success_when_the_run_ends(
    kubelet: TestServer, container: FakeContainer
) -> None:
    url = kubelet.make_url("/attach/ns/pod/main").with_query(stdout="true", stderr="true")
    async with aiohttp.ClientSession() as session, session.ws_connect(url, protocols=("v5.channel.k8s.io",)) as ws:
        assert ws.protocol == "v5.channel.k8s.io"
        await asyncio.sleep(0.2)
        container.write(b"one\n")
        assert await ws.receive_bytes(timeout=5) == b"\x01one\n"  # not what was written before the join
        container.write(b"two\n")
        assert await ws.receive_bytes(timeout=5) == b"\x01two\n"
        container.running = False
        status = await ws.receive_bytes(timeout=5)
        assert status[0] == 3 and json.loads(status[1:]) == {"metadata": {}, "status": "Success"}


async def test_stdin_reaches_the_fifo_and_stdin_once_closes_it_at_the_end(
    kubelet: TestServer, container: FakeContainer
) -> None:
    container.stdin_once = True
    url = kubelet.make_url("/attach/ns/pod/main").with_query(stdin="true", stdout="true")
    async with aiohttp.ClientSession() as session, session.ws_connect(url, protocols=("v5.channel.k8s.io",)) as ws:
        await ws.send_bytes(b"\x00hello\n")
        await until(lambda: container.read_stdin() == b"hello\n", "stdin to reach the FIFO")
        await ws.send_bytes(b"\xff\x00")  # v5: the client closed its stdin
        await until(lambda: not container.stdin.is_open(CID), "the write end to close")
    assert container.read_stdin() == b""  # end of input: no writer is left
    assert container.closed_io == [CID]  # and the runtime was asked to close the task's stdin


async def test_without_stdin_once_stdin_stays_open_for_the_next_session(
    kubelet: TestServer, container: FakeContainer
) -> None:
    url = kubelet.make_url("/attach/ns/pod/main").with_query(stdin="true", stdout="true")
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, protocols=("v5.channel.k8s.io",)) as ws:
            await ws.send_bytes(b"\x00first\n")
            await until(lambda: container.read_stdin() == b"first\n", "stdin to reach the FIFO")
        async with session.ws_connect(url, protocols=("v5.channel.k8s.io",)) as ws:
            await ws.send_bytes(b"\x00second\n")
            await until(lambda: container.read_stdin() == b"second\n", "stdin to reach the FIFO")
    assert container.stdin.is_open(CID) and container.closed_io == []


async def test_resize_messages_resize_a_containers_terminal(kubelet: TestServer, container: FakeContainer) -> None:
    container.terminal = True
    url = kubelet.make_url("/attach/ns/pod/main").with_query(stdin="true", stdout="true", tty="true")
    async with aiohttp.ClientSession() as session, session.ws_connect(url, protocols=("v5.channel.k8s.io",)) as ws:
        await ws.send_bytes(b"\x04" + json.dumps({"Width": 120, "Height": 40}).encode())
        await ws.send_bytes(b"\x04not json")
        await ws.send_bytes(b"\x04" + json.dumps({"Width": 80, "Height": 24}).encode())
        await until(lambda: len(container.sizes) == 2, "both resizes")
    assert container.sizes == [(120, 40), (80, 24)]


async def test_terminal_output_fifo_is_copied_to_the_log_file(tmp_path: Path) -> None:
    terminals = Terminals(tmp_path / "fifo")
    log = tmp_path / "logs" / "0.log"
    fifo = terminals.open(CID, log)
    writer = os.open(fifo, os.O_WRONLY)  # the shim's end
    os.write(writer, b"$ echo hi\r\nhi\r\n")
    await until(lambda: log.exists() and log.read_bytes() == b"$ echo hi\r\nhi\r\n", "the copy")
    os.close(writer)
    terminals.close(CID)
    assert not fifo.exists()


def test_a_tty_container_gets_a_terminal_in_its_runtime_spec() -> None:
    base = ContainerSpec(ContainerId("uid", "main", 0), "docker.io/library/busybox:latest", stdin=True)
    config: dict[str, Any] = {"Entrypoint": ["sh"]}
    assert "terminal" not in runtime_spec(base, image_config=config, namespace="k8s.io")["process"]
    with_tty = ContainerSpec(base.id, base.image, stdin=True, tty=True)
    assert runtime_spec(with_tty, image_config=config, namespace="k8s.io")["process"]["terminal"] is True


async def test_a_kubelet_that_starts_again_takes_up_the_fifos_of_running_containers(tmp_path: Path) -> None:
    first = StdinPipes(tmp_path / "fifo")
    fifo = first.open(CID)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the shim's end, which outlives the kubelet
    first.close(CID)  # the kubelet goes
    again = StdinPipes(tmp_path / "fifo")
    assert again.adopt(CID) and not again.adopt("other")
    assert await again.write(CID, b"still here\n")
    assert os.read(reader, 100) == b"still here\n"
    await again.end(CID)
    assert not again.adopt(CID)  # an input that ended is not taken up again
    os.close(reader)

    terminals = Terminals(tmp_path / "fifo")
    log = tmp_path / "logs" / "0.log"
    output = terminals.open(CID, log)
    writer = os.open(output, os.O_WRONLY | os.O_NONBLOCK)  # the shim's ends: it writes, and holds a
    holder = os.open(output, os.O_RDONLY | os.O_NONBLOCK)  # reader it never reads from
    fifo_fd, log_fd = terminals._open.pop(CID)  # the kubelet goes, its descriptors with it
    asyncio.get_running_loop().remove_reader(fifo_fd)
    os.close(fifo_fd)
    os.close(log_fd)
    os.write(writer, b"meanwhile\n")
    restarted = Terminals(tmp_path / "fifo")
    assert restarted.adopt(CID) and restarted.is_open(CID)
    await until(lambda: log.exists() and log.read_bytes() == b"meanwhile\n", "the copy to go on")
    os.close(writer)
    os.close(holder)
    restarted.close(CID)
