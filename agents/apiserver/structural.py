"""The typed walk of an object along its kind's schema, as Kubernetes' JSON decoder goes through its Go types.

Kubernetes decodes a body into Go structs before anything else looks at it, so a value of the wrong JSON
type, an integer outside its int32/int64 range or a malformed quantity, time or base64 string fails there,
with Go's words: ``json: cannot unmarshal array into Go struct field Namespace.metadata of type
v1.ObjectMeta`` (the innermost struct, then the JSON path without indices, then the Go type). This walk
finds the same problems, words them the same way and says where (``Problems.decode``); the caller
(``decoding.py``) turns them into the 400 ``Status``.

On the way it does what decoding into Go types and encoding them again does to an object: explicit
nulls are dropped (Go decodes them to zero values; inside lists and maps they become the zero value),
empty maps and lists are left out (``omitempty``), quantities take their canonical form (``1000m`` is
``1``). Unknown fields are reported (and dropped unless the decoding is strict). Missing required
fields are reported apart (``Problems.missing``): Kubernetes reports those in validation (422), not in
decoding (400).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agents.apiserver.status import FieldError, required
from agents.machinery import quantity

_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_RFC3339 = "2006-01-02T15:04:05Z07:00"  # Go's layout, as its time errors quote it
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_INT_RANGE = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_MODEL_NAME = re.compile(r"^(?:[A-Z][a-z]+)?(V\d+(?:alpha\d+|beta\d+)?)(.+)$")


@dataclass(frozen=True)
class DecodeError:
    """One value Go's decoder would not take: where (with indices and map keys) and Go's message."""

    field: str
    message: str


@dataclass
class Problems:
    unknown: list[str] = field(default_factory=list)  # paths of unknown fields
    decode: list[DecodeError] = field(default_factory=list)  # wrong types, ranges or syntax: 400
    missing: list[FieldError] = field(default_factory=list)  # required fields absent: 422


@dataclass(frozen=True)
class _At:
    """Where the walk is: the path with indices (for people), the Go decoder's field stack (JSON names
    only) and the innermost struct it is in."""

    path: str = ""
    stack: str = ""
    struct: str = ""

    def field(self, name: str, struct: str) -> _At:
        return _At(f"{self.path}.{name}" if self.path else name, f"{self.stack}.{name}" if self.stack else name, struct)

    def item(self, index: int | str) -> _At:
        return _At(f"{self.path}[{index}]", self.stack, self.struct)


def go_name(model: str) -> str:
    """The Go type of a model, as Go prints it: ``V1ObjectMeta`` -> ``v1.ObjectMeta``."""
    match = _MODEL_NAME.match(model)
    if match is None:
        return model
    return f"{match.group(1).lower()}.{match.group(2)}"


def go_type(schema: Mapping[str, Any]) -> str:
    """The Go type a schema node stands for, as Go's decoder names it in its errors."""
    if "$ref" in schema:
        return go_name(str(schema["$ref"]))
    if schema.get("x-kubernetes-int-or-string"):
        return "intstr.IntOrString"
    if schema.get("x-kubelab-quantity"):
        return "resource.Quantity"
    kind = schema.get("type")
    if kind == "array":
        return "[]" + go_type(schema.get("items") or {})
    if kind == "object":
        extra = schema.get("additionalProperties")
        return "map[string]" + (go_type(extra) if isinstance(extra, Mapping) else "interface {}")
    if kind == "string":
        return {"date-time": "v1.Time", "byte": "[]uint8"}.get(schema.get("format", ""), "string")
    if kind == "integer":
        return str(schema.get("format", "int64"))
    return {"number": "float64", "boolean": "bool"}.get(str(kind), "interface {}")


def json_kind(value: Any) -> str:
    """What Go's decoder calls a JSON value in its errors."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return "object"


def _number_text(value: int | float) -> str:
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def _go_quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _zero(schema: Mapping[str, Any]) -> Any:
    """The value a JSON null becomes inside a list or map: the Go type's zero value, as encoded again."""
    if "$ref" in schema:
        return {}
    if schema.get("x-kubernetes-int-or-string"):
        return 0
    if schema.get("x-kubelab-quantity"):
        return "0"
    kind = schema.get("type")
    return {"string": "", "integer": 0, "number": 0, "boolean": False, "object": {}, "array": []}.get(str(kind))


def _base64_error(text: str) -> str | None:
    """Go's error for a string that standard base64 does not decode (line breaks are skipped as Go does)."""
    data = text.replace("\r", "").replace("\n", "")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        match = _BASE64.match(data)
        at = match.end() if match is not None else 0
        if at == len(data):  # every character is fine: the length or the padding is not
            at = len(data) - len(data) % 4 if len(data) % 4 else max(0, len(data) - 1)
        return f"illegal base64 data at input byte {at}"
    return None


def _time_error(text: str) -> str | None:
    if _DATE_TIME.match(text):
        try:
            datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            return f"parsing time {_go_quote(text)}: {exc}"
        return None
    return f"parsing time {_go_quote(text)} as {_go_quote(_RFC3339)}: cannot parse {_go_quote(text)} as RFC 3339"


