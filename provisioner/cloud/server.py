"""The cloud's API: HTTPS on the lab network's host address, a bearer token of its own.

A cloud-controller-manager asks it what a cloud's API answers about machines:

- ``GET /v1/instances``: every instance of the lab (``{"items": [...]}``);
- ``GET /v1/instances/{name}`` or ``GET /v1/instances?providerID=libvirt://<uuid>``: one, or a
  ``404`` when no such machine exists (what tells the node controller a Node's machine is gone).

Every answer is JSON; an error is ``{"error": "..."}`` with its status. A request without the token
is a ``401``. The backend (libvirt, or anything that lists instances) is read at every request: the
cloud keeps no copy of its own to go stale.
"""

from __future__ import annotations

import hmac
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from provisioner.cloud.instances import Instance, find

Lister = Callable[[], Awaitable[list[Instance]]]
TOKEN_HEADER = "Authorization"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def application(*, token: str, instances: Lister) -> web.Application:
    """The cloud's routes over ``instances`` (the backend), guarded by ``token``."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        sent = request.headers.get(TOKEN_HEADER, "")
        if not sent.startswith("Bearer ") or not hmac.compare_digest(sent[len("Bearer ") :].encode(), token.encode()):
            return _error(401, "a bearer token of this cloud is required")
        return await handler(request)

    async def list_instances(request: web.Request) -> web.Response:
        found = await instances()
        provider = request.query.get("providerID")
        if provider is not None:
            one = find(found, provider)
            if one is None or one.provider_id != provider:
                return _error(404, f"no instance has provider ID {provider}")
            return web.json_response(one.json())
        return web.json_response({"items": [i.json() for i in found]})

    async def get_instance(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        one = next((i for i in await instances() if i.name == name), None)
        if one is None:
            return _error(404, f"no instance is named {name}")
        return web.json_response(one.json())

    app = web.Application(middlewares=[authenticate])
    app.router.add_get("/v1/instances", list_instances)
    app.router.add_get("/v1/instances/{name}", get_instance)
    return app


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
