"""Who is asking, and what they ask to do (pure): the decisions of an aggregated API server's
delegated authentication and authorization, without their I/O (:mod:`~agents.metricsserver.delegate`).

The API server's aggregation layer calls this server with its front-proxy client certificate and
says in headers whom it speaks for. That is believed only when the certificate was issued by the
``requestheader-client-ca-file`` of ConfigMap kube-system/extension-apiserver-authentication and its
common name is one of ``requestheader-allowed-names`` (an empty list allows any); the user is then
the first value of the username headers (``X-Remote-User``), the groups every value of the group
headers (``X-Remote-Group``, repeated) and the extras the headers under the extra prefixes
(``X-Remote-Extra-<key>``, the key lower-cased and %-unescaped). A request without such a
certificate may carry a bearer token, which the API server reviews (TokenReview).

What the user may do is asked of the API server too (SubjectAccessReview) with kube's request
attributes: ``list`` nodes in ``metrics.k8s.io`` for ``/apis/metrics.k8s.io/v1beta1/nodes``,
``get`` pods in a namespace for one PodMetrics, ``get`` on the path for discovery documents.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agents.metricsserver.apiobjects import GROUP, VERSION, ApiStatusError, StatusDetails

AUTH_CONFIGMAP = "extension-apiserver-authentication"
AUTH_NAMESPACE = "kube-system"
ALWAYS_ALLOWED_GROUPS = frozenset({"system:masters"})  # as kube's delegated authorizer
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz"})


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (key, values), in header order

    def extra_map(self) -> dict[str, list[str]]:
        return {key: list(values) for key, values in self.extra}


@dataclass(frozen=True)
class RequestHeaderConfig:
    """The front proxy's trust, from the ConfigMap the API server publishes."""

    client_ca_pem: str  # requestheader-client-ca-file (PEM, possibly several certificates)
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)
    client_cas: tuple[x509.Certificate, ...] = field(default=(), compare=False)


class ConfigError(ValueError):
    """The ConfigMap's front-proxy settings cannot be used."""


def _json_list(data: Mapping[str, str], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = data.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{key}: not a JSON list ({exc})") from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: expected a JSON list of strings")
    return tuple(value)


def read_config(data: Mapping[str, str]) -> RequestHeaderConfig | None:
    """The front-proxy trust of the ConfigMap's ``data``; None when it names no front-proxy CA (the
    API server has no aggregation layer: only bearer tokens are taken then)."""
    pem = data.get("requestheader-client-ca-file") or ""
    if not pem.strip():
        return None
    try:
        cas = tuple(x509.load_pem_x509_certificates(pem.encode()))
    except ValueError as exc:
        raise ConfigError(f"requestheader-client-ca-file: not PEM certificates ({exc})") from exc
    return RequestHeaderConfig(
        client_ca_pem=pem,
        allowed_names=_json_list(data, "requestheader-allowed-names", ()),
        username_headers=_json_list(data, "requestheader-username-headers", ()),
        group_headers=_json_list(data, "requestheader-group-headers", ()),
        extra_prefixes=_json_list(data, "requestheader-extra-headers-prefix", ()),
        client_cas=cas,
    )


