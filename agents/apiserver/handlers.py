"""The Kubernetes REST API over HTTP: routing, decoding, every verb, and watch streams.

Paths are the ones kube-apiserver serves (/api/v1/..., /apis/GROUP/VERSION/..., namespaced and
cluster-scoped, with subresources). Bodies are JSON or YAML; responses are JSON, YAML, a Table for
``kubectl get``, or PartialObjectMetadata. Failures are Kubernetes ``Status`` objects.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web

from agents.apiserver import discovery, negotiation, patch, protobuf
from agents.apiserver.kubeletclient import LOG_PARAMS, KubeletClient, container_for_logs
from agents.apiserver.registry import DeleteOptions, ListOptions, ResourceStore, Stored
from agents.apiserver.resources import Catalog, Resource
from agents.apiserver.status import (
    StatusError,
    bad_request,
    internal,
    invalid_object,
    method_not_allowed,
    path_not_found,
    unavailable,
    unsupported_media_type,
)
from agents.apiserver.storage.errors import StorageError, StorageUnavailableError
from agents.apiserver.structural import Checker
from agents.apiserver.tables import table
from agents.apiserver.watchcache import WatchCache
from agents.apiserver.watchstream import WatchSettings, WatchStream
from agents.machinery import codec, objects
from agents.machinery.objects import Object
from agents.machinery.selectors import SelectorError, parse_fields, parse_labels

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
MAX_BODY = 3 * 1024 * 1024
BODY_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")


@dataclass(frozen=True)
class Target:
    resource: Resource
    namespace: str
    name: str
    subresource: str


def warning_header(text: str) -> str:
    """A Warning header value (RFC 7234 quoted string), as kube-apiserver sends them."""
    return '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def json_response(
    obj: Any, status: int = 200, *, content_type: str = JSON_TYPE, warnings: list[str] | None = None
) -> web.Response:
    response = web.Response(body=codec.dumps(obj), status=status, headers={"Content-Type": content_type})
    for warning in warnings or []:
        response.headers.add("Warning", warning_header(warning))
    return response


def status_response(error: StatusError) -> web.Response:
    response = json_response(error.status(), error.code)
    if error.retry_after:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


def _int_param(query: Any, name: str) -> int | None:
    text = query.get(name)
    if text in (None, ""):
        return None
    try:
        return int(text)
    except ValueError:
        raise bad_request(f"invalid {name} {text!r}: must be an integer") from None


class Api:
    def __init__(
        self,
        *,
        catalog: Catalog,
        stores: dict[str, ResourceStore],
        cache: WatchCache,
        checker: Checker,
        definitions: dict[str, Any],
        address: str,
        watch: WatchSettings,
        kubelets: KubeletClient | None = None,
    ) -> None:
        self._catalog = catalog
        self._stores = stores
        self._cache = cache
        self._checker = checker
        self._definitions = definitions
        self._address = address
        self._watch = watch
        self._kubelets = kubelets

    async def close(self) -> None:
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
        parts = [p for p in request.path.split("/") if p]
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
        if resource is None or len(rest) > 3:
            raise path_not_found()
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if sub and sub not in resource.subresources:
            raise path_not_found()
        if resource.namespaced and name and not namespace:
            raise path_not_found()
        return Target(resource, namespace, name, sub)

    async def _dispatch(self, request: web.Request, target: Target) -> web.StreamResponse:
        method, name, sub = request.method, target.name, target.subresource
        store = self._stores[target.resource.qualified]
        if method == "GET":
            if not name:
                if _flag(request.query.get("watch")):
                    return await self._watch_stream(request, target, store)
                return await self._list(request, target, store)
            return await self._get(request, target, store)
        if method == "POST":
            if not name:
                return await self._create(request, target, store)
            if sub == "binding":
                return await self._bind(request, target, store)
            if sub == "exec":
                return await self._exec(request, target, store)
        elif method == "PUT" and name:
            return await self._update(request, target, store)
        elif method == "PATCH" and name and sub != "finalize":
            return await self._patch(request, target, store)
        elif method == "DELETE" and not sub:
            if name:
                return await self._delete(request, target, store)
            return await self._delete_collection(request, target, store)
        raise method_not_allowed()

    # --- request bodies --------------------------------------------------------------------------

    async def _raw_body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise StatusError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
        data = await request.read()
        if len(data) > MAX_BODY:
            raise StatusError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
        return data

    async def _body(self, request: web.Request) -> Object:
        kind = negotiation.content_type(request.headers.get("Content-Type"))
        data = await self._raw_body(request)
        if kind in ("", "application/json"):
            try:
                body = codec.loads(data)
            except codec.DecodeError as exc:
                raise bad_request(f"the body of the request is not valid JSON: {exc}") from exc
        elif kind == protobuf.MEDIA_TYPE:
            body = protobuf.decode(data)
        elif kind in ("application/yaml", "application/x-yaml", "text/yaml"):
            try:
                body = yaml.safe_load(data)
            except yaml.YAMLError as exc:
                raise bad_request(f"the body of the request is not valid YAML: {exc}") from exc
        else:
            raise unsupported_media_type(kind, BODY_TYPES)
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be a JSON object")
        return body

    @staticmethod
    def _field_validation(request: web.Request) -> str:
        value = request.query.get("fieldValidation", "Warn") or "Warn"
        if value not in ("Strict", "Warn", "Ignore"):
            raise bad_request(f'fieldValidation "{value}" is not supported: use one of Ignore, Warn, Strict')
        return value

    @staticmethod
    def _dry_run(request: web.Request) -> bool:
        values = request.query.getall("dryRun", [])
        for value in values:
            if value != "All":
                raise bad_request(f'Invalid dryRun value "{value}": only "All" is supported')
        return bool(values)

    def _check(
        self,
        resource: Resource,
        obj: Object,
        field_validation: str,
        *,
        model: str | None = None,
        kind: str | None = None,
        api_version: str | None = None,
    ) -> list[str]:
        """Structural check of a whole object; returns the warnings to send (unknown fields, Warn mode)."""
        kind = kind or resource.kind
        api_version = api_version or resource.api_version
        if obj.get("kind") in (None, ""):
            obj["kind"] = kind
        if obj.get("apiVersion") in (None, ""):
            obj["apiVersion"] = api_version
        if obj["kind"] != kind:
            raise bad_request(f"the kind in the request body ({obj['kind']}) does not match the resource ({kind})")
        if obj["apiVersion"] != api_version:
            raise bad_request(
                f"the API version in the data ({obj['apiVersion']}) does not match the expected API"
                f" version ({api_version})"
            )
        problems = self._checker.check(model or resource.model, obj, drop_unknown=field_validation != "Strict")
        name = str((obj.get("metadata") or {}).get("name") or "")
        if problems.decode:
            first = problems.decode[0].render()
            raise bad_request(
                f'{kind} in version "{resource.version}" cannot be handled as a {kind}: {first}', problems.decode
            )
        if problems.unknown and field_validation == "Strict":
            listed = ", ".join(f'unknown field "{path}"' for path in problems.unknown)
            raise bad_request(f"strict decoding error: {listed}")
        if problems.missing:
            raise invalid_object(kind, name, resource.group, problems.missing)
        if field_validation == "Warn":
            return [f'unknown field "{path}"' for path in problems.unknown]
        return []

    # --- reads -----------------------------------------------------------------------------------

    def _list_options(self, request: web.Request, resource: Resource) -> ListOptions:
        query = request.query
        try:
            labels = parse_labels(query.get("labelSelector", ""))
            fields = parse_fields(query.get("fieldSelector", ""), list(resource.field_labels()))
        except SelectorError as exc:
            raise bad_request(f"unable to parse requirement: {exc}") from exc
        limit = _int_param(query, "limit") or 0
        if limit < 0:
            raise bad_request("limit must be non-negative")
        rv = query.get("resourceVersion", "")
        match = query.get("resourceVersionMatch", "")
        if rv and not rv.isdigit():
            raise bad_request(f'resourceVersion: Invalid value: "{rv}": must be an unsigned integer')
        if match and match not in ("Exact", "NotOlderThan"):
            raise bad_request(f'resourceVersionMatch: Unsupported value: "{match}"')
        if match and not rv:
            raise bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
        return ListOptions(labels, fields, limit, query.get("continue", ""), rv, match)

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
                    resource.qualified,
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

    async def _log(self, request: web.Request, target: Target, store: ResourceStore) -> web.StreamResponse:
        """``pods/NAME/log``: streamed from the kubelet of the pod's node, as kube-apiserver does."""
        pod = (await store.get(target.namespace, target.name)).obj()
        container = container_for_logs(pod, request.query.get("container", ""))
        node_name = (pod.get("spec") or {}).get("nodeName")
        if not node_name:
            raise bad_request(f"pod {target.name} does not have a host assigned")
        if self._kubelets is None:
            raise StatusError(503, "ServiceUnavailable", "this API server has no kubelet client configured")
        nodes = self._catalog.by_kind("", "Node")
        assert nodes is not None
        node = (await self._stores[nodes.qualified].get("", node_name)).obj()
        query = {k: request.query[k] for k in LOG_PARAMS if k in request.query}
        path = f"/containerLogs/{target.namespace}/{target.name}/{container}"
        upstream = await self._kubelets.open(node, path, query)
        try:
            if upstream.status != 200:
                text = (await upstream.text()).strip()
                raise StatusError(upstream.status if 400 <= upstream.status < 600 else 500, "BadRequest", text)
            response = web.StreamResponse(headers={"Content-Type": "text/plain"})
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
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
        return await self._kubelets.exec(request, node, f"/exec/{target.namespace}/{target.name}/{container}")

    async def _get(self, request: web.Request, target: Target, store: ResourceStore) -> web.StreamResponse:
        if target.subresource == "log":
            return await self._log(request, target, store)
        if target.subresource == "exec":
            return await self._exec(request, target, store)
        stored = await store.get(target.namespace, target.name)
        if target.subresource == "scale":
            return json_response(store.scale_of(stored.obj()))
        return self._render_object(request, target.resource, stored)

    async def _list(self, request: web.Request, target: Target, store: ResourceStore) -> web.Response:
        opts = self._list_options(request, target.resource)
        result = await store.list(target.namespace, opts)
        meta: dict[str, Any] = {"resourceVersion": str(result.revision)}
        if result.continue_token:
            meta["continue"] = result.continue_token
        if result.remaining is not None:
            meta["remainingItemCount"] = result.remaining
        out = negotiation.output(request.headers.get("Accept"))
        resource = target.resource
        if out == negotiation.TABLE:
            include = request.query.get("includeObject", "Metadata")
            return json_response(
                table(resource.qualified, (i.obj() for i in result.items), include=include, list_meta=meta)
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

    async def _create(self, request: web.Request, target: Target, store: ResourceStore) -> web.Response:
        resource = target.resource
        body = await self._body(request)
        warnings = self._check(resource, body, self._field_validation(request))
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
        created = await store.create(target.namespace, body, dry_run=self._dry_run(request))
        return self._respond(request, resource, created, 201, warnings)

    def _respond(
        self, request: web.Request, resource: Resource, obj: Object, status: int, warnings: list[str]
    ) -> web.Response:
        response = self._render_object(request, resource, None, obj, status)
        for warning in warnings:
            response.headers.add("Warning", warning_header(warning))
        return response

    async def _update(self, request: web.Request, target: Target, store: ResourceStore) -> web.Response:
        resource, sub = target.resource, target.subresource
        body = await self._body(request)
        field_validation = self._field_validation(request)
        dry_run = self._dry_run(request)
        if sub == "scale":
            warnings = self._check(
                resource, body, field_validation, model="V1Scale", kind="Scale", api_version="autoscaling/v1"
            )
            pinned = bool((body.get("metadata") or {}).get("resourceVersion"))  # none: unconditional, as kube
            scale = await store.update_scale(
                target.namespace, target.name, lambda _: body, dry_run=dry_run, pinned=pinned
            )
            return json_response(scale, warnings=warnings)
        warnings = self._check(resource, body, field_validation)
        body_ns = (body.get("metadata") or {}).get("namespace")
        if resource.namespaced and body_ns and body_ns != target.namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        if resource.namespaced:
            objects.meta(body)["namespace"] = target.namespace
        obj, created = await store.update(
            target.namespace, target.name, lambda _: body, dry_run=dry_run, subresource=sub, create_body=body
        )
        return self._respond(request, resource, obj, 201 if created else 200, warnings)

    async def _patch(self, request: web.Request, target: Target, store: ResourceStore) -> web.Response:
        resource, sub = target.resource, target.subresource
        kind = negotiation.content_type(request.headers.get("Content-Type"))
        if kind not in patch.PATCH_TYPES:
            raise unsupported_media_type(kind, patch.PATCH_TYPES)
        data = await self._raw_body(request)
        try:
            document = codec.loads(data)
        except codec.DecodeError as exc:
            raise bad_request(f"the body of the request is not valid JSON: {exc}") from exc
        field_validation = self._field_validation(request)
        dry_run = self._dry_run(request)
        warnings: list[str] = []
        scale = sub == "scale"
        model = "V1Scale" if scale else resource.model

        def apply(current: Object) -> Object:
            if kind == patch.JSON_PATCH:
                patched = patch.json_patch(current, document)
            elif kind == patch.MERGE_PATCH:
                patched = patch.merge_patch(current, document)
            else:
                patched = patch.strategic_merge(self._definitions, model, current, document)
            if not isinstance(patched, dict):
                raise bad_request("the patched document is not an object")
            if scale:
                warnings[:] = self._check(
                    resource, patched, field_validation, model="V1Scale", kind="Scale", api_version="autoscaling/v1"
                )
            else:
                warnings[:] = self._check(resource, patched, field_validation)
            return patched

        if scale:
            result = await store.update_scale(
                target.namespace, target.name, apply, dry_run=dry_run, pinned=patch.pins_version(document)
            )
            return json_response(result, warnings=warnings)
        obj, _ = await store.update(
            target.namespace, target.name, apply, dry_run=dry_run, subresource=sub, pinned=patch.pins_version(document)
        )
        return self._respond(request, resource, obj, 200, warnings)

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        query = request.query
        body: Object = {}
        if request.can_read_body:
            data = await self._raw_body(request)
            if data.strip():
                try:
                    loaded = codec.loads(data)
                except codec.DecodeError as exc:
                    raise bad_request(f"invalid DeleteOptions: {exc}") from exc
                if isinstance(loaded, dict):
                    body = loaded
        grace = _int_param(query, "gracePeriodSeconds")
        if grace is None and isinstance(body.get("gracePeriodSeconds"), int):
            grace = body["gracePeriodSeconds"]
        propagation = query.get("propagationPolicy") or body.get("propagationPolicy") or ""
        orphan = query.get("orphanDependents") or body.get("orphanDependents")
        if not propagation and orphan is not None:
            propagation = "Orphan" if str(orphan).lower() == "true" else "Background"
        if propagation not in ("", "Orphan", "Foreground", "Background"):
            raise bad_request(
                f'propagationPolicy: Unsupported value: "{propagation}": supported values:'
                ' "Foreground", "Background", "Orphan"'
            )
        preconditions = body.get("preconditions") or {}
        dry_run = self._dry_run(request) or body.get("dryRun") == ["All"]
        return DeleteOptions(
            grace, propagation, preconditions.get("uid"), preconditions.get("resourceVersion"), dry_run
        )

    async def _delete(self, request: web.Request, target: Target, store: ResourceStore) -> web.Response:
        options = await self._delete_options(request)
        obj = await store.delete(target.namespace, target.name, options)
        pending = bool((obj.get("metadata") or {}).get("deletionTimestamp")) and not options.dry_run
        return self._respond(request, target.resource, obj, 202 if pending else 200, [])

    async def _delete_collection(self, request: web.Request, target: Target, store: ResourceStore) -> web.Response:
        options = await self._delete_options(request)
        opts = self._list_options(request, target.resource)
        deleted = await store.delete_collection(target.namespace, opts, options)
        resource = target.resource
        return json_response(
            {"kind": resource.list_kind, "apiVersion": resource.api_version, "metadata": {}, "items": deleted}
        )

    async def _bind(self, request: web.Request, target: Target, store: ResourceStore) -> web.Response:
        body = await self._body(request)
        self._check(
            target.resource, body, self._field_validation(request), model="V1Binding", kind="Binding", api_version="v1"
        )
        await store.bind(target.namespace, target.name, body, dry_run=self._dry_run(request))
        return json_response(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )

    # --- watch ---------------------------------------------------------------------------------

    async def _watch_stream(self, request: web.Request, target: Target, store: ResourceStore) -> web.StreamResponse:
        opts = self._list_options(request, target.resource)
        timeout = _int_param(request.query, "timeoutSeconds")
        if timeout is None or timeout <= 0:
            timeout = int(self._watch.min_request_timeout * (1 + random.random()))
        stream = WatchStream(
            request=request,
            store=store,
            cache=self._cache,
            namespace=target.namespace,
            opts=opts,
            output=negotiation.output(request.headers.get("Accept")),
            include=request.query.get("includeObject", "Metadata"),
            duration=timeout,
            bookmarks=_flag(request.query.get("allowWatchBookmarks")),
            initial_events=_flag(request.query.get("sendInitialEvents")),
            settings=self._watch,
        )
        return await stream.run()
