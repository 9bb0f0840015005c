"""What the API answers with when a request fails: Kubernetes ``Status`` objects.

``FieldError`` is one problem with one field, in the shape and wording of Kubernetes' field errors;
``StatusError`` is a failed request that renders itself as a ``Status`` with the HTTP code, the
reason and, for invalid objects, the causes. The builders below word each reason's message as
kube-apiserver does, so clients (kubectl above all) print what they print against a real server.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agents.machinery.errors import KubelabError


@dataclass(frozen=True)
class FieldError:
    """One problem with one field, in the shape of Kubernetes' field.Error."""

    type: str  # FieldValueRequired, FieldValueInvalid, ...
    field: str
    detail: str = ""
    value: Any = None
    has_value: bool = False

    def message(self) -> str:
        """The text Kubernetes prints after the field path."""
        base = _FIELD_ERROR_TEXT.get(self.type, self.type)
        if self.type in ("FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong"):
            text = base
        elif self.has_value:
            text = f"{base}: {_go_quote(self.value)}"
        else:
            text = base
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def render(self) -> str:
        return f"{self.field}: {self.message()}" if self.field else self.message()


_FIELD_ERROR_TEXT = {
    "FieldValueRequired": "Required value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "FieldValueNotFound": "Not found",
    "FieldValueTypeInvalid": "Invalid value",
}


def _go_quote(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def go_quote(text: str) -> str:
    """``text`` quoted as Go's strconv.Quote does: control and non-printable characters escaped."""
    out = []
    for char in text:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        elif char in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(char)])
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", field, detail)


def invalid(field: str, value: Any, detail: str = "") -> FieldError:
    return FieldError("FieldValueInvalid", field, detail, value, True)


def not_supported(field: str, value: Any, supported: Sequence[str]) -> FieldError:
    detail = "supported values: " + ", ".join(f'"{s}"' for s in supported) if supported else ""
    return FieldError("FieldValueNotSupported", field, detail, value, True)


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", field, "", value, True)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", field, detail)


def too_long(field: str, limit: int) -> FieldError:
    return FieldError("FieldValueTooLong", field, f"may not be more than {limit} bytes")


class StatusError(KubelabError):
    """An API failure that renders as a Kubernetes Status object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            out["details"] = self.details
        return out


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def _details(name: str, group: str, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "kind": kind}
    if group:
        out["group"] = group
    return out


def not_found(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(
        404,
        "NotFound",
        f'{_qualified(resource, group)} "{name}" not found',
        details=_details(name, group, resource),
    )


def already_exists(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(
        409,
        "AlreadyExists",
        f'{_qualified(resource, group)} "{name}" already exists',
        details=_details(name, group, resource),
    )


def conflict(resource: str, name: str, group: str = "", detail: str = "") -> StatusError:
    detail = detail or "the object has been modified; please apply your changes to the latest version and try again"
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {detail}',
        details=_details(name, group, resource),
    )


def invalid_object(kind: str, name: str, group: str, errors: Sequence[FieldError]) -> StatusError:
    rendered = [e.render() for e in errors]
    summary = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    details = _details(name, group, kind)
    details["causes"] = [{"reason": e.type, "message": e.message(), "field": e.field} for e in errors]
    return StatusError(422, "Invalid", f'{_qualified(kind, group)} "{name}" is invalid: {summary}', details=details)


def bad_request(message: str, causes: Sequence[FieldError] = ()) -> StatusError:
    details = None
    if causes:
        details = {"causes": [{"reason": c.type, "message": c.message(), "field": c.field} for c in causes]}
    return StatusError(400, "BadRequest", message, details=details)


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def forbidden_object(resource: str, group: str, name: str, message: str) -> StatusError:
    """403 for one resource (and object, when named): ``pods "x" is forbidden: MESSAGE`` (kube's NewForbidden)."""
    qualified = _qualified(resource, group)
    subject = f'{qualified} "{name}"' if name else qualified
    details: dict[str, Any] = {"group": group, "kind": resource, **({"name": name} if name else {})}
    return StatusError(403, "Forbidden", f"{subject} is forbidden: {message}", details=details)


def forbidden_request(message: str) -> StatusError:
    return StatusError(403, "Forbidden", message)


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def not_acceptable(message: str) -> StatusError:
    return StatusError(406, "NotAcceptable", message)


def unsupported_media_type(content_type: str, accepted: Sequence[str]) -> StatusError:
    return StatusError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format ({content_type or 'none'})"
        f" - accepted media types include: {', '.join(accepted)}",
    )


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def too_large_resource_version(requested: int, current: int) -> StatusError:
    return StatusError(
        504,
        "Timeout",
        f"Too large resource version: {requested}, current: {current}",
        details={
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        },
        retry_after=1,
    )


def internal(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")


def unavailable(message: str) -> StatusError:
    return StatusError(503, "ServiceUnavailable", message, retry_after=1)


def path_not_found() -> StatusError:
    return StatusError(404, "NotFound", "the server could not find the requested resource")
