"""Decoding an OTLP/HTTP export request, binary protobuf or JSON, into the collector's spans.

Both encodings carry the same ``ExportTraceServiceRequest``; they differ in how they spell it (OTLP's
JSON mapping writes trace and span ids in hex, not base64 as protobuf's own JSON mapping would, and
64-bit integers as strings or numbers), so the JSON one is read by hand and the binary one by the
generated classes of ``opentelemetry-proto``. Both are pure: bytes in, spans out, or ``OtlpError``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from agents.collector.spans import KINDS, STATUS_CODES, AttributeValue, EventJSON, SpanJSON
from agents.machinery.errors import KubelabError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


class OtlpError(KubelabError):
    """An export request that cannot be read (the answer is 400 with this message)."""


# --- protobuf --------------------------------------------------------------------------------------


def _any_value(value: AnyValue) -> AttributeValue:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return _key_values(value.kvlist_value.values)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if which is None:
        return None
    found: AttributeValue = getattr(value, which)
    return found


def _key_values(pairs: Sequence[KeyValue]) -> dict[str, AttributeValue]:
    return {pair.key: _any_value(pair.value) for pair in pairs}


def from_protobuf(body: bytes) -> list[SpanJSON]:
    """The spans of a binary ``ExportTraceServiceRequest``."""
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpError(f"the body is not an ExportTraceServiceRequest: {exc}") from exc
    out: list[SpanJSON] = []
    for resource_spans in request.resource_spans:
        resource = _key_values(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    raise OtlpError(f"span {span.name!r}: a trace id has 16 bytes and a span id 8")
                out.append(
                    _span(
                        resource,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent=span.parent_span_id.hex(),
                        name=span.name,
                        kind=int(span.kind),
                        start=int(span.start_time_unix_nano),
                        end=int(span.end_time_unix_nano),
                        attributes=_key_values(span.attributes),
                        events=[
                            EventJSON(name=e.name, time=int(e.time_unix_nano), attributes=_key_values(e.attributes))
                            for e in span.events
                        ],
                        status=(int(span.status.code), span.status.message),
                    )
                )
    return out


# --- JSON ------------------------------------------------------------------------------------------


def _json_value(value: Any) -> AttributeValue:
    if not isinstance(value, Mapping) or not value:
        return None
    key, inner = next(iter(value.items()))
    if key == "stringValue":
        return str(inner)
    if key == "boolValue":
        return bool(inner)
    if key == "intValue":
        return _integer(inner, "intValue")
    if key == "doubleValue":
        return float(inner)
    if key == "bytesValue":
        return str(inner)
    if key == "arrayValue":
        return [_json_value(v) for v in (inner or {}).get("values") or []]
    if key == "kvlistValue":
        return _json_attributes((inner or {}).get("values"))
    raise OtlpError(f"unknown attribute value {key!r}")


def _json_attributes(pairs: Any) -> dict[str, AttributeValue]:
    if pairs is None:
        return {}
    if not isinstance(pairs, list):
        raise OtlpError("attributes must be a list of {key, value}")
    return {str(p.get("key", "")): _json_value(p.get("value")) for p in pairs if isinstance(p, Mapping)}


def _integer(raw: Any, field: str) -> int:
    """An int64 of OTLP JSON: a number, or (as protobuf's JSON writes 64-bit values) a string."""
    try:
        return int(raw or 0)
    except (TypeError, ValueError) as exc:
        raise OtlpError(f"{field}: {raw!r} is not an integer") from exc


def _hex_id(raw: Any, size: int, field: str, *, required: bool = True) -> str:
    text = str(raw or "").lower()
    if not text and not required:
        return ""
    try:
        if len(bytes.fromhex(text)) != size:
            raise ValueError(text)
    except ValueError as exc:
        raise OtlpError(f"{field}: {raw!r} is not {size * 2} hex digits") from exc
    return text


def _enum(raw: Any, names: Sequence[str], prefix: str) -> int:
    """An enum of OTLP JSON: its number, or (accepted by decoders) its name."""
    if isinstance(raw, str) and not raw.isdigit():
        short = raw.removeprefix(prefix)
        return names.index(short) if short in names else 0
    return _integer(raw, prefix.lower().rstrip("_"))


def from_json(body: bytes) -> list[SpanJSON]:
    """The spans of an ``ExportTraceServiceRequest`` in OTLP's JSON encoding."""
    try:
        request = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise OtlpError(f"the body is not JSON: {exc}") from exc
    if not isinstance(request, Mapping):
        raise OtlpError("the body is not an ExportTraceServiceRequest object")
    out: list[SpanJSON] = []
    try:
        for resource_spans in request.get("resourceSpans") or []:
            resource = _json_attributes((resource_spans.get("resource") or {}).get("attributes"))
            for scope_spans in resource_spans.get("scopeSpans") or []:
                for span in scope_spans.get("spans") or []:
                    status = span.get("status") or {}
                    out.append(
                        _span(
                            resource,
                            trace_id=_hex_id(span.get("traceId"), 16, "traceId"),
                            span_id=_hex_id(span.get("spanId"), 8, "spanId"),
                            parent=_hex_id(span.get("parentSpanId"), 8, "parentSpanId", required=False),
                            name=str(span.get("name") or ""),
                            kind=_enum(span.get("kind"), KINDS, "SPAN_KIND_"),
                            start=_integer(span.get("startTimeUnixNano"), "startTimeUnixNano"),
                            end=_integer(span.get("endTimeUnixNano"), "endTimeUnixNano"),
                            attributes=_json_attributes(span.get("attributes")),
                            events=[
                                EventJSON(
                                    name=str(e.get("name") or ""),
                                    time=_integer(e.get("timeUnixNano"), "timeUnixNano"),
                                    attributes=_json_attributes(e.get("attributes")),
                                )
                                for e in span.get("events") or []
                            ],
                            status=(
                                _enum(status.get("code"), STATUS_CODES, "STATUS_CODE_"),
                                str(status.get("message") or ""),
                            ),
                        )
                    )
    except (AttributeError, TypeError) as exc:  # a list where an object belongs, or the reverse
        raise OtlpError(f"the body is not an ExportTraceServiceRequest: {exc}") from exc
    return out


def _span(
    resource: Mapping[str, AttributeValue],
    *,
    trace_id: str,
    span_id: str,
    parent: str,
    name: str,
    kind: int,
    start: int,
    end: int,
    attributes: dict[str, AttributeValue],
    events: list[EventJSON],
    status: tuple[int, str],
) -> SpanJSON:
    code, message = status
    return SpanJSON(
        traceId=trace_id,
        spanId=span_id,
        parentSpanId=parent,
        name=name,
        service=str(resource.get("service.name") or "unknown"),
        instance=str(resource.get("service.instance.id") or resource.get("host.name") or ""),
        kind=KINDS[kind] if 0 <= kind < len(KINDS) else "UNSPECIFIED",
        start=start,
        end=end,
        attributes=attributes,
        events=sorted(events, key=lambda e: e["time"]),
        status={"code": STATUS_CODES[code] if 0 <= code < len(STATUS_CODES) else "UNSET", "message": message},
    )


def decode(content_type: str, body: bytes) -> list[SpanJSON]:
    """The spans of a request of ``content_type`` (its parameters ignored); OtlpError otherwise."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == PROTOBUF:
        return from_protobuf(body)
    if media == JSON:
        return from_json(body)
    raise OtlpError(f"unsupported content type {media or '(none)'!r}: OTLP/HTTP is {PROTOBUF} or {JSON}")


def is_hex_id(text: str, size: int) -> bool:
    try:
        return len(bytes.fromhex(text)) == size
    except ValueError:
        return False
