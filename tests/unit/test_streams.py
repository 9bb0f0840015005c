"""The API server's streams under property-based testing: watches, logs (with ``follow``) and exec given
generated parameters and clients that leave mid-stream or read slowly, against an API server on the memory
store. Each test runs many generated clients, then checks that nothing is left behind: no watch, no kubelet
connection, no asyncio task beyond those before, and the process' resident memory back within bounds.

The server runs in a thread of its own with its own event loop, as it would in its own process, so its
tasks can be counted apart from the clients'. Its kubelet is a fake declared below: an HTTPS server that
answers ``/containerLogs`` with numbered lines, endlessly when asked to follow, and for the container
``quiet`` falls silent after a few lines, as a followed log of an idle program does; and ``/exec`` with
a WebSocket speaking the kubelet's channel protocol (see ``agents/kubelet/remotecommand.py``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.apiserver import watchstream
from agents.apiserver.server import ApiServer
from agents.apiserver.settings import ApiServerSettings, KubeletClientSettings, WatchCacheSettings
from agents.kubelet.remotecommand import exit_status
from agents.kubelet.streams import CLOSE, ERROR, PROTOCOLS, STDIN, STDOUT
from kubelab_testing.lab import free_port
from kubelab_testing.waiting import eventually
from provisioner.lab.pki import Pki

T = TypeVar("T")
NS = "/api/v1/namespaces/default"
RSS_GROWTH = 40 * 2**20  # what many hundreds of streams may leave in the process' resident memory
SETTLE = 20.0  # seconds for streams whose clients left to notice (a quiet one: the 5 s idle check)


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class FakeKubelet:
    """A kubelet's log and exec endpoints over HTTPS, counting the log streams and exec sessions it has open."""

    def __init__(self) -> None:
        self.open = 0
        self.served = 0
        self.sessions = 0  # exec WebSockets open
        self.execs = 0

    async def logs(self, request: web.Request) -> web.StreamResponse:
        self.open += 1
        self.served += 1
        try:
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await response.prepare(request)
            follow = request.query.get("follow") == "true"
            quiet = request.match_info["container"] == "quiet"
            line = 0
            while follow or line < 20:
                if quiet and line >= 3:  # silent from now on, until the reader goes away
                    while request.transport is not None and not request.transport.is_closing():  # noqa: ASYNC110
                        await asyncio.sleep(0.05)  # aiohttp tells a handler of no closed connection but this way
                    break
                await response.write(f"line {line}\n".encode())
                line += 1
                await asyncio.sleep(0.005)
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
            return response
        except ConnectionError:
            return web.Response()
        finally:
            self.open -= 1

    async def exec(self, request: web.Request) -> web.StreamResponse:
        """The command ``yes`` writes numbered lines to stdout until the client leaves; ``exit [CODE]`` ends at
        once with its Status on channel 3; any other (or none) echoes stdin to stdout until the client leaves
        or, in v5, closes stdin. Subprotocols are negotiated as the kubelet's ``remote_command`` does."""
        ws = web.WebSocketResponse(protocols=PROTOCOLS)
        await ws.prepare(request)
        self.sessions += 1
        self.execs += 1
        try:
            command = request.query.getall("command", [])
            if command[:1] == ["exit"]:
                code = int(command[1]) if command[1:] and command[1].isdigit() else 0
                await ws.send_bytes(bytes([ERROR]) + json.dumps(exit_status(code)).encode())
            elif command[:1] == ["yes"]:
                writer = asyncio.create_task(self._lines(ws))
                try:
                    async for _ in ws:  # until the client leaves
                        pass
                finally:
                    writer.cancel()
            else:
                async for message in ws:
                    if message.type != WSMsgType.BINARY or not message.data:
                        continue
                    if message.data[0] == STDIN:
                        await ws.send_bytes(bytes([STDOUT]) + message.data[1:])
                    elif message.data == bytes([CLOSE, STDIN]):  # no more stdin: the command ends
                        await ws.send_bytes(bytes([ERROR]) + json.dumps(exit_status(0)).encode())
                        break
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(ConnectionError):
                await ws.close()
            self.sessions -= 1
        return ws

    @staticmethod
    async def _lines(ws: web.WebSocketResponse) -> None:
        line = 0
        with contextlib.suppress(ConnectionError):
            while not ws.closed:
                await ws.send_bytes(bytes([STDOUT]) + f"line {line}\n".encode())
                line += 1
                await asyncio.sleep(0.005)


