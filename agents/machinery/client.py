"""An asyncio client of the Kubernetes API for the components (scheduler, controllers, node agents).

It speaks JSON over HTTPS with a client certificate or a bearer token, read from a kubeconfig file
as kubectl would, or from a pod's in-cluster configuration as client-go's ``InClusterConfig`` reads
it (the API server's address in ``KUBERNETES_SERVICE_HOST``/``_PORT``, the ServiceAccount token and
CA the kubelet mounts; the token file is read again once a minute, since the kubelet renews it).
Every failure becomes an ``ApiError`` (carrying the server's ``Status``) or an
``ApiUnavailableError`` (the server could not be reached: retrying later may work).
"""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import yaml

from agents.machinery import tracing
from agents.machinery.errors import KubelabError, TemporaryError
from agents.machinery.objects import Object
from agents.machinery.resources import PODS, ResourceRef

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
}


class ApiError(KubelabError):
    """The API server answered with a failure Status."""

    def __init__(self, status: Mapping[str, Any], code: int) -> None:
        self.status = dict(status)
        self.code = int(status.get("code") or code)
        self.reason = str(status.get("reason") or "")
        super().__init__(f"{self.code} {self.reason}: {status.get('message', '')}")

    @property
    def not_found(self) -> bool:
        return self.code == 404

    @property
    def conflict(self) -> bool:
        return self.code == 409 and self.reason == "Conflict"

    @property
    def already_exists(self) -> bool:
        return self.code == 409 and self.reason == "AlreadyExists"

    @property
    def gone(self) -> bool:
        return self.code == 410


class ApiUnavailableError(TemporaryError):
    """The API server could not be reached or did not answer in time."""


class ConfigError(KubelabError):
    """The kubeconfig cannot be used."""


SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REREAD = 60.0  # seconds a token read from a file is used before the file is read again


@dataclass(frozen=True)
class ClientConfig:
    server: str
    token: str
    ca_pem: bytes | None = None
    client_cert: tuple[bytes, bytes] | None = None  # PEM certificate and key, presented in the handshake
    token_file: Path | None = None  # a token that is renewed in place (a pod's ServiceAccount token)

    @classmethod
    def in_cluster(cls, directory: Path = SERVICE_ACCOUNT_DIR) -> ClientConfig:
        """A pod's own configuration: the ``kubernetes`` Service's address from the environment the
        kubelet sets, the ServiceAccount token and the cluster's CA from the projected volume."""
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST", ""), os.environ.get("KUBERNETES_SERVICE_PORT", "")
        if not host or not port:
            raise ConfigError(
                "not running in a pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set"
                " (give a kubeconfig instead)"
            )
        try:
            token = (directory / "token").read_text().strip()
            ca = (directory / "ca.crt").read_bytes()
        except OSError as exc:
            raise ConfigError(f"no ServiceAccount credentials in {directory}: {exc.strerror}") from exc
        address = f"[{host}]" if ":" in host else host
        return cls(f"https://{address}:{port}", token, ca, token_file=directory / "token")

    @classmethod
    def from_kubeconfig(cls, path: Path) -> ClientConfig:
        try:
            document = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read kubeconfig {path}: {exc}") from exc
        try:
            contexts = {c["name"]: c["context"] for c in document["contexts"]}
            context = contexts[document["current-context"]]
            cluster = next(c["cluster"] for c in document["clusters"] if c["name"] == context["cluster"])
            user = next(u["user"] for u in document["users"] if u["name"] == context["user"])
        except (KeyError, StopIteration, TypeError) as exc:
            raise ConfigError(f"kubeconfig {path} has no usable current context") from exc
        ca: bytes | None = None
        if cluster.get("certificate-authority-data"):
            ca = base64.b64decode(cluster["certificate-authority-data"])
        elif cluster.get("certificate-authority"):
            ca = Path(cluster["certificate-authority"]).read_bytes()
        token = user.get("token") or ""
        if not token and user.get("tokenFile"):
            token = Path(user["tokenFile"]).read_text().strip()
        cert, key = _pem(user, "client-certificate"), _pem(user, "client-key")
        client_cert = (cert, key) if cert and key else None
        return cls(str(cluster["server"]).rstrip("/"), token, ca, client_cert)

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https://"):
            return False
        context = ssl.create_default_context(cadata=self.ca_pem.decode() if self.ca_pem is not None else None)
        if self.client_cert is not None:
            # load_cert_chain reads files only: the pair goes through a private temporary file
            with tempfile.NamedTemporaryFile(suffix=".pem") as handle:
                handle.write(self.client_cert[0] + b"\n" + self.client_cert[1])
                handle.flush()
                context.load_cert_chain(handle.name)
        return context


def _pem(user: dict[str, Any], field: str) -> bytes | None:
    """A kubeconfig user's PEM ``field`` (``client-certificate``, ``client-key``), embedded or in a file."""
    if user.get(f"{field}-data"):
        return base64.b64decode(user[f"{field}-data"])
    if user.get(field):
        try:
            return Path(user[field]).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {field} {user[field]}: {exc.strerror}") from exc
    return None


