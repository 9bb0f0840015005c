"""The span as the collector keeps and serves it: a flat JSON shape with the component (the resource's
``service.name``) on every span, so one trace's spans read alone without their OTLP envelope."""

from __future__ import annotations

from typing import TypedDict

AttributeValue = str | int | float | bool | list["AttributeValue"] | dict[str, "AttributeValue"] | None


class EventJSON(TypedDict):
    name: str
    time: int  # unix nanoseconds
    attributes: dict[str, AttributeValue]


class StatusJSON(TypedDict):
    code: str  # OK, ERROR or UNSET
    message: str


class SpanJSON(TypedDict):
    traceId: str  # 32 lower-case hex digits
    spanId: str  # 16 lower-case hex digits
    parentSpanId: str  # empty for a root span
    name: str
    service: str
    instance: str
    kind: str  # INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER or UNSPECIFIED
    start: int  # unix nanoseconds
    end: int
    attributes: dict[str, AttributeValue]
    events: list[EventJSON]
    status: StatusJSON


class TraceSummaryJSON(TypedDict):
    traceId: str
    root: str  # the root span's name (the earliest span's when the root has not arrived)
    service: str
    start: int
    end: int
    spans: int


KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
STATUS_CODES = ("UNSET", "OK", "ERROR")
