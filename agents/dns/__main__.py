"""``python -m agents.dns``: the cluster DNS add-on's process (in its pod, with its ServiceAccount)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from agents.dns.server import DnsServer
from agents.dns.settings import DnsSettings
from agents.machinery import component
from agents.machinery.client import Client
from agents.machinery.settings import SettingsError


def check(settings: DnsSettings) -> None:
    labels = settings.domain.split(".")
    if not settings.domain or any(not label or len(label) > 63 for label in labels):
        raise SettingsError(f"domain: {settings.domain!r} is not a DNS domain like cluster.local")
    if not 0 < settings.port < 65536:
        raise SettingsError(f"port: {settings.port} is not a port number")
    if settings.ttl < 0:
        raise SettingsError("ttl must be >= 0")


async def main(settings: DnsSettings, client: Client, ready: asyncio.Event) -> None:
    server = DnsServer(client, domain=settings.domain.lower().rstrip("."), ttl=settings.ttl)
    await server.run(settings.bind_address, settings.port, ready)


def run(argv: Sequence[str]) -> int:
    return component.run("dns", DnsSettings, argv, main, check=check)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
