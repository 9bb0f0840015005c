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

from agents.apiserver import patch
from agents.apiserver.decoding import PARAMETERS
from agents.apiserver.patchmeta import PATCH_META
from agents.apiserver.resources import Catalog, Resource

QUANTITY = "resource.Quantity"
_MODEL_NAME = re.compile(r"^([A-Z][a-z]+)?(V\d+(?:alpha\d+|beta\d+)?)(.+)$")
_LIST_META = "V1ListMeta"
TOKEN_REQUEST = "AuthenticationV1TokenRequest"  # the body and answer of serviceaccounts/NAME/token


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
        if "x-kubelab-openapi" in schema:  # a custom kind's: its definition's schema as written
            return dict(orjson.loads(orjson.dumps(schema["x-kubelab-openapi"])))
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
        if isinstance(schema.get("$ref"), str):  # (JSONSchemaProps has a property named "$ref")
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


def _query(operation: str) -> list[dict[str, Any]]:
    """The query parameters of an operation: what the front door decodes (decoding.PARAMETERS)."""
    return [
        {"name": p.name, "in": "query", "description": p.description, "required": False, "schema": p.schema()}
        for p in PARAMETERS[operation]
    ]


# the patch types a kind takes, as the decoder accepts them; a custom resource's have no strategic merge,
# and kubectl's client-side apply reads this list to choose between a strategic and a JSON merge patch
_PATCH_TYPES = (*patch.PATCH_TYPES, patch.APPLY_PATCH)
_CUSTOM_PATCH_TYPES = (*patch.CUSTOM_PATCH_TYPES, patch.APPLY_PATCH)


def _response(model: str, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _text_response() -> dict[str, Any]:
    return {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}


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

    def refresh(self) -> None:
        """Build the documents again when next asked (the served kinds changed)."""
        self.__dict__.pop("_built", None)

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
        list_model = f"{resource.model}List"

        def op(
            action: str,
            verb: str,
            operation: str,
            model: str,
            *,
            body: str = "",
            also: tuple[str, ...] = (),
        ) -> dict[str, Any]:
            """One operation: ``model`` answers 200 and the codes in ``also`` (201 Created, 202 Accepted);
            ``body`` is the model of its request body, ``patch`` for a patch document."""
            responses: dict[str, Any] = {"200": _response(model)}
            for code in also:
                responses[code] = _response(model, {"201": "Created", "202": "Accepted"}[code])
            responses["401"] = {"description": "Unauthorized"}
            operation_object: dict[str, Any] = {
                "tags": [tag],
                "operationId": f"{verb}{resource.kind}",
                "description": f"{verb} {resource.kind}",
                "parameters": _query(operation),
                "responses": responses,
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            }
            if body:
                patch_types = _CUSTOM_PATCH_TYPES if resource.custom else _PATCH_TYPES
                content_types = patch_types if body == "patch" else ("application/json", "application/yaml")
                schema = {"type": "object"} if body == "patch" else _ref(body)
                operation_object["requestBody"] = {
                    "required": True,
                    "content": {t: {"schema": schema} for t in content_types},
                }
            return operation_object

        name_param = _param("name", "path", f"name of the {resource.kind}", required=True)
        ns_param = _param(
            "namespace", "path", "object name and auth scope, such as for teams and projects", required=True
        )
        scope = [ns_param] if resource.namespaced else []
        model = resource.model
        put_codes = ("201",) if resource.create_on_update else ()
        if resource.review:  # create-only, answered and not stored
            post = op("post", "create", "create", model, body=model, also=("201",))
            return {collection: {"parameters": scope, "post": post}}
        paths: dict[str, Any] = {
            collection: {
                "parameters": scope,
                "get": op("list", "list", "list", list_model),
                "post": op("post", "create", "create", model, body=model, also=("201",)),
                "delete": op("deletecollection", "deleteCollection", "deletecollection", "V1Status"),
            },
            item: {
                "parameters": [name_param, *scope],
                "get": op("get", "read", "get", model),
                "put": op("put", "replace", "update", model, body=model, also=put_codes),
                "patch": op("patch", "patch", "patch", model, body="patch"),
                "delete": op("delete", "delete", "delete", model, also=("202",)),
            },
        }
        if resource.namespaced:
            paths[f"{base}/{resource.plural}"] = {"get": op("list", "listForAllNamespaces", "list", list_model)}
        for sub in resource.subresources:
            entry: dict[str, Any] = {"parameters": [name_param, *scope]}
            if sub in ("status", "scale"):
                sub_model = "V1Scale" if sub == "scale" else model
                title = sub.title()
                entry["get"] = op("get", f"read{title}", "get", sub_model)
                entry["put"] = op("put", f"replace{title}", "update", sub_model, body=sub_model)
                entry["patch"] = op("patch", f"patch{title}", "patch", sub_model, body="patch")
            elif sub == "binding":
                entry["post"] = op("post", "createBinding", "create", "V1Status", body="V1Binding", also=("201",))
            elif sub == "eviction":
                entry["post"] = op("post", "createEviction", "create", "V1Status", body="V1Eviction", also=("201",))
            elif sub == "token":
                entry["post"] = op("post", "createToken", "create", TOKEN_REQUEST, body=TOKEN_REQUEST, also=("201",))
            elif sub == "finalize":
                entry["put"] = op("put", "replaceFinalize", "update", model, body=model)
            elif sub == "log":
                entry["get"] = {**op("get", "readLog", "log", model), "responses": {"200": _text_response()}}
            elif sub in ("exec", "attach", "portforward"):
                entry["get"] = {
                    **op("connect", f"connectGet{sub.title()}", sub, model),
                    "responses": {"200": _text_response()},
                }
                entry["post"] = {
                    **op("connect", f"connectPost{sub.title()}", sub, model),
                    "responses": {"200": _text_response()},
                }
            paths[f"{item}/{sub}"] = entry
        return paths
