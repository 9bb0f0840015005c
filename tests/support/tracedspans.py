"""Spans the components record in a unit test, kept in memory: the ``spans`` and ``stamping`` fixtures.

``spans`` turns tracing on for one test (:func:`agents.machinery.tracing.enabled` is true): the
tracing module gets an OpenTelemetry SDK provider of the test's own whose spans go to an
``InMemorySpanExporter`` (synchronously: a span is there once it ends). The module's provider and its
``tracer`` function are patched for the test alone rather than OpenTelemetry's process-wide provider,
which can be set once per process. The test reads what was recorded through :class:`Spans`, and
starts a trace of its own with :meth:`Spans.traced` (an object carrying the annotation, as the API
server stamps it on a user's write).

``stamping`` plays the API server's part of the contract for components run against an API server
that does not stamp: a create or update made inside a span stores that span's context in the
object's annotation, so the next component continues the trace from the object.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agents.machinery import tracing
from agents.machinery.client import Client
from agents.machinery.objects import Object, deep_copy
from agents.machinery.resources import ResourceRef


class Spans:
    """What the components recorded during one test."""

    def __init__(self, exporter: InMemorySpanExporter, provider: TracerProvider) -> None:
        self.exporter = exporter
        self.provider = provider

    def finished(self) -> Sequence[ReadableSpan]:
        return self.exporter.get_finished_spans()

    def of(self, tracer_name: str) -> list[ReadableSpan]:
        """The spans a component's tracer recorded ("controller-manager", "scheduler", ...)."""
        return [s for s in self.finished() if s.instrumentation_scope and s.instrumentation_scope.name == tracer_name]

    def named(self, name: str, *, tracer_name: str = "") -> list[ReadableSpan]:
        found = self.of(tracer_name) if tracer_name else list(self.finished())
        return [s for s in found if s.name == name]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        parent_id = parent.context.span_id if parent.context else None
        return [s for s in self.finished() if s.parent is not None and s.parent.span_id == parent_id]

    @staticmethod
    def trace_id(span: ReadableSpan) -> int:
        assert span.context is not None
        return int(span.context.trace_id)

    @contextlib.contextmanager
    def writing(self, name: str = "user write") -> Iterator[int]:
        """A span of the test's own, current in the block (the id of its new trace): writes made in
        the block send its context, as a user's write starts a trace at the API server."""
        with self.provider.get_tracer("test").start_as_current_span(name) as span:
            yield span.get_span_context().trace_id

    def traced(self, obj: Object, name: str = "user write") -> tuple[Object, int]:
        """``obj`` carrying the annotation of a new trace (a span of the test's own, ended), and that
        trace's id."""
        with self.provider.get_tracer("test").start_as_current_span(name) as span:
            body = deep_copy(obj)
            tracing.stamp(body)
        return body, span.get_span_context().trace_id


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spans]:
    """Tracing on for this test, every span kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_provider", provider)
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer)
    yield Spans(exporter, provider)
    provider.shutdown()


@pytest.fixture
def stamping(monkeypatch: pytest.MonkeyPatch) -> None:
    """Creates and updates made inside a span store the span's context in the object's annotation
    (the API server's part of the contract, for tests whose API server does not stamp)."""

    def stamped(write: Callable[..., Awaitable[Object]]) -> Callable[..., Awaitable[Object]]:
        async def call(self: Client, res: ResourceRef, obj: Object, *args: Any, **kwargs: Any) -> Object:
            body = deep_copy(obj)
            if not kwargs.get("subresource"):
                tracing.stamp(body)
            return await write(self, res, body, *args, **kwargs)

        return call

    monkeypatch.setattr(Client, "create", stamped(Client.create))
    monkeypatch.setattr(Client, "update", stamped(Client.update))
