"""The aggregation layer (kube-aggregator's job): APIServices route /apis/GROUP/VERSION to other servers.

An APIService with a ``spec.service`` claims ``/apis/GROUP/VERSION`` and everything below it for that
Service. A request there is authenticated and authorized here like any resource request, then sent
over HTTPS to one ready endpoint of the Service (the Service's EndpointSlices, the port whose name
matches ``spec.service.port``: kube's ``--enable-aggregator-routing``). The API server presents its
front-proxy client certificate, drops the caller's credentials and says who the caller is in the
request headers (``X-Remote-User``, one ``X-Remote-Group`` per group, ``X-Remote-Extra-KEY``), which
the backend trusts because of the certificate. The answer, a watch included, streams back as it comes.

Discovery is merged: ``/apis`` and aggregated discovery list the aggregated groups (the latter with the
resources each available backend lists at ``/apis/GROUP/VERSION``, fetched and cached here), and
``/apis/GROUP`` answers the APIGroup. Group/versions this server serves itself are never proxied.

The first worker checks every APIService (every 10 s, and when an APIService, its Service or its
EndpointSlices change) and writes its ``Available`` condition when the outcome changes.

Pure parts (which endpoint, which headers, discovery conversion, the availability outcome) are plain
functions; ``Aggregator`` keeps the views and does the I/O.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import random
import ssl
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict

import aiohttp
from aiohttp import web

from agents.apiserver import discovery, egress, negotiation, proxy
from agents.apiserver.auth import ANONYMOUS, User, with_authenticated
from agents.apiserver.handlers import json_response, status_response
from agents.apiserver.registry import ResourceStore
from agents.apiserver.resources import Catalog
from agents.apiserver.settings import ApiServerSettings
from agents.apiserver.status import StatusError
from agents.machinery.objects import Object

log = logging.getLogger(__name__)

GROUP = "apiregistration.k8s.io"
APISERVICES_PREFIX = f"/registry/{GROUP}/apiservices/"
SERVICES_PREFIX = "/registry/services/"
SLICES_PREFIX = "/registry/discovery.k8s.io/endpointslices/"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
UNAVAILABLE = "the server is currently unable to handle the request"
CHECK_INTERVAL = 10.0  # seconds between availability checks
CHECK_TIMEOUT = 5.0  # seconds a backend has to answer its discovery document
DISCOVERY_TTL = 30.0  # seconds a backend's discovery document is reused
CONNECT_TIMEOUT = 10.0
# who the aggregator itself is to backends (discovery and availability checks), as kube's
AGGREGATOR_USER = "system:kube-aggregator"
AGGREGATOR_GROUPS = ("system:masters",)
# headers that belong to one connection, never forwarded (the proxy subresources' list), and the
# request's own framing, which the aggregator writes anew
HOP_BY_HOP = proxy.HOP_BY_HOP | {"host", "content-length"}
EXTENSION_AUTH_CONFIGMAP = "extension-apiserver-authentication"


class Condition(TypedDict, total=False):
    type: str
    status: str
    lastTransitionTime: str
    reason: str
    message: str


@dataclass(frozen=True)
class RequestHeaders:
    """The header names the front proxy tells a backend who the caller is by."""

    username: str = "X-Remote-User"
    group: str = "X-Remote-Group"
    extra_prefix: str = "X-Remote-Extra-"


@dataclass(frozen=True)
class Backend:
    """An APIService that routes to a Service."""

    name: str
    group: str
    version: str
    namespace: str
    service: str
    port: int
    insecure: bool
    ca_bundle: bytes
    group_priority: int
    version_priority: int

    @property
    def path(self) -> str:
        return f"/apis/{self.group}/{self.version}"

    @property
    def server_name(self) -> str:
        return f"{self.service}.{self.namespace}.svc"


@dataclass(frozen=True)
class Endpoint:
    ip: str
    port: int

    def url(self, path: str) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"https://{host}:{self.port}{path}"


@dataclass(frozen=True)
class Unreachable:
    """Why a backend has no endpoint to send to (a reason of kube's Available condition)."""

    reason: str
    message: str


# --- pure: APIServices, endpoints, headers ---------------------------------------------------------


def backend_of(apiservice: Object) -> Backend | None:
    """The Service an APIService routes to, or None for a local one (served here)."""
    spec = apiservice.get("spec") or {}
    service = spec.get("service")
    if not isinstance(service, dict):
        return None
    try:
        bundle = base64.b64decode(spec.get("caBundle") or "", validate=True)
    except (binascii.Error, ValueError):
        bundle = b""
    return Backend(
        name=str((apiservice.get("metadata") or {}).get("name", "")),
        group=str(spec.get("group", "")),
        version=str(spec.get("version", "")),
        namespace=str(service.get("namespace", "")),
        service=str(service.get("name", "")),
        port=int(service.get("port") or 443),
        insecure=bool(spec.get("insecureSkipTLSVerify")),
        ca_bundle=bundle,
        group_priority=int(spec.get("groupPriorityMinimum") or 0),
        version_priority=int(spec.get("versionPriority") or 0),
    )


def is_available(apiservice: Object) -> bool:
    conditions = (apiservice.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)


def ready_endpoints(backend: Backend, service: Object | None, slices: Iterable[Object]) -> list[Endpoint] | Unreachable:
    """The ready addresses of the backend's Service at the port ``spec.service.port`` names (matched by
    the Service port's name in the EndpointSlices), or why there are none."""
    where = f'service/{backend.service} in "{backend.namespace}"'
    if service is None:
        return Unreachable("ServiceNotFound", f"{where} is not present")
    ports = (service.get("spec") or {}).get("ports") or []
    port = next((p for p in ports if p.get("port") == backend.port), None)
    if port is None:
        return Unreachable("ServicePortError", f"{where} is not listening on port {backend.port}")
    port_name = str(port.get("name") or "")
    found: list[Endpoint] = []
    for piece in slices:
        if piece.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
            continue
        number = next((p.get("port") for p in piece.get("ports") or [] if str(p.get("name") or "") == port_name), None)
        if not isinstance(number, int):
            continue
        for endpoint in piece.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            found.extend(Endpoint(str(address), number) for address in endpoint.get("addresses") or [])
    if not found:
        return Unreachable("MissingEndpoints", f'endpoints for {where} have no addresses with port name "{port_name}"')
    return sorted(set(found), key=lambda e: (e.ip, e.port))


def proxy_headers(
    incoming: Iterable[tuple[str, str]],
    *,
    user: str,
    groups: Sequence[str],
    extra: Mapping[str, Sequence[str]] | None = None,
    names: RequestHeaders = RequestHeaders(),
) -> list[tuple[str, str]]:
    """The headers a backend receives: the caller's, without the hop-by-hop ones, its credentials,
    impersonation, or any user headers it sent itself; then the authenticated user's."""
    own = (names.username.lower(), names.group.lower())
    extra_prefix = names.extra_prefix.lower()
    out: list[tuple[str, str]] = []
    for name, value in incoming:
        lowered = name.lower()
        if (
            lowered in HOP_BY_HOP
            or lowered == "authorization"
            or lowered.startswith("impersonate-")
            or lowered in own
            or lowered.startswith(extra_prefix)
        ):
            continue
        out.append((name, value))
    out.append((names.username, user))
    out.extend((names.group, group) for group in groups)
    for key, values in sorted((extra or {}).items()):
        out.extend((names.extra_prefix + urllib.parse.quote(key, safe=""), value) for value in values)
    return out


def response_headers(upstream: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """A backend's answer headers as passed on to the caller (hop-by-hop ones dropped)."""
    return [(name, value) for name, value in upstream if name.lower() not in HOP_BY_HOP]


# --- pure: discovery ------------------------------------------------------------------------------


def _resource_discovery(entry: Mapping[str, Any], group: str, version: str) -> dict[str, Any]:
    kind = {
        "group": entry.get("group", group),
        "version": entry.get("version", version),
        "kind": entry.get("kind", ""),
    }
    out: dict[str, Any] = {
        "resource": entry.get("name", ""),
        "responseKind": kind,
        "scope": "Namespaced" if entry.get("namespaced") else "Cluster",
        "singularResource": entry.get("singularName", ""),
        "verbs": list(entry.get("verbs") or []),
    }
    for key in ("shortNames", "categories"):
        if entry.get(key):
            out[key] = list(entry[key])
    return out


def version_discovery(resource_list: Mapping[str, Any], *, group: str, version: str) -> dict[str, Any]:
    """A backend's APIResourceList as aggregated discovery's APIVersionDiscovery (subresources, listed
    as ``parent/sub``, go under their parent)."""
    resources: dict[str, dict[str, Any]] = {}
    subs: list[tuple[str, str, Mapping[str, Any]]] = []
    for entry in resource_list.get("resources") or []:
        name = str(entry.get("name", ""))
        if "/" in name:
            parent, _, sub = name.partition("/")
            subs.append((parent, sub, entry))
        elif name:
            resources[name] = _resource_discovery(entry, group, version)
    for parent, sub, entry in subs:
        owner = resources.get(parent)
        if owner is None:
            continue
        owner.setdefault("subresources", []).append(
            {
                "subresource": sub,
                "responseKind": {
                    "group": entry.get("group", group),
                    "version": entry.get("version", version),
                    "kind": entry.get("kind", ""),
                },
                "verbs": list(entry.get("verbs") or []),
            }
        )
    return {"version": version, "resources": list(resources.values()), "freshness": "Current"}


def _by_priority(backends: Iterable[Backend]) -> dict[str, list[Backend]]:
    """Group -> its backends, groups by their highest groupPriorityMinimum, versions by versionPriority."""
    groups: dict[str, list[Backend]] = {}
    for backend in sorted(backends, key=lambda b: (-b.group_priority, b.group)):
        groups.setdefault(backend.group, []).append(backend)
    for listed in groups.values():
        listed.sort(key=lambda b: (-b.version_priority, b.version))
    return groups


def api_group(group: str, backends: Sequence[Backend]) -> dict[str, Any]:
    """The APIGroup of an aggregated group (its preferred version: the highest versionPriority)."""
    ordered = _by_priority(backends).get(group, [])
    versions = [{"groupVersion": f"{group}/{b.version}", "version": b.version} for b in ordered]
    return {"name": group, "versions": versions, "preferredVersion": versions[0] if versions else {}}


def merge_group_list(document: dict[str, Any], backends: Sequence[Backend]) -> dict[str, Any]:
    """/apis with the aggregated groups added after the served ones."""
    known = {g.get("name") for g in document.get("groups") or []}
    extra = [api_group(name, listed) for name, listed in _by_priority(backends).items() if name not in known]
    return {**document, "groups": [*(document.get("groups") or []), *extra]}


def merge_aggregated(
    document: dict[str, Any], backends: Sequence[Backend], versions: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """/apis as an APIGroupDiscoveryList with each aggregated group whose versions have a discovery
    document (``versions``: APIService name -> APIVersionDiscovery); groups without any are left out."""
    known = {(item.get("metadata") or {}).get("name") for item in document.get("items") or []}
    items = list(document.get("items") or [])
    for name, listed in _by_priority(backends).items():
        found = [versions[b.name] for b in listed if b.name in versions]
        if name in known or not found:
            continue
        items.append({"metadata": {"name": name, "creationTimestamp": None}, "versions": found})
    return {**document, "items": items}


# --- pure: availability ---------------------------------------------------------------------------


def local_condition() -> Condition:
    return {
        "type": "Available",
        "status": "True",
        "reason": "Local",
        "message": "Local APIServices are always available",
    }


def availability(reached: Unreachable | None, probe_error: str | None) -> Condition:
    """The Available condition for an APIService with a Service: ``reached`` says why it has no
    endpoint; ``probe_error`` what went wrong asking the endpoint for its discovery document."""
    if reached is not None:
        return {"type": "Available", "status": "False", "reason": reached.reason, "message": reached.message}
    if probe_error is not None:
        return {"type": "Available", "status": "False", "reason": "FailedDiscoveryCheck", "message": probe_error}
    return {"type": "Available", "status": "True", "reason": "Passed", "message": "all checks passed"}


def status_change(status: Mapping[str, Any] | None, wanted: Condition, now: str) -> dict[str, Any] | None:
    """The status with ``wanted`` as its Available condition, or None when nothing would change. The
    transition time moves only when the condition's status does."""
    conditions = list((status or {}).get("conditions") or [])
    current = next((c for c in conditions if c.get("type") == "Available"), None)
    if current is not None and all(current.get(k) == wanted.get(k) for k in ("status", "reason", "message")):
        return None
    stamped = dict(wanted)
    stamped["lastTransitionTime"] = (
        current.get("lastTransitionTime", now)
        if current is not None and current.get("status") == wanted["status"]
        else now
    )
    others = [c for c in conditions if c.get("type") != "Available"]
    return {**(status or {}), "conditions": [*others, stamped]}


def extension_authentication(
    *,
    client_ca: str,
    requestheader_ca: str,
    allowed_names: Sequence[str],
    username_headers: Sequence[str],
    group_headers: Sequence[str],
    extra_headers_prefix: Sequence[str],
) -> dict[str, str]:
    """The data of ConfigMap kube-system/extension-apiserver-authentication, in kube's keys: how an
    aggregated API server recognises clients and the front proxy."""
    data: dict[str, str] = {}
    if client_ca:
        data["client-ca-file"] = client_ca
    if requestheader_ca:
        data["requestheader-client-ca-file"] = requestheader_ca
        data["requestheader-allowed-names"] = json.dumps(list(allowed_names))
        data["requestheader-username-headers"] = json.dumps(list(username_headers))
        data["requestheader-group-headers"] = json.dumps(list(group_headers))
        data["requestheader-extra-headers-prefix"] = json.dumps(list(extra_headers_prefix))
    return data


# --- the views the watch cache keeps ---------------------------------------------------------------


class ObjectIndex:
    """Every object under ``prefix`` by storage key, kept current by the watch cache."""

    def __init__(self, prefix: str, changed: Callable[[Object], None] | None = None) -> None:
        self.prefix = prefix
        self.objects: dict[str, Object] = {}
        self.generation = 0  # moves with every change: views worked out from the objects are keyed by it
        self._changed = changed

    def reset(self) -> None:
        self.objects = {}
        self.generation += 1

    def put(self, key: str, obj: Object) -> None:
        old = self.objects.get(key)
        self.objects[key] = obj
        self.generation += 1
        if self._changed is not None and (old is None or _spec_of(old) != _spec_of(obj)):
            self._changed(obj)

    def drop(self, key: str) -> None:
        old = self.objects.pop(key, None)
        self.generation += 1
        if old is not None and self._changed is not None:
            self._changed(old)


def _spec_of(obj: Object) -> Any:
    """What of an object availability depends on (an APIService's status is its own output)."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


# --- the executor --------------------------------------------------------------------------------


@dataclass
class _Cached:
    revision: str
    fetched: float
    document: dict[str, Any]


class Aggregator:
    """The aggregation layer of one API server worker."""

    def __init__(self, settings: ApiServerSettings, catalog: Catalog) -> None:
        self._settings = settings
        self._catalog = catalog
        request = settings.requestheader
        self.names = RequestHeaders(
            username=(request.username_headers or ("X-Remote-User",))[0],
            group=(request.group_headers or ("X-Remote-Group",))[0],
            extra_prefix=(request.extra_headers_prefix or ("X-Remote-Extra-",))[0],
        )
        self._wake = asyncio.Event()
        self.apiservices = ObjectIndex(APISERVICES_PREFIX, lambda _: self._wake.set())
        self.services = ObjectIndex(SERVICES_PREFIX, lambda obj: self._touched(obj, service=True))
        self.slices = ObjectIndex(SLICES_PREFIX, lambda obj: self._touched(obj, service=False))
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[tuple[bytes, bool], ssl.SSLContext] = {}
        self._discovery: dict[str, _Cached] = {}
        self._fetching: dict[str, asyncio.Task[dict[str, Any] | None]] = {}
        self._checker: asyncio.Task[None] | None = None
        self._backends: tuple[int, list[Backend]] = (-1, [])

    @property
    def indexes(self) -> tuple[ObjectIndex, ...]:
        return (self.apiservices, self.services, self.slices)

    def _touched(self, obj: Object, *, service: bool) -> None:
        """A Service (or an EndpointSlice of one) changed: check again if some APIService routes to it."""
        meta = obj.get("metadata") or {}
        name = meta.get("name") if service else (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if any(b.namespace == meta.get("namespace") and b.service == name for b in self.backends()):
            self._wake.set()

    # --- views -----------------------------------------------------------------------------------

    def backends(self) -> list[Backend]:
        """The APIServices that route elsewhere, except for group/versions served here."""
        if self._backends[0] == self.apiservices.generation:
            return self._backends[1]
        served = self._catalog.groups()
        found = []
        for obj in self.apiservices.objects.values():
            backend = backend_of(obj)
            if backend is not None and backend.version not in served.get(backend.group, []):
                found.append(backend)
        self._backends = (self.apiservices.generation, found)
        return found

    def _apiservice(self, name: str) -> Object | None:
        return self.apiservices.objects.get(APISERVICES_PREFIX + name)

    def _endpoints(self, backend: Backend) -> list[Endpoint] | Unreachable:
        service = self.services.objects.get(f"{SERVICES_PREFIX}{backend.namespace}/{backend.service}")
        slices = [
            obj
            for key, obj in self.slices.objects.items()
            if key.startswith(f"{SLICES_PREFIX}{backend.namespace}/")
            and ((obj.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) == backend.service
        ]
        return ready_endpoints(backend, service, slices)

    # --- HTTP client -----------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                socket_factory=egress.socket_factory(self._settings.egress_network_namespace),
                limit=0,
                enable_cleanup_closed=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
            )
        return self._session

    def _tls(self, backend: Backend) -> ssl.SSLContext:
        """Verified by the APIService's caBundle (or not at all with insecureSkipTLSVerify); this
        server's front-proxy client certificate presented."""
        key = (backend.ca_bundle, backend.insecure)
        context = self._contexts.get(key)
        if context is None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            if backend.ca_bundle and not backend.insecure:
                context.load_verify_locations(cadata=backend.ca_bundle.decode("ascii", "replace"))
            if backend.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            proxy = self._settings.proxy_client
            if proxy.cert_file is not None and proxy.key_file is not None:
                context.load_cert_chain(str(proxy.cert_file), str(proxy.key_file))
            self._contexts[key] = context
        return context

    async def close(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
            self._checker = None
        for task in self._fetching.values():
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- requests --------------------------------------------------------------------------------

    async def handle(
        self, request: web.Request, served: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Answer a request under /apis: proxied, merged, or ``served`` here as it would be without
        aggregation."""
        parts = [part for part in request.path.strip("/").split("/") if part]
        if len(parts) < 2 or parts[0] != "apis":
            if parts == ["apis"] and request.method == "GET":
                return await self._merged_discovery(request, await served(request))
            return await served(request)
        backends = self.backends()
        group = parts[1]
        if len(parts) == 2:
            mine = [b for b in backends if b.group == group]
            if mine and group not in self._catalog.groups() and request.method == "GET":
                return json_response({"kind": "APIGroup", "apiVersion": "v1", **api_group(group, mine)})
            return await served(request)
        backend = next((b for b in backends if b.group == group and b.version == parts[2]), None)
        if backend is None:
            return await served(request)
        try:
            return await self._proxy(request, backend)
        except StatusError as exc:
            return status_response(exc)

    async def _proxy(self, request: web.Request, backend: Backend) -> web.StreamResponse:
        apiservice = self._apiservice(backend.name)
        endpoints = self._endpoints(backend)
        if apiservice is None or not is_available(apiservice) or isinstance(endpoints, Unreachable):
            raise StatusError(503, "ServiceUnavailable", UNAVAILABLE)
        endpoint = random.choice(endpoints)
        user: User | None = request.get("user")  # None: this server authenticates no one (tests)
        name, groups = (user.name, with_authenticated(user.groups)) if user else (ANONYMOUS.name, ANONYMOUS.groups)
        headers = proxy_headers(request.headers.items(), user=name, groups=groups, names=self.names)
        body = await request.read() if request.can_read_body else None
        try:
            upstream = await self._client().request(
                request.method,
                endpoint.url(request.rel_url.raw_path_qs),
                headers=headers,
                data=body,
                ssl=self._tls(backend),
                server_hostname=backend.server_name,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("APIService %s: %s %s failed: %s", backend.name, request.method, endpoint.url(""), exc)
            raise StatusError(503, "ServiceUnavailable", f"error trying to reach service: {exc}") from exc
        return await proxy.relay_answer(request, upstream, response_headers(upstream.headers.items()))

    # --- discovery -------------------------------------------------------------------------------

    async def _merged_discovery(self, request: web.Request, answer: web.StreamResponse) -> web.StreamResponse:
        if answer.status != 200 or not isinstance(answer, web.Response) or not isinstance(answer.body, bytes):
            return answer
        backends = self.backends()
        if not backends:
            return answer
        document = json.loads(answer.body)
        if negotiation.wants_aggregated_discovery(request.headers.get("Accept")):
            versions = await self._versions(backends)
            return json_response(
                merge_aggregated(document, backends, versions), content_type=discovery.AGGREGATED_MEDIA
            )
        return json_response(merge_group_list(document, backends))

    async def _versions(self, backends: Sequence[Backend]) -> dict[str, dict[str, Any]]:
        """APIService name -> its APIVersionDiscovery, for each available backend that answered (now,
        or within the last ``DISCOVERY_TTL`` seconds with the APIService unchanged since)."""
        wanted = []
        for backend in backends:
            apiservice = self._apiservice(backend.name)
            if apiservice is not None and is_available(apiservice):
                wanted.append((backend, str((apiservice.get("metadata") or {}).get("resourceVersion", ""))))
        found = await asyncio.gather(*(self._version(backend, revision) for backend, revision in wanted))
        return {backend.name: doc for (backend, _), doc in zip(wanted, found, strict=True) if doc is not None}

    async def _version(self, backend: Backend, revision: str) -> dict[str, Any] | None:
        cached = self._discovery.get(backend.name)
        if cached is not None and cached.revision == revision and time.monotonic() - cached.fetched < DISCOVERY_TTL:
            return cached.document
        task = self._fetching.get(backend.name)
        if task is None:
            task = asyncio.create_task(self._fetch_discovery(backend, revision))
            self._fetching[backend.name] = task
            task.add_done_callback(lambda _: self._fetching.pop(backend.name, None))
        return await asyncio.shield(task)

    async def _fetch_discovery(self, backend: Backend, revision: str) -> dict[str, Any] | None:
        endpoints = self._endpoints(backend)
        if isinstance(endpoints, Unreachable):
            return None
        try:
            listed = await self._get_json(backend, random.choice(endpoints))
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log.info("APIService %s: discovery failed: %s", backend.name, exc)
            return None
        document = version_discovery(listed, group=backend.group, version=backend.version)
        self._discovery[backend.name] = _Cached(revision, time.monotonic(), document)
        return document

    async def _get_json(self, backend: Backend, endpoint: Endpoint) -> dict[str, Any]:
        """GET the backend's /apis/GROUP/VERSION as the aggregator itself; raises unless it answers 200."""
        url = endpoint.url(backend.path)
        headers = proxy_headers(
            [("Accept", "application/json")], user=AGGREGATOR_USER, groups=AGGREGATOR_GROUPS, names=self.names
        )
        async with self._client().get(
            url,
            headers=headers,
            ssl=self._tls(backend),
            server_hostname=backend.server_name,
            timeout=aiohttp.ClientTimeout(total=CHECK_TIMEOUT),
            allow_redirects=False,
        ) as answer:
            if answer.status != 200:
                raise ValueError(f"bad status from {url}: {answer.status}")
            body = await answer.read()
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError(f"{url} did not answer an APIResourceList")
        return document

    # --- availability (the first worker) ---------------------------------------------------------

    def start_checking(self, apiservices: ResourceStore) -> None:
        self._checker = asyncio.create_task(self._check_loop(apiservices), name="apiservice-availability")

    async def _check_loop(self, apiservices: ResourceStore) -> None:
        while True:
            self._wake.clear()
            try:
                await self.check_all(apiservices)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("APIService availability check failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), CHECK_INTERVAL)
            await asyncio.sleep(0.2)  # changes come in bursts (a Service, then its EndpointSlices)

    async def check_all(self, apiservices: ResourceStore) -> None:
        """Work out every APIService's Available condition; write those that changed."""
        backends = {b.name: b for b in self.backends()}
        objects = list(self.apiservices.objects.values())

        async def one(obj: Object) -> None:
            name = str(obj["metadata"]["name"])
            backend = backends.get(name)
            wanted = local_condition() if backend is None else await self._check(backend)
            if status_change(obj.get("status"), wanted, _now()) is not None:
                await self._write_condition(apiservices, name, wanted)

        await asyncio.gather(*(one(obj) for obj in objects))

    async def _check(self, backend: Backend) -> Condition:
        endpoints = self._endpoints(backend)
        if isinstance(endpoints, Unreachable):
            return availability(endpoints, None)
        endpoint = random.choice(endpoints)
        try:
            await self._get_json(backend, endpoint)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            reason = str(exc) or type(exc).__name__
            return availability(None, f"failing or missing response from {endpoint.url(backend.path)}: {reason}")
        return availability(None, None)

    async def _write_condition(self, apiservices: ResourceStore, name: str, wanted: Condition) -> None:
        def apply(current: Object) -> Object:
            changed = status_change(current.get("status"), wanted, _now())
            if changed is not None:
                current["status"] = changed
            return current

        try:
            await apiservices.update("", name, apply, subresource="status", pinned=False)
        except StatusError as exc:
            if exc.code != 404:
                raise
            return
        log.info("APIService %s: Available=%s (%s) %s", name, wanted["status"], wanted["reason"], wanted["message"])


async def publish_authentication(configmaps: ResourceStore, settings: ApiServerSettings) -> None:
    """Create or bring up to date ConfigMap kube-system/extension-apiserver-authentication."""
    request = settings.requestheader

    def read(path: Path | None) -> str:
        return path.read_text() if path is not None else ""

    data = extension_authentication(
        client_ca=read(settings.client_ca_file),
        requestheader_ca=read(request.client_ca_file),
        allowed_names=request.allowed_names,
        username_headers=request.username_headers,
        group_headers=request.group_headers,
        extra_headers_prefix=request.extra_headers_prefix,
    )
    body: Object = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": EXTENSION_AUTH_CONFIGMAP, "namespace": "kube-system"},
        "data": data,
    }
    try:
        await configmaps.create("kube-system", body)
        return
    except StatusError as exc:
        if exc.code != 409:
            raise
    current = (await configmaps.get("kube-system", EXTENSION_AUTH_CONFIGMAP)).obj()
    if current.get("data") == data:
        return

    def replace(obj: Object) -> Object:
        obj["data"] = data
        return obj

    await configmaps.update("kube-system", EXTENSION_AUTH_CONFIGMAP, replace, pinned=False)
    log.info("ConfigMap kube-system/%s brought up to date", EXTENSION_AUTH_CONFIGMAP)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
