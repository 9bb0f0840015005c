"""The cloud's API: HTTPS on the lab network's host address, a bearer token of its own.

A cloud-controller-manager asks it what a cloud's API answers about machines:

- ``GET /v1/instances``: every instance of the lab (``{"items": [...]}``);
- ``GET /v1/instances/{name}`` or ``GET /v1/instances?providerID=libvirt://<uuid>``: one, or a
  ``404`` when no such machine exists (what tells the node controller a Node's machine is gone);
- ``GET /v1/loadbalancers[/{name}]``, ``PUT /v1/loadbalancers/{name}`` (``ports``: ``port`` and
  ``nodePort`` each, ``nodes``: ``name`` and ``address`` each, ``healthCheckNodePort``; answered with
  the load balancer and its ``address``), ``DELETE /v1/loadbalancers/{name}``: what a service
  controller asks for each ``type: LoadBalancer`` Service (``loadbalancers.py``, ``haproxy.py``);
- ``GET /v1/routes[/{name}]``, ``PUT /v1/routes/{name}`` (``destinationCIDR``, ``targetInstance``: answered with
  the route and its ``nextHop``), ``DELETE /v1/routes/{name}``: what a route controller asks for each
  node's pod CIDR, carried by the lab network's gateway (``routes.py``, ``router.py``);
- ``GET /v1/volumes[/{name}]``, ``PUT /v1/volumes/{name}`` (``sizeBytes``; an existing volume is answered
  as it is; ``507`` when the pool cannot hold it), ``DELETE /v1/volumes/{name}`` (``409`` while attached),
  ``POST /v1/volumes/{name}/resize`` (``sizeBytes``, never smaller), ``PUT /v1/volumes/{name}/attachment``
  (``instance``) and ``DELETE /v1/volumes/{name}/attachment`` (``?force=true`` for a machine that is off
  or crashed): what a CSI driver's controller asks for each PersistentVolume (``volumes.py``).

Every answer is JSON; an error is ``{"error": "..."}`` with its status. A request without the token
is a ``401``. The backend (libvirt, or anything that lists instances) is read at every request: the
cloud keeps no copy of its own to go stale.
"""

from __future__ import annotations

import asyncio
import hmac
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from provisioner.cloud.haproxy import Balancers
from provisioner.cloud.instances import Instance, find
from provisioner.cloud.loadbalancers import LoadBalancerError
from provisioner.cloud.router import Router, RouterError
from provisioner.cloud.routes import RouteError, blackhole
from provisioner.cloud.volumes import VolumeBackend, VolumeError, instance_of, size_of

