"""The Kubernetes REST API over HTTP: routing, decoding, every verb, and watch streams.

Paths are the ones kube-apiserver serves (/api/v1/..., /apis/GROUP/VERSION/..., namespaced and
cluster-scoped, with subresources). Each request is routed to one operation, then goes through the front
door once (``decoding.py``: typed query parameters, the body checked against its kind's schema) before
any verb runs. Responses are JSON, YAML, a Table for ``kubectl get``, or PartialObjectMetadata. Failures
are Kubernetes ``Status`` objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from agents.apiserver import (
    audit,
    authorization,
    certificateadmission,
    conversion,
    discovery,
    escalation,
    eviction,
    fieldmanager,
    negotiation,
    noderestriction,
    patch,
    proxy,
    reviews,
)
from agents.apiserver.auth import ANONYMOUS, User, with_authenticated
from agents.apiserver.authorization import Authorizer
from agents.apiserver.decoding import SCALE, Decoded, Decoder, Query
from agents.apiserver.kubeletclient import LOG_PARAMS, KubeletClient, container_for_logs
from agents.apiserver.registry import DeleteOptions, ListOptions, ResourceStore, Stored
from agents.apiserver.requestinfo import request_info
from agents.apiserver.resources import SUBRESOURCE_VERBS, Catalog, Resource
from agents.apiserver.serviceaccount import TokenService
from agents.apiserver.status import (
    FieldError,
    StatusError,
    bad_request,
    conflict,
    forbidden,
    go_quote,
    internal,
    invalid,
    invalid_object,
    method_not_allowed,
    not_supported,
    path_not_found,
    required,
    unavailable,
)
from agents.apiserver.storage.errors import StorageError, StorageUnavailableError
from agents.apiserver.tables import printer_key, table
from agents.apiserver.watchcache import WatchCache
from agents.apiserver.watchstream import WatchSettings
from agents.machinery import codec, objects
from agents.machinery.objects import Object
from agents.machinery.selectors import SelectorError, parse_fields, parse_labels

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Target:
    resource: Resource
    namespace: str
    name: str
    subresource: str


WARNINGS_TOTAL = 4 * 1024  # characters of warnings one response carries, as kube-apiserver's recorder
WARNING_TRUNCATED = 256  # each warning's length once the total is reached
# Header lines of warnings in one response: clients count header lines (Python's http.client stops
# reading a response at 100, aiohttp's client at 128), so warnings beyond this many are left out.
WARNINGS_MAX = 50


def warning_header(text: str) -> str:
    """A Warning header value (RFC 7234), as kube-apiserver sends them: the text quoted as Go's
    strconv.Quote does, so that no control character reaches the header."""
    return "299 - " + go_quote(text)


def limited_warnings(warnings: list[str]) -> list[str]:
    """Warnings as kube-apiserver's recorder keeps them: duplicates once; past 4 KiB in all, each cut
    to 256 characters; past 4 KiB of those, no more; and at most ``WARNINGS_MAX`` of them."""
    kept: list[str] = []
    written, truncating = 0, False
    for text in dict.fromkeys(warnings):
        if (truncating and written >= WARNINGS_TOTAL) or len(kept) == WARNINGS_MAX:
            break
        if not truncating and written + len(text) > WARNINGS_TOTAL:
            truncating = True
            kept = [w[:WARNING_TRUNCATED] for w in kept]
            written = sum(len(w) for w in kept)
        item = text[:WARNING_TRUNCATED] if truncating else text
        kept.append(item)
        written += len(item)
    return kept


def add_warnings(response: web.StreamResponse, warnings: list[str]) -> None:
    for warning in limited_warnings(warnings):
        response.headers.add("Warning", warning_header(warning))


def json_response(
    obj: Any, status: int = 200, *, content_type: str = JSON_TYPE, warnings: list[str] | None = None
) -> web.Response:
    response = web.Response(body=codec.dumps(obj), status=status, headers={"Content-Type": content_type})
    add_warnings(response, warnings or [])
    return response


def status_response(error: StatusError) -> web.Response:
    response = json_response(error.status(), error.code)
    if error.retry_after:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


# HTTP method -> verb; subresources answer the verbs resources.SUBRESOURCE_VERBS gives them.
_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def operation_of(method: str, name: str, subresource: str, *, all_namespaces: bool = False) -> str:
    """The operation a request asks for (list, get, create, update, patch, delete, deletecollection,
    log, exec), or 405 when the path does not answer the method. ``all_namespaces``: the path of a
    namespaced resource without a namespace, which only lists (and watches), as kube-apiserver's."""
    verb = _VERBS.get(method)
    if verb is not None and not name:
        operation = {"get": "list", "create": "create", "delete": "deletecollection"}.get(verb)
        if all_namespaces and operation != "list":
            operation = None
    elif verb is not None and not subresource:
        operation = verb if verb != "create" else None
    elif verb is not None and verb in SUBRESOURCE_VERBS.get(subresource, ()):
        operation = subresource if subresource in ("log", "exec", "attach", "portforward") else verb
    else:
        operation = None
    if operation is None:
        raise method_not_allowed()
    return operation


