"""OpenAPI v3 documents, one per group-version, derived from the model definitions.

They are what ``kubectl explain`` reads, what kubectl checks for server-side field validation
(the ``fieldValidation`` parameter on PATCH operations) and where it finds the strategic-merge keys
(``x-kubernetes-patch-merge-key``) it computes ``kubectl apply`` patches with.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from functools import cached_property
from typing import Any

import orjson

from agents.apiserver.patchmeta import PATCH_META
from agents.apiserver.resources import Catalog, Resource

QUANTITY = "resource.Quantity"
_MODEL_NAME = re.compile(r"^([A-Z][a-z]+)?(V\d+(?:alpha\d+|beta\d+)?)(.+)$")
_LIST_META = "V1ListMeta"


def component_name(model: str) -> str:
    """``V1Pod`` -> ``v1.Pod``; ``CoreV1Event`` -> ``core.v1.Event``."""
    match = _MODEL_NAME.match(model)
    if not match:
        return model
    group, version, kind = match.groups()
    return f"{group.lower()}.{version.lower()}.{kind}" if group else f"{version.lower()}.{kind}"


def _ref(model: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{component_name(model) if model != QUANTITY else QUANTITY}"}


class _Converter:
    def __init__(self, definitions: Mapping[str, Mapping[str, Any]]) -> None:
        self.defs = definitions

    def node(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any]
        if "$ref" in schema:
            out = {"allOf": [_ref(schema["$ref"])]}
        elif schema.get("x-kubernetes-int-or-string"):
            out = {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}
        elif schema.get("x-kubelab-quantity"):
            out = {"allOf": [_ref(QUANTITY)]}
        elif schema.get("type") == "array":
            out = {"type": "array", "items": self.node(schema.get("items") or {})}
        elif schema.get("type") == "object" and "additionalProperties" in schema:
            out = {"type": "object", "additionalProperties": self.node(schema["additionalProperties"])}
        elif "type" in schema:
            out = {"type": schema["type"]}
            if schema.get("format"):
                out["format"] = schema["format"]
        else:
            out = {}
        if schema.get("description"):
            out["description"] = schema["description"]
        if "allOf" in out and "description" not in out:
            out = out["allOf"][0]
        return out

    def definition(self, model: str) -> dict[str, Any]:
        schema = self.defs[model]
        properties: dict[str, Any] = {}
        for name, prop in (schema.get("properties") or {}).items():
            converted = self.node(prop)
            meta = PATCH_META.get((model, name))
            if meta is not None:
                converted["x-kubernetes-patch-strategy"] = meta.strategy
                if meta.merge_key:
                    converted["x-kubernetes-patch-merge-key"] = meta.merge_key
            properties[name] = converted
        out: dict[str, Any] = {"type": "object", "properties": properties}
        if schema.get("required"):
            out["required"] = list(schema["required"])
        if schema.get("description"):
            out["description"] = schema["description"]
        return out

    def reachable(self, roots: list[str]) -> list[str]:
        seen: set[str] = set()
        stack = list(roots)
        while stack:
            model = stack.pop()
            if model in seen or model not in self.defs:
                continue
            seen.add(model)
            stack.extend(_refs(self.defs[model]))
        return sorted(seen)


def _refs(schema: Any) -> list[str]:
    found: list[str] = []
    if isinstance(schema, Mapping):
        if "$ref" in schema:
            found.append(schema["$ref"])
        for value in schema.values():
            found.extend(_refs(value))
    elif isinstance(schema, list):
        for value in schema:
            found.extend(_refs(value))
    return found


def _gvk(group: str, version: str, kind: str) -> list[dict[str, str]]:
    return [{"group": group, "kind": kind, "version": version}]


def _param(name: str, where: str, description: str, *, required: bool = False, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": where, "description": description, "required": required, "schema": {"type": kind}}


_WRITE_PARAMS = [
    _param("dryRun", "query", "When present, indicates that modifications should not be persisted."),
    _param(
        "fieldManager",
        "query",
        "fieldManager is a name associated with the actor or entity that is making these changes.",
    ),
    _param(
        "fieldValidation",
        "query",
        "fieldValidation instructs the server on how to handle objects in the"
        " request containing unknown or duplicate fields. Valid values are: Ignore, Warn (default), Strict.",
    ),
]
_LIST_PARAMS = [
    _param("labelSelector", "query", "A selector to restrict the list of returned objects by their labels."),
    _param("fieldSelector", "query", "A selector to restrict the list of returned objects by their fields."),
    _param("limit", "query", "limit is a maximum number of responses to return for a list call.", kind="integer"),
    _param("continue", "query", "The continue option should be set when retrieving more results from the server."),
    _param(
        "resourceVersion",
        "query",
        "resourceVersion sets a constraint on what resource versions a request may be served from.",
    ),
    _param(
        "resourceVersionMatch", "query", "resourceVersionMatch determines how resourceVersion is applied to list calls."
    ),
    _param(
        "watch",
        "query",
        "Watch for changes to the described resources and return them as a stream of add,"
        " update, and remove notifications.",
        kind="boolean",
    ),
    _param(
        "allowWatchBookmarks",
        "query",
        'allowWatchBookmarks requests watch events with type "BOOKMARK".',
        kind="boolean",
    ),
    _param("timeoutSeconds", "query", "Timeout for the list/watch call.", kind="integer"),
    _param(
        "sendInitialEvents", "query", "`sendInitialEvents=true` may be set together with `watch=true`.", kind="boolean"
    ),
]
_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json")


def _response(model: str) -> dict[str, Any]:
    return {"description": "OK", "content": {"application/json": {"schema": _ref(model)}}}


class OpenAPI:
    """Builds (once) and serves the OpenAPI v3 root and group-version documents."""

    def __init__(self, catalog: Catalog, definitions: Mapping[str, Mapping[str, Any]], version: str) -> None:
        self._catalog = catalog
        self._convert = _Converter(definitions)
        self._version = version
        self._documents: dict[str, bytes] = {}

    @staticmethod
    def path_of(group: str, version: str) -> str:
        return f"apis/{group}/{version}" if group else f"api/{version}"

    @cached_property
    def _built(self) -> dict[str, tuple[bytes, str]]:
        out: dict[str, tuple[bytes, str]] = {}
        for group, versions in self._catalog.groups().items():
            for version in versions:
                document = orjson.dumps(self._document(group, version), option=orjson.OPT_SORT_KEYS)
                out[self.path_of(group, version)] = (document, hashlib.sha512(document).hexdigest().upper())
        return out

    def root(self) -> dict[str, Any]:
        return {
            "paths": {
                path: {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
                for path, (_, digest) in sorted(self._built.items())
            }
        }

    def document(self, path: str) -> tuple[bytes, str] | None:
        return self._built.get(path)

    def _document(self, group: str, version: str) -> dict[str, Any]:
        resources = self._catalog.in_group_version(group, version)
        models = self._convert.reachable(
            [r.model for r in resources] + ["V1Scale", "V1Binding", "V1DeleteOptions", "V1Status", _LIST_META]
        )
        schemas: dict[str, Any] = {component_name(m): self._convert.definition(m) for m in models}
        schemas[QUANTITY] = {
            "description": "Quantity is a fixed-point representation of a number, such as 500m or 1Gi.",
            "oneOf": [{"type": "string"}, {"type": "number"}],
        }
        for resource in resources:
            name = component_name(resource.model)
            schemas[name]["x-kubernetes-group-version-kind"] = _gvk(group, version, resource.kind)
            schemas[f"{name}List"] = {
                "type": "object",
                "description": f"{resource.kind}List is a list of {resource.kind} objects.",
                "required": ["items"],
                "properties": {
                    "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema."},
                    "kind": {
                        "type": "string",
                        "description": "Kind is a string value representing the REST resource this object represents.",
                    },
                    "metadata": {"allOf": [_ref(_LIST_META)], "description": "Standard list metadata."},
                    "items": {"type": "array", "items": _ref(resource.model)},
                },
                "x-kubernetes-group-version-kind": _gvk(group, version, resource.list_kind),
            }
        paths: dict[str, Any] = {}
        for resource in resources:
            paths.update(self._paths(resource))
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": self._version},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {"BearerToken": {"type": "apiKey", "name": "authorization", "in": "header"}},
            },
            "security": [{"BearerToken": []}],
        }

    def _paths(self, resource: Resource) -> dict[str, Any]:
        base = f"/{self.path_of(resource.group, resource.version)}"
        collection = (
            f"{base}/namespaces/{{namespace}}/{resource.plural}" if resource.namespaced else f"{base}/{resource.plural}"
        )
        item = f"{collection}/{{name}}"
        gvk = {"group": resource.group, "version": resource.version, "kind": resource.kind}
        tag = resource.group.replace(".", "_") + "_" + resource.version if resource.group else "core_v1"
        op_kind = resource.kind

        def op(
            action: str,
            verb: str,
            model: str,
            *,
            body: bool = False,
            params: list[dict[str, Any]] | None = None,
            patch: bool = False,
        ) -> dict[str, Any]:
            operation: dict[str, Any] = {
                "tags": [tag],
                "operationId": f"{verb}{op_kind}",
                "description": f"{verb} {resource.kind}",
                "parameters": list(params or []),
                "responses": {"200": _response(model), "401": {"description": "Unauthorized"}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            }
            if body:
                content_types = _PATCH_TYPES if patch else ("application/json", "application/yaml")
                schema = {"type": "object"} if patch else _ref(model)
                operation["requestBody"] = {"required": True, "content": {t: {"schema": schema} for t in content_types}}
            return operation

        name_param = _param("name", "path", f"name of the {resource.kind}", required=True)
        ns_param = _param(
            "namespace", "path", "object name and auth scope, such as for teams and projects", required=True
        )
        scope = [ns_param] if resource.namespaced else []
        paths: dict[str, Any] = {
            collection: {
                "parameters": scope,
                "get": op("list", "list", f"{resource.model}", params=_LIST_PARAMS),
                "post": op("post", "create", resource.model, body=True, params=_WRITE_PARAMS),
                "delete": op("deletecollection", "deleteCollection", "V1Status", params=_LIST_PARAMS),
            },
            item: {
                "parameters": [name_param, *scope],
                "get": op("get", "read", resource.model),
                "put": op("put", "replace", resource.model, body=True, params=_WRITE_PARAMS),
                "patch": op("patch", "patch", resource.model, body=True, params=_WRITE_PARAMS, patch=True),
                "delete": op(
                    "delete",
                    "delete",
                    resource.model,
                    params=[
                        _param(
                            "gracePeriodSeconds",
                            "query",
                            "The duration in seconds before the object should be deleted.",
                            kind="integer",
                        ),
                        _param("propagationPolicy", "query", "Whether and how garbage collection will be performed."),
                        _param(
                            "dryRun", "query", "When present, indicates that modifications should not be persisted."
                        ),
                    ],
                ),
            },
        }
        if resource.namespaced:
            paths[f"{base}/{resource.plural}"] = {
                "get": op("list", "listForAllNamespaces", resource.model, params=_LIST_PARAMS)
            }
        for sub in resource.subresources:
            model = {"scale": "V1Scale", "binding": "V1Binding"}.get(sub, resource.model)
            entry: dict[str, Any] = {"parameters": [name_param, *scope]}
            if sub in ("status", "scale"):
                entry["get"] = op("get", f"read{sub.title()}", model)
                entry["put"] = op("put", f"replace{sub.title()}", model, body=True, params=_WRITE_PARAMS)
                entry["patch"] = op("patch", f"patch{sub.title()}", model, body=True, params=_WRITE_PARAMS, patch=True)
            elif sub == "binding":
                entry["post"] = op("post", "createBinding", model, body=True, params=_WRITE_PARAMS)
            elif sub == "finalize":
                entry["put"] = op("put", "replaceFinalize", model, body=True, params=_WRITE_PARAMS)
            paths[f"{item}/{sub}"] = entry
        return paths