class Client:
    def __init__(self, config: ClientConfig, *, user_agent: str, connections: int = 32, timeout: float = 30.0) -> None:
        self.config = config
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        self._token, self._token_read = config.token, time.monotonic()
        self._connections = connections
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _authorization(self) -> dict[str, str]:
        """The bearer token's header (none for a client certificate); a token from a file is read
        again once it is older than a minute, so a renewed ServiceAccount token is taken up."""
        if self.config.token_file is not None and time.monotonic() - self._token_read > TOKEN_REREAD:
            with contextlib.suppress(OSError):  # the last token stays until the file can be read
                self._token = self.config.token_file.read_text().strip() or self._token
            self._token_read = time.monotonic()
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.config.ssl_context(), limit=self._connections)
            self._session = aiohttp.ClientSession(
                connector=connector, headers=self._headers, json_serialize=lambda o: orjson.dumps(o).decode()
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        url = self.config.server + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v not in (None, "")})
        data = None if body is None else orjson.dumps(body)
        headers = self._authorization()
        if data is not None:
            headers["Content-Type"] = content_type
        tracing.inject(headers)  # inside a span, the API server continues its trace
        try:
            async with self._http().request(method, url, data=data, headers=headers, timeout=self._timeout) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ApiUnavailableError(f"{method} {path}: {exc or type(exc).__name__}") from exc
        decoded = orjson.loads(raw) if raw else None
        if status >= 400:
            raise ApiError(decoded if isinstance(decoded, dict) else {"message": raw.decode(errors="replace")}, status)
        return decoded

    # --- verbs -----------------------------------------------------------------------------------

    async def get(self, res: ResourceRef, name: str, namespace: str = "", *, subresource: str = "") -> Object:
        result: Object = await self.request("GET", res.path(namespace, name, subresource))
        return result

    async def list(
        self,
        res: ResourceRef,
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        page: int = 500,
    ) -> tuple[list[Object], str]:
        """Every object (paged through with limit/continue) and the list's resourceVersion."""
        items: list[Object] = []
        token = ""
        while True:
            result = await self.request(
                "GET",
                res.path(namespace),
                query={
                    "labelSelector": label_selector,
                    "fieldSelector": field_selector,
                    "limit": page,
                    "continue": token,
                },
            )
            for item in result.get("items") or []:
                item.setdefault("apiVersion", res.api_version)
                item.setdefault("kind", res.kind)
                items.append(item)
            token = (result.get("metadata") or {}).get("continue") or ""
            if not token:
                return items, str((result.get("metadata") or {}).get("resourceVersion") or "")

    async def watch(
        self,
        res: ResourceRef,
        namespace: str = "",
        *,
        resource_version: str,
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int = 300,
    ) -> AsyncIterator[tuple[str, Object]]:
        """(type, object) events from ``resource_version`` on; raises ApiError (410 when it is too old)."""
        query = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
        }
        url = self.config.server + res.path(namespace) + "?" + urlencode({k: v for k, v in query.items() if v})
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_seconds + 30)
        try:
            async with self._http().get(url, timeout=timeout, headers=self._authorization()) as resp:
                if resp.status >= 400:
                    raw = await resp.read()
                    decoded = orjson.loads(raw) if raw else {}
                    raise ApiError(decoded if isinstance(decoded, dict) else {}, resp.status)
                async for line in resp.content:
                    if not line.strip():
                        continue
                    event = orjson.loads(line)
                    if event.get("type") == "ERROR":
                        raise ApiError(event.get("object") or {}, int((event.get("object") or {}).get("code", 500)))
                    yield event["type"], event["object"]
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ApiUnavailableError(f"watch {res.plural}: {exc or type(exc).__name__}") from exc

    async def create(self, res: ResourceRef, obj: Object, namespace: str = "") -> Object:
        namespace = namespace or (obj.get("metadata") or {}).get("namespace", "")
        result: Object = await self.request("POST", res.path(namespace), body=obj)
        return result

    async def update(self, res: ResourceRef, obj: Object, *, subresource: str = "") -> Object:
        meta = obj.get("metadata") or {}
        result: Object = await self.request(
            "PUT", res.path(meta.get("namespace", ""), meta["name"], subresource), body=obj
        )
        return result

    async def update_status(self, res: ResourceRef, obj: Object) -> Object:
        return await self.update(res, obj, subresource="status")

    async def patch(
        self,
        res: ResourceRef,
        name: str,
        patch: Any,
        namespace: str = "",
        *,
        kind: str = "merge",
        subresource: str = "",
    ) -> Object:
        result: Object = await self.request(
            "PATCH", res.path(namespace, name, subresource), body=patch, content_type=PATCH_TYPES[kind]
        )
        return result

    async def delete(
        self,
        res: ResourceRef,
        name: str,
        namespace: str = "",
        *,
        grace_period: int | None = None,
        propagation: str = "",
        uid: str = "",
        resource_version: str = "",
    ) -> Object | None:
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period is not None:
            body["gracePeriodSeconds"] = grace_period
        if propagation:
            body["propagationPolicy"] = propagation
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", resource_version)) if v}
        if preconditions:
            body["preconditions"] = preconditions
        result: Object | None = await self.request("DELETE", res.path(namespace, name), body=body)
        return result

    async def bind(self, namespace: str, pod: str, node: str) -> None:
        await self.request(
            "POST",
            PODS.path(namespace, pod, "binding"),
            body={
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": pod, "namespace": namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            },
        )