def _issued_by_any(cert: x509.Certificate, cas: Iterable[x509.Certificate]) -> bool:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _client_auth_usage(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.CLIENT_AUTH in usage or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usage


def front_proxy_user(
    cert_der: bytes | None,
    config: RequestHeaderConfig | None,
    headers: Iterable[tuple[str, str]],
    *,
    now: datetime,
) -> UserInfo | str:
    """The user the front proxy speaks for, or why the request is not a front proxy's (a line for
    the log; the request may still authenticate otherwise). ``headers`` are all of the request's,
    repeated ones included."""
    if cert_der is None:
        return "no client certificate"
    if config is None:
        return "no front-proxy CA is published"
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError:
        return "the client certificate cannot be read"
    if not _issued_by_any(cert, config.client_cas):
        return "the client certificate is not signed by the front-proxy CA"
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return "the client certificate has expired or is not yet valid"
    if not _client_auth_usage(cert):
        return "the client certificate is not for client authentication"
    name = _common_name(cert)
    if config.allowed_names and name not in config.allowed_names:
        return f"x509: subject with cn={name} is not in the allowed list"
    pairs = list(headers)
    lowered = [(k.lower(), v) for k, v in pairs]
    user = ""
    for header in config.username_headers:
        user = next((v for k, v in lowered if k == header.lower() and v), "")
        if user:
            break
    if not user:
        return "the front proxy named no user"
    groups = tuple(v for header in config.group_headers for k, v in lowered if k == header.lower())
    extra: dict[str, list[str]] = {}
    for prefix in (p.lower() for p in config.extra_prefixes):
        for key, value in lowered:
            if key.startswith(prefix) and len(key) > len(prefix):
                extra.setdefault(urllib.parse.unquote(key[len(prefix) :]), []).append(value)
    return UserInfo(user, "", groups, tuple((k, tuple(v)) for k, v in extra.items()))


def user_from_token_review(status: Mapping[str, Any]) -> UserInfo | None:
    """The user of a TokenReview's ``status`` (None: not authenticated)."""
    user = status.get("user")
    if not status.get("authenticated") or not isinstance(user, Mapping):
        return None
    extra = user.get("extra") or {}
    return UserInfo(
        str(user.get("username") or ""),
        str(user.get("uid") or ""),
        tuple(str(g) for g in user.get("groups") or ()),
        tuple((str(k), tuple(str(v) for v in values or ())) for k, values in extra.items()),
    )


# --- what is asked --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attributes:
    """What a request does, as kube's authorizers see it (``resource`` empty: a path)."""

    verb: str
    path: str
    resource: str = ""
    namespace: str = ""
    name: str = ""

    def review_spec(self, user: UserInfo) -> dict[str, object]:
        """The ``spec`` of the SubjectAccessReview that asks whether ``user`` may do this."""
        spec: dict[str, object] = {"user": user.name, "groups": list(user.groups)}
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = user.extra_map()
        if self.resource:
            attributes: dict[str, str] = {"verb": self.verb, "group": GROUP, "version": VERSION}
            attributes["resource"] = self.resource
            if self.namespace:
                attributes["namespace"] = self.namespace
            if self.name:
                attributes["name"] = self.name
            spec["resourceAttributes"] = attributes
        else:
            spec["nonResourceAttributes"] = {"path": self.path, "verb": self.verb}
        return spec


def attributes_for(method: str, path: str, *, watch: bool = False) -> Attributes:
    """The attributes of a request to this server (kube's RequestInfo for the one group it serves)."""
    verb = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) < 4 or parts[:3] != ["apis", GROUP, VERSION]:
        return Attributes(verb, path)
    rest = parts[3:]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else ""
    if verb == "get" and not name:
        verb = "watch" if watch else "list"
    elif verb == "delete" and not name:
        verb = "deletecollection"
    return Attributes(verb, path, resource, namespace, name)


def unauthorized() -> ApiStatusError:
    return ApiStatusError(401, "Unauthorized", "Unauthorized")


def forbidden(user: UserInfo, attrs: Attributes, reason: str = "") -> ApiStatusError:
    """kube's 403: ``nodes.metrics.k8s.io is forbidden: User "bob" cannot list resource "nodes" in
    API group "metrics.k8s.io" at the cluster scope`` (the reviewer's reason appended)."""
    if not attrs.resource:
        message = f'forbidden: User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
        return ApiStatusError(403, "Forbidden", message + (f": {reason}" if reason else ""))
    where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    what = f'User "{user.name}" cannot {attrs.verb} resource "{attrs.resource}" in API group "{GROUP}" {where}'
    subject = f"{attrs.resource}.{GROUP}" + (f' "{attrs.name}"' if attrs.name else "")
    details: StatusDetails = {"group": GROUP, "kind": attrs.resource}
    if attrs.name:
        details["name"] = attrs.name
    message = f"{subject} is forbidden: {what}" + (f": {reason}" if reason else "")
    return ApiStatusError(403, "Forbidden", message, details)
