"""``kubelab-agent trace-collector`` / ``python -m agents.collector``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from agents.collector import server, service
from agents.collector.settings import CollectorSettings
from agents.collector.store import TraceStore
from agents.machinery import component
from agents.machinery.client import Client
from agents.machinery.settings import SettingsError

log = logging.getLogger(__name__)


def check(settings: CollectorSettings) -> None:
    if not 0 < settings.port < 65536:
        raise SettingsError(f"port: {settings.port} is not a port number")
    if settings.retention.max_spans < 1:
        raise SettingsError(f"retention-max-spans: {settings.retention.max_spans} must be at least 1")
    if settings.retention.max_age <= 0:
        raise SettingsError(f"retention-max-age: {settings.retention.max_age} is not a positive number of seconds")


async def main(settings: CollectorSettings, client: Client, ready: asyncio.Event) -> None:
    store = TraceStore(max_spans=settings.retention.max_spans, max_age=settings.retention.max_age)
    runner = web.AppRunner(server.app(store, ready=ready.is_set), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.bind_address, settings.port, reuse_address=True).start()
    log.info("receiving OTLP/HTTP spans on %s:%d (POST /v1/traces)", settings.bind_address, settings.port)
    ready.set()
    try:
        await service.keep(client, address=settings.advertise_address, port=settings.port)
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()


def run(argv: Sequence[str]) -> int:
    return component.run("trace-collector", CollectorSettings, argv, main, check=check)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
