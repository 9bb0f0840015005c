"""Logging in: how the user's bearer token is checked, kept and read back (pure).

The token is kept in a cookie that the page's scripts cannot read (``HttpOnly``), that the browser
sends only on requests made from the dashboard's own pages (``SameSite=Strict``), and only under the
dashboard's path. The cookie carries no ``Path`` attribute: the browser then scopes it to the
directory of the login request's URL, which is the dashboard's root whether it is reached directly
(``/``) or through the API server's service proxy
(``/api/v1/namespaces/kube-system/services/http:dashboard:http/proxy/``), a prefix the dashboard itself
never sees. A cookie rather than sessionStorage, because the API server's proxy drops the caller's
``Authorization`` header before it reaches the dashboard, and because a script (or an injected one)
can read sessionStorage but not an HttpOnly cookie. Every request that changes something must also
carry the ``X-Dashboard-Request`` header, which only the page's own scripts set (a form on another
site cannot), and the cookie is not ``Secure`` because ``kubectl proxy`` serves plain HTTP on
loopback (the hop to the API server is TLS).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

COOKIE = "kubelab-dashboard-token"
CSRF_HEADER = "X-Dashboard-Request"
MAX_TOKEN = 8192
# RFC 6750's b64token: what a bearer token is made of, and nothing that could end a cookie's value
_B64TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")
SELF_SUBJECT_REVIEW = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
REVIEW_BODY = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


class LoginError(Exception):
    """A token that cannot be used, with the message the login page shows."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def checked_token(value: object) -> str:
    """The token as sent to the API server; a LoginError for what could never be one."""
    token = value.strip() if isinstance(value, str) else ""
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    if not token:
        raise LoginError(401, "Unauthorized: give a bearer token")
    if len(token) > MAX_TOKEN or not _B64TOKEN.fullmatch(token):
        raise LoginError(401, "Unauthorized: a bearer token is letters, digits and -._~+/ (then = signs)")
    return token


def token_of(cookies: Mapping[str, str]) -> str | None:
    token = cookies.get(COOKIE, "")
    try:
        return checked_token(token)
    except LoginError:
        return None


def set_cookie(token: str) -> str:
    """The ``Set-Cookie`` header that keeps ``token`` (a checked one): no Path and no Max-Age (see the
    module; it lasts as long as the browser's session)."""
    return f"{COOKIE}={token}; HttpOnly; SameSite=Strict"


def clear_cookie() -> str:
    """The ``Set-Cookie`` header that forgets the token (the same scope as :func:`set_cookie`)."""
    return f"{COOKIE}=; HttpOnly; SameSite=Strict; Max-Age=0"


def status_message(code: int, body: object, fallback: str = "") -> str:
    """The message of kube's Status in ``body``, else ``fallback`` or the HTTP code's wording."""
    if isinstance(body, Mapping) and body.get("kind") == "Status" and body.get("message"):
        return str(body["message"])
    if fallback:
        return fallback
    return {401: "Unauthorized", 403: "Forbidden"}.get(code, f"the API server answered {code}")


def user_of(review: object) -> str:
    """The user name a SelfSubjectReview's status gives."""
    if not isinstance(review, Mapping):
        return ""
    info = (review.get("status") or {}).get("userInfo") or {}
    return str(info.get("username") or "")


def is_write_allowed(method: str, path: str) -> bool:
    """The only writes the page makes: a Deployment's scale, and deleting one named object.
    ``path`` is an API path (``/apis/apps/v1/namespaces/NS/deployments/NAME/scale``)."""
    parts = [p for p in path.split("/") if p]
    if method in ("PATCH", "PUT"):
        return (
            len(parts) == 8
            and parts[:3] == ["apis", "apps", "v1"]
            and parts[3] == "namespaces"
            and parts[5] == "deployments"
            and parts[7] == "scale"
        )
    if method == "DELETE":
        if parts[:1] == ["api"] and len(parts) >= 2:
            rest = parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            rest = parts[3:]
        else:
            return False
        if rest[:1] == ["namespaces"] and len(rest) == 4:
            return True  # namespaces/NS/RESOURCE/NAME
        return len(rest) == 2 and rest[0] != "namespaces"  # a cluster-scoped object, not a namespace
    return False