@dataclass
class Running:
    """The API server (and the fake kubelet) on a loop of their own, in a thread."""

    server: ApiServer
    kubelet: FakeKubelet
    loop: asyncio.AbstractEventLoop
    url: str

    def call(self, coroutine: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)  # type: ignore[arg-type]

    def tasks(self) -> int:
        async def count() -> int:
            return len(asyncio.all_tasks())

        return self.call(count())

    def watchers(self) -> int:
        async def count() -> int:
            return self.server.cache.watcher_count()

        return self.call(count())

    def settle(self, baseline_tasks: int) -> tuple[int, int, int]:
        """Wait (at most SETTLE seconds) until every stream has ended; (watchers, kubelet streams and exec
        sessions, tasks)."""
        deadline = time.monotonic() + SETTLE
        while True:
            state = (self.watchers(), self.kubelet.open + self.kubelet.sessions, self.tasks())
            if (state[0] == 0 and state[1] == 0 and state[2] <= baseline_tasks) or time.monotonic() > deadline:
                return state
            time.sleep(0.1)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory, schema_cache: Path) -> Iterator[Running]:
    pki = Pki(tmp_path_factory.mktemp("pki"))
    pki.ensure_ca()
    pki.ensure_serving(dns_names=["localhost"], ips=["127.0.0.1"], name="kubelet", common_name="kubelet")
    api_port, kubelet_port = free_port(), free_port()
    settings = ApiServerSettings(
        storage_backend="memory",
        schema_cache_dir=schema_cache,
        watch=WatchCacheSettings(cache_size=2000, bookmark_interval=0.2),
        kubelet=KubeletClientSettings(certificate_authority=pki.ca_cert, address_override="127.0.0.1"),
    )
    loop = asyncio.new_event_loop()
    kubelet = FakeKubelet()
    server = ApiServer(settings)
    runners: list[web.AppRunner] = []

    async def start() -> None:
        await server.start()
        api = web.AppRunner(server.application(), access_log=None)
        await api.setup()
        await web.TCPSite(api, "127.0.0.1", api_port).start()
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", kubelet.logs)
        app.router.add_route("*", "/exec/{namespace}/{pod}/{container}", kubelet.exec)
        fake = web.AppRunner(app, access_log=None)
        await fake.setup()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(pki.serving_cert("kubelet")), str(pki.serving_key("kubelet")))
        await web.TCPSite(fake, "127.0.0.1", kubelet_port, ssl_context=context).start()
        runners.extend((api, fake))

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    running = Running(server, kubelet, loop, f"http://127.0.0.1:{api_port}")
    running.call(start())
    running.call(_objects(running.url, kubelet_port))
    yield running

    async def stop() -> None:
        for runner in runners:
            await runner.cleanup()
        await server.stop()

    running.call(stop())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


async def _objects(url: str, kubelet_port: int) -> None:
    """A node whose kubelet is the fake, and a pod Running on it with a chatty and a quiet container."""
    node = {
        "metadata": {"name": "n1"},
        "status": {"daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}}},
    }
    pod = {
        "metadata": {"name": "p", "labels": {"app": "p"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "chatty", "image": "x"}, {"name": "quiet", "image": "x"}]},
    }
    async with aiohttp.ClientSession() as session:
        created = await session.post(f"{url}/api/v1/nodes", json=node)
        assert created.status == 201, await created.text()
        current = await created.json()
        current["status"] = node["status"]
        assert (await session.put(f"{url}/api/v1/nodes/n1/status", json=current)).status == 200
        created = await session.post(f"{url}{NS}/pods", json=pod)
        assert created.status == 201, await created.text()
        current = await created.json()
        current["status"] = {"phase": "Running"}
        assert (await session.put(f"{url}{NS}/pods/p/status", json=current)).status == 200


