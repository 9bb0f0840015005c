"""The proxy subresources: ``pods/NAME/proxy``, ``services/NAME/proxy`` and ``nodes/NAME/proxy``.

A request to ``.../NAME/proxy/PATH`` is passed on, method, query, headers and body, to a backend: the
pod's IP, one ready endpoint of the Service, or the node's kubelet; the answer comes back as it streams,
and an upgrade (a WebSocket) is joined both ways. This is how ``kubectl proxy`` reaches a dashboard
served in the cluster. The name may carry a scheme and a port (``https:dashboard:``, ``web:8080``).

Pure parts (parsing the name, the Service's port and endpoint, the pod's address, headers, the verb,
error wording) are plain functions; ``Proxier`` at the bottom does the I/O. Pods and Services are
reached from the egress network namespace when one is set (``egress.py``: where pod addresses route in
a local lab), kubelets from this process's own, as ``kubeletclient.py`` reaches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import random
import socket
import ssl
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from agents.apiserver import egress
from agents.apiserver.kubeletclient import KubeletClient
from agents.apiserver.requestinfo import PROXY_VERBS
from agents.apiserver.status import StatusError, bad_request, method_not_allowed
from agents.machinery.objects import Object
from agents.machinery.upgrade import hijack, read_head, splice

SCHEMES = ("http", "https")
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
CONNECT_TIMEOUT = 10.0
CHUNK = 64 * 1024
# HTTP method -> the verb authorized on the proxy subresource (a HEAD or OPTIONS reads, as a GET)
VERBS = PROXY_VERBS
# headers that belong to one connection and are never passed on (RFC 9110 7.6.1); ``Host`` names the
# backend instead, and the caller's credentials stay here (kube drops them once it has authenticated)
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = HOP_BY_HOP | {"host", "authorization"}


@dataclass(frozen=True)
class ProxyName:
    """What ``NAME`` in ``.../NAME/proxy`` asks for: ``name``, ``name:port`` or ``scheme:name:port``."""

    scheme: str
    name: str
    port: str


@dataclass(frozen=True)
class Location:
    """Where a proxied request goes (``port`` 0: the scheme's default)."""

    scheme: str
    host: str
    port: int

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port else host

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port or (443 if self.scheme == "https" else 80)


# --- pure ------------------------------------------------------------------------------------------


def verb(method: str) -> str:
    """The verb a request on a proxy subresource is authorized for (405 for another method)."""
    found = VERBS.get(method.upper())
    if found is None:
        raise method_not_allowed()
    return found


def parse_name(kind: str, raw: str) -> ProxyName:
    """``name``, ``name:port`` or ``scheme:name:port`` (scheme ``http``, ``https`` or empty); anything
    else is a 400 in kube's words (``invalid service request "..."``)."""
    parts = raw.split(":")
    scheme, port = "", ""
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        name, port = parts
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        raise bad_request(f'invalid {kind} request "{raw}"')
    if not name or scheme not in ("", *SCHEMES):
        raise bad_request(f'invalid {kind} request "{raw}"')
    return ProxyName(scheme, name, port)


def backend_path(raw_path: str, *, depth: int) -> str:
    """The path passed on: what follows the ``proxy`` segment, which is segment ``depth`` (counted from
    0 after the leading slash) of the still-encoded request path; ``/`` when nothing follows. A trailing
    slash is kept (a dashboard's relative links depend on it)."""
    parts = raw_path.lstrip("/").split("/", depth + 1)
    rest = parts[depth + 1] if len(parts) > depth + 1 else ""
    return "/" + rest


def _port_number(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def _global_unicast(text: str) -> bool:
    """An address a proxied request may go to: not unspecified, loopback, link-local or multicast."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    return not (ip.is_unspecified or ip.is_loopback or ip.is_link_local or ip.is_multicast)


def pod_location(pod: Object, wanted: ProxyName) -> Location:
    """The pod's IP at the port asked (a number, or a container port's name), else its first container's
    first port, else the scheme's default; 400 ``address not allowed`` while the pod has no usable IP."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    ports = [p for c in spec.get("containers") or [] for p in c.get("ports") or []]
    port = 0
    if wanted.port:
        number = _port_number(wanted.port)
        if number is None:
            named = next((p for p in ports if p.get("name") == wanted.port), None)
            if named is None:
                raise bad_request(f'invalid pod request "{wanted.port}": no container port of that name')
            number = int(named.get("containerPort") or 0)
        port = number
    elif ports:
        port = int(ports[0].get("containerPort") or 0)
    ip = str(status.get("podIP") or "")
    if not _global_unicast(ip):
        raise bad_request("address not allowed")
    return Location(wanted.scheme or "http", ip, port)


def service_location(
    service: Object,
    slices: Iterable[Object],
    wanted: ProxyName,
    *,
    raw: str,
    choose: Callable[[Sequence[tuple[str, int]]], tuple[str, int]] = random.choice,
) -> Location:
    """One ready endpoint of the Service at the port asked: by the Service port's name (empty: the
    unnamed port) or by its number (``port``), at the target port its EndpointSlices give that port's
    name. 503 in kube's words when there is none: ``no service port N found``, or ``no endpoints
    available`` (naming the Service when it has no endpoint at all, else the whole request ``raw``)."""
    name = str((service.get("metadata") or {}).get("name", wanted.name))
    port_name = wanted.port
    number = _port_number(wanted.port)
    if number is not None:
        found = next((p for p in (service.get("spec") or {}).get("ports") or [] if p.get("port") == number), None)
        if found is None:
            raise StatusError(503, "ServiceUnavailable", f'no service port {number} found for service "{name}"')
        port_name = str(found.get("name") or "")
    any_endpoint = False
    ready: list[tuple[str, int]] = []
    for piece in slices:
        endpoints = piece.get("endpoints") or []
        any_endpoint = any_endpoint or bool(endpoints)
        target = next((p.get("port") for p in piece.get("ports") or [] if str(p.get("name") or "") == port_name), None)
        if not isinstance(target, int):
            continue
        for endpoint in endpoints:
            if (endpoint.get("conditions") or {}).get("ready") is False:  # unset counts as ready
                continue
            ready.extend((str(address), target) for address in endpoint.get("addresses") or [])
    if not ready:
        raise StatusError(
            503, "ServiceUnavailable", f'no endpoints available for service "{raw if any_endpoint else name}"'
        )
    host, port = choose(sorted(set(ready)))
    return Location(wanted.scheme or "http", host, port)


def request_headers(incoming: Iterable[tuple[str, str]], *, upgrade: bool = False) -> list[tuple[str, str]]:
    """The caller's headers as the backend gets them: no hop-by-hop ones, no ``Host``, no credentials
    (an upgrade keeps its ``Connection``/``Upgrade`` pair, which it is made of)."""
    kept = {"connection", "upgrade"} if upgrade else set()
    return [(k, v) for k, v in incoming if k.lower() not in _NOT_FORWARDED or k.lower() in kept]


def response_headers(upstream: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The backend's answer headers as passed on to the caller (hop-by-hop ones and the length, which
    this server sets itself for the bytes it streams, dropped)."""
    return [(k, v) for k, v in upstream if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"]


async def relay_answer(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    headers: Iterable[tuple[str, str]],
    *,
    length: int | None = None,
) -> web.StreamResponse:
    """A backend's answer streamed back to the caller with ``headers`` (and ``length`` when the backend
    declared one), no body for a HEAD; the backend's response is released at the end. The aggregation
    layer passes its backends' answers on through it too."""
    try:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in headers:
            response.headers.add(name, value)
        if length is not None and request.method != "HEAD":
            response.content_length = length
        await response.prepare(request)
        if request.method != "HEAD":
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response
    finally:
        upstream.release()


