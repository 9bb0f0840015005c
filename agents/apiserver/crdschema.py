"""Structural schemas of custom resources: the checks on a definition's schema, and what it does to objects.

A CustomResourceDefinition's ``openAPIV3Schema`` is all the API server knows of its kind, so it plays
the part Go types play for built-in kinds, in the order kube's apiextensions-apiserver applies it:
unknown fields are pruned (except under ``x-kubernetes-preserve-unknown-fields``), ``default`` values
fill what is missing, and the object is validated (type, required, enum, minimum/maximum, pattern,
length and item bounds, ``nullable``, ``x-kubernetes-int-or-string``). Errors name the field path and
use kube's words (``spec.replicas in body must be of type integer: "string"``).

``structural_errors`` is the other side: a v1 definition's schema must be structural (a ``type`` at
every level, ``items`` for arrays), as kube requires before it serves anything from it.

Everything here is pure: objects in, objects or errors out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from agents.apiserver.status import FieldError, forbidden, invalid, not_supported, required
from agents.machinery.objects import Object, deep_copy

Schema = Mapping[str, Any]
Errors = list[FieldError]

PRESERVE = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING = "x-kubernetes-int-or-string"
EMBEDDED = "x-kubernetes-embedded-resource"
TYPES = ("array", "boolean", "integer", "number", "object", "string")
ROOT_FIELDS = ("apiVersion", "kind", "metadata")  # typed by the API server, never by the schema
STRUCTURAL = "x-kubelab-structural"  # in a decoder definition: the schema whose unknown fields it reports


# --- the definition's side: is the schema structural? --------------------------------------------


def structural_errors(schema: Any, path: str) -> Errors:
    """What keeps ``schema`` (at ``path`` in the definition) from being structural."""
    if not isinstance(schema, Mapping):
        return [invalid(path, schema, "must be an object")]
    out: Errors = []
    if schema.get("type") != "object":
        if not schema.get("type"):
            out.append(required(f"{path}.type", "must not be empty at the root"))
        else:
            out.append(not_supported(f"{path}.type", schema.get("type"), ["object"]))
    out += _node_errors(schema, path, root=True)
    return out


def _node_errors(schema: Mapping[str, Any], path: str, *, root: bool = False) -> Errors:
    out: Errors = []
    kind = schema.get("type")
    if kind is not None and kind not in TYPES:
        out.append(not_supported(f"{path}.type", kind, TYPES))
    if schema.get(PRESERVE) is False:
        out.append(invalid(f"{path}.{PRESERVE}", False, "must be true or undefined"))
    if "$ref" in schema:
        out.append(forbidden(f"{path}.$ref", "$ref is not supported"))
    if "pattern" in schema:
        try:
            re.compile(str(schema["pattern"]))
        except re.error as exc:
            out.append(
                invalid(f"{path}.pattern", schema["pattern"], f"must be a valid regular expression, but isn't: {exc}")
            )
    if schema.get(INT_OR_STRING) and kind:
        out.append(forbidden(f"{path}.type", "must be empty if x-kubernetes-int-or-string is true"))
    properties = schema.get("properties") or {}
    if properties and schema.get("additionalProperties") not in (None, False):
        out.append(
            forbidden(f"{path}.additionalProperties", "additionalProperties and properties are mutual exclusive")
        )
    if properties and kind not in ("object", None):
        out.append(forbidden(f"{path}.properties", "must not be specified for a non-object type"))
    for name, sub in properties.items():
        where = f"{path}.properties[{name}]"
        if not isinstance(sub, Mapping):
            out.append(invalid(where, sub, "must be an object"))
            continue
        if root and name == "metadata":
            extra = sorted(set(sub.get("properties") or {}) - {"name", "generateName"})
            if extra:
                out.append(
                    forbidden(f"{where}.properties", "must not specify anything other than name and generateName")
                )
        if not sub.get("type") and not (sub.get(INT_OR_STRING) or sub.get(PRESERVE)):
            out.append(required(f"{where}.type", "must not be empty for specified object fields"))
        out += _node_errors(sub, where)
    extra_schema = schema.get("additionalProperties")
    if isinstance(extra_schema, Mapping):
        where = f"{path}.additionalProperties"
        if not extra_schema.get("type") and not (extra_schema.get(INT_OR_STRING) or extra_schema.get(PRESERVE)):
            out.append(required(f"{where}.type", "must not be empty for specified object fields"))
        out += _node_errors(extra_schema, where)
    if kind == "array":
        items = schema.get("items")
        if not isinstance(items, Mapping):
            out.append(required(f"{path}.items", "must be specified"))
        else:
            if not items.get("type") and not (items.get(INT_OR_STRING) or items.get(PRESERVE)):
                out.append(required(f"{path}.items.type", "must not be empty for specified array items"))
            out += _node_errors(items, f"{path}.items")
    return out


# --- the object's side: prune, default, validate --------------------------------------------------


def _children(schema: Schema) -> tuple[Mapping[str, Any], Mapping[str, Any] | None]:
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    return properties, extra if isinstance(extra, Mapping) else None


def prune(obj: Object, schema: Schema) -> Object:
    """``obj`` without the fields its schema does not name, nor nulls in fields that are not
    ``nullable`` (in place, and returned); the root's apiVersion, kind and metadata stay."""
    _prune(obj, schema, root=True)
    return obj


