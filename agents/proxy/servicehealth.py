"""kube-proxy's service health check: does this node have a local endpoint of a Service?

A LoadBalancer Service with ``externalTrafficPolicy: Local`` only takes external traffic on nodes
with one of its endpoints (elsewhere the proxy drops it, to keep the client's address), so its load
balancer must know which nodes those are. The API server gives such a Service a
``healthCheckNodePort``; on every node the proxy answers HTTP there, any path, as kube-proxy does:
200 while the node has ready local endpoints of the Service, 503 while it has none, with kube-proxy's
JSON body and its ``X-Load-Balancing-Endpoint-Weight`` header (the count).

Planning is pure (:func:`plan`: which ports to serve, with which count, from the proxy's model);
:class:`ServiceHealthServer` is the thin executor that opens and closes one listener per port on the
node's address (inside the node's network namespace when the proxy programs one with ``--netns``)
and answers from the latest plan.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import socket
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agents.proxy.model import Endpoints, PortRef, Service

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"  # where ``ip netns`` keeps named network namespaces
REQUEST_TIMEOUT = 5.0  # seconds a client has to send its request's head
MAX_HEAD = 16 * 1024
_setns_lock = threading.Lock()


@dataclass(frozen=True, order=True)
class HealthCheck:
    """One Service's health check on this node: where it is served, and what it says."""

    port: int
    namespace: str
    name: str
    local_endpoints: int  # this node's ready endpoints of the Service (distinct address:port)


def plan(services: Iterable[Service], endpoints: Endpoints, *, node_name: str) -> dict[int, HealthCheck]:
    """The health checks this node serves, by port: one per Service with a ``healthCheckNodePort``.

    Counts as kube-proxy does: the Service's endpoints on this node whose ``ready`` is true (serving
    while terminating does not count), each address and port once over all its ports. A port two
    Services claim (which the API server prevents) goes to the first by namespace and name.
    """
    checks: dict[int, HealthCheck] = {}
    for service in sorted(services, key=lambda s: (s.namespace, s.name)):
        port = service.health_check_node_port
        if port is None or port in checks:
            continue
        local = {
            (e.address, e.port)
            for p in service.ports
            for e in endpoints.get(PortRef(service.namespace, service.name, p.name, p.protocol), ())
            if e.ready and node_name and e.node_name == node_name
        }
        checks[port] = HealthCheck(port, service.namespace, service.name, len(local))
    return checks


def answer(check: HealthCheck, *, healthy: bool = True) -> tuple[int, bytes]:
    """The status and body kube-proxy answers: 200 with local endpoints (and a healthy proxy), else 503."""
    status = 200 if check.local_endpoints > 0 and healthy else 503
    body = (
        "{\n"
        '\t"service": {\n'
        f'\t\t"namespace": "{check.namespace}",\n'
        f'\t\t"name": "{check.name}"\n'
        "\t},\n"
        f'\t"localEndpoints": {check.local_endpoints},\n'
        f'\t"serviceProxyHealthy": {"true" if healthy else "false"}\n'
        "}"
    )
    return status, body.encode()


def response(check: HealthCheck, *, healthy: bool = True) -> bytes:
    """The whole HTTP/1.1 response for one request (the connection is closed after it)."""
    status, body = answer(check, healthy=healthy)
    reason = "OK" if status == 200 else "Service Unavailable"
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/json\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"X-Load-Balancing-Endpoint-Weight: {check.local_endpoints}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def listening_socket(address: str, port: int, *, netns: str = "") -> socket.socket:
    """A TCP socket listening on ``address:port`` ("" = every address), made inside the named network
    namespace when ``netns`` is set (this thread enters it for that moment and comes back)."""
    if not netns:
        return _listen(address, port)
    libc = ctypes.CDLL(None, use_errno=True)
    with _setns_lock:
        own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        target = -1
        try:
            target = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY)
            if libc.setns(target, CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"setns into {netns}: {os.strerror(code)}")
            try:
                return _listen(address, port)
            finally:
                if libc.setns(own, CLONE_NEWNET) != 0:  # pragma: no cover - would leave the thread astray
                    raise OSError(ctypes.get_errno(), "setns back failed")
        finally:
            os.close(own)
            if target >= 0:
                os.close(target)


def _listen(address: str, port: int) -> socket.socket:
    made = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        made.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        made.bind((address, port))
        made.listen(128)
        made.setblocking(False)
    except BaseException:
        made.close()
        raise
    return made


class ServiceHealthServer:
    """Serves the planned health checks: a listener per port, opened and closed as the plan changes.

    A port that cannot be opened (something else holds it) is logged and tried again at the next
    apply; it does not fail the proxy's sync, as in kube-proxy.
    """

    def __init__(self, *, address: str = "", netns: str = "") -> None:
        self.address = address
        self.netns = netns
        self.healthy = True
        self._checks: dict[int, HealthCheck] = {}
        self._servers: dict[int, asyncio.Server] = {}

    @property
    def ports(self) -> list[int]:
        """The ports served now."""
        return sorted(self._servers)

    async def apply(self, wanted: Mapping[int, HealthCheck], *, healthy: bool = True) -> None:
        self._checks = dict(wanted)
        self.healthy = healthy
        for port in sorted(set(self._servers) - set(wanted)):
            server = self._servers.pop(port)
            server.close()
            log.info("service health check on port %d closed", port)
        loop = asyncio.get_running_loop()
        for port in sorted(set(wanted) - set(self._servers)):
            check = wanted[port]
            try:
                opener = functools.partial(listening_socket, self.address, port, netns=self.netns)
                sock = await loop.run_in_executor(None, opener)
                self._servers[port] = await asyncio.start_server(functools.partial(self._serve, port), sock=sock)
            except OSError as exc:
                log.error(
                    "cannot serve the health check of service %s/%s on port %d: %s",
                    check.namespace,
                    check.name,
                    port,
                    exc.strerror or exc,
                )
                continue
            log.info("service health check of %s/%s on port %d", check.namespace, check.name, port)

    async def _serve(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                await reader.readuntil(b"\r\n\r\n")
            check = self._checks.get(port)
            if check is not None:
                writer.write(response(check, healthy=self.healthy))
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def close(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()
