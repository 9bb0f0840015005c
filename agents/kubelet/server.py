"""The kubelet's own HTTPS port (10250): container logs, exec, attach (:mod:`agents.kubelet.attach`) and
port-forward (:mod:`agents.kubelet.portforward`) for the API server, the node's and its pods' usage
(``/metrics/resource``, ``/stats/summary``), and /healthz.

Who gets in is :mod:`agents.kubelet.serverauth`'s to decide: the token in ``--server-token-file``
(the API server's kubelet client token), or any token the API server vouches for whose user may use
the node's subresource. ``GET /containerLogs/{namespace}/{pod}/{container}`` takes kube's
parameters: ``follow``, ``previous``, ``tailLines``, ``limitBytes`` (``timestamps`` and
``sinceSeconds`` are accepted and ignored: the log files keep no times).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from agents.kubelet.attach import AttachRuntime, attach, log_size, read_log
from agents.kubelet.podstate import Attempt
from agents.kubelet.portforward import PodNetwork, port_forward
from agents.kubelet.remotecommand import remote_command
from agents.kubelet.resourcemetrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from agents.kubelet.resourcemetrics import ResourceMetrics
from agents.kubelet.resourcestats import Snapshot, summary
from agents.kubelet.serverauth import ServerAuth

log = logging.getLogger(__name__)
FOLLOW_POLL = 0.2
CHUNK = 64 * 1024

# (namespace, pod, container) -> (pod uid, the container's runs oldest first), or None: no such pod
RunsOf = Callable[[str, str, str], tuple[str, list[Attempt]] | None]
LogFile = Callable[[str, str, int], Path]
# (container id, argv, tty, stdin fd/None, stdout fd, stderr fd) -> the started `ctr tasks exec` process
ExecProcess = Callable[..., Awaitable[asyncio.subprocess.Process]]
# (namespace, pod) -> where the pod's ports are, or None: no such pod running on this node
NetworkOf = Callable[[str, str], PodNetwork | None]
# (namespace, pod, container) -> the container's spec in the pod (None: no such pod or container)
ContainerOf = Callable[[str, str, str], Mapping[str, Any] | None]


def tail(data: bytes, lines: int) -> bytes:
    """The last ``lines`` lines of ``data`` (a final line without newline counts)."""
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


def _read_all(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


async def _no_exec(*_args: object, **_kwargs: object) -> asyncio.subprocess.Process:
    raise RuntimeError("this kubelet runs no commands")


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


class KubeletServer:
    def __init__(
        self,
        *,
        runs_of: RunsOf,
        log_file: LogFile,
        auth: ServerAuth,
        exec_process: ExecProcess | None = None,
        snapshot: Callable[[], Snapshot] | None = None,
        network_of: NetworkOf | None = None,
        container_of: ContainerOf | None = None,
        attach_runtime: AttachRuntime | None = None,
    ) -> None:
        self.runs_of = runs_of
        self.network_of = network_of
        self.container_of = container_of
        self.attach_runtime = attach_runtime
        self.exec_process = exec_process or _no_exec
        self.log_file = log_file
        self.auth = auth
        self.snapshot = snapshot
        self.metrics = ResourceMetrics(snapshot) if snapshot is not None else None
        self.app = web.Application(middlewares=[self._auth])
        self.app.router.add_get("/healthz", self._healthz)
        self.app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        self.app.router.add_route("*", "/exec/{namespace}/{pod}/{container}", self._exec)
        self.app.router.add_route("*", "/portForward/{namespace}/{pod}", self._port_forward)
        self.app.router.add_route("*", "/attach/{namespace}/{pod}/{container}", self._attach)
        self.app.router.add_get("/metrics/resource", self._resource_metrics)
        self.app.router.add_get("/stats/summary", self._summary)
        self._runner: web.AppRunner | None = None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Callable[[web.Request], object]) -> web.StreamResponse:
        if request.path != "/healthz":
            decision = await self.auth.decide(
                method=request.method, path=request.path, authorization=request.headers.get("Authorization", "")
            )
            if decision.status != 200:
                return web.Response(status=decision.status, text=decision.message)
        result = await handler(request)  # type: ignore[misc]
        assert isinstance(result, web.StreamResponse)
        return result

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _resource_metrics(self, _request: web.Request) -> web.Response:
        if self.metrics is None:
            return web.Response(status=404, text="404 page not found")
        return web.Response(body=self.metrics.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def _summary(self, _request: web.Request) -> web.Response:
        if self.snapshot is None:
            return web.Response(status=404, text="404 page not found")
        return web.json_response(summary(self.snapshot()))

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        found = self.runs_of(namespace, pod, container)
        if found is None:
            return web.Response(status=404, text=f'pod "{pod}" not found on this node')
        uid, runs = found
        previous = _flag(request.query.get("previous"))
        if not runs:
            return web.Response(
                status=400, text=f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating'
            )
        if previous and len(runs) < 2:
            return web.Response(
                status=400, text=f'previous terminated container "{container}" in pod "{pod}" not found'
            )
        run = runs[-2] if previous else runs[-1]
        path = self.log_file(uid, container, run.number)
        data = _read_all(path)
        if request.query.get("tailLines", "").isdigit():
            data = tail(data, int(request.query["tailLines"]))
        limit = int(request.query["limitBytes"]) if request.query.get("limitBytes", "").isdigit() else 0
        if limit:
            data = data[:limit]
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(data)
        if _flag(request.query.get("follow")) and not previous and not limit:
            offset = log_size(path)
            await self._follow(response, path, offset=offset, key=(namespace, pod, container), number=run.number)
        await response.write_eof()
        return response

    async def _follow(
        self, response: web.StreamResponse, path: Path, *, offset: int, key: tuple[str, str, str], number: int
    ) -> None:
        """Send what the container writes from ``offset`` on, until its run ends (or the client goes)."""
        while True:
            chunk = read_log(path, offset, CHUNK)
            if chunk:
                offset += len(chunk)
                await response.write(chunk)
                continue
            found = self.runs_of(*key)
            current = next((r for r in (found[1] if found else []) if r.number == number), None)
            if current is None or current.state == "exited":
                return
            await asyncio.sleep(FOLLOW_POLL)

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        found = self.runs_of(namespace, pod, container)
        runs = found[1] if found else []
        if not runs or runs[-1].state != "running":
            return web.Response(status=400, text=f'container "{container}" in pod "{pod}" is not running')
        argv = request.query.getall("command", [])
        if not argv:
            return web.Response(status=400, text="you must specify at least 1 command")
        return await remote_command(
            request,
            self.exec_process,
            container_id=runs[-1].container_id.removeprefix("containerd://"),
            argv=argv,
            tty=_flag(request.query.get("tty")),
            stdin=_flag(request.query.get("stdin")),
        )

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        namespace, pod, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        found = self.runs_of(namespace, pod, container)
        if found is None:
            return web.Response(status=404, text=f'pod "{pod}" not found on this node')
        uid, runs = found
        if not runs or runs[-1].state != "running":
            return web.Response(status=400, text=f'container "{container}" in pod "{pod}" is not running')
        run = runs[-1]
        spec = (self.container_of(namespace, pod, container) if self.container_of is not None else None) or {}

        def running() -> bool:
            now = self.runs_of(namespace, pod, container)
            current = next((r for r in (now[1] if now else []) if r.number == run.number), None)
            return current is not None and current.state != "exited"

        return await attach(
            request,
            container=run.container_id.removeprefix("containerd://"),
            log_file=self.log_file(uid, container, run.number),
            running=running,
            runtime=self.attach_runtime,
            stdin_once=bool(spec.get("stdinOnce")),
        )

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        namespace, pod = request.match_info["namespace"], request.match_info["pod"]
        network = self.network_of(namespace, pod) if self.network_of is not None else None
        if network is None:
            return web.Response(status=404, text="pod does not exist")
        return await port_forward(request, network)

    async def start(self, *, address: str, port: int, cert: Path, key: Path) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert), str(key))
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, address, port, ssl_context=context).start()
        log.info("serving logs on https://%s:%d", address, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