# --- clients --------------------------------------------------------------------------------------

TEXTS = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
INTEGERS = st.one_of(st.integers(min_value=-(2**70), max_value=2**70).map(str), TEXTS)
FLAGS = st.sampled_from(["true", "false", "1", "0", "", "yes", "FALSE", "maybe"])


@dataclass(frozen=True)
class Reader:
    """How a client reads a stream: how many chunks before it leaves, and how long it waits between them."""

    chunks: int
    pause: float
    leave_abruptly: bool


READERS = st.builds(
    Reader,
    chunks=st.integers(min_value=0, max_value=5),
    pause=st.sampled_from([0.0, 0.0, 0.02, 0.1]),
    leave_abruptly=st.booleans(),
)


async def read_some(response: aiohttp.ClientResponse, reader: Reader) -> list[bytes]:
    chunks: list[bytes] = []
    for _ in range(reader.chunks):
        try:
            chunk = await asyncio.wait_for(response.content.readany(), 0.3)
        except TimeoutError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        if reader.pause:
            await asyncio.sleep(reader.pause)
    if reader.leave_abruptly:
        response.close()  # the connection goes, mid-stream
    else:
        response.release()
    return chunks


def measured(running: Running) -> tuple[int, int]:
    """(tasks, resident bytes) once the server is idle."""
    assert running.settle(10**6)[0:2] == (0, 0)
    return running.tasks(), rss()


def assert_nothing_left(running: Running, tasks: int, memory: int) -> None:
    watchers, kubelet_streams, now = running.settle(tasks)
    assert (watchers, kubelet_streams) == (0, 0), "a stream outlived its client"
    assert now <= tasks, f"{now - tasks} more asyncio tasks than before the streams"
    assert rss() - memory < RSS_GROWTH, f"resident memory grew by {(rss() - memory) / 2**20:.0f} MiB"
    assert running.call(_ready(running.url)) == "ok"


async def _ready(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as response:
        return await response.text()


# --- watches --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchCase:
    query: dict[str, str]
    accept: str
    reader: Reader
    writes: int  # configmaps written while the client reads


WATCH_CASES = st.builds(
    WatchCase,
    query=st.fixed_dictionaries(
        {"watch": st.just("true")},
        optional={
            "resourceVersion": st.one_of(INTEGERS, st.just("0"), st.just("1")),
            "resourceVersionMatch": st.sampled_from(["", "NotOlderThan", "Exact", "x"]),
            "timeoutSeconds": st.one_of(st.sampled_from(["1", "2", "0", "-1"]), INTEGERS),
            "allowWatchBookmarks": FLAGS,
            "sendInitialEvents": FLAGS,
            "labelSelector": st.one_of(st.sampled_from(["app=w", "app in (w,x)", "!app", "app!=w"]), TEXTS),
            "fieldSelector": st.one_of(st.sampled_from(["metadata.name=w1", "metadata.name!=w1"]), TEXTS),
            "limit": INTEGERS,
            "includeObject": st.sampled_from(["Object", "None", "Metadata", "x"]),
        },
    ),
    accept=st.sampled_from(
        [
            "application/json",
            "application/json;as=Table;v=v1;g=meta.k8s.io",
            "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io",
            "application/yaml",
            "text/html",
        ]
    ),
    reader=READERS,
    writes=st.integers(min_value=0, max_value=5),
)


async def watch_once(url: str, case: WatchCase, serial: int) -> None:
    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        response = await session.get(f"{url}{NS}/configmaps", params=case.query, headers={"Accept": case.accept})
        assert response.status < 500, await response.text()
        if response.status != 200:
            status = await response.json()
            assert status["kind"] == "Status"
            return
        for i in range(case.writes):
            body = {"metadata": {"name": f"w{serial}-{i}", "labels": {"app": "w"}}, "data": {"n": str(i)}}
            assert (await session.post(f"{url}{NS}/configmaps", json=body)).status == 201
        chunks = await read_some(response, case.reader)
        for line in b"".join(chunks).splitlines()[:-1]:  # every whole line is one event
            event = json.loads(line)
            assert event["type"] in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"), event


def test_watches_with_generated_parameters_and_clients_leave_nothing_behind(running: Running) -> None:
    tasks, memory = measured(running)
    serial = iter(range(10**6))

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=WATCH_CASES)
    def one(case: WatchCase) -> None:
        asyncio.run(watch_once(running.url, case, next(serial)))

    one()
    assert_nothing_left(running, tasks, memory)