def unknown_fields(obj: Object, schema: Schema) -> list[str]:
    """The paths of the fields pruning would remove beneath the root's own (``spec.replicaz``,
    ``spec.ports[0].nmae``): what kube reports as unknown fields of a custom resource (a warning, or
    a refusal under ``fieldValidation=Strict``). ``obj`` is left as it is."""
    found: list[str] = []
    _prune(obj, schema, root=True, found=found)
    return found


def _prune(value: Any, schema: Schema, *, root: bool = False, path: str = "", found: list[str] | None = None) -> None:
    """Prune ``value`` in place; or, with ``found``, only list what would go there (nested fields)."""
    if isinstance(value, dict):
        properties, extra = _children(schema)
        keep_unknown = bool(schema.get(PRESERVE)) or schema.get("additionalProperties") is True
        for key in list(value):
            if root and key in ROOT_FIELDS:
                continue
            where = f"{path}.{key}" if path else str(key)
            if key in properties:
                if value[key] is None and not properties[key].get("nullable"):
                    if found is None:
                        del value[key]  # a null where null is not allowed goes (and the default, if any, comes)
                else:
                    _prune(value[key], properties[key], path=where, found=found)
            elif extra is not None:
                _prune(value[key], extra, path=where, found=found)
            elif not keep_unknown and not schema.get(EMBEDDED):
                if found is None:
                    del value[key]
                elif not root:  # the root's unknown fields are the decoder's to report
                    found.append(where)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for i, item in enumerate(value):
                _prune(item, items, path=f"{path}[{i}]", found=found)


def apply_defaults(obj: Object, schema: Schema) -> Object:
    """``obj`` with the schema's ``default`` values where fields are missing (in place, and returned)."""
    _default(obj, schema)
    return obj


def _default(value: Any, schema: Schema) -> None:
    if isinstance(value, dict):
        properties, extra = _children(schema)
        for key, sub in properties.items():
            if "default" in sub and (key not in value or (value[key] is None and not sub.get("nullable"))):
                value[key] = deep_copy(sub["default"])
            if key in value:
                _default(value[key], sub)
        if extra is not None:
            for item in value.values():
                _default(item, extra)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for item in value:
                _default(item, items)


def type_invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueTypeInvalid", path, detail, value, True)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(kind: str, value: Any) -> bool:
    actual = _json_type(value)
    if kind == "number":
        return actual in ("integer", "number")
    if kind == "integer" and actual == "number":
        return bool(math.isfinite(value) and float(value).is_integer())
    return actual == kind


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def validate(obj: Object, schema: Schema) -> Errors:
    """What is wrong with ``obj`` by its schema (apiVersion, kind and metadata are checked elsewhere)."""
    out: Errors = []
    properties = schema.get("properties") or {}
    for name in schema.get("required") or ():
        if name not in obj and name not in ROOT_FIELDS:
            out.append(required(name))
    for key, value in obj.items():
        if key in ROOT_FIELDS or key not in properties:
            continue
        out += _validate(value, properties[key], key)
    return out


