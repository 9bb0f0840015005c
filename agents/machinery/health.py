"""Health endpoints of a component: ``/healthz`` (the process serves) and ``/readyz`` (it works)."""

from __future__ import annotations

import asyncio

from aiohttp import web


async def serve(bind_address: str, port: int, ready: asyncio.Event) -> web.AppRunner:
    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_request: web.Request) -> web.Response:
        return web.Response(text="ok") if ready.is_set() else web.Response(text="not ready", status=503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, bind_address, port, reuse_address=True).start()
    return runner
