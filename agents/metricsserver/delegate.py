"""Delegated authentication and authorization: the API server decides (TokenReview,
SubjectAccessReview) and tells whom to trust (ConfigMap kube-system/extension-apiserver-authentication).

Answers are kept for ten seconds (kube's delegated authenticator and authorizer cache them alike),
so that ``kubectl top`` or the autoscaler's polling costs the API server one review per user and
request kind, not one per request. The ConfigMap is read once, then watched (with a field selector
on its name); when the API server will not let this server watch it, it is read again every 30
seconds instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Hashable
from typing import Any

from agents.machinery.client import ApiError, ApiUnavailableError, Client
from agents.machinery.errors import KubelabError
from agents.machinery.resources import CONFIGMAPS
from agents.metricsserver.auth import (
    AUTH_CONFIGMAP,
    AUTH_NAMESPACE,
    Attributes,
    ConfigError,
    RequestHeaderConfig,
    UserInfo,
    read_config,
    user_from_token_review,
)

log = logging.getLogger(__name__)

CACHE_SECONDS = 10.0
CACHE_LIMIT = 4096
POLL_SECONDS = 30.0
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


class ReviewError(KubelabError):
    """The API server did not answer a review."""


class Delegate:
    def __init__(self, client: Client, *, ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[Hashable, tuple[float, Any]] = {}
        self.reviews = 0  # how many reviews were sent (the rest came from the cache)

    def _cached(self, key: Hashable) -> tuple[bool, Any]:
        found = self._cache.get(key)
        if found is None or found[0] < self.clock():
            return False, None
        return True, found[1]

    def _keep(self, key: Hashable, value: Any) -> None:
        if len(self._cache) >= CACHE_LIMIT:
            now = self.clock()
            self._cache = {k: v for k, v in self._cache.items() if v[0] >= now}
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
        self._cache[key] = (self.clock() + self.ttl, value)

    async def _review(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.reviews += 1
        try:
            answer = await self.client.request("POST", path, body=body)
        except (ApiError, ApiUnavailableError) as exc:
            raise ReviewError(f"{path.rsplit('/', 1)[-1]}: {exc}") from exc
        status = (answer or {}).get("status") if isinstance(answer, dict) else None
        return status if isinstance(status, dict) else {}

    async def authenticate_token(self, token: str) -> UserInfo | None:
        key = ("token", hashlib.sha256(token.encode()).hexdigest())
        hit, value = self._cached(key)
        if hit:
            return value  # type: ignore[no-any-return]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        user = user_from_token_review(await self._review(TOKEN_REVIEWS, body))
        self._keep(key, user)
        return user

    async def authorize(self, user: UserInfo, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, the reviewer's reason)."""
        key = ("access", user, attrs)
        hit, value = self._cached(key)
        if hit:
            return value  # type: ignore[no-any-return]
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": attrs.review_spec(user),
        }
        status = await self._review(ACCESS_REVIEWS, body)
        decision = (bool(status.get("allowed")) and not status.get("denied"), str(status.get("reason") or ""))
        self._keep(key, decision)
        return decision


class TrustFollower:
    """The front proxy's trust, kept current from the ConfigMap; ``on_change`` hears every new one."""

    def __init__(self, client: Client, on_change: Callable[[RequestHeaderConfig | None], None]) -> None:
        self.client = client
        self.on_change = on_change
        self.config: RequestHeaderConfig | None = None
        self.loaded = asyncio.Event()

    def _take(self, obj: dict[str, Any]) -> None:
        try:
            config = read_config(obj.get("data") or {})
        except ConfigError as exc:
            log.warning("%s/%s: %s; the last trust stays", AUTH_NAMESPACE, AUTH_CONFIGMAP, exc)
            return
        if config != self.config or not self.loaded.is_set():
            self.config = config
            log.info(
                "front-proxy trust from %s/%s: %s",
                AUTH_NAMESPACE,
                AUTH_CONFIGMAP,
                f"{len(config.client_cas)} CA(s), allowed names {list(config.allowed_names) or 'any'}"
                if config
                else "no front-proxy CA (bearer tokens only)",
            )
            self.on_change(config)
        self.loaded.set()

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                obj = await self.client.get(CONFIGMAPS, AUTH_CONFIGMAP, AUTH_NAMESPACE)
                self._take(obj)
                delay = 0.5
                version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                await self._watch(version)
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                log.warning("cannot read %s/%s: %s", AUTH_NAMESPACE, AUTH_CONFIGMAP, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, POLL_SECONDS)
            except ApiUnavailableError as exc:
                log.info("cannot read %s/%s: %s", AUTH_NAMESPACE, AUTH_CONFIGMAP, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _watch(self, version: str) -> None:
        """Follows the ConfigMap until the watch ends; sleeps a poll period when it is refused."""
        try:
            async for kind, obj in self.client.watch(
                CONFIGMAPS,
                AUTH_NAMESPACE,
                resource_version=version,
                field_selector=f"metadata.name={AUTH_CONFIGMAP}",
            ):
                if kind in ("ADDED", "MODIFIED"):
                    self._take(obj)
        except ApiError as exc:
            if exc.code in (401, 403, 405):
                log.debug("no watch on %s (%s): reading it every %.0fs", AUTH_CONFIGMAP, exc, POLL_SECONDS)
                await asyncio.sleep(POLL_SECONDS)
            elif not exc.gone:
                raise
