"""Who may use the kubelet's port, decided as kube's kubelet decides it in its webhook modes.

A bearer token in ``--server-token-file`` (the API server's kubelet client token) is let in as it
always was. Any other token is sent to the API server in a TokenReview (``authentication.k8s.io/v1``)
through the kubelet's own client; the user it stands for is then the subject of a SubjectAccessReview
(``authorization.k8s.io/v1``) for the request as kube's kubelet maps it (:func:`attributes`): the verb
from the HTTP method, the resource ``nodes`` named after this node, and the subresource by path:
``metrics`` for ``/metrics`` and below, ``stats``, ``log`` for ``/logs``, ``spec``, ``checkpoint``,
and ``proxy`` for everything else (logs and exec of ``/containerLogs`` and ``/exec`` among them).

The answers are kept a while, as kube's webhook caches keep them: a token's review two minutes when
good and 30 seconds when not; an access review five minutes when allowed and 30 seconds when not.
No token, or one the API server does not authenticate, is 401 ``Unauthorized``; a refusal is 403
``Forbidden (user=..., verb=..., resource=nodes, subresource=...)``; a review that cannot be had is
500 ``Authorization error (...)`` (or 401 for a token, as kube's authentication filter answers).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from agents.machinery.errors import KubelabError

log = logging.getLogger(__name__)

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
TOKEN_GOOD_TTL = 120.0
TOKEN_BAD_TTL = 30.0
ALLOWED_TTL = 300.0
DENIED_TTL = 30.0
CACHE_SIZE = 1024

VERBS = {"POST": "create", "GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
# path prefix -> subresource; anything else is "proxy"
SUBRESOURCES = (
    ("/stats", "stats"),
    ("/metrics", "metrics"),
    ("/logs", "log"),
    ("/spec", "spec"),
    ("/checkpoint", "checkpoint"),
)


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Attributes:
    """What a request to the kubelet asks, as an API request on the Node object."""

    verb: str
    subresource: str
    name: str
    resource: str = "nodes"


@dataclass(frozen=True)
class Decision:
    """The answer to one request: its HTTP status (200: go on) and the text of a refusal."""

    status: int
    message: str = ""
    user: str = ""


def is_subpath(path: str, prefix: str) -> bool:
    return path == prefix or (path.startswith(prefix) and path[len(prefix)] == "/")


def attributes(method: str, path: str, *, node: str) -> Attributes:
    """kube's kubelet's mapping of a request to the attributes it is authorized by."""
    subresource = next((sub for prefix, sub in SUBRESOURCES if is_subpath(path, prefix)), "proxy")
    return Attributes(verb=VERBS.get(method.upper(), ""), subresource=subresource, name=node)


def forbidden_message(user: str, attrs: Attributes) -> str:
    return f"Forbidden (user={user}, verb={attrs.verb}, resource={attrs.resource}, subresource={attrs.subresource})"


def token_review(token: str) -> dict[str, Any]:
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}


def access_review(user: UserInfo, attrs: Attributes) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "resourceAttributes": {
            "verb": attrs.verb,
            "version": "v1",
            "resource": attrs.resource,
            "subresource": attrs.subresource,
            "name": attrs.name,
        },
        "user": user.name,
        "groups": list(user.groups),
    }
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {k: list(v) for k, v in user.extra.items()}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def reviewed_user(answer: Mapping[str, Any]) -> UserInfo | None:
    """The user a TokenReview's answer stands for (None: not authenticated)."""
    status = answer.get("status") or {}
    if not status.get("authenticated"):
        return None
    info = status.get("user") or {}
    extra = {str(k): tuple(str(v) for v in values or ()) for k, values in (info.get("extra") or {}).items()}
    return UserInfo(
        name=str(info.get("username", "")),
        uid=str(info.get("uid", "")),
        groups=tuple(str(g) for g in info.get("groups") or ()),
        extra=extra,
    )


def bearer_token(header: str) -> str:
    """The token of an ``Authorization: Bearer ...`` header ("" without one)."""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class ReviewClient(Protocol):
    """What the reviews need of the kubelet's API client (:class:`agents.machinery.client.Client`)."""

    async def request(self, method: str, path: str, *, body: Any = None) -> Any: ...


K = TypeVar("K")
V = TypeVar("V")


class ExpiringCache(Generic[K, V]):
    """Answers kept until their time is up; the oldest go first when it is full."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, size: int = CACHE_SIZE) -> None:
        self.clock = clock
        self.size = size
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            return None
        if found[0] <= self.clock():
            del self._entries[key]
            return None
        return found[1]

    def put(self, key: K, value: V, ttl: float) -> None:
        self._entries.pop(key, None)
        while len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (self.clock() + ttl, value)


class ReviewError(KubelabError):
    """The API server could not answer a review."""


@dataclass(frozen=True)
class _Authenticated:
    user: UserInfo | None


class ServerAuth:
    """Decides every request to the kubelet's port but /healthz."""

    def __init__(
        self,
        *,
        tokens: Collection[str],
        node: str,
        client: ReviewClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = tuple(tokens)
        self.node = node
        self.client = client
        self._users: ExpiringCache[str, _Authenticated] = ExpiringCache(clock=clock)
        self._decisions: ExpiringCache[tuple[str, tuple[str, ...], Attributes], bool] = ExpiringCache(clock=clock)

    def _static(self, token: str) -> bool:
        return any(hmac.compare_digest(token, known) for known in self.tokens)

    async def decide(self, *, method: str, path: str, authorization: str) -> Decision:
        token = bearer_token(authorization)
        if not token:
            return Decision(401, "Unauthorized")
        if self._static(token):
            return Decision(200)
        if self.client is None:
            return Decision(401, "Unauthorized")
        try:
            user = await self._authenticate(token)
        except ReviewError as exc:
            log.warning("a token could not be reviewed: %s", exc)
            return Decision(401, "Unauthorized")
        if user is None:
            return Decision(401, "Unauthorized")
        attrs = attributes(method, path, node=self.node)
        try:
            allowed = await self._authorize(user, attrs)
        except ReviewError as exc:
            log.warning("an access review failed: %s", exc)
            detail = forbidden_message(user.name, attrs).removeprefix("Forbidden ")
            return Decision(500, f"Authorization error {detail}", user.name)
        if not allowed:
            return Decision(403, forbidden_message(user.name, attrs), user.name)
        return Decision(200, user=user.name)

    async def _review(self, path: str, body: dict[str, Any]) -> Mapping[str, Any]:
        assert self.client is not None
        try:
            answer = await self.client.request("POST", path, body=body)
        except KubelabError as exc:  # the client's ApiError, ApiUnavailableError
            raise ReviewError(str(exc)) from exc
        if not isinstance(answer, Mapping):
            raise ReviewError(f"{path}: the answer is not an object")
        return answer

    async def _authenticate(self, token: str) -> UserInfo | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._users.get(key)
        if cached is not None:
            return cached.user
        user = reviewed_user(await self._review(TOKEN_REVIEWS, token_review(token)))
        self._users.put(key, _Authenticated(user), TOKEN_GOOD_TTL if user is not None else TOKEN_BAD_TTL)
        return user

    async def _authorize(self, user: UserInfo, attrs: Attributes) -> bool:
        key = (user.name, user.groups, attrs)
        cached = self._decisions.get(key)
        if cached is not None:
            return cached
        answer = await self._review(ACCESS_REVIEWS, access_review(user, attrs))
        allowed = bool((answer.get("status") or {}).get("allowed"))
        self._decisions.put(key, allowed, ALLOWED_TTL if allowed else DENIED_TTL)
        return allowed
