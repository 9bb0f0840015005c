"""``python -m agents.apiserver`` / ``kubelab-agent apiserver``: run the API server."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from agents.apiserver.auth import TokenFileError
from agents.apiserver.server import ApiServer
from agents.apiserver.settings import ApiServerSettings
from agents.machinery import logs
from agents.machinery.errors import StorageUnavailableError
from agents.machinery.settings import SettingsError, load

log = logging.getLogger("agents.apiserver")


async def _start_with_retries(server: ApiServer, stop: asyncio.Event) -> bool:
    delay = 0.5
    while not stop.is_set():
        try:
            await server.start()
            return True
        except StorageUnavailableError as exc:
            log.warning("waiting for etcd at %s: %s", ",".join(server.settings.etcd.servers), exc)
            await server.store.close()
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            delay = min(delay * 2, 5.0)
    return False


async def serve(settings: ApiServerSettings) -> None:
    server = ApiServer(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if not await _start_with_retries(server, stop):
        return
    runner = web.AppRunner(server.application(), access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    context = server.ssl_context()
    if context is None:
        log.warning("no --tls-cert-file/--tls-private-key-file: serving plain HTTP")
    site = web.TCPSite(
        runner, settings.bind_address, settings.secure_port, ssl_context=context, reuse_address=True, backlog=1024
    )
    await site.start()
    log.info("serving on %s://%s:%d", "https" if context else "http", settings.bind_address, settings.secure_port)
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()
    await server.stop()


def run(argv: Sequence[str]) -> int:
    try:
        settings = load(ApiServerSettings, argv, env_prefix="KUBELAB_APISERVER", prog="kubelab-agent apiserver")
    except (SettingsError, TokenFileError) as exc:
        print(f"kubelab-agent apiserver: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log.level, settings.log.format)
    try:
        import uvloop  # noqa: PLC0415

        uvloop.install()
    except ImportError:
        log.info("uvloop is not installed; using the default event loop")
    try:
        asyncio.run(serve(settings))
    except (SettingsError, TokenFileError, OSError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