def rewrite_location(value: str, *, backend: Location, prefix: str) -> str:
    """A redirect's ``Location`` seen from the caller: a path on the backend (absolute, or a URL of the
    backend's own host) is put under the proxy's prefix; any other URL is left alone."""
    url = urllib.parse.urlsplit(value)
    if url.netloc and (url.hostname != backend.host or (url.port or backend.address[1]) != backend.address[1]):
        return value
    if not url.path.startswith("/"):
        return value  # relative to the current path: already under the prefix
    return prefix.rstrip("/") + url.path + (f"?{url.query}" if url.query else "")


def header(headers: Iterable[tuple[str, str]], name: str, default: str = "") -> str:
    """The first value of header ``name`` (any case) among ``headers``."""
    return next((v for k, v in headers if k.lower() == name.lower()), default)


def dial_error(location: Location, exc: BaseException) -> str:
    """A failed connection to a backend in kube's words (``error trying to reach service: dial tcp
    IP:PORT: connect: connection refused``)."""
    host, port = location.address
    where = Location(location.scheme, host, port).netloc
    cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    if isinstance(cause, TimeoutError | asyncio.TimeoutError):
        reason = "i/o timeout"
    elif isinstance(cause, OSError) and cause.errno is not None:
        reason = "connect: " + os_error_text(cause.errno)
    else:
        reason = str(cause) or type(cause).__name__
    return f"error trying to reach service: dial tcp {where}: {reason}"


def os_error_text(number: int) -> str:
    """An errno as Go spells it (lower case: ``connection refused``, ``no route to host``)."""
    if number == errno.ECONNREFUSED:
        return "connection refused"
    text = os.strerror(number)
    return text[:1].lower() + text[1:]


# --- executor --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    """A location and how to speak to it: in the egress namespace or not, TLS, credentials."""

    location: Location
    in_cluster: bool
    tls: ssl.SSLContext | bool = False  # False: https without verification (pods and Services, as kube)
    authorization: str = ""


