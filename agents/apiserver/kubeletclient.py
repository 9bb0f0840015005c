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

LOG_PARAMS = ("follow", "previous", "tailLines", "timestamps", "limitBytes", "sinceSeconds")


def container_for_logs(pod: Mapping[str, Any], wanted: str) -> str:
    """The container whose log is asked for: the one named, or the only one (kube's messages)."""
    name = pod["metadata"]["name"]
    containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    if wanted:
        if wanted not in containers:
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

    async def exec(self, request: web.Request, node: Mapping[str, Any], path: str) -> web.StreamResponse:
        """``pods/NAME/exec``: join the caller's WebSocket to one opened to the kubelet, message for message."""
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        protocols = [p for p in offered if p in EXEC_PROTOCOLS]
        if not protocols:
            wanted = ", ".join(EXEC_PROTOCOLS)
            raise StatusError(400, "BadRequest", f"exec needs a WebSocket with one of the protocols {wanted}")
        if not web.WebSocketResponse(protocols=protocols).can_prepare(request).ok:
            raise StatusError(400, "BadRequest", "Upgrade request required")  # before the kubelet is dialled
        host, port = self._location(node)
        session, context = self._pool()
        try:
            upstream = await session.ws_connect(
                f"wss://{host}:{port}{path}", params=list(request.query.items()), protocols=protocols, ssl=context
            )
        except (aiohttp.ClientError, OSError) as exc:
            raise StatusError(500, "InternalError", f"the kubelet at {host}:{port} refused the exec: {exc}") from exc
        downstream = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else protocols)
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
