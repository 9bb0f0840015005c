"""Structural checking of a request body against its kind's schema, as Kubernetes' decoder does.

Rejects values of the wrong JSON type and unknown fields (or drops them, per ``fieldValidation``),
drops explicit nulls (Go decodes them to zero values) and empty maps and lists (Go's ``omitempty``
leaves them out), checks base64 and quantity syntax, and rewrites quantities in canonical form.
Missing required fields are reported separately because Kubernetes reports them as validation
errors (422), not decoding errors (400).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agents.apiserver.status import FieldError, invalid, required
from agents.machinery import quantity

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


@dataclass
class Problems:
    unknown: list[str] = field(default_factory=list)  # paths of unknown fields
    decode: list[FieldError] = field(default_factory=list)  # wrong types or syntax: 400
    missing: list[FieldError] = field(default_factory=list)  # required fields absent: 422


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _omitted_when_empty(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "array" or (schema.get("type") == "object" and "additionalProperties" in schema)


class Checker:
    """Walks objects along the normalized definitions of ``agents.apiserver.schemas``."""

    def __init__(self, definitions: Mapping[str, Mapping[str, Any]]) -> None:
        self._defs = definitions

    def check(self, model: str, obj: dict[str, Any], *, drop_unknown: bool) -> Problems:
        problems = Problems()
        self._object(self._defs[model], obj, "", problems, drop_unknown)
        return problems

    def _type_error(self, problems: Problems, path: str, value: Any, expected: str) -> None:
        problems.decode.append(
            FieldError(
                "FieldValueTypeInvalid",
                path,
                f"cannot unmarshal {_json_type(value)} into field {path} of type {expected}",
            )
        )

    def _object(
        self, schema: Mapping[str, Any], value: dict[str, Any], path: str, problems: Problems, drop: bool
    ) -> None:
        props: Mapping[str, Any] = schema.get("properties", {})
        needed = schema.get("required", ())
        for key in list(value):
            sub = value[key]
            child = f"{path}.{key}" if path else key
            if sub is None:
                del value[key]
                continue
            prop = props.get(key)
            if prop is None:
                problems.unknown.append(child)
                if drop:
                    del value[key]
                continue
            replaced = self._value(prop, sub, child, problems, drop)
            if replaced is not sub:
                value[key] = replaced
            if not replaced and type(replaced) in (dict, list) and _omitted_when_empty(prop) and key not in needed:
                del value[key]  # Go's omitempty: empty maps and lists are not kept
        for name in needed:
            if name not in value:
                problems.missing.append(required(f"{path}.{name}" if path else name))

    def _value(self, schema: Mapping[str, Any], value: Any, path: str, problems: Problems, drop: bool) -> Any:
        ref = schema.get("$ref")
        if ref is not None:
            if not isinstance(value, dict):
                self._type_error(problems, path, value, "object")
                return value
            self._object(self._defs[ref], value, path, problems, drop)
            return value
        if schema.get("x-kubernetes-int-or-string"):
            if isinstance(value, bool) or not isinstance(value, int | str):
                self._type_error(problems, path, value, "int-or-string")
            return value
        if schema.get("x-kubelab-quantity"):
            try:
                return quantity.canonical(value)
            except quantity.QuantityError as exc:
                problems.decode.append(invalid(path, value, str(exc)))
                return value
        kind = schema.get("type")
        if kind == "object":
            if not isinstance(value, dict):
                self._type_error(problems, path, value, "object")
                return value
            if "properties" in schema:
                self._object(schema, value, path, problems, drop)
            elif "additionalProperties" in schema:
                item = schema["additionalProperties"]
                for key in list(value):
                    sub = value[key]
                    if sub is None:
                        value[key] = "" if item.get("type") == "string" else sub
                        continue
                    replaced = self._value(item, sub, f"{path}[{key}]", problems, drop)
                    if replaced is not sub:
                        value[key] = replaced
            return value
        if kind == "array":
            if not isinstance(value, list):
                self._type_error(problems, path, value, "array")
                return value
            item = schema.get("items") or {}
            for i, sub in enumerate(value):
                if sub is None:
                    continue
                replaced = self._value(item, sub, f"{path}[{i}]", problems, drop)
                if replaced is not sub:
                    value[i] = replaced
            return value
        if kind == "string":
            if not isinstance(value, str):
                self._type_error(problems, path, value, "string")
            elif schema.get("format") == "date-time" and not _DATE_TIME.match(value):
                problems.decode.append(invalid(path, value, "must be an RFC 3339 timestamp"))
            elif schema.get("format") == "byte":
                try:
                    base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    problems.decode.append(invalid(path, "<value omitted>", "illegal base64 data"))
            return value
        if kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    return int(value)
                self._type_error(problems, path, value, "integer")
            return value
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                self._type_error(problems, path, value, "number")
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                self._type_error(problems, path, value, "boolean")
            return value
        return value