class Api:
    def __init__(
        self,
        *,
        catalog: Catalog,
        stores: dict[str, ResourceStore],
        cache: WatchCache,
        decoder: Decoder,
        definitions: dict[str, Any],
        address: str,
        watch: WatchSettings,
        kubelets: KubeletClient | None = None,
        authorizer: Authorizer | None = None,
        tokens: TokenService | None = None,
        egress_namespace: Path | None = None,
    ) -> None:
        self._catalog = catalog
        self._stores = stores
        self._cache = cache
        self._decoder = decoder
        self._definitions = definitions
        self._address = address
        self._watch = watch
        self._kubelets = kubelets
        self._authorizer = authorizer if authorizer is not None else Authorizer(("AlwaysAllow",))
        self._tokens = tokens
        self._proxier = proxy.Proxier(kubelets, egress_namespace=egress_namespace)

    async def close(self) -> None:
        await self._proxier.close()
        if self._kubelets is not None:
            await self._kubelets.close()

    # --- entry -----------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._route(request)
        except StatusError as exc:
            return status_response(exc)
        except StorageUnavailableError as exc:
            log.warning("storage unavailable for %s %s: %s", request.method, request.path, exc)
            return status_response(unavailable(f"storage is unavailable: {exc}"))
        except StorageError as exc:
            log.error("storage error for %s %s: %s", request.method, request.path, exc)
            return status_response(internal(str(exc)))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("unexpected failure for %s %s", request.method, request.path)
            return status_response(internal(f"{type(exc).__name__}: {exc}"))

    async def _route(self, request: web.Request) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")
        if "" in parts:  # an empty segment in the middle names nothing (a trailing slash is allowed)
            raise path_not_found()
        accept = request.headers.get("Accept")
        if parts[0] == "api":
            if len(parts) == 1:
                if negotiation.wants_aggregated_discovery(accept):
                    return json_response(
                        discovery.aggregated(self._catalog, core=True), content_type=discovery.AGGREGATED_MEDIA
                    )
                return json_response(discovery.api_versions(self._address))
            group, version, rest = "", parts[1], parts[2:]
        else:
            if len(parts) == 1:
                if negotiation.wants_aggregated_discovery(accept):
                    return json_response(
                        discovery.aggregated(self._catalog, core=False), content_type=discovery.AGGREGATED_MEDIA
                    )
                return json_response(discovery.group_list(self._catalog))
            group = parts[1]
            if len(parts) == 2:
                document = discovery.group(self._catalog, group)
                if document is None:
                    raise path_not_found()
                return json_response(document)
            version, rest = parts[2], parts[3:]
        if version not in self._catalog.groups().get(group, []):
            raise path_not_found()
        if not rest:
            if request.method != "GET":
                raise method_not_allowed()
            return json_response(discovery.resource_list(self._catalog, group, version))
        target = self._target(group, version, rest)
        return await self._dispatch(request, target)

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        namespace = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            candidate = self._catalog.lookup(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        resource = self._catalog.lookup(group, version, rest[0])
        if resource is None or (len(rest) > 3 and rest[2] != "proxy"):  # proxy/PATH goes on to a backend
            raise path_not_found()
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and sub not in resource.subresources:
            raise path_not_found()
        if resource.namespaced and name and not namespace:
            raise path_not_found()
        return Target(resource, namespace, name, sub)

    async def _dispatch(self, request: web.Request, target: Target) -> web.StreamResponse:
        if target.resource.review:
            return await self._review(request, target)
        store = conversion.view(self._stores[target.resource.qualified], target.resource)
        if target.subresource == "proxy":
            return await self._proxy(request, target, store)
        all_namespaces = target.resource.namespaced and not target.namespace
        operation = operation_of(request.method, target.name, target.subresource, all_namespaces=all_namespaces)
        decoded = await self._decoder.decode(request, target.resource, operation, target.subresource)
        if decoded.body is not None or decoded.patch is not None:  # what audit records at its Request level
            request[audit.REQUEST_OBJECT] = decoded.body if decoded.body is not None else decoded.patch
        user: User | None = request.get("user")
        if user is not None and self._authorizer.uses_node:  # NodeRestriction: a kubelet's own objects only
            attrs = request.get("attributes")
            if attrs is None:
                attrs = authorization.attributes(
                    user.name, user.groups, request_info(request.method, request.path, request.query)
                )
            created = str(((decoded.body or {}).get("metadata") or {}).get("name", ""))
            noderestriction.check(attrs, self._authorizer.node.graph, created_name=created, body=decoded.body)
        if operation == "list":
            if decoded.query.flag("watch"):
                return await self._watch_stream(request, target, store, decoded)
            return await self._list(request, target, store, decoded)
        if operation == "get":
            return await self._get(request, target, store)
        if operation == "log":
            return await self._log(request, target, store, decoded)
        if operation == "exec":
            return await self._exec(request, target, store)
        if operation == "attach":
            return await self._attach(request, target, store)
        if operation == "portforward":
            return await self._port_forward(request, target, store)
        if operation == "create":
            if target.subresource == "binding":
                return await self._bind(request, target, store, decoded)
            if target.subresource == "token":
                return await self._token_request(request, target, store, decoded)
            if target.subresource == "eviction":
                return await self._evict(target, store, decoded)
            return await self._create(request, target, store, decoded)
        if operation == "update":
            return await self._update(request, target, store, decoded)
        if operation == "patch":
            return await self._patch(request, target, store, decoded)
        if operation == "delete":
            return await self._delete(request, target, store, decoded)
        return await self._delete_collection(request, target, store, decoded)

    # --- reads -----------------------------------------------------------------------------------

    def _list_options(self, decoded: Decoded, resource: Resource) -> ListOptions:
        query = decoded.query
        try:
            labels = parse_labels(query.text("labelSelector"))
            fields = parse_fields(query.text("fieldSelector"), list(resource.field_labels()))
        except SelectorError as exc:
            raise bad_request(f"unable to parse requirement: {exc}") from exc
        limit = query.integer("limit") or 0
        if limit < 0:
            raise bad_request("limit must be non-negative")
        rv = query.text("resourceVersion")
        match = query.text("resourceVersionMatch")
        if rv and not (re.fullmatch(r"[0-9]+", rv) and int(rv) < 2**63):
            raise bad_request(f'resourceVersion: Invalid value: "{rv}": must be an unsigned integer')
        if match and match not in ("Exact", "NotOlderThan"):
            raise bad_request(f'resourceVersionMatch: Unsupported value: "{match}"')
        if match and not rv:
            raise bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
        return ListOptions(labels, fields, limit, query.text("continue"), rv, match)

    def _render_object(
        self,
        request: web.Request,
        resource: Resource,
        stored: Stored | None,
        obj: Object | None = None,
        status: int = 200,
    ) -> web.Response:
        out = negotiation.output(request.headers.get("Accept"))
        if out == negotiation.JSON and stored is not None:
            return web.Response(body=stored.raw(), status=status, headers={"Content-Type": JSON_TYPE})
        value = obj if obj is not None else stored.obj() if stored is not None else {}
        if out == negotiation.TABLE:
            include = request.query.get("includeObject", "Metadata")
            return json_response(
                table(
                    printer_key(resource),
                    [value],
                    include=include,
                    list_meta={"resourceVersion": value.get("metadata", {}).get("resourceVersion", "")},
                ),
                status,
            )
        if out == negotiation.PARTIAL:
            return json_response(
                {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": value.get("metadata") or {},
                },
                status,
            )
        if out == negotiation.YAML:
            return web.Response(
                body=yaml.safe_dump(value, sort_keys=False).encode(),
                status=status,
                headers={"Content-Type": "application/yaml"},
            )
        return json_response(value, status)

    async def _log(
        self, request: web.Request, target: Target, store: ResourceStore, decoded: Decoded
    ) -> web.StreamResponse:
        """``pods/NAME/log``: streamed from the kubelet of the pod's node, as kube-apiserver does. A client
        that leaves ends the stream: at the next chunk, or within the watch idle check when the log is
        quiet (a ``follow``), so no kubelet connection outlives its client."""
        query = decoded.query
        errors = log_options_errors(query)
        if errors:
            raise invalid_object("PodLogOptions", target.name, "", errors)
        pod = (await store.get(target.namespace, target.name)).obj()
        container = container_for_logs(pod, query.text("container"))
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise bad_request(f"pod {target.name} does not have a host assigned")
        if self._kubelets is None:
            raise StatusError(503, "ServiceUnavailable", "this API server has no kubelet client configured")
        nodes = self._catalog.by_kind("", "Node")
        assert nodes is not None
        node = (await self._stores[nodes.qualified].get("", node_name)).obj()
        path = f"/containerLogs/{target.namespace}/{target.name}/{container}"
        upstream = await self._kubelets.open(node, path, log_query(query))
        try:
            if upstream.status != 200:
                text = (await upstream.text()).strip()
                raise StatusError(upstream.status if 400 <= upstream.status < 600 else 500, "BadRequest", text)
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await response.prepare(request)
            while True:
                try:
                    chunk = await asyncio.wait_for(upstream.content.readany(), self._watch.idle_check)
                except TimeoutError:
                    if request.transport is None or request.transport.is_closing():
                        break  # the client left while the log was quiet (a follow): stop reading the kubelet
                    continue
                if not chunk:
                    break
                await response.write(chunk)
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
            return response
        finally:
            upstream.release()

    async def _exec(self, request: web.Request, target: Target, store: ResourceStore) -> web.StreamResponse:
        """``pods/NAME/exec``: a WebSocket to the kubelet of the pod's node (kubectl exec)."""
        pod = (await store.get(target.namespace, target.name)).obj()
        container = container_for_logs(pod, request.query.get("container", ""))
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            phase = (pod.get("status") or {}).get("phase", "Pending")
            raise bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
        if self._kubelets is None:
            raise StatusError(503, "ServiceUnavailable", "this API server has no kubelet client configured")
        nodes = self._catalog.by_kind("", "Node")
        assert nodes is not None
        node = (await self._stores[nodes.qualified].get("", node_name)).obj()
        return await self._kubelets.stream(
            request, node, f"/exec/{target.namespace}/{target.name}/{container}", what="exec"
        )

    async def _node_of(self, node_name: str) -> dict[str, Any]:
        if self._kubelets is None:
            raise StatusError(503, "ServiceUnavailable", "this API server has no kubelet client configured")
        nodes = self._catalog.by_kind("", "Node")
        assert nodes is not None
        return dict((await self._stores[nodes.qualified].get("", node_name)).obj())

    async def _attach(self, request: web.Request, target: Target, store: ResourceStore) -> web.StreamResponse:
        """``pods/NAME/attach``: the container's own streams, from the kubelet of the pod's node."""
        pod = (await store.get(target.namespace, target.name)).obj()
        container = container_for_logs(pod, request.query.get("container", ""))
        node_name = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if phase in ("Succeeded", "Failed"):
            raise bad_request(f"cannot attach a container in a completed pod; current phase is {phase}")
        if not node_name:
            raise bad_request(f"pod {target.name} does not have a host assigned")
        node = await self._node_of(node_name)
        assert self._kubelets is not None
        path = f"/attach/{target.namespace}/{target.name}/{container}"
        return await self._kubelets.stream(request, node, path, what="attach")

    async def _port_forward(self, request: web.Request, target: Target, store: ResourceStore) -> web.StreamResponse:
        """``pods/NAME/portforward``: connections to the pod's ports, through the kubelet of its node."""
        pod = (await store.get(target.namespace, target.name)).obj()
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise bad_request(f"pod {target.name} does not have a host assigned")
        node = await self._node_of(node_name)
        assert self._kubelets is not None
        return await self._kubelets.stream(
            request, node, f"/portForward/{target.namespace}/{target.name}", what="portforward"
        )

    async def _proxy(self, request: web.Request, target: Target, store: ResourceStore) -> web.StreamResponse:
        """``pods|services|nodes/NAME/proxy[/PATH]``: the request passed on to the pod, one of the
        Service's ready endpoints or the node's kubelet, and the answer streamed back (proxy.py)."""
        proxy.verb(request.method)
        kind = target.resource.kind.lower()
        wanted = proxy.parse_name(kind, target.name)
        obj = (await store.get(target.namespace, wanted.name)).obj()
        if kind == "pod":
            backend = proxy.Backend(proxy.pod_location(obj, wanted), in_cluster=True)
        elif kind == "service":
            slices = await self._stores["endpointslices.discovery.k8s.io"].list(
                target.namespace, ListOptions(labels=parse_labels(f"{proxy.SERVICE_NAME_LABEL}={wanted.name}"))
            )
            location = proxy.service_location(obj, (i.obj() for i in slices.items), wanted, raw=target.name)
            backend = proxy.Backend(location, in_cluster=True)
        else:
            backend = self._proxier.node_backend(obj, wanted)
        depth = 6 if target.namespace else 4  # api/v1/[namespaces/NS/]RESOURCE/NAME/proxy
        path = proxy.backend_path(request.rel_url.raw_path, depth=depth)
        prefix = request.rel_url.raw_path[: len(request.rel_url.raw_path) - len(path) + 1].rstrip("/")
        return await self._proxier.forward(request, backend, path=path, prefix=prefix)

    async def _get(self, request: web.Request, target: Target, store: ResourceStore) -> web.StreamResponse:
        stored = await store.get(target.namespace, target.name)
        if target.subresource == "scale":
            return json_response(store.scale_of(stored.obj()))
        return self._render_object(request, target.resource, stored)

    async def _list(self, request: web.Request, target: Target, store: ResourceStore, decoded: Decoded) -> web.Response:
        opts = self._list_options(decoded, target.resource)
        result = await store.list(target.namespace, opts)
        meta: dict[str, Any] = {"resourceVersion": str(result.revision)}
        if result.continue_token:
            meta["continue"] = result.continue_token
        if result.remaining is not None:
            meta["remainingItemCount"] = result.remaining
        out = negotiation.output(request.headers.get("Accept"))
        resource = target.resource
        if out == negotiation.TABLE:
            include = decoded.query.text("includeObject", "Metadata")
            return json_response(
                table(printer_key(resource), (i.obj() for i in result.items), include=include, list_meta=meta)
            )
        if out == negotiation.PARTIAL:
            items = [
                {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": i.obj().get("metadata") or {},
                }
                for i in result.items
            ]
            return json_response(
                {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items}
            )
        head = {"kind": resource.list_kind, "apiVersion": resource.api_version, "metadata": meta}
        if out == negotiation.YAML:
            document = {**head, "items": [i.obj() for i in result.items]}
            return web.Response(
                body=yaml.safe_dump(document, sort_keys=False).encode(), headers={"Content-Type": "application/yaml"}
            )
        body = codec.dumps(head)[:-1] + b',"items":[' + b",".join(i.raw() for i in result.items) + b"]}"
        return web.Response(body=body, headers={"Content-Type": JSON_TYPE})

    # --- writes ----------------------------------------------------------------------------------

    async def _review(self, request: web.Request, target: Target) -> web.Response:
        """An access review or whoami: the body sent, with the answer in its status (201, never stored)."""
        if request.method != "POST" or target.name:
            raise method_not_allowed()
        resource = target.resource
        if resource.namespaced and not target.namespace:
            raise method_not_allowed(
                "the server does not allow this method on the requested resource: a namespace is required"
            )
        decoded = await self._decoder.decode(request, resource, "create", "")
        assert decoded.body is not None
        request[audit.REQUEST_OBJECT] = decoded.body
        user: User = request.get("user") or ANONYMOUS
        # the answer names the review as sent and nothing else of its metadata (managedFields may hold any JSON)
        meta = decoded.body.get("metadata") or {}
        body = {**decoded.body, "metadata": {k: meta[k] for k in ("name", "namespace") if isinstance(meta.get(k), str)}}
        if resource.kind == "TokenReview":
            answered = await self._token_review(body)
        else:
            answered = reviews.answer(self._authorizer, resource.kind, user, body, target.namespace)
        return self._respond(request, resource, answered, 201, decoded.warnings)

    async def _token_review(self, body: Object) -> Object:
        """Who a token stands for, as this server would authenticate it (TokenReview)."""
        spec = body.get("spec") or {}
        audiences = [str(a) for a in spec.get("audiences") or []]
        found = None
        if self._tokens is not None and spec.get("token"):
            found = await self._tokens.authenticate(str(spec["token"]), audiences)
        if found is None:
            return {**body, "status": {"authenticated": False, "user": {}}}
        info: dict[str, Any] = {"username": found.name, "groups": list(with_authenticated(found.groups))}
        if found.uid:
            info["uid"] = found.uid
        audience = audiences or list(self._tokens.audiences if self._tokens is not None else ())
        return {**body, "status": {"authenticated": True, "user": info, "audiences": audience}}

    async def _token_request(
        self, request: web.Request, target: Target, store: ResourceStore, decoded: Decoded
    ) -> web.Response:
        """``serviceaccounts/NAME/token`` (TokenRequest, ``kubectl create token``): a signed token for the
        ServiceAccount, for the audiences asked (the API server's by default), for ``expirationSeconds``
        (an hour by default, at least ten minutes), bound to a pod if ``boundObjectRef`` names one."""
        tokens = self._tokens
        if tokens is None or tokens.issuer is None:
            raise path_not_found()
        body = decoded.body or {}
        account = (await store.get(target.namespace, target.name)).obj()
        spec = dict(body.get("spec") or {})
        seconds = int(spec.get("expirationSeconds") or 3600)
        if seconds < 600:
            raise invalid_object(
                "TokenRequest",
                target.name,
                "authentication.k8s.io",
                [invalid("spec.expirationSeconds", seconds, "may not specify a duration less than 10 minutes")],
            )
        seconds = min(seconds, tokens.max_seconds)
        audiences = [str(a) for a in spec.get("audiences") or []] or list(tokens.audiences)
        pod = await self._bound_pod(target.namespace, spec.get("boundObjectRef"), target.name)
        token, expires = tokens.issuer.issue(
            namespace=target.namespace,
            name=target.name,
            uid=str(account["metadata"].get("uid", "")),
            audiences=audiences,
            seconds=seconds,
            pod=pod,
        )
        answer = {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": target.name, "namespace": target.namespace},
            "spec": {**spec, "audiences": audiences, "expirationSeconds": seconds},
            "status": {"token": token, "expirationTimestamp": objects.format_time(expires)},
        }
        return json_response(answer, 201)

    async def _bound_pod(self, namespace: str, ref: Any, name: str) -> tuple[str, str] | None:
        """(name, uid) of the pod a TokenRequest binds its token to (None: not bound)."""
        if not ref:
            return None
        if ref.get("kind") != "Pod":
            raise invalid_object(
                "TokenRequest",
                name,
                "authentication.k8s.io",
                [not_supported("spec.boundObjectRef.kind", ref.get("kind", ""), ("Pod",))],
            )
        pod = (await self._stores["pods"].get(namespace, str(ref.get("name", "")))).obj()
        uid = str(pod["metadata"].get("uid", ""))
        if ref.get("uid") and ref["uid"] != uid:
            raise conflict("pods", str(ref.get("name", "")), detail="the UID in the bound object reference differs")
        return str(ref.get("name", "")), uid

    async def _create(
        self, request: web.Request, target: Target, store: ResourceStore, decoded: Decoded
    ) -> web.Response:
        resource = target.resource
        body = decoded.body
        assert body is not None
        body_ns = (body.get("metadata") or {}).get("namespace")
        if resource.namespaced:
            if not target.namespace:
                raise method_not_allowed(
                    "the server does not allow this method on the requested resource: a namespace is required"
                )
            if body_ns and body_ns != target.namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
        escalation.check(self._authorizer, request.get("user"), resource, target.namespace, body)
        certificateadmission.stamp(resource, request.get("user"), body)
        manage = self._fields(request, decoded, resource, "")
        created = await store.create(target.namespace, body, dry_run=decoded.dry_run, manage=manage)
        return self._respond(request, resource, created, 201, decoded.warnings)

    def _fields(
        self, request: web.Request, decoded: Decoded, resource: Resource, subresource: str
    ) -> fieldmanager.Recorder:
        """The hook recording this write in managedFields: an Update by its fieldManager (or User-Agent)."""
        manager = fieldmanager.manager_name(decoded.query.text("fieldManager"), request.headers.get("User-Agent", ""))
        owner = fieldmanager.Owner(manager, "Update", resource.api_version, subresource)
        return fieldmanager.recorder(scope=self._scope(resource, subresource), owner=owner, clock=objects.now)

    def _scope(self, resource: Resource, subresource: str) -> fieldmanager.Scope:
        schema = fieldmanager.Schema(self._definitions)
        return fieldmanager.Scope(schema, resource.model, subresource, "status" in resource.subresources)

    def _respond(
        self, request: web.Request, resource: Resource, obj: Object, status: int, warnings: list[str]
    ) -> web.Response:
        response = self._render_object(request, resource, None, obj, status)
        add_warnings(response, warnings)
        return response

    async def _update(
        self, request: web.Request, target: Target, store: ResourceStore, decoded: Decoded
    ) -> web.Response:
        resource, sub = target.resource, target.subresource
        body = decoded.body
        assert body is not None
        if sub == "scale":
            pinned = bool((body.get("metadata") or {}).get("resourceVersion"))  # none: unconditional, as kube
            scale = await store.update_scale(
                target.namespace,
                target.name,
                lambda _: body,
                dry_run=decoded.dry_run,
                pinned=pinned,
                manage=self._fields(request, decoded, resource, sub),
            )
            return json_response(scale, warnings=decoded.warnings)
        body_ns = (body.get("metadata") or {}).get("namespace")
        if resource.namespaced and body_ns and body_ns != target.namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if resource.namespaced:
            objects.meta(body)["namespace"] = target.namespace
        user = request.get("user")

        def replace(current: Object) -> Object:
            escalation.check(self._authorizer, user, resource, target.namespace, body, old=current)
            certificateadmission.check(self._authorizer, user, resource, subresource=sub, new=body, old=current)
            return body

        obj, created = await store.update(
            target.namespace,
            target.name,
            replace,
            dry_run=decoded.dry_run,
            subresource=sub,
            create_body=body,
            manage=self._fields(request, decoded, resource, sub),
        )
        return self._respond(request, resource, obj, 201 if created else 200, decoded.warnings)

    async def _patch(
        self, request: web.Request, target: Target, store: ResourceStore, decoded: Decoded
    ) -> web.Response:
        resource, sub = target.resource, target.subresource
        document, kind = decoded.patch, decoded.patch_type
        if kind == patch.APPLY_PATCH:
            return await self._apply(request, target, store, decoded)
        if decoded.query.flag("force") is not None:
            raise invalid_object(
                "PatchOptions", "", "meta.k8s.io", [forbidden("force", "may not be specified for non-apply patch")]
            )
        manage = self._fields(request, decoded, resource, sub)
        model = SCALE.model if sub == "scale" else resource.model

        def apply(current: Object) -> Object:
            if kind == patch.JSON_PATCH:
                patched = patch.json_patch(current, document)
            elif kind == patch.MERGE_PATCH:
                patched = patch.merge_patch(current, document)
            else:
                patched = patch.strategic_merge(self._definitions, model, current, document)
            checked = self._decoder.patched(decoded, patched)
            user = request.get("user")
            escalation.check(self._authorizer, user, resource, target.namespace, checked, old=current)
            certificateadmission.check(self._authorizer, user, resource, subresource=sub, new=checked, old=current)
            return checked

        pinned = patch.pins_version(document)
        if sub == "scale":
            result = await store.update_scale(
                target.namespace, target.name, apply, dry_run=decoded.dry_run, pinned=pinned, manage=manage
            )
            return json_response(result, warnings=decoded.warnings)
        obj, _ = await store.update(
            target.namespace, target.name, apply, dry_run=decoded.dry_run, subresource=sub, pinned=pinned, manage=manage
        )
        return self._respond(request, resource, obj, 200, decoded.warnings)

    async def _apply(
        self, request: web.Request, target: Target, store: ResourceStore, decoded: Decoded
    ) -> web.Response:
        """Server-side apply (fieldmanager.py): merged into the object, or creating it when missing."""
        resource, sub = target.resource, target.subresource
        manager = decoded.query.text("fieldManager")
        if not manager:
            raise invalid_object(
                "PatchOptions", "", "meta.k8s.io", [required("fieldManager", "is required for apply patch")]
            )
        if sub not in ("", "status"):
            raise method_not_allowed(f"apply is not supported on the {sub} subresource")
        owner = fieldmanager.Owner(manager, "Apply", resource.api_version, sub)
        scope, force, user = self._scope(resource, sub), bool(decoded.query.flag("force")), request.get("user")
        entries: list[Any] = []  # the managedFields of the last merge (a status write keeps the stored metadata)

        def applied(current: Object | None) -> Object:
            merged = fieldmanager.apply(
                current, decoded.patch, scope=scope, owner=owner, force=force, now=objects.now()
            )
            checked = self._decoder.patched(decoded, merged)
            escalation.check(self._authorizer, user, resource, target.namespace, checked, old=current)
            entries[:] = (checked.get("metadata") or {}).get("managedFields") or []
            return checked

        def managed(_old: Object | None, new: Object) -> None:
            if entries:
                objects.meta(new)["managedFields"] = entries
            else:
                objects.meta(new).pop("managedFields", None)

        try:
            obj, _ = await store.update(
                target.namespace,
                target.name,
                applied,
                dry_run=decoded.dry_run,
                subresource=sub,
                pinned=patch.pins_version(decoded.patch),
                manage=managed if sub else None,
            )
            return self._respond(request, resource, obj, 200, decoded.warnings)
        except StatusError as exc:
            if exc.code != 404 or sub:  # a subresource of a missing object is not created by apply
                raise
        body = applied(None)
        name = objects.meta(body).setdefault("name", target.name)
        if name != target.name:
            raise bad_request(f"the name of the object ({name}) does not match the name on the URL ({target.name})")
        certificateadmission.stamp(resource, user, body)
        created = await store.create(target.namespace, body, dry_run=decoded.dry_run)
        return self._respond(request, resource, created, 201, decoded.warnings)

    @staticmethod
    def _delete_options(decoded: Decoded) -> DeleteOptions:
        query, body = decoded.query, decoded.body or {}
        grace = query.integer("gracePeriodSeconds")
        if grace is None:
            grace = body.get("gracePeriodSeconds")
        propagation = query.text("propagationPolicy") or body.get("propagationPolicy") or ""
        orphan = query.flag("orphanDependents")
        if orphan is None:
            orphan = body.get("orphanDependents")
        if not propagation and orphan is not None:
            propagation = "Orphan" if orphan else "Background"
        if propagation not in ("", "Orphan", "Foreground", "Background"):
            raise bad_request(
                f'propagationPolicy: Unsupported value: "{propagation}": supported values:'
                ' "Foreground", "Background", "Orphan"'
            )
        preconditions = body.get("preconditions") or {}
        dry_run = decoded.dry_run or body.get("dryRun") == ["All"]
        return DeleteOptions(
            grace, propagation, preconditions.get("uid"), preconditions.get("resourceVersion"), dry_run
        )

    async def _delete(
        self, request: web.Request, target: Target, store: ResourceStore, decoded: Decoded
    ) -> web.Response:
        options = self._delete_options(decoded)
        obj = await store.delete(target.namespace, target.name, options)
        pending = bool((obj.get("metadata") or {}).get("deletionTimestamp")) and not options.dry_run
        return self._respond(request, target.resource, obj, 202 if pending else 200, [])

    async def _delete_collection(
        self, request: web.Request, target: Target, store: ResourceStore, decoded: Decoded
    ) -> web.Response:
        options = self._delete_options(decoded)
        opts = self._list_options(decoded, target.resource)
        deleted = await store.delete_collection(target.namespace, opts, options)
        resource = target.resource
        return json_response(
            {"kind": resource.list_kind, "apiVersion": resource.api_version, "metadata": {}, "items": deleted}
        )

    async def _bind(self, request: web.Request, target: Target, store: ResourceStore, decoded: Decoded) -> web.Response:
        assert decoded.body is not None
        await store.bind(target.namespace, target.name, decoded.body, dry_run=decoded.dry_run)
        return json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )

    async def _evict(self, target: Target, store: ResourceStore, decoded: Decoded) -> web.Response:
        """``pods/NAME/eviction`` (kubectl drain): a delete its disruption budget allows (eviction.py)."""
        assert decoded.body is not None
        answer = await eviction.evict(
            pods=store,
            budgets=self._stores["poddisruptionbudgets.policy"],
            namespace=target.namespace,
            name=target.name,
            eviction=decoded.body,
            dry_run=decoded.dry_run,
        )
        return json_response(answer, int(answer["code"]))

    # --- watch ---------------------------------------------------------------------------------

    async def _watch_stream(
        self, request: web.Request, target: Target, store: ResourceStore, decoded: Decoded
    ) -> web.StreamResponse:
        opts = self._list_options(decoded, target.resource)
        timeout = decoded.query.integer("timeoutSeconds")
        if timeout is None or timeout <= 0:
            timeout = int(self._watch.min_request_timeout * (1 + random.random()))
        stream = conversion.watch_stream_type(target.resource)(
            request=request,
            store=store,
            cache=self._cache,
            namespace=target.namespace,
            opts=opts,
            output=negotiation.output(request.headers.get("Accept")),
            include=decoded.query.text("includeObject", "Metadata"),
            duration=timeout,
            bookmarks=bool(decoded.query.flag("allowWatchBookmarks")),
            initial_events=bool(decoded.query.flag("sendInitialEvents")),
            settings=self._watch,
        )
        return await stream.run()


def log_options_errors(query: Query) -> list[FieldError]:
    """PodLogOptions validation, as Kubernetes words it."""
    errors: list[FieldError] = []
    tail_lines, limit_bytes, since = (
        query.integer("tailLines"),
        query.integer("limitBytes"),
        query.integer("sinceSeconds"),
    )
    if tail_lines is not None and tail_lines < 0:
        errors.append(invalid("tailLines", tail_lines, "must be greater than or equal to 0"))
    if limit_bytes is not None and limit_bytes < 1:
        errors.append(invalid("limitBytes", limit_bytes, "must be greater than 0"))
    if since is not None and query.has("sinceTime"):
        errors.append(forbidden("sinceSeconds", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
    elif since is not None and since < 1:
        errors.append(invalid("sinceSeconds", since, "must be greater than 0"))
    return errors


def log_query(query: Query) -> dict[str, str]:
    """The log parameters passed on to the kubelet, in their canonical text."""
    out: dict[str, str] = {}
    for name in LOG_PARAMS:
        if not query.has(name):
            continue
        value = query.values[name]
        out[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out
