"""``python -m agents.ingress``: the ingress controller add-on's process (in its pod, with its
ServiceAccount), which runs the nginx master as its child and ends when nginx does."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from agents.ingress.controller import IngressController
from agents.ingress.nginx import NginxError
from agents.ingress.settings import IngressSettings
from agents.machinery import component
from agents.machinery.client import Client
from agents.machinery.settings import SettingsError

log = logging.getLogger(__name__)


def check(settings: IngressSettings) -> None:
    if settings.publish_service and settings.publish_service.count("/") != 1:
        raise SettingsError(f"publish-service: {settings.publish_service!r} is not NAMESPACE/NAME")
    for name, port in (("http-port", settings.http_port), ("https-port", settings.https_port)):
        if not 0 < port < 65536:
            raise SettingsError(f"{name}: {port} is not a port number")
    if settings.http_port == settings.https_port:
        raise SettingsError("http-port and https-port must differ")
    if not settings.controller_class:
        raise SettingsError("controller-class must be given")
    if settings.sync_interval < 0 or settings.status_update_interval <= 0:
        raise SettingsError("sync-interval must be >= 0 and status-update-interval > 0")


async def main(settings: IngressSettings, client: Client, ready: asyncio.Event) -> None:
    await IngressController(client, settings).run(ready)


def run(argv: Sequence[str]) -> int:
    try:
        return component.run("ingress", IngressSettings, argv, main, check=check)
    except NginxError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
