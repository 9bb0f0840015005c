"""The spans the collector keeps: bounded in memory, indexed by trace id.

Traces are kept whole where possible: when the bound on spans is passed, the trace updated least
recently goes first (a trace grows for as long as its object is being worked on, so the one that has
not grown longest is the one nobody is watching); a trace whose last span arrived longer ago than the
age bound goes too. A span that arrives again (an exporter's retry) replaces the copy kept. Pure: time
is passed in, nothing here does I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from agents.collector.spans import SpanJSON, TraceSummaryJSON


@dataclass
class _Trace:
    spans: dict[str, SpanJSON]  # by span id, in arrival order
    updated: float  # when its last span arrived


class TraceStore:
    def __init__(self, *, max_spans: int = 100_000, max_age: float = 7200.0) -> None:
        if max_spans < 1:
            raise ValueError("max_spans must be at least 1")
        self.max_spans = max_spans
        self.max_age = max_age
        self._traces: OrderedDict[str, _Trace] = OrderedDict()  # least recently updated first
        self._count = 0

    def __len__(self) -> int:
        """The number of spans kept."""
        return self._count

    def add(self, spans: list[SpanJSON], *, now: float) -> None:
        """Keep ``spans`` (received at ``now``), then drop what the bounds no longer allow."""
        for span in spans:
            trace = self._traces.get(span["traceId"])
            if trace is None:
                trace = self._traces[span["traceId"]] = _Trace({}, now)
            if span["spanId"] not in trace.spans:
                self._count += 1
            trace.spans[span["spanId"]] = span
            trace.updated = now
            self._traces.move_to_end(span["traceId"])
        self.expire(now=now)

    def expire(self, *, now: float) -> None:
        """Drop traces not updated within ``max_age``, then the least recently updated ones beyond
        ``max_spans``; the last trace standing loses its oldest spans instead."""
        while self._traces:
            trace_id, trace = next(iter(self._traces.items()))
            if now - trace.updated <= self.max_age and self._count <= self.max_spans:
                break
            if len(self._traces) == 1 and now - trace.updated <= self.max_age:
                for span_id in list(trace.spans)[: self._count - self.max_spans]:
                    del trace.spans[span_id]
                self._count = len(trace.spans)
                break
            del self._traces[trace_id]
            self._count -= len(trace.spans)

    def trace(self, trace_id: str) -> list[SpanJSON] | None:
        """One trace's spans, earliest start first; None when none of its spans is kept."""
        found = self._traces.get(trace_id.lower())
        if found is None:
            return None
        return sorted(found.spans.values(), key=lambda s: (s["start"], s["end"]))

    def recent(self, limit: int = 20) -> list[TraceSummaryJSON]:
        """The ``limit`` traces that started last, newest first, summarized."""
        summaries = [summary(trace_id, list(t.spans.values())) for trace_id, t in self._traces.items()]
        summaries.sort(key=lambda s: s["start"], reverse=True)
        return summaries[: max(0, limit)]


def summary(trace_id: str, spans: list[SpanJSON]) -> TraceSummaryJSON:
    """A trace in one line: its root (or, until the root arrives, its earliest span), start and end."""
    ids = {s["spanId"] for s in spans}
    earliest = sorted(spans, key=lambda s: s["start"])
    roots = [s for s in earliest if not s["parentSpanId"] or s["parentSpanId"] not in ids]
    root = next((s for s in roots if not s["parentSpanId"]), roots[0] if roots else earliest[0])
    return TraceSummaryJSON(
        traceId=trace_id,
        root=root["name"],
        service=root["service"],
        start=min(s["start"] for s in spans),
        end=max(s["end"] for s in spans),
        spans=len(spans),
    )