def _validate(value: Any, schema: Schema, path: str) -> Errors:
    if value is None:
        if schema.get("nullable"):
            return []
        kind = schema.get("type")
        if kind:
            return [type_invalid(path, _json_type(value), f'{path} in body must be of type {kind}: "null"')]
        return []
    if schema.get(INT_OR_STRING):
        if not isinstance(value, int | str) or isinstance(value, bool):
            return [
                type_invalid(
                    path, _json_type(value), f'{path} in body must be of type integer,string: "{_json_type(value)}"'
                )
            ]
        return []
    kind = schema.get("type")
    if kind and not _type_ok(str(kind), value):
        return [type_invalid(path, _json_type(value), f'{path} in body must be of type {kind}: "{_json_type(value)}"')]
    out: Errors = []
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        out.append(not_supported(path, value, [_enum_text(e) for e in enum]))
    if isinstance(value, int | float) and not isinstance(value, bool):
        out += _bounds(value, schema, path)
    elif isinstance(value, str):
        out += _string(value, schema, path)
    elif isinstance(value, list):
        out += _array(value, schema, path)
    elif isinstance(value, dict):
        out += _object(value, schema, path)
    return out


def _enum_text(value: Any) -> str:
    return value if isinstance(value, str) else _number(value) if isinstance(value, int | float) else str(value)


def _bounds(value: int | float, schema: Schema, path: str) -> Errors:
    out: Errors = []
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None:
        if schema.get("exclusiveMinimum") and value <= low:
            out.append(invalid(path, value, f"{path} in body should be greater than {_number(low)}"))
        elif value < low:
            out.append(invalid(path, value, f"{path} in body should be greater than or equal to {_number(low)}"))
    if high is not None:
        if schema.get("exclusiveMaximum") and value >= high:
            out.append(invalid(path, value, f"{path} in body should be less than {_number(high)}"))
        elif value > high:
            out.append(invalid(path, value, f"{path} in body should be less than or equal to {_number(high)}"))
    step = schema.get("multipleOf")
    if step and (value / step) != int(value / step):
        out.append(invalid(path, value, f"{path} in body should be a multiple of {_number(step)}"))
    return out


def _string(value: str, schema: Schema, path: str) -> Errors:
    out: Errors = []
    longest, shortest = schema.get("maxLength"), schema.get("minLength")
    if longest is not None and len(value) > longest:
        out.append(FieldError("FieldValueTooLong", path, f"may not be more than {longest} bytes", value, True))
    if shortest is not None and len(value) < shortest:
        out.append(invalid(path, value, f"{path} in body should be at least {shortest} chars long"))
    pattern = schema.get("pattern")
    if pattern is not None:
        try:
            matched = re.search(str(pattern), value) is not None
        except re.error:
            matched = True  # not reached: the definition's check refuses a pattern that does not compile
        if not matched:
            out.append(invalid(path, value, f"{path} in body should match '{pattern}'"))
    return out


def _array(value: list[Any], schema: Schema, path: str) -> Errors:
    out: Errors = []
    most, least = schema.get("maxItems"), schema.get("minItems")
    if most is not None and len(value) > most:
        out.append(FieldError("FieldValueTooMany", path, f"must have at most {most} items", len(value), True))
    if least is not None and len(value) < least:
        out.append(invalid(path, value, f"{path} in body should have at least {least} items"))
    if schema.get("uniqueItems"):
        seen: list[Any] = []
        for item in value:
            if item in seen:
                out.append(FieldError("FieldValueDuplicate", path, "", item, True))
                break
            seen.append(item)
    items = schema.get("items")
    if isinstance(items, Mapping):
        for i, item in enumerate(value):
            out += _validate(item, items, f"{path}[{i}]")
    return out


def _object(value: dict[str, Any], schema: Schema, path: str) -> Errors:
    out: Errors = []
    properties, extra = _children(schema)
    for name in schema.get("required") or ():
        if name not in value:
            out.append(required(f"{path}.{name}"))
    most, least = schema.get("maxProperties"), schema.get("minProperties")
    if most is not None and len(value) > most:
        out.append(FieldError("FieldValueTooMany", path, f"must have at most {most} items", len(value), True))
    if least is not None and len(value) < least:
        out.append(invalid(path, value, f"{path} in body should have at least {least} properties"))
    for key, sub in value.items():
        if key in properties:
            out += _validate(sub, properties[key], f"{path}.{key}")
        elif extra is not None:
            out += _validate(sub, extra, f"{path}.{key}")
    return out
