"""ServiceAccount tokens: signed JWTs, as kube-apiserver issues and checks them (its pkg/serviceaccount).

A token is an RS256 JWT signed with the service account signing key. Its claims are kube's: ``iss``
(the issuer), ``sub`` (``system:serviceaccount:NS:NAME``), ``aud`` (the audiences asked for, by
default the API server's own), ``exp``, ``iat``, ``nbf``, ``jti``, and under ``kubernetes.io`` the
namespace, the ServiceAccount's name and UID and, for a token bound to a pod, the pod's name and UID.
A token is good while its signature, issuer, audience and times hold and the ServiceAccount (and the
pod it is bound to) still exists with the same UID: deleting either revokes it.

The JWT library is imported when the first token is issued or checked, so an API server that never
meets one pays nothing for it at start.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUBJECT_PREFIX = "system:serviceaccount:"
GROUP = "system:serviceaccounts"
ALGORITHM = "RS256"
LEEWAY = 60  # seconds of clock difference tolerated on nbf and exp


@dataclass(frozen=True)
class Claims:
    namespace: str
    name: str
    uid: str
    expires: float
    pod_name: str = ""
    pod_uid: str = ""

    @property
    def username(self) -> str:
        return f"{SUBJECT_PREFIX}{self.namespace}:{self.name}"

    @property
    def groups(self) -> tuple[str, ...]:
        return (GROUP, f"{GROUP}:{self.namespace}")


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


class TokenIssuer:
    def __init__(self, signing_key: Path, issuer: str) -> None:
        self._key = signing_key.read_bytes()
        self.issuer = issuer

    def issue(
        self,
        *,
        namespace: str,
        name: str,
        uid: str,
        audiences: Sequence[str],
        seconds: int,
        pod: tuple[str, str] | None = None,
        now: float | None = None,
    ) -> tuple[str, float]:
        """A token for the ServiceAccount NAMESPACE/NAME and when it expires; ``pod``: (name, uid) it is
        bound to."""
        import jwt  # noqa: PLC0415 - only an API server that issues tokens needs it

        issued = int(now if now is not None else time.time())
        expires = issued + seconds
        kube: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}}
        if pod is not None:
            kube["pod"] = {"name": pod[0], "uid": pod[1]}
        claims = {
            "iss": self.issuer,
            "sub": f"{SUBJECT_PREFIX}{namespace}:{name}",
            "aud": list(audiences),
            "exp": expires,
            "iat": issued,
            "nbf": issued,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": kube,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), float(expires)


class TokenVerifier:
    def __init__(self, public_key: Path, issuer: str, audiences: Sequence[str]) -> None:
        self._key = public_key.read_bytes()
        self.issuer = issuer
        self.audiences = tuple(audiences)

    def verify(self, token: str, audiences: Sequence[str] = ()) -> Claims | None:
        """The claims of a good token (signature, issuer, one of the audiences, times), else None."""
        import jwt  # noqa: PLC0415 - only an API server that meets tokens needs it

        wanted = list(audiences or self.audiences)
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=wanted,
                leeway=LEEWAY,
                options={"require": ["exp", "iat", "nbf", "sub"]},
            )
        except jwt.PyJWTError:
            return None
        kube = claims.get("kubernetes.io") or {}
        account = kube.get("serviceaccount") or {}
        pod = kube.get("pod") or {}
        namespace, name = str(kube.get("namespace", "")), str(account.get("name", ""))
        if not namespace or not name or claims["sub"] != f"{SUBJECT_PREFIX}{namespace}:{name}":
            return None
        return Claims(
            namespace=namespace,
            name=name,
            uid=str(account.get("uid", "")),
            expires=float(claims["exp"]),
            pod_name=str(pod.get("name", "")),
            pod_uid=str(pod.get("uid", "")),
        )


@dataclass(frozen=True)
class TokenService:
    """What the API's handlers need for tokens: the issuer (None: no signing key, no TokenRequest),
    the API server's audiences, the longest a token may live, and the server's token authentication
    (for TokenReview)."""

    issuer: TokenIssuer | None
    audiences: tuple[str, ...]
    max_seconds: int
    authenticate: Callable[[str, Sequence[str]], Awaitable[Any]]