def _omitted_when_empty(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "array" or (schema.get("type") == "object" and "additionalProperties" in schema)


class Checker:
    """Walks objects along the normalized definitions of ``agents.apiserver.schemas``."""

    def __init__(self, definitions: Mapping[str, Mapping[str, Any]]) -> None:
        self._defs = definitions

    def check(self, model: str, obj: dict[str, Any], *, drop_unknown: bool) -> Problems:
        problems = Problems()
        self._object(self._defs[model], obj, _At(struct=go_name(model).split(".")[-1]), problems, drop_unknown)
        return problems

    # --- problems --------------------------------------------------------------------------------

    def _mismatch(self, problems: Problems, at: _At, what: str, schema: Mapping[str, Any]) -> None:
        """A value Go's decoder cannot put into the field's type (``what``: Go's name for the value)."""
        where = f"Go struct field {at.struct}.{at.stack}" if at.stack else "Go value"
        problems.decode.append(
            DecodeError(at.path, f"json: cannot unmarshal {what} into {where} of type {go_type(schema)}")
        )

    def _value_error(self, problems: Problems, at: _At, message: str) -> None:
        """A value a type's own decoder refused (quantities, times, int-or-string, base64): Go's message
        names no field, so the path goes in front of it."""
        problems.decode.append(DecodeError(at.path, f"{at.path}: {message}" if at.path else message))

    # --- the walk --------------------------------------------------------------------------------

    def _object(
        self, schema: Mapping[str, Any], value: dict[str, Any], at: _At, problems: Problems, drop: bool
    ) -> None:
        props: Mapping[str, Any] = schema.get("properties", {})
        needed = schema.get("required", ())
        for key in list(value):
            sub = value[key]
            if sub is None:
                del value[key]
                continue
            child = at.field(key, at.struct)
            prop = props.get(key)
            if prop is None:
                problems.unknown.append(child.path)
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
                problems.missing.append(required(f"{at.path}.{name}" if at.path else name))

    def _value(self, schema: Mapping[str, Any], value: Any, at: _At, problems: Problems, drop: bool) -> Any:
        ref = schema.get("$ref")
        if ref is not None:
            if not isinstance(value, dict):
                self._mismatch(problems, at, json_kind(value), schema)
                return value
            inner = _At(at.path, at.stack, go_name(str(ref)).split(".")[-1])
            self._object(self._defs[ref], value, inner, problems, drop)
            return value
        if schema.get("x-kubernetes-int-or-string"):
            return self._int_or_string(value, at, problems)
        if schema.get("x-kubelab-quantity"):
            return self._quantity(value, at, problems)
        kind = schema.get("type")
        if kind == "object":
            return self._map(schema, value, at, problems, drop)
        if kind == "array":
            return self._list(schema, value, at, problems, drop)
        if kind == "string":
            return self._string(schema, value, at, problems)
        if kind == "integer":
            return self._integer(schema, value, at, problems)
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                self._mismatch(problems, at, json_kind(value), schema)
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                self._mismatch(problems, at, json_kind(value), schema)
            return value
        return value

    def _map(self, schema: Mapping[str, Any], value: Any, at: _At, problems: Problems, drop: bool) -> Any:
        if not isinstance(value, dict):
            self._mismatch(problems, at, json_kind(value), schema)
            return value
        if "properties" in schema:
            self._object(schema, value, at, problems, drop)
        elif isinstance(schema.get("additionalProperties"), Mapping):
            item = schema["additionalProperties"]
            for key in list(value):
                sub = value[key]
                if sub is None:
                    value[key] = _zero(item)
                    continue
                replaced = self._value(item, sub, at.item(key), problems, drop)
                if replaced is not sub:
                    value[key] = replaced
        return value

    def _list(self, schema: Mapping[str, Any], value: Any, at: _At, problems: Problems, drop: bool) -> Any:
        if not isinstance(value, list):
            self._mismatch(problems, at, json_kind(value), schema)
            return value
        item = schema.get("items") or {}
        for i, sub in enumerate(value):
            if sub is None:
                value[i] = _zero(item)
                continue
            replaced = self._value(item, sub, at.item(i), problems, drop)
            if replaced is not sub:
                value[i] = replaced
        return value

    def _string(self, schema: Mapping[str, Any], value: Any, at: _At, problems: Problems) -> Any:
        if not isinstance(value, str):
            if schema.get("format") == "date-time":
                self._value_error(
                    problems, at, f"json: cannot unmarshal {json_kind(value)} into Go value of type string"
                )
            else:
                self._mismatch(problems, at, json_kind(value), schema)
            return value
        error = None
        if schema.get("format") == "date-time":
            error = _time_error(value)
        elif schema.get("format") == "byte":
            error = _base64_error(value)
        if error is not None:
            self._value_error(problems, at, error)
        return value

    def _integer(self, schema: Mapping[str, Any], value: Any, at: _At, problems: Problems) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._mismatch(problems, at, json_kind(value), schema)
            return value
        low, high = _INT_RANGE[str(schema.get("format", "int64"))]
        if isinstance(value, float) or not low <= value <= high:
            self._mismatch(problems, at, f"number {_number_text(value)}", schema)
        return value

    def _int_or_string(self, value: Any, at: _At, problems: Problems) -> Any:
        if isinstance(value, str):
            return value
        low, high = _INT_RANGE["int32"]
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return value
        what = (
            f"number {_number_text(value)}"
            if isinstance(value, int | float) and not isinstance(value, bool)
            else json_kind(value)
        )
        self._value_error(problems, at, f"json: cannot unmarshal {what} into Go value of type int32")
        return value

    def _quantity(self, value: Any, at: _At, problems: Problems) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self._value_error(problems, at, quantity.MESSAGE)
            return value
        try:
            return quantity.canonical(value)
        except quantity.QuantityError as exc:
            self._value_error(problems, at, str(exc))
            return value
