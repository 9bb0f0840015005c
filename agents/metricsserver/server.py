"""The metrics.k8s.io API over HTTPS (aiohttp), and the loop that scrapes the kubelets for it.

:class:`MetricsApi` answers the API's paths from the stored points and the watched Nodes and Pods
(:mod:`~agents.metricsserver.views`), after deciding who asks (:mod:`~agents.metricsserver.auth`)
and asking the API server whether they may (:mod:`~agents.metricsserver.delegate`). ``/healthz``,
``/livez`` and ``/readyz`` are open to all; ``/readyz`` says ready once one scrape has been stored.
The TLS context asks every client for a certificate and accepts one from any front-proxy CA the
ConfigMap has named (a CA dropped from it is refused by the decision, not by the handshake).
:class:`Collector` scrapes every ``--metric-resolution``; :func:`run` wires it all in a pod.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from aiohttp import web

from agents.machinery.client import Client, ClientConfig
from agents.machinery.informer import Informer
from agents.machinery.resources import NODES, PODS
from agents.metricsserver import apiobjects, auth, views
from agents.metricsserver.apiobjects import ApiStatusError
from agents.metricsserver.auth import RequestHeaderConfig, UserInfo
from agents.metricsserver.certs import serving_pair
from agents.metricsserver.delegate import Delegate, ReviewError, TrustFollower
from agents.metricsserver.durations import parse_seconds
from agents.metricsserver.points import PodRef
from agents.metricsserver.scraper import Round, Scraper, Target, target_of
from agents.metricsserver.settings import MetricsServerSettings
from agents.metricsserver.storage import Storage

log = logging.getLogger(__name__)

Object = Mapping[str, Any]
BASE = f"/apis/{apiobjects.GROUP}/{apiobjects.VERSION}"
TRUST_WAIT = 30.0  # seconds to wait for the front-proxy trust before serving without it


class Lister(Protocol):
    """What the API reads of the watched Nodes or Pods (an Informer, or a fake in tests)."""

    def get(self, key: str) -> Object | None: ...

    def items(self) -> Sequence[Object]: ...


class Reviewer(Protocol):
    async def authenticate_token(self, token: str) -> UserInfo | None: ...

    async def authorize(self, user: UserInfo, attrs: auth.Attributes) -> tuple[bool, str]: ...


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _failure(error: ApiStatusError) -> web.Response:
    return _json(error.status(), error.code)


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """TLS for the API; client certificates are asked for once a front-proxy CA is known."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.verify_mode = ssl.CERT_NONE
    return context