class Proxier:
    """Passes requests on to pods, Services' endpoints and kubelets, and their answers back."""

    def __init__(self, kubelets: KubeletClient | None, *, egress_namespace: Path | None = None) -> None:
        self._kubelets = kubelets
        self._netns = egress_namespace
        self._sessions: dict[bool, aiohttp.ClientSession] = {}

    async def close(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()

    def _session(self, in_cluster: bool) -> aiohttp.ClientSession:
        """Made on first use inside the server's loop; one for the egress namespace, one for this one."""
        if in_cluster not in self._sessions:
            connector = aiohttp.TCPConnector(
                socket_factory=egress.socket_factory(self._netns if in_cluster else None),
                limit=0,
                enable_cleanup_closed=True,
            )
            self._sessions[in_cluster] = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
            )
        return self._sessions[in_cluster]

    def node_backend(self, node: Object, wanted: ProxyName) -> Backend:
        """The node's kubelet (its port, or no port asked: HTTPS checked against the kubelets' CA, this
        server's token presented), or another port of the node, plainly, at the scheme asked."""
        if self._kubelets is None:
            raise StatusError(503, "ServiceUnavailable", "this API server has no kubelet client configured")
        host, port, context, authorization = self._kubelets.endpoint(node)
        if not wanted.port or wanted.port == str(port):
            return Backend(Location("https", host, port), in_cluster=False, tls=context, authorization=authorization)
        number = _port_number(wanted.port)
        if number is None:
            raise bad_request(f'invalid node request "{wanted.port}": the port must be a number')
        return Backend(Location(wanted.scheme or "http", host, number), in_cluster=False)

    async def forward(self, request: web.Request, backend: Backend, *, path: str, prefix: str) -> web.StreamResponse:
        """Send the request on; stream the answer back (or join an upgraded connection both ways)."""
        if "upgrade" in request.headers.get("Connection", "").lower() and request.headers.get("Upgrade"):
            return await self._upgrade(request, backend, path)
        location = backend.location
        headers = request_headers(request.headers.items())
        if backend.authorization:
            headers.append(("Authorization", backend.authorization))
        query = f"?{request.rel_url.raw_query_string}" if request.rel_url.raw_query_string else ""
        url = f"{location.scheme}://{location.netloc}{path}{query}"
        body = request.content.iter_chunked(CHUNK) if request.body_exists else None
        try:
            upstream = await self._session(backend.in_cluster).request(
                request.method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                ssl=backend.tls,
            )
        except (aiohttp.ClientConnectorError, OSError, TimeoutError) as exc:
            raise StatusError(503, "ServiceUnavailable", dial_error(location, exc)) from exc
        except aiohttp.ClientError as exc:
            raise StatusError(503, "ServiceUnavailable", f"error trying to reach service: {exc}") from exc
        answer = [
            (name, rewrite_location(value, backend=location, prefix=prefix) if name.lower() == "location" else value)
            for name, value in response_headers(upstream.headers.items())
        ]
        declared = upstream.headers.get("Content-Length", "")
        return await relay_answer(request, upstream, answer, length=int(declared) if declared.isdigit() else None)

    async def _dial(self, backend: Backend) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        location = backend.location
        host, port = location.address
        context: ssl.SSLContext | None = None
        if location.scheme == "https":
            if isinstance(backend.tls, ssl.SSLContext):
                context = backend.tls
            else:
                context = ssl.create_default_context()
                context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            if backend.in_cluster and self._netns is not None:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = egress.socket_in(self._netns, family)
                sock.setblocking(False)
                await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), CONNECT_TIMEOUT)
                return await asyncio.open_connection(sock=sock, ssl=context, server_hostname=host if context else None)
            return await asyncio.wait_for(asyncio.open_connection(host, port, ssl=context), CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise StatusError(503, "ServiceUnavailable", dial_error(location, exc)) from exc

    async def _upgrade(self, request: web.Request, backend: Backend, path: str) -> web.StreamResponse:
        """The caller's upgrade request sent as it is; the backend's 101 answered and the two
        connections joined (``upgrade.splice``), or its refusal passed back as an answer."""
        reader, writer = await self._dial(backend)
        query = f"?{request.rel_url.raw_query_string}" if request.rel_url.raw_query_string else ""
        lines = [f"{request.method} {path}{query} HTTP/1.1", f"Host: {backend.location.netloc}"]
        lines += [f"{k}: {v}" for k, v in request_headers(request.headers.items(), upgrade=True)]
        if backend.authorization:
            lines.append(f"Authorization: {backend.authorization}")
        try:
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            code, headers = await read_head(reader)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            writer.close()
            raise StatusError(503, "ServiceUnavailable", f"error trying to reach service: {exc}") from exc
        if code != 101:
            declared = header(headers, "Content-Length")
            body = b""
            with contextlib.suppress(Exception):
                body = await asyncio.wait_for(reader.readexactly(min(int(declared or 0), 1 << 20)), 5)
            writer.close()
            return web.Response(status=code, body=body, headers=response_headers(headers))
        passed = dict(response_headers(headers))
        passed["Upgrade"] = header(headers, "Upgrade", request.headers.get("Upgrade", ""))
        try:
            raw = await hijack(request, passed)
        except BaseException:  # the caller went in the meantime: nothing is left open at the backend
            writer.close()
            raise
        await splice(raw, reader, writer)
        return raw.response
