"""A trace laid out as a timeline (pure): one row per span, under its parent, siblings by start time,
each with its offset from the trace's start and its duration in milliseconds, and its events as marks
at their own offsets. The page only draws what this returns, so the layout is tested here.

The input is the collector's answer (``GET /api/v1/traces/{traceId}``): spans with ``start`` and
``end`` in Unix nanoseconds, ``service`` (the component), ``attributes``, ``events`` and ``status``.
A span whose parent is not in the trace (the parent's process did not send it, or not yet) is drawn as
a root, so nothing recorded is hidden.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

Span = Mapping[str, Any]
NS_PER_MS = 1_000_000


class Mark(TypedDict):
    name: str
    offsetMs: float
    attributes: dict[str, Any]


class Row(TypedDict):
    spanId: str
    parentSpanId: str
    name: str
    service: str
    instance: str
    depth: int
    offsetMs: float
    durationMs: float
    status: str
    message: str
    attributes: dict[str, Any]
    events: list[Mark]


class Timeline(TypedDict):
    traceId: str
    totalMs: float
    services: list[str]
    rows: list[Row]


def _ns(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def layout(trace: Mapping[str, Any]) -> Timeline:
    spans: Sequence[Span] = [s for s in trace.get("spans") or [] if isinstance(s, Mapping)]
    if not spans:
        return {"traceId": str(trace.get("traceId") or ""), "totalMs": 0.0, "services": [], "rows": []}
    start = min(_ns(s.get("start")) for s in spans)
    end = max(max(_ns(s.get("end")), _ns(s.get("start"))) for s in spans)
    ids = {str(s.get("spanId") or "") for s in spans}
    children: dict[str, list[Span]] = {}
    for span in spans:
        parent = str(span.get("parentSpanId") or "")
        children.setdefault(parent if parent in ids else "", []).append(span)
    for group in children.values():
        group.sort(key=lambda s: (_ns(s.get("start")), str(s.get("name") or "")))
    rows: list[Row] = []

    def visit(span: Span, depth: int) -> None:
        begin, finish = _ns(span.get("start")), _ns(span.get("end"))
        status = span.get("status") or {}
        rows.append(
            {
                "spanId": str(span.get("spanId") or ""),
                "parentSpanId": str(span.get("parentSpanId") or ""),
                "name": str(span.get("name") or ""),
                "service": str(span.get("service") or "unknown"),
                "instance": str(span.get("instance") or ""),
                "depth": depth,
                "offsetMs": (begin - start) / NS_PER_MS,
                "durationMs": max(0, finish - begin) / NS_PER_MS,
                "status": str(status.get("code") or "UNSET"),
                "message": str(status.get("message") or ""),
                "attributes": dict(span.get("attributes") or {}),
                "events": [
                    {
                        "name": str(event.get("name") or ""),
                        "offsetMs": (_ns(event.get("time")) - start) / NS_PER_MS,
                        "attributes": dict(event.get("attributes") or {}),
                    }
                    for event in span.get("events") or []
                ],
            }
        )
        for child in children.get(str(span.get("spanId") or ""), []):
            visit(child, depth + 1)

    for root in children.get("", []):
        visit(root, 0)
    services = list(dict.fromkeys(row["service"] for row in rows))
    return {
        "traceId": str(trace.get("traceId") or ""),
        "totalMs": (end - start) / NS_PER_MS,
        "services": services,
        "rows": rows,
    }


def trace_id_of(traceparent: str) -> str | None:
    """The trace id of a W3C ``traceparent`` (``00-<32 hex>-<16 hex>-<2 hex>``), or None."""
    parts = traceparent.strip().split("-")
    if len(parts) != 4 or len(parts[1]) != 32:
        return None
    try:
        int(parts[1], 16)
    except ValueError:
        return None
    return None if parts[1] == "0" * 32 else parts[1].lower()
