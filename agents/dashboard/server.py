"""The dashboard's HTTP side (aiohttp): the page (``static/``), and a small backend through which every
call of the page goes to the API server with the logged-in user's bearer token.

Routes, all relative to the dashboard's root so that it works under the API server's service proxy:

- ``GET /`` and ``GET /static/NAME``: the page; ``GET /healthz``: the kubelet's probe.
- ``POST /login`` (``{"token": ...}``): the token is checked with a SelfSubjectReview and kept in a
  cookie (:mod:`~agents.dashboard.session`); a refused token answers the API server's own Status.
  ``POST /logout`` forgets it.
- ``GET /api/overview``: the architecture map (:mod:`~agents.dashboard.overview`), listed with the
  user's token; a list the user may not read is left out and its 403 message shown instead.
- ``GET /api/watch?resourceVersion=RV``: Server-Sent Events, one per change seen by the API server's
  watch streams of nodes, pods and leases (the page redraws from them).
- ``GET /api/trace?path=OBJECT``: the object's trace, fetched from the trace collector through the
  API server's service proxy and laid out (:mod:`~agents.dashboard.timeline`).
- ``GET /k8s/PATH``: any read of the API, passed through with its answer as it is (so a 403 carries
  kube's wording to the page); ``PATCH|PUT`` of a Deployment's scale and ``DELETE`` of one named
  object are the only writes let through.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from agents.dashboard import overview, session, timeline
from agents.dashboard.session import LoginError
from agents.dashboard.settings import DashboardSettings
from agents.machinery import objects
from agents.machinery.client import Client

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
TRACE_ANNOTATION = "tracing.kubelab.dev/traceparent"
COLLECTOR = "/api/v1/namespaces/kube-system/services/trace-collector:4318/proxy/api/v1/traces"
READ_PREFIXES = ("api", "apis", "version", "readyz", "livez", "healthz")
NEVER_READ = ("exec", "attach", "portforward")
WATCHED = (
    ("Node", "/api/v1/nodes"),
    ("Pod", "/api/v1/pods"),
    ("Lease", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"),
    ("Lease", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"),
)
KEEPALIVE = 15.0  # seconds between SSE comments, so proxies keep the stream open
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class Answer:
    code: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


def _json(body: Any, code: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=code, content_type="application/json", headers={"Cache-Control": "no-store"}
    )


def _failure(code: int, reason: str, message: str) -> web.Response:
    return _json(objects.failure_status(code, reason, message), code)


class ApiServer:
    """Requests to the API server, each with the token it is given (never one of the dashboard's own)."""

    def __init__(self, server: str, *, ca_pem: bytes | None, timeout: float) -> None:
        self.server = server.rstrip("/")
        context = ssl.create_default_context(cadata=ca_pem.decode() if ca_pem else None)
        self.timeout = timeout
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context), cookie_jar=aiohttp.DummyCookieJar()
        )

    async def close(self) -> None:
        await self.session.close()

    def _headers(self, token: str, *, content_type: str = "") -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, */*"}
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def call(
        self,
        method: str,
        path: str,
        token: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "",
    ) -> Answer:
        try:
            async with self.session.request(
                method,
                self.server + path,
                params=dict(query or {}),
                data=body,
                headers=self._headers(token, content_type=content_type),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                data = await response.read()
                return Answer(response.status, data, response.content_type or "application/octet-stream")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            message = f"the API server at {self.server} could not be reached: {exc or type(exc).__name__}"
            return Answer(
                503, orjson.dumps(objects.failure_status(503, "ServiceUnavailable", message)), "application/json"
            )

    async def watch(self, path: str, token: str, *, resource_version: str) -> AsyncIterator[dict[str, Any]]:
        """The watch stream's events; a refusal is raised as LoginError with the API server's message."""
        query = {"watch": "1", "allowWatchBookmarks": "false"}
        if resource_version:
            query["resourceVersion"] = resource_version
        async with self.session.get(
            self.server + path,
            params=query,
            headers=self._headers(token),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout),
        ) as response:
            if response.status != 200:
                data = await response.read()
                body = Answer(response.status, data, "application/json").json()
                raise LoginError(response.status, session.status_message(response.status, body))
            async for line in response.content:
                if line.strip():
                    event = orjson.loads(line)
                    if isinstance(event, dict):
                        yield event


def event_summary(kind: str, event: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the page needs of one watch event (a Lease's renewal is drawn without a reload)."""
    obj = event.get("object") or {}
    if event.get("type") == "ERROR":
        return {"type": "ERROR", "kind": kind, "message": str(obj.get("message") or "")}
    meta = obj.get("metadata") or {}
    out: dict[str, Any] = {
        "type": str(event.get("type") or ""),
        "kind": kind,
        "namespace": str(meta.get("namespace") or ""),
        "name": str(meta.get("name") or ""),
        "resourceVersion": str(meta.get("resourceVersion") or ""),
    }
    if kind == "Lease":
        spec = obj.get("spec") or {}
        out["holder"] = str(spec.get("holderIdentity") or "")
        out["renewTime"] = str(spec.get("renewTime") or "")
    return out


class Dashboard:
    def __init__(self, api: ApiServer, *, static: Path = STATIC, clock: Callable[[], float] = time.time) -> None:
        self.api = api
        self.static = static
        self.clock = clock

    # --- who asks ---------------------------------------------------------------------------------

    @staticmethod
    def token(request: web.Request) -> str:
        found = session.token_of(request.cookies)
        if found is None:
            raise LoginError(401, "Unauthorized")
        return found

    @web.middleware
    async def guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD") and request.headers.get(session.CSRF_HEADER) != "1":
            return _failure(403, "Forbidden", f"requests that change something must carry {session.CSRF_HEADER}")
        try:
            response = await handler(request)
        except LoginError as exc:
            reason = {401: "Unauthorized", 403: "Forbidden"}.get(exc.code, "BadRequest")
            return _failure(exc.code, reason, exc.message)
        except web.HTTPNotFound:
            return _failure(404, "NotFound", "the server could not find the requested resource")
        except web.HTTPMethodNotAllowed:
            return _failure(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    # --- the page ---------------------------------------------------------------------------------

    async def index(self, _request: web.Request) -> web.StreamResponse:
        return await self._file("index.html")

    async def asset(self, request: web.Request) -> web.StreamResponse:
        return await self._file(request.match_info["name"])

    async def _file(self, name: str) -> web.StreamResponse:
        path = self.static / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        return web.Response(body=path.read_bytes(), content_type=content_type, headers={"Cache-Control": "no-cache"})

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    # --- logging in -------------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        try:
            given = await request.json(loads=orjson.loads)
        except (ValueError, orjson.JSONDecodeError):
            given = {}
        token = session.checked_token(given.get("token") if isinstance(given, dict) else None)
        user = await self.reviewed(token)
        response = _json({"user": user})
        # by hand: aiohttp's set_cookie always writes a Path, which must stay the login's directory
        response.headers["Set-Cookie"] = session.set_cookie(token)
        log.info("a user logged in as %s", user or "(unnamed)")
        return response

    async def logout(self, _request: web.Request) -> web.Response:
        response = _json({"user": ""})
        response.headers["Set-Cookie"] = session.clear_cookie()
        return response

    async def whoami(self, request: web.Request) -> web.Response:
        return _json({"user": await self.reviewed(self.token(request))})

    async def reviewed(self, token: str) -> str:
        """Who the API server says ``token`` is (a SelfSubjectReview), or LoginError in its words."""
        answer = await self.api.call(
            "POST",
            session.SELF_SUBJECT_REVIEW,
            token,
            body=orjson.dumps(session.REVIEW_BODY),
            content_type="application/json",
        )
        if answer.code not in (200, 201):
            raise LoginError(answer.code, session.status_message(answer.code, answer.json()))
        return session.user_of(answer.json())

    # --- the architecture map ---------------------------------------------------------------------

    async def overview(self, request: web.Request) -> web.Response:
        token = self.token(request)
        lists = {
            "nodes": "/api/v1/nodes",
            "pods": "/api/v1/pods",
            "leases": "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
            "node_leases": "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            "deployments": "/apis/apps/v1/namespaces/kube-system/deployments",
            "daemonsets": "/apis/apps/v1/namespaces/kube-system/daemonsets",
        }
        answers = await asyncio.gather(
            self.api.call("GET", "/readyz", token, query={"verbose": "1"}),
            *(self.api.call("GET", path, token) for path in lists.values()),
        )
        readyz, listed = answers[0], dict(zip(lists, answers[1:], strict=True))
        if any(a.code == 401 for a in listed.values()):
            first = next(a for a in listed.values() if a.code == 401)
            raise LoginError(401, session.status_message(401, first.json()))
        items: dict[str, list[Any]] = {}
        errors: dict[str, str] = {}
        revision = ""
        for name, answer in listed.items():
            body = answer.json()
            if answer.code == 200 and isinstance(body, dict):
                items[name] = list(body.get("items") or [])
                revision = max(
                    revision,
                    str((body.get("metadata") or {}).get("resourceVersion") or ""),
                    key=lambda rv: int(rv) if rv.isdigit() else -1,
                )
            else:
                items[name] = []
                errors[name] = session.status_message(answer.code, body)
        built = overview.build(
            nodes=items["nodes"],
            pods=items["pods"],
            leases=items["leases"],
            node_leases=items["node_leases"],
            deployments=items["deployments"],
            daemonsets=items["daemonsets"],
            readyz=(readyz.code, readyz.body.decode(errors="replace")),
            revision=revision,
            now=self.clock(),
            errors=errors,
        )
        return _json({**built, "serverTime": self.clock()})

    async def watch(self, request: web.Request) -> web.StreamResponse:
        token = self.token(request)
        resource_version = request.query.get("resourceVersion", "")
        if resource_version and not resource_version.isdigit():
            return _failure(400, "BadRequest", f"resourceVersion: Invalid value: {resource_version!r}")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)

        async def follow(kind: str, path: str) -> None:
            try:
                async for event in self.api.watch(path, token, resource_version=resource_version):
                    summary = event_summary(kind, event)
                    if summary is not None:
                        await queue.put(summary)
                await queue.put({"type": "CLOSED", "kind": kind, "message": "the watch stream ended"})
            except LoginError as exc:
                await queue.put({"type": "ERROR", "kind": kind, "code": exc.code, "message": exc.message})
            except (aiohttp.ClientError, OSError, orjson.JSONDecodeError) as exc:
                await queue.put({"type": "CLOSED", "kind": kind, "message": str(exc)})

        tasks = [asyncio.create_task(follow(kind, path)) for kind, path in WATCHED]
        try:
            await response.write(b": watching\n\n")
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return response

    # --- a trace ----------------------------------------------------------------------------------

    async def trace(self, request: web.Request) -> web.Response:
        token = self.token(request)
        path = request.query.get("path", "")
        if not _readable(path):
            return _failure(400, "BadRequest", f"path: Invalid value: {path!r}: an API object's path")
        found = await self.api.call("GET", path, token)
        if found.code != 200:
            return _passed(found)
        obj = found.json() or {}
        meta = obj.get("metadata") or {}
        traceparent = str((meta.get("annotations") or {}).get(TRACE_ANNOTATION) or "")
        trace_id = timeline.trace_id_of(traceparent)
        what = f'{str(obj.get("kind") or "object").lower()} "{meta.get("name")}"'
        if trace_id is None:
            message = f"{what} carries no {TRACE_ANNOTATION} annotation: no traced request wrote it"
            return _failure(404, "NotFound", message)
        answer = await self.api.call("GET", f"{COLLECTOR}/{trace_id}", token)
        if answer.code != 200:
            body = answer.json()
            message = session.status_message(answer.code, body, answer.body.decode(errors="replace")[:500].strip())
            return _failure(
                answer.code,
                "NotFound" if answer.code == 404 else "ServiceUnavailable",
                f"trace {trace_id} of {what}: {message}",
            )
        laid = timeline.layout(answer.json() or {})
        return _json(
            {
                **laid,
                "object": {
                    "kind": obj.get("kind"),
                    "namespace": meta.get("namespace") or "",
                    "name": meta.get("name"),
                    "traceparent": traceparent,
                },
            }
        )

    # --- the API, passed through ------------------------------------------------------------------

    async def passthrough(self, request: web.Request) -> web.Response:
        token = self.token(request)
        path = "/" + request.match_info["path"]
        if request.method == "GET":
            if not _readable(path) or request.query.get("watch", "").lower() in ("1", "true"):
                return _failure(403, "Forbidden", f"the dashboard does not pass {path} on")
            return _passed(await self.api.call("GET", path, token, query=request.query))
        if not session.is_write_allowed(request.method, path):
            return _failure(
                405,
                "MethodNotAllowed",
                f"the dashboard writes only a Deployment's scale and deletes: not {request.method} {path}",
            )
        body = await request.read() if request.method != "DELETE" else None
        content_type = request.headers.get("Content-Type", "application/json")
        return _passed(await self.api.call(request.method, path, token, body=body, content_type=content_type))

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard], client_max_size=64 * 1024)
        app.router.add_get("/", self.index)
        app.router.add_get("/static/{name}", self.asset)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/api/whoami", self.whoami)
        app.router.add_get("/api/overview", self.overview)
        app.router.add_get("/api/watch", self.watch)
        app.router.add_get("/api/trace", self.trace)
        for method in ("GET", "PATCH", "PUT", "DELETE"):
            app.router.add_route(method, "/k8s/{path:.*}", self.passthrough)
        return app


def _readable(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in READ_PREFIXES or ".." in parts:
        return False
    return not any(p in NEVER_READ for p in parts[1:])


def _passed(answer: Answer) -> web.Response:
    return web.Response(
        body=answer.body, status=answer.code, content_type=answer.content_type, headers={"Cache-Control": "no-store"}
    )


async def run(settings: DashboardSettings, client: Client, ready: asyncio.Event) -> None:
    api = ApiServer(client.config.server, ca_pem=client.config.ca_pem, timeout=settings.request_timeout)
    runner = web.AppRunner(Dashboard(api).app(), access_log=None)
    try:
        await runner.setup()
        await web.TCPSite(runner, settings.bind_address, settings.port).start()
        log.info("dashboard serving on http://%s:%d/ for %s", settings.bind_address, settings.port, api.server)
        ready.set()
        await asyncio.Event().wait()  # until the component is stopped (the task is cancelled)
    finally:
        await runner.cleanup()
        await api.close()
