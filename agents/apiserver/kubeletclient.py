"""The API server's side of ``kubectl logs``: find the pod's kubelet and stream from it.

The API server reaches a node's kubelet at one of the node's addresses (``--kubelet-preferred-
address-types``, or ``--kubelet-address-override`` where every kubelet shares the host's loopback,
as in a local lab) and the port the node publishes in ``status.daemonEndpoints``, over HTTPS checked
against the kubelets' CA, presenting its own bearer token.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web

from agents.apiserver.settings import KubeletClientSettings
from agents.apiserver.status import StatusError, bad_request
from agents.machinery.upgrade import hijack, read_head, splice

LOG_PARAMS = ("follow", "previous", "tailLines", "timestamps", "limitBytes", "sinceSeconds")


def container_for_logs(pod: Mapping[str, Any], wanted: str) -> str:
    """The container whose log is asked for: the one named, or the only one (kube's messages)."""
    name = pod["metadata"]["name"]
    spec = pod.get("spec") or {}
    containers = [c["name"] for c in spec.get("containers") or []]
    others = [c["name"] for kind in ("initContainers", "ephemeralContainers") for c in spec.get(kind) or []]
    if wanted:  # an init or ephemeral container's log may be asked for by its name too
        if wanted not in containers + others:
            raise bad_request(f"container {wanted} is not valid for pod {name}")
        return wanted
    if len(containers) == 1:
        return str(containers[0])
    raise bad_request(f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]")


def kubelet_location(node: Mapping[str, Any], *, preferred: Sequence[str], override: str) -> tuple[str, int]:
    status = node.get("status") or {}
    port = int(((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 10250)
    if override:
        return override, port
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    for kind in preferred:
        if addresses.get(kind):
            return str(addresses[kind]), port
    raise StatusError(500, "InternalError", f"node {node['metadata']['name']} has no address to reach its kubelet at")


EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
# pods/exec, pods/attach and pods/portforward: the WebSocket subprotocols passed on to the kubelet
STREAM_PROTOCOLS = {
    "exec": EXEC_PROTOCOLS,
    "attach": EXEC_PROTOCOLS,
    "portforward": ("SPDY/3.1+portforward.k8s.io", "v4.channel.k8s.io", "portforward.k8s.io"),
}
# each also takes a plain SPDY/3.1 upgrade (kubectl with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false or
# KUBECTL_PORT_FORWARD_WEBSOCKETS=false, and kubectl's fallback): the stream protocol versions the
# client offers go to the kubelet, which chooses; port-forward's when a client names none
SPDY_DEFAULT_VERSIONS = {"exec": (), "attach": (), "portforward": ("portforward.k8s.io",)}


def stream_versions(request: web.Request, what: str) -> list[str]:
    """The ``X-Stream-Protocol-Version`` values a client offers, sent as several headers or as one list."""
    offered = [v.strip() for h in request.headers.getall("X-Stream-Protocol-Version", []) for v in h.split(",")]
    return [v for v in offered if v] or list(SPDY_DEFAULT_VERSIONS[what])


async def _relay(source: Any, target: Any) -> None:
    """Pass binary messages one way until ``source`` closes."""
    async for message in source:
        if message.type == WSMsgType.BINARY:
            await target.send_bytes(message.data)
        elif message.type == WSMsgType.TEXT:
            await target.send_str(message.data)
        else:
            break


class KubeletClient:
    """HTTPS to kubelets: one connection pool, the kubelets' CA, the API server's token."""

    def __init__(self, settings: KubeletClientSettings) -> None:
        self.settings = settings
        token = settings.token_file.read_text().strip() if settings.token_file else ""
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._ssl: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None

    def _pool(self) -> tuple[aiohttp.ClientSession, ssl.SSLContext]:
        """Made on first use, inside the server's event loop."""
        if self._session is None:
            self._ssl = ssl.create_default_context(cafile=str(self.settings.certificate_authority or "") or None)
            self._session = aiohttp.ClientSession(
                headers=self._headers, timeout=aiohttp.ClientTimeout(total=None, sock_connect=5)
            )
        assert self._ssl is not None
        return self._session, self._ssl

    def _location(self, node: Mapping[str, Any]) -> tuple[str, int]:
        return kubelet_location(
            node, preferred=self.settings.preferred_address_types, override=self.settings.address_override
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def open(self, node: Mapping[str, Any], path: str, query: Mapping[str, str]) -> aiohttp.ClientResponse:
        """GET ``path`` from the node's kubelet; the caller reads and releases the response."""
        host, port = self._location(node)
        session, context = self._pool()
        try:
            return await session.get(f"https://{host}:{port}{path}", params=dict(query), ssl=context)
        except (aiohttp.ClientError, OSError) as exc:
            raise StatusError(
                500, "InternalError", f'Get "https://{host}:{port}{path}": the kubelet does not answer: {exc}'
            ) from exc

    async def stream(
        self, request: web.Request, node: Mapping[str, Any], path: str, *, what: str
    ) -> web.StreamResponse:
        """``pods/NAME/exec``, ``attach`` or ``portforward``: a WebSocket joined to one opened to the
        kubelet, or a SPDY/3.1 upgrade whose bytes are passed on both ways."""
        upgrade = request.headers.get("Upgrade", "").lower()
        if upgrade == "spdy/3.1":
            return await relay_upgrade(request, self, node, path, versions=stream_versions(request, what))
        accepted = STREAM_PROTOCOLS[what]
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        protocols = [p for p in offered if p in accepted]
        if upgrade != "websocket" or not protocols:
            raise StatusError(400, "BadRequest", "Upgrade request required")
        if not web.WebSocketResponse(protocols=protocols).can_prepare(request).ok:
            raise StatusError(400, "BadRequest", "Upgrade request required")
        host, port = self._location(node)
        session, context = self._pool()
        limit = 0 if what == "portforward" else 4 * 1024 * 1024  # a tunnelled SPDY frame may be large
        try:
            upstream = await session.ws_connect(
                f"wss://{host}:{port}{path}",
                params=list(request.query.items()),
                protocols=protocols,
                ssl=context,
                max_msg_size=limit,
            )
        except aiohttp.WSServerHandshakeError as exc:
            code = exc.status if 400 <= exc.status < 600 else 500
            said = await self._refusal(node, path, request.query) if code in (400, 404) else ""
            raise StatusError(
                code,
                "NotFound" if code == 404 else "BadRequest" if code == 400 else "InternalError",
                said or f"the kubelet refused the {what}: {exc.message}",
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise StatusError(500, "InternalError", f"the kubelet at {host}:{port} refused the {what}: {exc}") from exc
        return await _join(request, upstream, protocols, max_msg_size=limit)

    async def _refusal(self, node: Mapping[str, Any], path: str, query: Mapping[str, str]) -> str:
        """Why the kubelet refused an upgrade, in its words: a WebSocket handshake that fails leaves its
        answer's body unread, so the same request is asked again without the upgrade."""
        try:
            answer = await self.open(node, path, query)
        except StatusError:
            return ""
        try:
            return (await answer.content.read(4096)).decode(errors="replace").strip() if answer.status >= 400 else ""
        finally:
            answer.release()

    def endpoint(self, node: Mapping[str, Any]) -> tuple[str, int, ssl.SSLContext, str]:
        """Where the node's kubelet listens, the TLS context that checks it and the Authorization header
        this server presents (``nodes/NAME/proxy`` makes its own requests with them)."""
        host, port = self._location(node)
        _, context = self._pool()
        return host, port, context, self._headers.get("Authorization", "")

    async def dial(self, node: Mapping[str, Any]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        """A TLS connection to the node's kubelet (for an upgrade aiohttp's client does not make), and
        the Authorization header to present on it."""
        host, port = self._location(node)
        _, context = self._pool()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=context), 10)
        except (OSError, TimeoutError) as exc:
            raise StatusError(500, "InternalError", f"the kubelet at {host}:{port} does not answer: {exc}") from exc
        return reader, writer, self._headers.get("Authorization", "")


async def _join(
    request: web.Request,
    upstream: aiohttp.ClientWebSocketResponse,
    protocols: list[str],
    *,
    max_msg_size: int = 4 * 1024 * 1024,
) -> web.WebSocketResponse:
    """Answer the caller's WebSocket with the subprotocol the kubelet chose and relay messages both
    ways until either side ends; both sockets are closed at the end."""
    downstream = web.WebSocketResponse(
        protocols=[upstream.protocol] if upstream.protocol else protocols, max_msg_size=max_msg_size
    )
    try:
        await downstream.prepare(request)
    except BaseException:  # the caller went in the meantime: no session is left open at the kubelet
        with contextlib.suppress(Exception):
            await upstream.close()
        raise
    tasks = [asyncio.create_task(_relay(downstream, upstream)), asyncio.create_task(_relay(upstream, downstream))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await upstream.close()
        await downstream.close()
    return downstream


async def relay_upgrade(
    request: web.Request, kubelets: KubeletClient, node: Mapping[str, Any], path: str, *, versions: Sequence[str]
) -> web.StreamResponse:
    """Ask the kubelet for the same ``Upgrade: SPDY/3.1``; once it switches, answer the caller's 101 and
    pass bytes both ways until either side ends (what kube-apiserver's upgrade-aware proxy does)."""
    reader, writer, authorization = await kubelets.dial(node)
    raw_query = request.raw_path.partition("?")[2]  # as the client escaped it (query_string is decoded)
    query = f"?{raw_query}" if raw_query else ""
    lines = [
        f"POST {path}{query} HTTP/1.1",
        f"Host: {request.host}",
        "Connection: Upgrade",
        "Upgrade: SPDY/3.1",
        *(f"X-Stream-Protocol-Version: {version}" for version in versions),
        "Content-Length: 0",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        code, head = await read_head(reader)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        writer.close()
        raise StatusError(500, "InternalError", f"the kubelet did not switch protocols: {exc}") from exc
    headers = {k.lower(): v for k, v in head}
    if code != 101:
        declared = headers.get("content-length", "")
        length = int(declared) if declared.isdigit() else 0
        body = b""
        with contextlib.suppress(Exception):
            body = await asyncio.wait_for(reader.readexactly(min(length, 65536)), 5)
        writer.close()
        code = code if 400 <= code < 600 else 500
        reason = {400: "BadRequest", 403: "Forbidden", 404: "NotFound"}.get(code, "InternalError")
        raise StatusError(code, reason, body.decode(errors="replace").strip() or f"the kubelet answered {code}")
    try:
        raw = await hijack(
            request,
            {"Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": headers.get("x-stream-protocol-version", "")},
        )
    except BaseException:  # the caller went in the meantime: no session is left open at the kubelet
        writer.close()
        raise
    await splice(raw, reader, writer)
    return raw.response
