"""The proxy's loop: watch Services, EndpointSlices and Nodes; rewrite the table when they change.

Watch handlers only mark the state dirty. One sync loop then recomputes everything from the informer
caches (level-triggered: a missed or repeated event costs nothing) and hands the result to the
executors, which skip what is unchanged. Syncs are at least ``min_sync_interval`` apart, so a burst
of changes is coalesced into one transaction, while a lone change after a quiet spell is applied at
once. A failed sync is retried with backoff; every ``resync_period`` the table and the routes are
rewritten even if nothing changed, which repairs them if someone else edited them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from agents.machinery import tracing
from agents.machinery.client import Client
from agents.machinery.informer import Informer, key_of
from agents.machinery.objects import Object
from agents.machinery.resources import ENDPOINT_SLICES, NODES, SERVICES
from agents.proxy.errors import ProxyError
from agents.proxy.model import Endpoint, PortRef, Service, merge_endpoints, service_from, slice_endpoints
from agents.proxy.nft import Nft, RouteTable
from agents.proxy.routes import Route, pod_cidrs, wanted_routes
from agents.proxy.rules import NodeConfig, render
from agents.proxy.servicehealth import HealthCheck, ServiceHealthServer
from agents.proxy.servicehealth import plan as plan_health_checks

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
TRACER = "proxy"
MAX_TRACED_CAUSES = 8  # traces one sync continues at most (a burst of traced changes)
T = TypeVar("T")


@dataclass(frozen=True)
class ProxyConfig:
    node_name: str
    node_ip: str = ""
    node: NodeConfig = field(default_factory=NodeConfig)
    table: str = "kubelab"
    min_sync_interval: float = 0.05
    resync_period: float = 60.0


def rule_count(ruleset: str) -> int:
    """The rules of a ruleset: its chains' rules and its maps' and sets' elements (the lines inside a
    chain, map or set that declare nothing)."""
    declarations = ("type ", "flags ", "policy ", "elements ", "}")
    return sum(
        1 for line in ruleset.splitlines() if line.startswith("\t\t") and not line.lstrip().startswith(declarations)
    )


def _route_facts(node: Object) -> tuple[list[str], list[object]]:
    return pod_cidrs(node), list((node.get("status") or {}).get("addresses") or [])


class _Converted(Generic[T]):
    """Each cached object converted once per resourceVersion (API objects -> model values).

    Pure functions of one object, so a conversion stays valid until the object changes; with a
    thousand Services this saves most of a sync's Python time.
    """

    def __init__(self, convert: Callable[[Object], T]) -> None:
        self.convert = convert
        self._cache: dict[str, tuple[str, T]] = {}

    def all(self, informer: Informer) -> list[T]:
        fresh: dict[str, tuple[str, T]] = {}
        for key, obj in informer.store.items():
            version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            cached = self._cache.get(key)
            fresh[key] = (
                cached if cached is not None and cached[0] == version and version else (version, self.convert(obj))
            )
        self._cache = fresh
        return [value for _, value in fresh.values()]


class Proxy:
    def __init__(
        self,
        client: Client,
        config: ProxyConfig,
        *,
        nft: Nft,
        routes: RouteTable | None,
        health: ServiceHealthServer | None = None,
    ) -> None:
        self.config = config
        self.nft = nft
        self.routes = routes
        self.health = health
        self.services = Informer(client, SERVICES)
        self.slices = Informer(client, ENDPOINT_SLICES)
        self.nodes = Informer(client, NODES)
        self.syncs = 0
        self._services = _Converted[Service | None](service_from)
        self._slices = _Converted[dict[PortRef, frozenset[Endpoint]]](slice_endpoints)
        self._dirty = asyncio.Event()
        self._force = False
        self._traced: dict[str, Object] = {}  # slices changed by a traced write since the last sync, by key
        self._traces_seen: dict[str, str] = {}  # the trace context each slice carried when last seen
        self.services.on_any(self._changed)
        self.slices.on(
            add=self._slice_changed, update=lambda _old, new: self._slice_changed(new), delete=self._slice_gone
        )
        if routes is not None:
            self.nodes.on(add=self._changed, update=self._node_updated, delete=self._changed)

    def _changed(self, _obj: Object) -> None:
        self._dirty.set()

    def _slice_changed(self, piece: Object) -> None:
        self._dirty.set()
        if not tracing.enabled():
            return
        carried = tracing.traceparent(piece)
        key = key_of(piece)
        # a slice keeps its annotation: only a new trace context is a change a user's write caused,
        # and the slices listed at the start are where they are already
        if carried and self._traces_seen.get(key) != carried:
            self._traces_seen[key] = carried
            if self.slices.synced.is_set():
                self._traced[key] = piece

    def _slice_gone(self, piece: Object) -> None:
        self._dirty.set()
        self._traces_seen.pop(key_of(piece), None)
        self._traced.pop(key_of(piece), None)

    def _node_updated(self, old: Object, new: Object) -> None:
        if _route_facts(old) != _route_facts(new):  # heartbeats change neither
            self._dirty.set()

    def desired(self) -> tuple[str, list[Route], dict[int, HealthCheck]]:
        """The ruleset, the routes and the service health checks the caches call for now."""
        services = [s for s in self._services.all(self.services) if s is not None]
        endpoints = merge_endpoints(self._slices.all(self.slices))
        ruleset = render(services, endpoints, self.config.node, table=self.config.table)
        routes = wanted_routes(self.nodes.items(), node_name=self.config.node_name, node_ip=self.config.node_ip)
        checks = plan_health_checks(services, endpoints, node_name=self.config.node_name)
        return ruleset, routes, checks

    async def sync(self, *, force: bool = False) -> None:
        causes, self._traced = list(self._traced.values()), {}
        with contextlib.ExitStack() as traced:
            # a span in the trace of every slice whose change this sync carries; "nft apply" under the last
            for piece in causes[-MAX_TRACED_CAUSES:]:
                attributes = {"k8s.node.name": self.config.node_name}
                traced.enter_context(tracing.span_for(piece, "sync rules", tracer_name=TRACER, attributes=attributes))
            await self._sync(force=force)

    async def _sync(self, *, force: bool) -> None:
        started = time.perf_counter()
        ruleset, routes, checks = self.desired()
        planned = time.perf_counter()
        with tracing.child("nft apply", tracer_name=TRACER) as span:
            if span.is_recording():
                span.set_attributes({"rules.count": rule_count(ruleset), "nft.table": self.config.table})
            try:
                written = await self.nft.apply(ruleset, force=force)
            except ProxyError as exc:
                tracing.fail(span, str(exc))
                raise
            if span.is_recording():
                span.set_attribute("nft.written", written)
        if self.health is not None:  # after the rules: a 200 means the traffic is programmed
            await self.health.apply(checks)
        applied = time.perf_counter()
        if self.routes is not None:
            plan = await self.routes.reconcile(routes, force=force)
            if plan is not None and plan.actions:
                log.info("routes: %s", ", ".join(f"{a.verb} {a.route.cidr} via {a.route.via}" for a in plan.actions))
        self.syncs += 1
        log.debug(
            "sync: planned in %.1f ms, table %s in %.1f ms, routes in %.1f ms",
            (planned - started) * 1000,
            "written" if written else "unchanged",
            (applied - planned) * 1000,
            (time.perf_counter() - applied) * 1000,
        )

    async def _resync_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_period)
            self._force = True
            self._dirty.set()

    async def _sync_loop(self, ready: asyncio.Event | None) -> None:
        last = float("-inf")
        failures = 0
        while True:
            await self._dirty.wait()
            wait = last + self.config.min_sync_interval - time.monotonic()
            if failures:
                wait = max(wait, min(MAX_BACKOFF, 0.2 * 2 ** (failures - 1)))
            # yield at least once: events that arrived together land before the caches are read
            await asyncio.sleep(max(0.0, wait))
            self._dirty.clear()
            force, self._force = self._force, False
            last = time.monotonic()
            try:
                await self.sync(force=force or failures > 0)
            except ProxyError as exc:
                failures += 1
                log.error("sync failed (attempt %d): %s", failures, exc)
                self._dirty.set()
                continue
            if failures:
                log.info("sync succeeded after %d failed attempts", failures)
            failures = 0
            if ready is not None and not ready.is_set():
                log.info("proxy ready: table %s programmed", self.config.table)
                ready.set()

    async def run(self, ready: asyncio.Event | None = None) -> None:
        informers = [self.services, self.slices, *([self.nodes] if self.routes is not None else [])]
        tasks = [asyncio.create_task(informer.run()) for informer in informers]
        try:
            await asyncio.gather(*(informer.synced.wait() for informer in informers))
            log.info(
                "proxy for node %s: %d services, %d endpoint slices, %d nodes",
                self.config.node_name,
                len(self.services.store),
                len(self.slices.store),
                len(self.nodes.store),
            )
            self._dirty.set()
            tasks.append(asyncio.create_task(self._resync_periodically()))
            await self._sync_loop(ready)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.health is not None:
                await self.health.close()