def test_a_watcher_that_reads_nothing_while_much_is_written_is_disconnected(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server keeps at most MAX_BUFFERED unsent bytes for a watcher (lowered here to 1 MiB, so that a few
    MB of events show it), and the client's socket takes little (a small receive buffer, never read)."""
    monkeypatch.setattr(watchstream, "MAX_BUFFERED", 2**20)
    tasks, _ = measured(running)
    port = int(running.url.rsplit(":", 1)[1])
    with socket.socket() as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(f"GET {NS}/secrets?watch=1 HTTP/1.1\r\nHost: api\r\n\r\n".encode())
        eventually(lambda: running.watchers() == 1, timeout=SETTLE, what="the watch to start")

        async def flood() -> None:
            async with aiohttp.ClientSession() as session:
                payload = "x" * 100_000
                for i in range(80):  # 8 MB of events
                    body = {"metadata": {"name": f"big-{i}"}, "stringData": {"blob": payload}}
                    assert (await session.post(f"{running.url}{NS}/secrets", json=body)).status == 201
                    if not running.watchers():
                        break
                for i in range(80):
                    await session.delete(f"{running.url}{NS}/secrets/big-{i}")

        asyncio.run(flood())
        # dropped by the server while its client is still connected
        eventually(lambda: running.watchers() == 0, timeout=SETTLE, what="the stalled watch to be dropped")
    watchers, _, now = running.settle(tasks)
    assert watchers == 0 and now <= tasks


# --- logs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogCase:
    query: dict[str, str]
    reader: Reader


LOG_CASES = st.builds(
    LogCase,
    query=st.fixed_dictionaries(
        {"container": st.sampled_from(["chatty", "quiet", "nope"])},
        optional={
            "follow": FLAGS,
            "previous": FLAGS,
            "timestamps": FLAGS,
            "tailLines": st.one_of(st.sampled_from(["0", "5", "-1"]), INTEGERS),
            "limitBytes": st.one_of(st.sampled_from(["1", "100", "0"]), INTEGERS),
            "sinceSeconds": st.one_of(st.sampled_from(["1", "0"]), INTEGERS),
            "sinceTime": TEXTS,
        },
    ),
    reader=READERS,
)


async def log_once(url: str, case: LogCase) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        response = await session.get(f"{url}{NS}/pods/p/log", params=case.query)
        assert response.status in (200, 400, 422), await response.text()
        if response.status != 200:
            assert (await response.json())["kind"] == "Status"
            return
        await read_some(response, case.reader)


def test_logs_with_generated_parameters_and_clients_leave_no_kubelet_stream_open(running: Running) -> None:
    tasks, memory = measured(running)
    served = running.kubelet.served

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=LOG_CASES)
    def one(case: LogCase) -> None:
        asyncio.run(log_once(running.url, case))

    one()
    assert running.kubelet.served > served  # the streams reached the kubelet
    assert_nothing_left(running, tasks, memory)


# --- exec -----------------------------------------------------------------------------------------

UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
}


@dataclass(frozen=True)
class ExecCase:
    query: tuple[tuple[str, str], ...]  # `command` repeats
    method: str
    protocols: tuple[str, ...]  # offered in Sec-WebSocket-Protocol
    upgrade: bool  # a WebSocket, or a plain HTTP request
    stdin: tuple[bytes, ...]
    close_stdin: bool  # v5's "no more stdin"
    reader: Reader


# the fake kubelet's commands (then arguments: an exit code or odd text), none, empty, or only odd text
KNOWN_COMMANDS = st.tuples(
    st.sampled_from(["cat", "yes", "exit"]), st.lists(st.one_of(st.sampled_from(["0", "3", "-c"]), TEXTS), max_size=3)
).map(lambda t: (t[0], *t[1]))
COMMANDS = st.one_of(
    st.just(()), st.just(("",)), KNOWN_COMMANDS, KNOWN_COMMANDS, st.lists(TEXTS, min_size=1, max_size=3).map(tuple)
)


