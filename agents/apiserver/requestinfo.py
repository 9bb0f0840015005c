"""What a request asks for, read from its method, path and query alone: kube-apiserver's RequestInfo.

Audit (and authorization after it) judge a request by these attributes before any handler runs, so
they are read from the URL the way kube reads it, without the resource catalog: ``/api/v1/...`` is
the core group, ``/apis/GROUP/VERSION/...`` another one; ``namespaces/NS/`` before a resource sets
the namespace (``namespaces/NS/status`` and ``namespaces/NS/finalize`` are the namespace's own
subresources); then a resource, a name and a subresource. The verb follows kube: ``get`` or ``list``
for a GET with or without a name, ``watch`` with ``?watch=true`` (or 1), ``create``, ``update``,
``patch``, ``delete`` or ``deletecollection``. Any other path (``/healthz``, ``/version``,
``/openapi/v2``, discovery) is a non-resource request whose verb is the method in lower case.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_WRITES = {"POST": "create", "PUT": "update", "PATCH": "patch"}
PROXY_VERBS = {"GET": "get", "HEAD": "get", "OPTIONS": "get", "DELETE": "delete", **_WRITES}


@dataclass(frozen=True)
class RequestInfo:
    path: str
    verb: str
    resource_request: bool = False
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


def _is_watch(query: Mapping[str, str]) -> bool:
    return query.get("watch", "").lower() in ("true", "1")


def request_info(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    """The request's attributes, as kube-apiserver's RequestInfoFactory reads them."""
    parts = [part for part in path.strip("/").split("/") if part]
    non_resource = RequestInfo(path=path, verb=method.lower())
    if len(parts) < 3 or parts[0] not in ("api", "apis"):
        return non_resource
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 4:
            return non_resource  # /apis/GROUP/VERSION: discovery
        group, version, rest = parts[1], parts[2], parts[3:]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if subresource == "proxy":  # passed on to a backend: HEAD and OPTIONS read, as GET (never a watch)
        verb = PROXY_VERBS.get(method, method.lower())
    elif method == "GET":
        verb = "get" if name else "list"
        if _is_watch(query):
            verb = "watch"
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = _WRITES.get(method, method.lower())
    return RequestInfo(
        path=path,
        verb=verb,
        resource_request=True,
        api_group=group,
        api_version=version,
        namespace=namespace,
        resource=resource,
        subresource=subresource,
        name=name,
    )
