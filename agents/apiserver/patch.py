"""PATCH in the three forms kubectl sends: JSON patch, JSON merge patch and strategic merge patch.

Strategic merge follows apimachinery's rules: lists marked ``merge`` in ``patchmeta`` merge by their
key (containers by name, ports by containerPort, ...), lists of primitives with that strategy merge
as sets, every other list is replaced; the directives ``$patch`` (replace, delete, merge),
``$retainKeys``, ``$setElementOrder/<list>`` and ``$deleteFromPrimitiveList/<list>`` are honoured.
The type of each nested value is found by walking the kind's model definitions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonpatch

from agents.apiserver.patchmeta import PATCH_META, PatchMeta
from agents.apiserver.status import StatusError, bad_request
from agents.machinery.objects import deep_copy

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH)
CUSTOM_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH)  # a custom resource's: no strategic-merge metadata to go by

_DIRECTIVE = "$patch"
_RETAIN = "$retainKeys"
_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def unprocessable(message: str) -> StatusError:
    return StatusError(422, "Invalid", message)


# --- JSON patch and merge patch -------------------------------------------------------------------


def pins_version(patch: Any) -> bool:
    """Whether a patch names a resourceVersion (a precondition: it must not be retried on a newer
    object). A JSON patch pins one with any operation on /metadata/resourceVersion."""
    if isinstance(patch, list):
        return any(isinstance(op, Mapping) and op.get("path") == "/metadata/resourceVersion" for op in patch)
    if isinstance(patch, Mapping):
        meta = patch.get("metadata")
        return isinstance(meta, Mapping) and meta.get("resourceVersion") is not None
    return False


def json_patch(doc: dict[str, Any], patch: Any) -> dict[str, Any]:
    if not isinstance(patch, list):
        raise bad_request("json patch must be a list of operations")
    try:
        result = jsonpatch.apply_patch(doc, patch, in_place=False)
    except jsonpatch.JsonPatchConflict as exc:
        raise unprocessable(f"the server rejected our request due to an error in our request: {exc}") from exc
    except jsonpatch.JsonPatchTestFailed as exc:
        raise unprocessable(f"the server rejected our request due to an error in our request: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
        raise bad_request(f"invalid JSON patch: {exc}") from exc
    if not isinstance(result, dict):
        raise bad_request("the patched document is not an object")
    return result


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, Mapping):
        return deep_copy(patch)
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# --- strategic merge -----------------------------------------------------------------------------


class _Types:
    """Resolves the model of nested fields, starting from a kind's model."""

    def __init__(self, definitions: Mapping[str, Mapping[str, Any]]) -> None:
        self._defs = definitions

    def field(self, model: str | None, name: str) -> tuple[str | None, str | None, PatchMeta | None]:
        """(model of the field's value, model of its list items, patch metadata) for ``model.name``."""
        if model is None:
            return None, None, None
        schema = ((self._defs.get(model) or {}).get("properties") or {}).get(name) or {}
        meta = PATCH_META.get((model, name))
        if "$ref" in schema:
            return schema["$ref"], None, meta
        if schema.get("type") == "array":
            items = schema.get("items") or {}
            return None, items.get("$ref"), meta
        if schema.get("type") == "object" and "additionalProperties" in schema:
            return None, None, meta
        return None, None, meta


def strategic_merge(
    definitions: Mapping[str, Mapping[str, Any]], model: str, original: dict[str, Any], patch: Any
) -> dict[str, Any]:
    if not isinstance(patch, Mapping):
        raise bad_request("strategic merge patch must be a JSON object")
    result = _merge_map(_Types(definitions), model, deep_copy(original), patch)
    if not isinstance(result, dict):
        raise bad_request("the patched document is not an object")
    return result


def _merge_map(types: _Types, model: str | None, original: Any, patch: Mapping[str, Any]) -> Any:
    directive = patch.get(_DIRECTIVE)
    if directive == "replace":
        return {k: deep_copy(v) for k, v in patch.items() if k != _DIRECTIVE}
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise bad_request(f"Unknown patch type: {directive}")
    out: dict[str, Any] = dict(original) if isinstance(original, Mapping) else {}
    orders: dict[str, list[Any]] = {}
    retain = patch.get(_RETAIN)
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN):
            continue
        if key.startswith(_ORDER):
            orders[key[len(_ORDER) :]] = list(value or [])
            continue
        if key.startswith(_DELETE_PRIMITIVE):
            target = key[len(_DELETE_PRIMITIVE) :]
            if isinstance(out.get(target), list):
                out[target] = [item for item in out[target] if item not in (value or [])]
            continue
        if value is None:
            out.pop(key, None)
            continue
        sub_model, item_model, meta = types.field(model, key)
        current = out.get(key)
        if isinstance(value, Mapping):
            merged = _merge_map(types, sub_model, current, value)
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        elif isinstance(value, list) and meta is not None and "merge" in meta.strategy.split(","):
            out[key] = _merge_list(types, item_model, meta, current if isinstance(current, list) else [], value)
        else:
            out[key] = deep_copy(value)
    for key, order in orders.items():
        if isinstance(out.get(key), list):
            _, _, meta = types.field(model, key)
            out[key] = _apply_order(out[key], order, meta.merge_key if meta else "")
    if retain is not None:
        keep = set(retain)
        out = {k: v for k, v in out.items() if k in keep}
    return out


def _merge_list(
    types: _Types, item_model: str | None, meta: PatchMeta, original: list[Any], patch: list[Any]
) -> list[Any]:
    key = meta.merge_key
    if any(isinstance(p, Mapping) and p.get(_DIRECTIVE) == "replace" for p in patch):
        return [deep_copy(p) for p in patch if not (isinstance(p, Mapping) and p.get(_DIRECTIVE) == "replace")]
    if not key:  # a set of primitives
        out = list(original)
        for item in patch:
            if item not in out:
                out.append(deep_copy(item))
        return out
    out = [deep_copy(item) for item in original]
    for item in patch:
        if not isinstance(item, Mapping):
            raise bad_request(f"list items merged by {key!r} must be objects")
        if key not in item:
            raise bad_request(f"map: {dict(item)} does not contain declared merge key: {key}")
        index = next(
            (i for i, existing in enumerate(out) if isinstance(existing, Mapping) and existing.get(key) == item[key]),
            None,
        )
        if item.get(_DIRECTIVE) == "delete":
            if index is not None:
                del out[index]
            continue
        if index is None:
            merged = _merge_map(types, item_model, {}, item)
            if merged is not None:
                out.append(merged)
        else:
            merged = _merge_map(types, item_model, out[index], item)
            if merged is None:
                del out[index]
            else:
                out[index] = merged
    return out


def _apply_order(items: list[Any], order: list[Any], key: str) -> list[Any]:
    def ident(item: Any) -> Any:
        if key and isinstance(item, Mapping):
            return item.get(key)
        return item

    wanted = [ident(o) for o in order]
    position = {value: i for i, value in enumerate(wanted)}
    ordered = sorted((i for i in items if ident(i) in position), key=lambda i: position[ident(i)])
    rest = [i for i in items if ident(i) not in position]
    return ordered + rest
