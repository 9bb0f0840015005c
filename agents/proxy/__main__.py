"""``kubelab-agent proxy`` / ``python -m agents.proxy``."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import sys
from collections.abc import Sequence

from agents.machinery import component
from agents.machinery.client import Client
from agents.machinery.settings import SettingsError
from agents.proxy.errors import RouteError
from agents.proxy.nft import Nft, RouteTable
from agents.proxy.proxy import Proxy, ProxyConfig
from agents.proxy.rules import NodeConfig, valid_table_name
from agents.proxy.servicehealth import ServiceHealthServer
from agents.proxy.settings import ProxySettings

log = logging.getLogger("agents.proxy")


def check(settings: ProxySettings) -> None:
    if settings.cluster_cidr:
        try:
            ipaddress.IPv4Network(settings.cluster_cidr, strict=False)
        except ValueError as exc:
            raise SettingsError(f"cluster-cidr: {exc}") from exc
    if settings.node_ip:
        try:
            ipaddress.IPv4Address(settings.node_ip)
        except ValueError as exc:
            raise SettingsError(f"node-ip: {exc}") from exc
    if not valid_table_name(settings.table):
        raise SettingsError(f"table: {settings.table!r} is not a valid nftables table name")
    if settings.min_sync_interval < 0 or settings.resync_period <= 0:
        raise SettingsError("min-sync-interval must be >= 0 and resync-period > 0")


def config_of(settings: ProxySettings) -> ProxyConfig:
    node_ip = str(ipaddress.IPv4Address(settings.node_ip)) if settings.node_ip else ""
    return ProxyConfig(
        node_name=settings.node_name or socket.gethostname(),
        node_ip=node_ip,
        node=NodeConfig(
            cluster_cidr=settings.cluster_cidr,
            node_port_addresses=(node_ip,) if node_ip else (),
            node_name=settings.node_name or socket.gethostname(),
        ),
        table=settings.table,
        min_sync_interval=settings.min_sync_interval,
        resync_period=settings.resync_period,
    )


async def _remove_routes(table: RouteTable) -> None:
    """Take away the routes an earlier run of the proxy added (``routes: false``: the cloud's router
    carries the pod networks now); a failure is logged, not fatal."""
    try:
        plan = await table.reconcile([])
    except RouteError as exc:
        log.warning("could not remove the host-gw routes of an earlier run: %s", exc)
        return
    if plan is not None and plan.actions:
        log.info("routes off: removed %s", ", ".join(f"{a.route.cidr} via {a.route.via}" for a in plan.actions))


async def main(settings: ProxySettings, client: Client, ready: asyncio.Event) -> None:
    routes = RouteTable(netns=settings.netns) if settings.routes else None
    if routes is None:
        await _remove_routes(RouteTable(netns=settings.netns))
    config = config_of(settings)
    # the health checks of externalTrafficPolicy Local Services answer where the NodePorts do
    health = ServiceHealthServer(address=config.node_ip, netns=settings.netns)
    proxy = Proxy(client, config, nft=Nft(netns=settings.netns), routes=routes, health=health)
    await proxy.run(ready)


def run(argv: Sequence[str]) -> int:
    return component.run("proxy", ProxySettings, argv, main, check=check)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