Lister = Callable[[], Awaitable[list[Instance]]]
TOKEN_HEADER = "Authorization"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    """The request's body when it is a JSON object, else None."""
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def application(
    *,
    token: str,
    instances: Lister,
    balancers: Balancers | None = None,
    routes: Router | None = None,
    volumes: VolumeBackend | None = None,
) -> web.Application:
    """The cloud's endpoints over ``instances`` (the backend), ``balancers``, ``routes`` and ``volumes``,
    guarded by ``token``."""

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

    def lbs() -> Balancers:
        if balancers is None:
            raise web.HTTPNotFound(
                text='{"error": "this cloud has no load balancers"}', content_type="application/json"
            )
        return balancers

    async def list_balancers(_request: web.Request) -> web.Response:
        return web.json_response({"items": [lb.json() for _, lb in sorted(lbs().balancers.items())]})

    async def get_balancer(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = lbs().balancers.get(name)
        if found is None:
            return _error(404, f"no load balancer is named {name}")
        return web.json_response(found.json())

    async def put_balancer(request: web.Request) -> web.Response:
        body = await _json_object(request)
        if body is None:
            return _error(400, "the body must be a JSON object")
        try:  # on the loop's own thread: haproxy is this process's child for as long as that thread lives
            made = lbs().ensure(request.match_info["name"], body)
        except LoadBalancerError as exc:
            return _error(exc.status, str(exc))
        return web.json_response(made.json())

    async def delete_balancer(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not lbs().delete(name):
            return _error(404, f"no load balancer is named {name}")
        return web.json_response({"name": name, "deleted": True})

    def router() -> Router:
        if routes is None:
            raise web.HTTPNotFound(text='{"error": "this cloud has no routes"}', content_type="application/json")
        return routes

    async def list_routes(_request: web.Request) -> web.Response:
        found, machines = await asyncio.to_thread(router().listing), await instances()
        return web.json_response({"items": [r.json(blackhole=blackhole(r, machines)) for r in found]})

    async def get_route(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = next((r for r in await asyncio.to_thread(router().listing) if r.name == name), None)
        if found is None:
            return _error(404, f"no route is named {name}")
        return web.json_response(found.json(blackhole=blackhole(found, await instances())))

    async def put_route(request: web.Request) -> web.Response:
        body = await _json_object(request)
        if body is None:
            return _error(400, "the body must be a JSON object")
        name, machines = request.match_info["name"], await instances()
        try:
            made = await asyncio.to_thread(router().ensure, name, body, instances=machines)
        except RouteError as exc:
            return _error(exc.status, str(exc))
        except RouterError as exc:
            return _error(500, str(exc))
        return web.json_response(made.json())

    async def delete_route(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            gone = await asyncio.to_thread(router().delete, name)
        except RouterError as exc:
            return _error(500, str(exc))
        if gone is None:
            return _error(404, f"no route is named {name}")
        return web.json_response(gone.json())

    def disks() -> VolumeBackend:
        if volumes is None:
            raise web.HTTPNotFound(text='{"error": "this cloud has no volumes"}', content_type="application/json")
        return volumes

    async def list_volumes(_request: web.Request) -> web.Response:
        try:
            found = await asyncio.to_thread(disks().listing)
        except VolumeError as exc:
            return _error(exc.status, str(exc))
        return web.json_response({"items": [v.json() for v in found]})

    async def volume_call(request: web.Request, call: Callable[[str, dict[str, Any]], Any]) -> web.Response:
        """``call(name, body)`` in a thread, its volume answered (a 404 for None), its refusal with its status."""
        body: dict[str, Any] = {}
        if request.method in ("PUT", "POST"):
            found = await _json_object(request)
            if found is None:
                return _error(400, "the body must be a JSON object")
            body = found
        name = request.match_info["name"]
        try:
            done = await asyncio.to_thread(call, name, body)
        except VolumeError as exc:
            return _error(exc.status, str(exc))
        if done is None:
            return _error(404, f"no volume is named {name}")
        return web.json_response(done.json())

    async def get_volume(request: web.Request) -> web.Response:
        return await volume_call(request, lambda name, _body: disks().get(name))

    async def put_volume(request: web.Request) -> web.Response:
        return await volume_call(request, lambda name, body: disks().create(name, size_bytes=size_of(body)))

    async def delete_volume(request: web.Request) -> web.Response:
        return await volume_call(request, lambda name, _body: disks().delete(name))

    async def resize_volume(request: web.Request) -> web.Response:
        return await volume_call(request, lambda name, body: disks().resize(name, size_bytes=size_of(body)))

    async def attach_volume(request: web.Request) -> web.Response:
        return await volume_call(request, lambda name, body: disks().attach(name, instance=instance_of(body)))

    async def detach_volume(request: web.Request) -> web.Response:
        force = request.query.get("force", "").lower() in ("true", "1")
        return await volume_call(request, lambda name, _body: disks().detach(name, force=force))

    app = web.Application(middlewares=[authenticate])
    app.router.add_get("/v1/instances", list_instances)
    app.router.add_get("/v1/instances/{name}", get_instance)
    app.router.add_get("/v1/loadbalancers", list_balancers)
    app.router.add_get("/v1/loadbalancers/{name}", get_balancer)
    app.router.add_put("/v1/loadbalancers/{name}", put_balancer)
    app.router.add_delete("/v1/loadbalancers/{name}", delete_balancer)
    app.router.add_get("/v1/routes", list_routes)
    app.router.add_get("/v1/routes/{name}", get_route)
    app.router.add_put("/v1/routes/{name}", put_route)
    app.router.add_delete("/v1/routes/{name}", delete_route)
    app.router.add_get("/v1/volumes", list_volumes)
    app.router.add_get("/v1/volumes/{name}", get_volume)
    app.router.add_put("/v1/volumes/{name}", put_volume)
    app.router.add_delete("/v1/volumes/{name}", delete_volume)
    app.router.add_post("/v1/volumes/{name}/resize", resize_volume)
    app.router.add_put("/v1/volumes/{name}/attachment", attach_volume)
    app.router.add_delete("/v1/volumes/{name}/attachment", detach_volume)
    return app


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