class MetricsApi:
    def __init__(
        self,
        *,
        storage: Storage,
        nodes: Lister,
        pods: Lister,
        reviewer: Reviewer,
        tls: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.nodes = nodes
        self.pods = pods
        self.reviewer = reviewer
        self.tls = tls
        self.clock = clock
        self.trust: RequestHeaderConfig | None = None

    def set_trust(self, config: RequestHeaderConfig | None) -> None:
        """The front proxy's trust changed: the decision takes the new one at once; the handshake
        accepts certificates of its CAs from now on."""
        self.trust = config
        if config is not None and self.tls is not None:
            self.tls.load_verify_locations(cadata=config.client_ca_pem)
            self.tls.verify_mode = ssl.CERT_OPTIONAL

    # --- who asks ---------------------------------------------------------------------------------

    async def _user(self, request: web.Request) -> UserInfo:
        cert_der: bytes | None = None
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            cert_der = ssl_object.getpeercert(binary_form=True)
        decided = auth.front_proxy_user(
            cert_der, self.trust, request.headers.items(), now=datetime.fromtimestamp(self.clock(), UTC)
        )
        if isinstance(decided, UserInfo):
            return decided
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            user = await self.reviewer.authenticate_token(token.strip())
            if user is not None:
                return user
        if cert_der is not None:
            log.info("%s %s: not authenticated: %s", request.method, request.path, decided)
        raise auth.unauthorized()

    @web.middleware
    async def guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in auth.OPEN_PATHS:
            return await handler(request)
        try:
            user = await self._user(request)
            if "system:authenticated" not in user.groups:
                user = UserInfo(user.name, user.uid, (*user.groups, "system:authenticated"), user.extra)
            watch = request.query.get("watch", "").lower() in ("1", "true")
            attrs = auth.attributes_for(request.method, request.path, watch=watch)
            if not auth.ALWAYS_ALLOWED_GROUPS.intersection(user.groups):
                allowed, reason = await self.reviewer.authorize(user, attrs)
                if not allowed:
                    raise auth.forbidden(user, attrs, reason)
            if watch:
                raise ApiStatusError(
                    405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
                )
            return await handler(request)
        except ApiStatusError as exc:
            return _failure(exc)
        except ReviewError as exc:
            log.warning("%s %s: %s", request.method, request.path, exc)
            return _failure(ApiStatusError(500, "InternalError", f"Internal error occurred: {exc}"))
        except web.HTTPNotFound:
            return _failure(ApiStatusError(404, "NotFound", "the server could not find the requested resource"))
        except web.HTTPMethodNotAllowed:
            message = "the server does not allow this method on the requested resource"
            return _failure(ApiStatusError(405, "MethodNotAllowed", message))

    # --- what is answered -------------------------------------------------------------------------

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(self, _request: web.Request) -> web.Response:
        if self.storage.ready:
            return web.Response(text="ok")
        return web.Response(
            text="[-]metric-storage-ready failed: no metrics scraped yet\nreadyz check failed", status=503
        )

    async def groups(self, _request: web.Request) -> web.Response:
        return _json(apiobjects.api_group_list())

    async def group(self, _request: web.Request) -> web.Response:
        return _json(apiobjects.api_group())

    async def resources(self, _request: web.Request) -> web.Response:
        return _json(apiobjects.api_resource_list())

    async def node_list(self, request: web.Request) -> web.Response:
        labels, fields = views.selectors(request.query, views.NODE_FIELDS)
        found = views.node_list(self.nodes.items(), self.storage, labels=labels, fields=fields, now=self.clock())
        return _json(found)

    async def node_get(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        return _json(views.node_get(self.nodes.get(name), name, self.storage, now=self.clock()))

    async def pod_list(self, request: web.Request) -> web.Response:
        labels, fields = views.selectors(request.query, views.POD_FIELDS)
        namespace = request.match_info.get("namespace", "")
        found = views.pod_list(
            self.pods.items(), self.storage, namespace=namespace, labels=labels, fields=fields, now=self.clock()
        )
        return _json(found)

    async def pod_get(self, request: web.Request) -> web.Response:
        ref = PodRef(request.match_info["namespace"], request.match_info["name"])
        pod = self.pods.get(f"{ref.namespace}/{ref.name}")
        return _json(views.pod_get(pod, ref, self.storage, now=self.clock()))

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard, _statuses])
        for path in auth.OPEN_PATHS - {"/readyz"}:
            app.router.add_get(path, self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/apis", self.groups)
        app.router.add_get(f"/apis/{apiobjects.GROUP}", self.group)
        app.router.add_get(BASE, self.resources)
        app.router.add_get(f"{BASE}/nodes", self.node_list)
        app.router.add_get(f"{BASE}/nodes/{{name}}", self.node_get)
        app.router.add_get(f"{BASE}/pods", self.pod_list)
        app.router.add_get(f"{BASE}/namespaces/{{namespace}}/pods", self.pod_list)
        app.router.add_get(f"{BASE}/namespaces/{{namespace}}/pods/{{name}}", self.pod_get)
        return app


@web.middleware
async def _statuses(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A handler's Status failure written as kube writes one."""
    try:
        return await handler(request)
    except ApiStatusError as exc:
        return _failure(exc)


# --- scraping -------------------------------------------------------------------------------------


class Collector:
    """Scrapes every node the informer knows, each ``resolution`` seconds, into the storage."""

    def __init__(
        self,
        scraper: Scraper,
        *,
        nodes: Lister,
        storage: Storage,
        preferred: Sequence[str],
        port: int,
        use_status_port: bool,
        resolution: float,
    ) -> None:
        self.scraper = scraper
        self.nodes = nodes
        self.storage = storage
        self.preferred = tuple(preferred)
        self.port = port
        self.use_status_port = use_status_port
        self.resolution = resolution
        self._failing: set[str] = set()

    async def collect_once(self) -> Round:
        targets: list[Target] = []
        for node in self.nodes.items():
            found = target_of(node, preferred=self.preferred, port=self.port, use_status_port=self.use_status_port)
            if isinstance(found, Target):
                targets.append(found)
            else:
                log.warning("%s", found)
        result = await self.scraper.scrape(targets)
        self.storage.store(result.batch)
        for name, error in result.errors.items():
            if name not in self._failing:  # said once while it keeps failing
                log.warning("scraping node %s failed: %s", name, error)
        self._failing = set(result.errors)
        log.debug(
            "scraped %d nodes (%d failed) in %.2fs: %d pods",
            len(targets),
            len(result.errors),
            result.seconds,
            len(result.batch.pods),
        )
        return result

    async def run(self, on_round: Callable[[Round], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            result = await self.collect_once()
            if on_round is not None:
                on_round(result)
            next_at += self.resolution
            delay = next_at - loop.time()
            if delay < 0:  # a round took longer than the resolution: start the next one now
                next_at, delay = loop.time(), 0.0
            await asyncio.sleep(delay)


# --- wiring ---------------------------------------------------------------------------------------


def kubelet_tls(settings: MetricsServerSettings, config: ClientConfig) -> ssl.SSLContext | bool:
    """How the kubelets' certificates are checked: not at all (insecure), by the given CA file, or
    by the cluster CA the client trusts (a pod's ServiceAccount ``ca.crt``)."""
    if settings.kubelet.insecure_tls:
        return False
    if settings.kubelet.certificate_authority is not None:
        return ssl.create_default_context(cafile=str(settings.kubelet.certificate_authority))
    context = ssl.create_default_context(cadata=config.ca_pem.decode() if config.ca_pem else None)
    return context


def token_source(config: ClientConfig) -> Callable[[], str]:
    """The current ServiceAccount token (the kubelet renews the file in place)."""

    def current() -> str:
        if config.token_file is not None:
            try:
                return config.token_file.read_text().strip() or config.token
            except OSError:
                pass
        return config.token

    return current


async def run(settings: MetricsServerSettings, client: Client, ready: asyncio.Event) -> None:
    resolution = parse_seconds(settings.metric_resolution)
    storage = Storage(resolution=int(resolution * 1e9))
    nodes, pods = Informer(client, NODES), Informer(client, PODS)
    cert_file, key_file = serving_pair(settings.cert_dir, settings.tls_cert_file, settings.tls_private_key_file)
    api = MetricsApi(
        storage=storage,
        nodes=nodes,
        pods=pods,
        reviewer=Delegate(client),
        tls=server_context(str(cert_file), str(key_file)),
    )
    follower = TrustFollower(client, api.set_trust)
    timeout = min(parse_seconds(settings.kubelet.request_timeout), resolution * 0.9)
    scraper = Scraper(
        ssl_context=kubelet_tls(settings, client.config), token=token_source(client.config), timeout=timeout
    )
    collector = Collector(
        scraper,
        nodes=nodes,
        storage=storage,
        preferred=settings.kubelet.preferred_address_types,
        port=settings.kubelet.port,
        use_status_port=settings.kubelet.use_node_status_port,
        resolution=resolution,
    )
    tasks = [asyncio.create_task(t.run()) for t in (nodes, pods, follower)]
    runner = web.AppRunner(api.app(), access_log=None)
    try:
        await asyncio.gather(nodes.synced.wait(), pods.synced.wait())
        try:
            await asyncio.wait_for(follower.loaded.wait(), TRUST_WAIT)
        except TimeoutError:
            log.warning("no front-proxy trust after %.0fs: serving bearer tokens only until it comes", TRUST_WAIT)
        await runner.setup()
        await web.TCPSite(runner, settings.bind_address, settings.secure_port, ssl_context=api.tls).start()
        log.info(
            "metrics-server serving %s on https://%s:%d, scraping %d nodes every %s",
            apiobjects.GROUP_VERSION,
            settings.bind_address,
            settings.secure_port,
            len(nodes.store),
            settings.metric_resolution,
        )

        def first(result: Round) -> None:
            if not ready.is_set():
                log.info("first scrape: %d nodes, %d pods", len(result.batch.nodes), len(result.batch.pods))
                ready.set()

        await collector.run(first)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await scraper.close()
        await runner.cleanup()
