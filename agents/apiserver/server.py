"""The API server process: wiring storage, the watch cache, the API and housekeeping, on aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import platform
import ssl
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from agents.apiserver import (
    aggregator,
    audit,
    authorization,
    bootstrap,
    bootstrappolicy,
    encryptionconfig,
    openapi_v2,
    requesttracing,
    schemas,
    serviceaccount,
    x509,
)
from agents.apiserver.allocators import ServiceAllocator
from agents.apiserver.auth import ANONYMOUS, PUBLIC_PATHS, TokenAuthenticator, User, with_authenticated
from agents.apiserver.authorization import Authorizer
from agents.apiserver.customresources import CustomResources, CustomResourceStore, DefinitionController
from agents.apiserver.decoding import Decoder
from agents.apiserver.handlers import Api, json_response, status_response
from agents.apiserver.kinds import Strategy, strategy_for
from agents.apiserver.kubeletclient import KubeletClient
from agents.apiserver.nodeauthorizer import NodeAuthorizer, PodGraph
from agents.apiserver.openapi import OpenAPI
from agents.apiserver.registry import DeleteOptions, ListOptions, ResourceStore
from agents.apiserver.requestinfo import request_info
from agents.apiserver.resources import Catalog, Resource
from agents.apiserver.serviceaccount import TokenIssuer, TokenService, TokenVerifier
from agents.apiserver.settings import ApiServerSettings, EtcdSettings
from agents.apiserver.status import StatusError, path_not_found, unauthorized
from agents.apiserver.storage import Store
from agents.apiserver.storage.encryption import EncryptingStore
from agents.apiserver.storage.errors import StorageError
from agents.apiserver.storage.etcd import EtcdStore, EtcdTls
from agents.apiserver.storage.memory import MemoryStore
from agents.apiserver.watchcache import WatchCache
from agents.apiserver.watchstream import WatchSettings
from agents.apiserver.x509 import CertificateAuthenticator, peer_certificate
from agents.machinery import codec, tracing
from agents.machinery.objects import parse_time
from agents.machinery.settings import SettingsError

log = logging.getLogger(__name__)

KUBERNETES_VERSION = "v1.37.0"
ACCOUNT_RECHECK = 10.0  # seconds a ServiceAccount token's user is kept before its account is looked up again


def version_info() -> dict[str, str]:
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    return {
        "major": major,
        "minor": minor,
        "gitVersion": f"{KUBERNETES_VERSION}+kubelab",
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": f"python{platform.python_version()}",
        "compiler": platform.python_implementation().lower(),
        "platform": f"{sys.platform}/{platform.machine().replace('x86_64', 'amd64')}",
    }


def check_settings(settings: ApiServerSettings) -> None:
    try:
        ipaddress.ip_network(settings.service.cluster_ip_range)
    except ValueError as exc:
        raise SettingsError(f"service-cluster-ip-range: {exc}") from exc
    try:
        low, high = settings.node_ports()
    except ValueError as exc:
        raise SettingsError("service-node-port-range: expected LOW-HIGH, e.g. 30000-32767") from exc
    if not 0 < low <= high < 65536:
        raise SettingsError(f"service-node-port-range: {low}-{high} is not a valid port range")
    if settings.storage_backend not in ("etcd", "memory"):
        raise SettingsError(f"storage-backend: unknown backend {settings.storage_backend!r} (etcd or memory)")
    etcd = settings.etcd
    if settings.storage_backend == "etcd":
        if any(server.startswith("https://") for server in etcd.servers) and etcd.cafile is None:
            raise SettingsError("etcd-cafile: an https:// etcd server needs the CA that signed its certificate")
        if (etcd.certfile is None) != (etcd.keyfile is None):
            raise SettingsError(
                "etcd-certfile and etcd-keyfile: give both (a client certificate and its key) or neither"
            )
    if (settings.audit.policy_file is None) != (settings.audit.log_path is None):
        raise SettingsError("audit-policy-file and audit-log-path: give both (what to record and where) or neither")
    if settings.audit.log_maxsize < 0 or settings.audit.log_maxbackup < 0:
        raise SettingsError("audit-log-maxsize and audit-log-maxbackup: must not be negative")
    if (settings.proxy_client.cert_file is None) != (settings.proxy_client.key_file is None):
        raise SettingsError("proxy-client-cert-file and proxy-client-key-file: give both or neither")


def etcd_tls(settings: EtcdSettings) -> EtcdTls | None:
    """The CA and client certificate the settings name, read now, so that a missing or unreadable
    file is one error at startup; None without a CA (plaintext etcd)."""
    if settings.cafile is None:
        return None

    def read(path: Path, flag: str) -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise SettingsError(f"{flag}: cannot read {path}: {exc.strerror}") from exc

    cert = read(settings.certfile, "etcd-certfile") if settings.certfile else None
    key = read(settings.keyfile, "etcd-keyfile") if settings.keyfile else None
    return EtcdTls(ca=read(settings.cafile, "etcd-cafile"), cert=cert, key=key)


@dataclass
class Housekeeping:
    """Periodic tasks; each runs until cancelled and survives its own failures."""

    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def every(self, name: str, seconds: float, job: Callable[[], Awaitable[Any]]) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await job()
                except StorageError as exc:
                    log.warning("%s: %s", name, exc)
                except Exception:
                    log.exception("%s failed", name)

        self.tasks.append(asyncio.create_task(loop(), name=name))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()


class ApiServer:
    def __init__(self, settings: ApiServerSettings, *, store: Store | None = None, leader: bool = True) -> None:
        check_settings(settings)
        self.settings = settings
        self.leader = leader  # bootstraps the cluster and runs the housekeeping
        self.catalog = Catalog()
        if store is None:
            store = (
                MemoryStore()
                if settings.storage_backend == "memory"
                else EtcdStore(
                    settings.etcd.servers, timeout=settings.etcd.request_timeout, tls=etcd_tls(settings.etcd)
                )
            )
        if settings.encryption_provider_config is not None:  # values of the resources it names, encrypted
            store = EncryptingStore(store, encryptionconfig.load(settings.encryption_provider_config, self.catalog))
        self.store = store
        self.allocator = ServiceAllocator(
            store, cidr=settings.service.cluster_ip_range, node_ports=settings.node_ports()
        )
        self.cache = WatchCache(store, self.catalog, capacity=settings.watch.cache_size)
        self.authenticator = (
            TokenAuthenticator.from_file(settings.token_auth_file) if settings.token_auth_file else None
        )
        self.certificates = CertificateAuthenticator() if settings.client_ca_file is not None else None
        # requests are authenticated where a token file or a client CA is given (tests may run without)
        self.authenticating = self.authenticator is not None or self.certificates is not None
        graph = PodGraph()
        self.authorizer = Authorizer(
            settings.authorization_mode, node=NodeAuthorizer(graph, bootstrappolicy.NODE_RULES)
        )
        if self.authorizer.uses_rbac:
            self.cache.add_index(self.authorizer.rbac)
        if self.authorizer.uses_node:
            for edges in graph.indexes:
                self.cache.add_index(edges)
        self.aggregator = aggregator.Aggregator(settings, self.catalog)  # APIServices route to other servers
        self.custom = CustomResources(self.catalog)  # CustomResourceDefinitions' kinds, served as they come
        self.cache.add_index(self.custom)
        self.crd_controller: DefinitionController | None = None
        for index in self.aggregator.indexes:
            self.cache.add_index(index)
        accounts = settings.service_account
        self.api_audiences = settings.api_audiences or (accounts.issuer,)
        self.token_issuer = (
            TokenIssuer(accounts.signing_key_file, accounts.issuer) if accounts.signing_key_file else None
        )
        self.token_verifier = (
            TokenVerifier(accounts.key_file, accounts.issuer, self.api_audiences) if accounts.key_file else None
        )
        self._account_users: dict[str, tuple[User, float]] = {}  # token -> user, when last found valid
        self.audit_policy = (
            audit.Policy.from_file(settings.audit.policy_file) if settings.audit.policy_file is not None else None
        )
        self.audit_log = (
            audit.AuditLog(
                settings.audit.log_path,
                max_size_mb=settings.audit.log_maxsize,
                max_backups=settings.audit.log_maxbackup,
            )
            if settings.audit.log_path is not None
            else None
        )
        self.definitions: dict[str, Any] = {}
        self.stores: dict[str, ResourceStore] = {}
        self.openapi: OpenAPI | None = None
        self.api: Api | None = None
        self.ready = False
        self._housekeeping = Housekeeping()
        self._etcd_ok_at = 0.0

    # --- startup ---------------------------------------------------------------------------------

    async def _namespace_phase(self, name: str) -> str | None:
        phase = self.cache.namespaces.get(name)
        if phase is not None:
            return phase
        stored = await self.store.get(self.catalog.by_kind("", "Namespace").key("", name))  # type: ignore[union-attr]
        kv = stored[0]
        if kv is None:
            return None
        obj = codec.decode_stored(kv.value, kv.mod_revision)
        return str((obj.get("status") or {}).get("phase", "Active"))

    async def start(self) -> None:
        started = time.monotonic()
        if self.audit_log is not None:
            await self.audit_log.start()
        self.definitions = await asyncio.to_thread(schemas.load, self.catalog.models(), self.settings.schema_cache_dir)
        await self.store.start()
        for resource in self.catalog:
            if resource.review:
                continue
            self.stores[resource.qualified] = ResourceStore(
                resource,
                strategy_for(resource, ingress_classes=self._ingress_classes, storage_classes=self._storage_classes),
                self.store,
                allocator=self.allocator,
                namespace_phase=self._namespace_phase,
                default_toleration_seconds=self.settings.default_not_ready_toleration_seconds,
                peek=self.cache.peek,
                accounts=self._service_account if self.token_issuer is not None else None,
            )
        self.custom.bind(definitions=self.definitions, stores=self.stores, make_store=self._custom_store)
        await self.cache.start()
        self.openapi = OpenAPI(self.catalog, self.definitions, KUBERNETES_VERSION)
        self.custom.on_change.append(self.openapi.refresh)
        self.api = Api(
            catalog=self.catalog,
            stores=self.stores,
            cache=self.cache,
            decoder=Decoder(self.definitions),
            definitions=self.definitions,
            address=f"{self.settings.advertise_address}:{self.settings.secure_port}",
            watch=WatchSettings(
                min_request_timeout=self.settings.min_request_timeout,
                bookmark_interval=self.settings.watch.bookmark_interval,
            ),
            kubelets=KubeletClient(self.settings.kubelet),
            egress_namespace=self.settings.egress_network_namespace,
            authorizer=self.authorizer,
            tokens=TokenService(
                issuer=self.token_issuer,
                audiences=self.api_audiences,
                max_seconds=self.settings.service_account.max_token_expiration,
                authenticate=self.authenticate_token,
            ),
        )
        if self.leader:
            await self._bootstrap()
        else:
            await self._await_bootstrap()
        self.ready = True
        log.info(
            "API server ready in %.2fs (%d resources, %d schema definitions)",
            time.monotonic() - started,
            len(self.stores),
            len(self.definitions),
        )

    async def _bootstrap(self) -> None:
        """The bootstrap RBAC policy (before the namespaces: other workers wait for those, and serve
        with the policy in place), system namespaces, the kubernetes Service, the periodic housekeeping."""
        if self.authorizer.uses_rbac:
            await bootstrappolicy.ensure(
                self.stores["clusterroles.rbac.authorization.k8s.io"],
                self.stores["clusterrolebindings.rbac.authorization.k8s.io"],
            )
        await bootstrap.ensure_namespaces(self.stores["namespaces"])
        if self.authorizer.uses_rbac:
            await bootstrappolicy.ensure_namespaced(
                self.stores["roles.rbac.authorization.k8s.io"], self.stores["rolebindings.rbac.authorization.k8s.io"]
            )
        await self._publish_authentication()
        self._housekeeping.every("extension-apiserver-authentication", 60, self._publish_authentication)
        self.aggregator.start_checking(self.stores["apiservices.apiregistration.k8s.io"])
        self.crd_controller = DefinitionController(
            self.custom, self.stores["customresourcedefinitions.apiextensions.k8s.io"]
        )
        self.crd_controller.start()
        await bootstrap.ensure_kubernetes_service(
            services=self.stores["services"],
            endpoints=self.stores["endpoints"],
            slices=self.stores["endpointslices.discovery.k8s.io"],
            allocator=self.allocator,
            address=self.settings.advertise_address,
            port=self.settings.secure_port,
        )
        await self._repair_allocations()
        self._housekeeping.every("allocation-repair", 180, self._repair_allocations)
        self._housekeeping.every("event-expiry", min(300.0, self.settings.event_ttl), self._expire_events)
        if self.settings.etcd.compaction_interval > 0:
            self._start_compactor(self.settings.etcd.compaction_interval)

    def _custom_store(self, resource: Resource, strategy: Strategy) -> CustomResourceStore:
        return CustomResourceStore(
            resource,
            strategy,
            self.store,
            allocator=self.allocator,
            namespace_phase=self._namespace_phase,
            default_toleration_seconds=self.settings.default_not_ready_toleration_seconds,
            peek=self.cache.peek,
        )

    async def _await_bootstrap(self, patience: float = 60.0) -> None:
        """Other workers are ready once the leader has created the system namespaces."""
        deadline = time.monotonic() + patience
        while "default" not in self.cache.namespaces:
            if time.monotonic() > deadline:
                log.warning("the leader worker has not bootstrapped the cluster after %.0fs", patience)
                return
            await asyncio.sleep(0.1)

    def _start_compactor(self, interval: float) -> None:
        previous = [0]

        async def compact() -> None:
            current = await self.store.current_revision()
            if previous[0]:
                await self.store.compact(previous[0])
                log.info("compacted etcd history up to revision %d", previous[0])
            previous[0] = current

        self._housekeeping.every("compactor", interval, compact)

    async def _publish_authentication(self) -> None:
        await aggregator.publish_authentication(self.stores["configmaps"], self.settings)

    async def _repair_allocations(self) -> None:
        listed = await self.stores["services"].list("", ListOptions())
        await self.allocator.repair([item.obj() for item in listed.items])

    async def _expire_events(self) -> None:
        events = self.stores["events"]
        listed = await events.list("", ListOptions())
        now = time.time()
        for item in listed.items:
            obj = item.obj()
            stamp = obj.get("lastTimestamp") or obj.get("eventTime") or obj.get("metadata", {}).get("creationTimestamp")
            try:
                when = parse_time(stamp).timestamp() if stamp else 0.0
            except ValueError:
                when = 0.0
            if now - when > self.settings.event_ttl:
                meta = obj["metadata"]
                with contextlib.suppress(StatusError):
                    await events.delete(meta.get("namespace", ""), meta["name"], DeleteOptions())

    async def stop(self) -> None:
        self.ready = False
        await self._housekeeping.stop()
        if self.crd_controller is not None:
            await self.crd_controller.stop()
        await self.aggregator.close()
        await self.cache.stop()
        if self.api is not None:
            await self.api.close()
        await self.store.close()
        if self.audit_log is not None:
            await self.audit_log.close()

    # --- HTTP ------------------------------------------------------------------------------------

    async def _etcd_ok(self) -> bool:
        if time.monotonic() - self._etcd_ok_at < 1.0:
            return True
        try:
            await asyncio.wait_for(self.store.current_revision(), 2.0)
        except (StorageError, TimeoutError):
            return False
        self._etcd_ok_at = time.monotonic()
        return True

    async def _health(self, request: web.Request) -> web.Response:
        checks = {"ping": True}
        if request.path != "/livez":
            checks["etcd"] = await self._etcd_ok()
            checks["watch-cache"] = self.cache.healthy
        if request.path == "/readyz":
            checks["bootstrap"] = self.ready
        healthy = all(checks.values())
        if "verbose" in request.query:
            lines = [f"[{'+' if ok else '-'}]{name} {'ok' if ok else 'failed'}" for name, ok in checks.items()]
            lines.append(f"{request.path.lstrip('/')} check {'passed' if healthy else 'failed'}")
            text = "\n".join(lines) + "\n"
        else:
            failed = [name for name, ok in checks.items() if not ok]
            text = "ok" if healthy else "[-]" + " [-]".join(failed) + " failed"
        return web.Response(text=text, status=200 if healthy else 500)

    async def _version(self, request: web.Request) -> web.Response:
        return json_response(version_info())

    async def _openapi(self, request: web.Request) -> web.Response:
        assert self.openapi is not None
        path = request.match_info.get("path", "")
        if not path:
            return json_response(self.openapi.root())
        found = self.openapi.document(path)
        if found is None:
            return status_response(path_not_found())
        document, digest = found
        headers = {"Content-Type": "application/json", "Etag": f'"{digest}"'}
        if request.query.get("hash") == digest:
            headers["Cache-Control"] = "public, immutable"
        return web.Response(body=document, headers=headers)

    async def _openapi_v2(self, request: web.Request) -> web.Response:
        accept = request.headers.get("Accept") or ""
        if openapi_v2.PROTOBUF in accept or openapi_v2.PROTOBUF_RESPONSE in accept:
            return web.Response(
                body=openapi_v2.document_protobuf(KUBERNETES_VERSION),
                headers={"Content-Type": openapi_v2.PROTOBUF_RESPONSE},
            )
        return json_response(openapi_v2.document_json(KUBERNETES_VERSION))

    async def _not_found(self, request: web.Request) -> web.Response:
        return status_response(path_not_found())

    async def _api(self, request: web.Request) -> web.StreamResponse:
        if self.api is None:
            return status_response(StatusError(503, "ServiceUnavailable", "the API server is starting"))
        return await self.aggregator.handle(request, self.api.handle)

    @web.middleware
    async def _authenticate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.authenticating and request.path not in PUBLIC_PATHS:
            started = time.time_ns() if tracing.enabled() else 0
            header = request.headers.get("Authorization")
            user = None
            if self.certificates is not None and request.transport is not None:
                user = self.certificates.authenticate(peer_certificate(request.transport.get_extra_info("ssl_object")))
            if user is None and self.authenticator is not None:
                user = self.authenticator.authenticate(header)
            if user is None and header and header[:7].lower() == "bearer ":  # the token file said no
                user = await self.authenticate_token(header[7:].strip(), static=False)
            if user is None:
                response = status_response(unauthorized())
                self._audit_unauthenticated(request, response)
                if started:
                    self._trace_unauthenticated(request, response, started)
                return response
            request["user"] = user
            if started:
                request[requesttracing.AUTHENTICATED] = (started, time.time_ns())
        return await handler(request)

    @web.middleware
    async def _trace(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """The span of a request requesttracing.py picks (a middleware only while tracing is on): it starts
        when authentication did, is current while the request is handled, and ends with the answer."""
        user: User | None = request.get("user")
        info = request_info(request.method, request.path, request.query)
        parent = tracing.extract(request.headers)
        who = user.name if user is not None else ANONYMOUS.name  # no authentication: nobody starts a trace
        if not requesttracing.traced(info, user=who, continued=parent is not None, dry_run="dryRun" in request.query):
            return await handler(request)
        authenticated = request.get(requesttracing.AUTHENTICATED)
        span = requesttracing.start(
            info,
            method=request.method,
            user=user.name if user is not None else "",
            parent=parent,
            started=authenticated[0] if authenticated is not None else time.time_ns(),
            authenticated=authenticated,
        )
        with requesttracing.current(span):
            response = await handler(request)
            if requesttracing.reads_answer(info, response.status):
                answer = _json_body(response) if isinstance(response, web.Response) else None
                requesttracing.answered(span, response.status, answer)
            return response

    def _trace_unauthenticated(self, request: web.Request, response: web.Response, started: int) -> None:
        """A request refused for its credentials is traced only when it continues a trace: an unknown
        caller does not start traces."""
        parent = tracing.extract(request.headers)
        info = request_info(request.method, request.path, request.query)
        if parent is not None and requesttracing.traced(info, user="", continued=True):
            message = requesttracing.failure_message(response.status, _json_body(response))
            requesttracing.record_unauthenticated(
                info, method=request.method, parent=parent, started=started, message=message
            )

    @web.middleware
    async def _authorize(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        user: User | None = request.get("user")
        if user is None:  # a public path (health, version)
            return await handler(request)
        attrs = authorization.attributes(
            user.name, user.groups, request_info(request.method, request.path, request.query)
        )
        refused: StatusError | None = None
        with requesttracing.step("authorization") as span:
            denied = next((c for c in authorization.checks(attrs) if not self.authorizer.allows(c)), None)
            if denied is not None:
                refused = authorization.forbidden(denied, authorization.reason(self.authorizer, denied))
            if span.is_recording():  # traced: what allowed it is asked again, for the span
                allowed_by = self.authorizer.allowed_by(attrs) if refused is None else ""
                requesttracing.decided(span, allowed_by=allowed_by, refusal=refused.message if refused else "")
        if refused is None:
            request["attributes"] = attrs  # admission (NodeRestriction) judges the same attributes
            return await handler(request)
        log.info("forbidden: %s", refused.message)
        return status_response(refused)

    async def authenticate_token(
        self, token: str, audiences: Sequence[str] = (), *, static: bool = True
    ) -> User | None:
        """The user a bearer token stands for: a static token's (unless ``static`` is false: the
        caller asked the token file already), or a ServiceAccount token's while the token is good
        and its ServiceAccount (and the pod it is bound to) still exist with the same UID."""
        if static and self.authenticator is not None and not audiences:
            found = self.authenticator.authenticate(f"Bearer {token}")
            if found is not None:
                return found
        if self.token_verifier is None or not serviceaccount.looks_like_jwt(token):
            return None
        now = time.monotonic()
        cached = self._account_users.get(token)
        if cached is not None and now - cached[1] < ACCOUNT_RECHECK and not audiences:
            return cached[0]
        claims = self.token_verifier.verify(token, audiences)
        if claims is None or not await self._still_there(claims):
            self._account_users.pop(token, None)
            return None
        user = User(claims.username, claims.uid, claims.groups)
        if not audiences:
            if len(self._account_users) > 4096:
                self._account_users.clear()
            self._account_users[token] = (user, now)
        return user

    async def _ingress_classes(self) -> list[dict[str, Any]]:
        """Every IngressClass (DefaultIngressClass admission looks for the default one)."""
        listed = await self.stores["ingressclasses.networking.k8s.io"].list("", ListOptions())
        return [item.obj() for item in listed.items]

    async def _storage_classes(self) -> list[dict[str, Any]]:
        """Every StorageClass (DefaultStorageClass and PersistentVolumeClaimResize admission read them)."""
        listed = await self.stores["storageclasses.storage.k8s.io"].list("", ListOptions())
        return [item.obj() for item in listed.items]

    async def _service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ServiceAccount NAMESPACE/NAME, or None (ServiceAccount admission asks)."""
        try:
            return (await self.stores["serviceaccounts"].get(namespace, name)).obj()
        except StatusError as exc:
            if exc.code == 404:
                return None
            raise

    async def _still_there(self, claims: serviceaccount.Claims) -> bool:
        """Whether the token's ServiceAccount, and the pod it is bound to, exist with the UIDs it names."""
        wanted = [("serviceaccounts", claims.name, claims.uid)]
        if claims.pod_name:
            wanted.append(("pods", claims.pod_name, claims.pod_uid))
        for plural, name, uid in wanted:
            try:
                found = (await self.stores[plural].get(claims.namespace, name)).obj()
            except StatusError:
                return False
            if uid and found["metadata"].get("uid") != uid:
                return False
        return True

    # --- audit -----------------------------------------------------------------------------------

    def _audit_request(self, request: web.Request, user: Mapping[str, Any]) -> audit.Request | None:
        """The request as audit records it, or None when the policy records nothing of it."""
        if self.audit_policy is None or self.audit_log is None:
            return None
        info = request_info(request.method, request.path, request.query)
        level, omit = self.audit_policy.level(info, str(user.get("username", "")), user.get("groups") or ())
        if level == "None":
            return None
        return audit.Request(
            audit_id=request.headers.get("Audit-ID") or str(uuid.uuid4()),
            info=info,
            level=level,
            omit_stages=omit,
            request_uri=str(request.rel_url),
            user=user,
            source_ips=(request.remote,) if request.remote else (),
            user_agent=request.headers.get("User-Agent", ""),
            received=time.time(),
        )

    def _audit_stage(self, record: audit.Request, stage: str, response: web.StreamResponse | None = None) -> None:
        if stage in record.omit_stages or self.audit_log is None:
            return
        code = response.status if response is not None else None
        message, answer = "", None
        failed = code is not None and code >= 400
        if (
            isinstance(response, web.Response)
            and stage == "ResponseComplete"
            and (failed or record.level == "RequestResponse")
        ):  # the answer is read only when the event carries it or its message
            answer = _json_body(response)
            if isinstance(answer, dict) and failed:
                message = str(answer.get("message", ""))
        if stage == "Panic":
            code, message = 500, "the request's handler failed"
        self.audit_log.record(
            audit.event(record, stage, time.time(), code=code, message=message, response_object=answer)
        )

    def _audit_unauthenticated(self, request: web.Request, response: web.Response) -> None:
        """A request refused for its credentials is recorded as kube records it: anonymous, 401."""
        record = self._audit_request(request, {"username": "system:anonymous", "groups": ["system:unauthenticated"]})
        if record is not None:
            response.headers["Audit-Id"] = record.audit_id
            self._audit_stage(record, "ResponseComplete", response)

    @web.middleware
    async def _audit(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        user: User | None = request.get("user")
        record = self._audit_request(request, _user_info(user))
        if record is None:
            return await handler(request)
        request[audit.RECORD] = record
        self._audit_stage(record, "RequestReceived")
        try:
            response = await handler(request)
        except web.HTTPException:
            raise
        except Exception:
            self._audit_stage(record, "Panic")
            raise
        if record.level in ("Request", "RequestResponse"):
            # the body as the handler decoded it (JSON, YAML or protobuf), or the patch document
            record.request_object = request.get(audit.REQUEST_OBJECT)
        self._audit_stage(record, "ResponseComplete", response)
        return response

    async def _audit_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """Headers going out: every audited answer names its Audit-Id; a long-running one (a watch,
        logs, exec) is recorded as started."""
        record = request.get(audit.RECORD)
        if record is None:
            return
        response.headers["Audit-Id"] = record.audit_id
        if audit.long_running(record.info):
            self._audit_stage(record, "ResponseStarted", response)

    def application(self) -> web.Application:
        audited = self.audit_policy is not None and self.audit_log is not None
        # without an audit policy nothing of audit's runs per request
        # authorization runs where something authenticates and another mode than AlwaysAllow is asked
        authorizing = self.authenticating and self.authorizer.modes != ("AlwaysAllow",)
        middlewares = [
            self._authenticate,
            *([self._trace] if tracing.enabled() else []),  # tracing is set up before the server is made
            *([self._audit] if audited else []),
            *([self._authorize] if authorizing else []),
        ]
        app = web.Application(client_max_size=4 * 1024 * 1024, middlewares=middlewares)
        if audited:
            app.on_response_prepare.append(self._audit_prepare)
        for path in ("/healthz", "/livez", "/readyz"):
            app.router.add_get(path, self._health)
        app.router.add_get("/version", self._version)
        app.router.add_get("/openapi/v2", self._openapi_v2)
        app.router.add_get("/openapi/v3", self._openapi)
        app.router.add_get("/openapi/v3/{path:.+}", self._openapi)
        for prefix in ("/api", "/apis"):
            app.router.add_route("*", prefix, self._api)
            app.router.add_route("*", prefix + "/{rest:.*}", self._api)
        app.router.add_route("*", "/{rest:.*}", self._not_found)
        return app

    def ssl_context(self) -> ssl.SSLContext | None:
        tls = self.settings.tls
        if tls.cert_file is None or tls.private_key_file is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls.cert_file), str(tls.private_key_file))
        context.set_alpn_protocols(["http/1.1"])
        if self.settings.client_ca_file is not None:
            x509.request_client_certificates(context, self.settings.client_ca_file)
        return context


def _user_info(user: User | None) -> dict[str, Any]:
    """An authenticated user as audit records it (kube adds ``system:authenticated`` to every one)."""
    if user is None:  # no authentication configured (local tests)
        return {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
    info: dict[str, Any] = {"username": user.name, "groups": list(with_authenticated(user.groups))}
    if user.uid:
        info["uid"] = user.uid
    return info


def _json_body(response: web.Response) -> Any:
    body = response.body
    if not isinstance(body, bytes) or "json" not in (response.content_type or ""):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None
