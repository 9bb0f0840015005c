"""Scraping the kubelets: every node's ``/metrics/resource`` at once, each within a timeout.

Which address of a node is used is metrics-server's rule: the first of the node's ``status.addresses``
whose type comes first in ``--kubelet-preferred-address-types``; the port is ``--kubelet-port``, or
the one the node publishes (``status.daemonEndpoints.kubeletEndpoint.Port``) with
``--kubelet-use-node-status-port``. The kubelet is called over HTTPS with this server's
ServiceAccount token (it asks the API server whether that may ``get nodes/metrics``) and its serving
certificate checked against the cluster's CA, unless ``--kubelet-insecure-tls``. A node that does not
answer in time, or answers badly, is left out of this round (its points are not kept: see
:mod:`~agents.metricsserver.storage`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from agents.machinery.errors import TemporaryError
from agents.metricsserver.points import Batch, DecodeError, decode, merge

log = logging.getLogger(__name__)

PATH = "/metrics/resource"
LIMIT = 16 * 1024 * 1024  # bytes: an answer larger than this is refused


class ScrapeError(TemporaryError):
    """A kubelet did not give its metrics."""


@dataclass(frozen=True)
class Target:
    node: str
    address: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"https://{host}:{self.port}{PATH}"


def target_of(node: Mapping[str, Any], *, preferred: Sequence[str], port: int, use_status_port: bool) -> Target | str:
    """Where to scrape ``node`` (a Node object), or why it cannot be."""
    name = str((node.get("metadata") or {}).get("name") or "")
    status = node.get("status") or {}
    if use_status_port:
        published = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
        port = int(published or port)
    addresses = [(str(a.get("type") or ""), str(a.get("address") or "")) for a in status.get("addresses") or []]
    for kind in preferred:
        for found_kind, address in addresses:
            if found_kind == kind and address:
                return Target(name, address, port)
    return f"node {name} has no address of the preferred types {','.join(preferred)}"


@dataclass(frozen=True)
class Round:
    """What one round of scrapes gave."""

    batch: Batch
    errors: Mapping[str, str]  # node -> why it gave nothing
    seconds: float


class Scraper:
    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | bool,
        token: Callable[[], str],
        timeout: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ssl_context = ssl_context
        self.token = token
        self.timeout = timeout
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.ssl_context, limit=64)
            self._session = aiohttp.ClientSession(connector=connector, headers={"User-Agent": "kubelab-metrics-server"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def scrape_node(self, target: Target) -> Batch:
        token = self.token()
        headers = {"Accept": "text/plain"} | ({"Authorization": f"Bearer {token}"} if token else {})
        try:
            async with asyncio.timeout(self.timeout):
                async with self._http().get(target.url, headers=headers) as resp:
                    if resp.status != 200:
                        text = (await resp.content.read(300)).decode(errors="replace").strip()
                        raise ScrapeError(f"{target.url}: HTTP {resp.status}: {text}")
                    raw = await resp.content.read(LIMIT + 1)
        except TimeoutError as exc:
            raise ScrapeError(f"{target.url}: no answer within {self.timeout:.1f}s") from exc
        except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
            raise ScrapeError(f"{target.url}: {exc or type(exc).__name__}") from exc
        if len(raw) > LIMIT:
            raise ScrapeError(f"{target.url}: the answer is larger than {LIMIT} bytes")
        try:
            return decode(raw.decode(errors="replace"), node=target.node, scraped_at=int(self.clock() * 1e9))
        except DecodeError as exc:
            raise ScrapeError(f"{target.url}: {exc}") from exc

    async def scrape(self, targets: Sequence[Target]) -> Round:
        """Every target at once; a failed one is named in ``errors``, the others merged."""
        started = time.monotonic()
        results = await asyncio.gather(*(self.scrape_node(t) for t in targets), return_exceptions=True)
        batches: list[Batch] = []
        errors: dict[str, str] = {}
        for target, result in zip(targets, results, strict=True):
            if isinstance(result, ScrapeError):
                errors[target.node] = str(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                batches.append(result)
        return Round(merge(batches), errors, time.monotonic() - started)