@st.composite
def exec_queries(draw: st.DrawFn) -> tuple[tuple[str, str], ...]:
    query = [("command", part) for part in draw(COMMANDS)]
    container = draw(st.sampled_from(["chatty", "chatty", "chatty", "quiet", "nope", None]))
    if container is not None:
        query.append(("container", container))
    for flag in ("stdin", "stdout", "stderr", "tty"):
        value = draw(st.one_of(st.none(), FLAGS))
        if value is not None:
            query.append((flag, value))
    return tuple(query)


EXEC_CASES = st.builds(
    ExecCase,
    query=exec_queries(),
    method=st.sampled_from(["GET", "GET", "POST"]),
    protocols=st.sampled_from(
        [
            ("v5.channel.k8s.io",),
            ("v4.channel.k8s.io",),
            ("v5.channel.k8s.io", "v4.channel.k8s.io"),
            ("v4.channel.k8s.io", "v5.channel.k8s.io"),
            ("chat", "v4.channel.k8s.io"),
            ("v5.channel.k8s.io", "base64.channel.k8s.io"),
            ("base64.channel.k8s.io",),
            (),
        ]
    ),
    upgrade=st.sampled_from([True, True, True, False]),
    stdin=st.lists(st.binary(max_size=20), max_size=3).map(tuple),
    close_stdin=st.booleans(),
    reader=READERS,
)


async def converse(ws: aiohttp.ClientWebSocketResponse, case: ExecCase) -> None:
    """Send some stdin, read a few messages (stdout, or the Status on channel 3), and leave."""
    assert ws.protocol in PROTOCOLS and ws.protocol in case.protocols, ws.protocol
    with contextlib.suppress(ConnectionError):  # the command may have ended already
        for data in case.stdin:
            await ws.send_bytes(bytes([STDIN]) + data)
        if case.close_stdin and ws.protocol == "v5.channel.k8s.io":
            await ws.send_bytes(bytes([CLOSE, STDIN]))
    for _ in range(case.reader.chunks):
        try:
            message = await ws.receive(timeout=0.3)
        except TimeoutError:
            break
        if message.type != WSMsgType.BINARY:
            break
        channel, data = message.data[0], message.data[1:]
        assert channel in (STDOUT, ERROR), message.data
        if channel == ERROR:
            assert json.loads(data)["status"] in ("Success", "Failure"), data
        if case.reader.pause:
            await asyncio.sleep(case.reader.pause)
    if case.reader.leave_abruptly:
        ws._response.close()  # the connection goes, mid-session
    else:
        await ws.close()


async def exec_once(url: str, case: ExecCase) -> None:
    address = f"{url}{NS}/pods/p/exec"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        if case.upgrade:
            try:
                ws = await session.ws_connect(address, method=case.method, params=case.query, protocols=case.protocols)
            except aiohttp.WSServerHandshakeError as refused:
                assert 400 <= refused.status < 500, refused
            else:
                await converse(ws, case)
                return
        # a plain request, or the refused upgrade again to read the answer's body
        headers = dict(UPGRADE) if case.upgrade else {}
        if case.protocols:
            headers["Sec-WebSocket-Protocol"] = ", ".join(case.protocols)
        async with session.request(case.method, address, params=case.query, headers=headers) as response:
            assert 400 <= response.status < 500, await response.text()
            assert (await response.json())["kind"] == "Status"


def test_exec_with_generated_parameters_and_clients_leave_no_kubelet_session_open(running: Running) -> None:
    tasks, memory = measured(running)
    execs = running.kubelet.execs

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=EXEC_CASES)
    def one(case: ExecCase) -> None:
        asyncio.run(exec_once(running.url, case))

    one()
    assert running.kubelet.execs > execs  # the sessions reached the kubelet
    assert_nothing_left(running, tasks, memory)
    assert running.kubelet.sessions == 0
