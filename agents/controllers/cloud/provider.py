"""The cloud's client: what the cloud-controller-manager asks the lab's cloud API.

The cloud config file (``--cloud-config``, YAML) says where the API is and how to trust it:
``url`` (``https://<lab network host address>:<port>``), ``token-file`` and ``ca-file``. Instances
come back as the API sends them (``provider.cloud.instances``' JSON): ``name``, ``providerID``,
``state``, ``addresses``, ``region``, ``zone``, ``instanceType``. A machine the cloud does not know
is ``None``; anything else that goes wrong is a ``CloudError``. Routes (the cloud router's, for the
route controller) are ``Route``: a pod CIDR sent to an instance by name.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, cast

import aiohttp
import yaml

from agents.machinery.errors import KubelabError

Instance = dict[str, Any]
TIMEOUT = aiohttp.ClientTimeout(total=10)


class Route(TypedDict):
    """A route of the cloud's router, as its API sends it: traffic to ``destinationCIDR`` goes to the
    instance ``targetInstance`` (a Node's name) at ``nextHop``; a ``blackhole`` route's instance is gone."""

    name: str
    destinationCIDR: str
    targetInstance: str
    nextHop: str
    blackhole: bool


def _route(found: dict[str, Any]) -> Route:
    return Route(
        name=str(found.get("name") or ""),
        destinationCIDR=str(found.get("destinationCIDR") or ""),
        targetInstance=str(found.get("targetInstance") or ""),
        nextHop=str(found.get("nextHop") or ""),
        blackhole=bool(found.get("blackhole")),
    )


class Volume(TypedDict):
    """A volume of the cloud, as its API sends it: a qcow2 file ``path`` in libvirt pool ``pool`` of the
    host ``zone``, named after its PersistentVolume; ``id`` is the disk's serial (the guest sees
    ``/dev/disk/by-id/virtio-<id>``); ``attachedTo`` and ``device`` are "" while it is detached."""

    name: str
    id: str
    sizeBytes: int
    pool: str
    path: str
    format: str
    zone: str
    attachedTo: str
    device: str


VOLUME_TIMEOUT = aiohttp.ClientTimeout(total=60)  # a detach waits (bounded) for the guest to let go


def _volume(found: dict[str, Any]) -> Volume:
    return Volume(
        name=str(found.get("name") or ""),
        id=str(found.get("id") or ""),
        sizeBytes=int(found.get("sizeBytes") or 0),
        pool=str(found.get("pool") or ""),
        path=str(found.get("path") or ""),
        format=str(found.get("format") or ""),
        zone=str(found.get("zone") or ""),
        attachedTo=str(found.get("attachedTo") or ""),
        device=str(found.get("device") or ""),
    )


class CloudError(KubelabError):
    """The cloud could not be asked, or answered with an error (``status``: its HTTP status, 0 when it
    did not answer; the message is the cloud's own)."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class CloudConfig:
    url: str
    token: str
    ca_file: Path


def read_config(path: Path) -> CloudConfig:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CloudError(f"cloud config {path}: {exc}") from exc
    missing = [k for k in ("url", "token-file", "ca-file") if not data.get(k)]
    if missing:
        raise CloudError(f"cloud config {path}: missing {', '.join(missing)}")
    try:
        token = Path(data["token-file"]).read_text().strip()
    except OSError as exc:
        raise CloudError(f"cloud config {path}: token-file: {exc}") from exc
    return CloudConfig(str(data["url"]).rstrip("/"), token, Path(data["ca-file"]))


class CloudProvider:
    """One session with the cloud's API (``async with CloudProvider(config) as cloud``)."""

    def __init__(self, config: CloudConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> CloudProvider:
        context = ssl.create_default_context(cafile=str(self.config.ca_file))
        self._session = aiohttp.ClientSession(
            timeout=TIMEOUT,
            headers={"Authorization": f"Bearer {self.config.token}"},
            connector=aiohttp.TCPConnector(ssl=context),
        )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None, missing: bool = True
    ) -> Instance | None:
        """The cloud's answer; None for a 404 (``missing``, else an error too); a ``CloudError`` with the
        cloud's message for another error."""
        assert self._session is not None, "use the provider as an async context manager"
        try:
            async with self._session.request(method, f"{self.config.url}{path}", params=params, json=body) as response:
                if response.status == 404 and missing:
                    return None
                answer = await response.json(content_type=None)
                if response.status != 200:
                    message = (answer or {}).get("error", "") if isinstance(answer, dict) else ""
                    raise CloudError(message or f"{method} {path}: {response.status}", status=response.status)
                return cast(Instance, answer)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise CloudError(f"cloud {path}: {exc or type(exc).__name__}") from exc

    async def _get(self, path: str, params: dict[str, str] | None = None) -> Instance | None:
        return await self._call("GET", path, params=params)

    async def instance(self, name: str) -> Instance | None:
        """The machine a node is named after; None when the cloud has none of that name."""
        return await self._get(f"/v1/instances/{name}")

    async def instance_by_provider_id(self, provider_id: str) -> Instance | None:
        return await self._get("/v1/instances", {"providerID": provider_id})

    async def instances(self) -> list[Instance]:
        found = await self._get("/v1/instances")
        return list((found or {}).get("items") or [])

    # --- load balancers --------------------------------------------------------------------------

    async def load_balancer(self, name: str) -> dict[str, Any] | None:
        return await self._get(f"/v1/loadbalancers/{name}")

    async def ensure_load_balancer(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create or change load balancer ``name``: ``ports`` (``port``, ``nodePort``), ``nodes`` (``name``,
        ``address``), ``healthCheckNodePort``; the answer carries its ``address``."""
        found = await self._call("PUT", f"/v1/loadbalancers/{name}", body=body)
        if found is None:
            raise CloudError(f"the cloud has no load balancers (PUT /v1/loadbalancers/{name}: 404)", status=404)
        return found

    async def delete_load_balancer(self, name: str) -> bool:
        """Whether it existed (a load balancer already gone is no error)."""
        return await self._call("DELETE", f"/v1/loadbalancers/{name}") is not None

    # --- routes ----------------------------------------------------------------------------------

    async def list_routes(self) -> list[Route]:
        """The cloud's routes; a cloud without routes (404) is a ``CloudError`` like any refusal."""
        found = await self._call("GET", "/v1/routes", missing=False)
        return [_route(r) for r in (found or {}).get("items") or [] if isinstance(r, dict)]

    async def create_route(self, name: str, *, destination_cidr: str, target_instance: str) -> Route:
        """Create (or change) route ``name``: ``destination_cidr`` to the instance ``target_instance``; the
        cloud's refusal (400, 404 for an unknown instance, 409 for a CIDR another route holds) is a ``CloudError``."""
        body = {"destinationCIDR": destination_cidr, "targetInstance": target_instance}
        found = await self._call("PUT", f"/v1/routes/{name}", body=body, missing=False)
        if found is None:
            raise CloudError(f"PUT /v1/routes/{name}: the cloud answered with no route")
        return _route(found)

    async def delete_route(self, name: str) -> bool:
        """Whether it existed (a route already gone is no error)."""
        return await self._call("DELETE", f"/v1/routes/{name}") is not None

    # --- volumes ---------------------------------------------------------------------------------

    async def _volume_call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None
    ) -> Volume | None:
        """A volume call (a longer timeout than the others: a detach waits for the guest); None for a 404."""
        assert self._session is not None, "use the provider as an async context manager"
        try:
            async with self._session.request(
                method, f"{self.config.url}{path}", params=params, json=body, timeout=VOLUME_TIMEOUT
            ) as response:
                if response.status == 404:
                    return None
                answer = await response.json(content_type=None)
                if response.status != 200 or not isinstance(answer, dict):
                    message = answer.get("error", "") if isinstance(answer, dict) else ""
                    raise CloudError(message or f"{method} {path}: {response.status}", status=response.status)
                return _volume(answer)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise CloudError(f"cloud {path}: {exc or type(exc).__name__}") from exc

    async def _volume_required(
        self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None
    ) -> Volume:
        found = await self._volume_call(method, path, params=params, body=body)
        if found is None:
            raise CloudError(f"{method} {path}: no such volume or instance", status=404)
        return found

    async def volumes(self) -> list[Volume]:
        found = await self._call("GET", "/v1/volumes", missing=False)
        return [_volume(v) for v in (found or {}).get("items") or [] if isinstance(v, dict)]

    async def volume(self, name: str) -> Volume | None:
        """Volume ``name``; None when the cloud has none of that name."""
        return await self._volume_call("GET", f"/v1/volumes/{name}")

    async def create_volume(self, name: str, *, size_bytes: int) -> Volume:
        """Create volume ``name`` (an existing one is answered as it is); a pool that cannot hold it is a
        ``CloudError`` of status 507 with the pool's figures."""
        return await self._volume_required("PUT", f"/v1/volumes/{name}", body={"sizeBytes": size_bytes})

    async def delete_volume(self, name: str) -> bool:
        """Whether it existed (a volume already gone is no error; an attached one is a 409)."""
        return await self._volume_call("DELETE", f"/v1/volumes/{name}") is not None

    async def resize_volume(self, name: str, *, size_bytes: int) -> Volume:
        """Grow volume ``name`` (live while attached to a running instance); smaller is a 400."""
        return await self._volume_required("POST", f"/v1/volumes/{name}/resize", body={"sizeBytes": size_bytes})

    async def attach_volume(self, name: str, *, instance: str) -> Volume:
        """Attach volume ``name`` to ``instance`` (done already for that instance is no error; attached
        to another is a 409; an unknown volume or instance a 404)."""
        return await self._volume_required("PUT", f"/v1/volumes/{name}/attachment", body={"instance": instance})

    async def detach_volume(self, name: str, force: bool = False) -> Volume:
        """Detach volume ``name`` (not attached is no error); ``force`` for an instance that is off or
        crashed. A guest that has not released the disk yet is a 503: ask again."""
        params = {"force": "true"} if force else None
        return await self._volume_required("DELETE", f"/v1/volumes/{name}/attachment", params=params)
