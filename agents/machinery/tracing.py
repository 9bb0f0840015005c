"""Tracing: the spans every component records for one change a user makes, joined into one trace.

A component records spans with OpenTelemetry and sends them over OTLP/HTTP to the lab's trace
collector (``agents/collector``, on the master) when ``--tracing-endpoint`` names it; without one
nothing is recorded and every call here costs next to nothing.

How a trace travels (W3C trace context, ``traceparent``):

- over HTTP: the API client (:mod:`agents.machinery.client`) sends the current span's context in the
  ``traceparent`` header of every request made inside a span (:func:`inject`); the API server
  continues it (:func:`extract`), or starts a new trace for a write by a user;
- through objects: the API server writes the context of the request's span into the annotation
  :data:`ANNOTATION` of the object it stores (not on subresource writes), so the next component, which
  only sees the object through a watch, continues the same trace from there (:func:`span_for`):
  Deployment -> ReplicaSet -> Pod -> the scheduler's binding -> the kubelet -> the EndpointSlice -> the
  proxies.

Work on an object without the annotation is not traced: components only add to traces a user's
write started, so a lab at rest records nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from agents.machinery.settings import setting

log = logging.getLogger(__name__)

ANNOTATION = "tracing.kubelab.dev/traceparent"
HEADER = "traceparent"
_propagator = TraceContextTextMapPropagator()
_provider: Any = None  # the SDK's TracerProvider once setup() made one


@dataclasses.dataclass(frozen=True)
class TracingSettings:
    endpoint: str = setting("", "OTLP/HTTP address of the trace collector (http://HOST:4318); empty: no tracing")
    sampling_rate_per_million: int = setting(
        1_000_000, "traces started per million users' writes (the API server's; others follow their parent)"
    )


def enabled() -> bool:
    return _provider is not None


def setup(component: str, settings: TracingSettings, *, instance: str = "") -> None:
    """Record this process's spans as ``component`` and send them to the collector in batches."""
    if not settings.endpoint or _provider is not None:
        return
    # imported here: a component without tracing does not load the SDK
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: PLC0415
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased  # noqa: PLC0415

    host = socket.gethostname()
    resource = Resource.create({"service.name": component, "service.instance.id": instance or host, "host.name": host})
    rate = max(0, min(settings.sampling_rate_per_million, 1_000_000)) / 1_000_000
    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(rate)))
    exporter = OTLPSpanExporter(endpoint=settings.endpoint.rstrip("/") + "/v1/traces", timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    use(provider)
    log.info("tracing: spans of %s go to %s", component, settings.endpoint)


def use(provider: Any) -> None:
    """Record spans through ``provider`` (an SDK TracerProvider; None: stop recording). ``setup`` calls
    it; tests give one that keeps spans in memory. The provider is this module's own rather than
    OpenTelemetry's global one, which can be set only once per process."""
    global _provider  # noqa: PLW0603 - one provider per process, as OpenTelemetry has it
    _provider = provider


def shutdown() -> None:
    """Send what is still batched (at a component's end)."""
    if _provider is not None:
        with contextlib.suppress(Exception):
            _provider.shutdown()


def tracer(name: str) -> trace.Tracer:
    if _provider is None:
        return trace.NoOpTracer()
    found: trace.Tracer = _provider.get_tracer(name)
    return found


def object_attributes(obj: Mapping[str, Any]) -> dict[str, str]:
    """The attributes that name an object on a span."""
    meta = obj.get("metadata") or {}
    found = {
        "k8s.object.kind": str(obj.get("kind") or ""),
        "k8s.namespace.name": str(meta.get("namespace") or ""),
        "k8s.object.name": str(meta.get("name") or ""),
        "k8s.object.uid": str(meta.get("uid") or ""),
    }
    return {key: value for key, value in found.items() if value}


def traceparent(obj: Mapping[str, Any]) -> str:
    """The trace context an object carries (empty when it carries none)."""
    return str(((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION) or "")


def extract(headers: Mapping[str, str]) -> otel_context.Context | None:
    """The context a ``traceparent`` header carries, or None when there is none that is valid."""
    value = headers.get(HEADER) or headers.get(HEADER.title()) or ""
    if not value:
        return None
    found = _propagator.extract({HEADER: value})
    return found if trace.get_current_span(found).get_span_context().is_valid else None


def context_of(obj: Mapping[str, Any]) -> otel_context.Context | None:
    """The context an object's annotation carries, or None."""
    value = traceparent(obj)
    return extract({HEADER: value}) if value else None


def current_traceparent() -> str:
    """The ``traceparent`` of the current span, or empty outside a recorded span."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        _propagator.inject(carrier)
    return carrier.get(HEADER, "")


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's ``traceparent`` to a request's headers (nothing outside a span)."""
    value = current_traceparent()
    if value:
        headers[HEADER] = value


def stamp(obj: MutableMapping[str, Any]) -> None:
    """Write the current span's context into an object's annotation (the API server, before storing)."""
    value = current_traceparent()
    if value:
        meta = obj.setdefault("metadata", {})
        annotations = meta.get("annotations") or {}
        meta["annotations"] = {**annotations, ANNOTATION: value}


@contextlib.contextmanager
def span_for(
    obj: Mapping[str, Any],
    name: str,
    *,
    tracer_name: str,
    attributes: Mapping[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Span]:
    """A span continuing the trace ``obj`` carries, current inside the block; a span that records
    nothing when tracing is off or the object carries no trace (callers need not check)."""
    parent = context_of(obj) if enabled() else None
    if parent is None:
        yield INVALID_SPAN
        return
    attrs = {**object_attributes(obj), **(attributes or {})}
    with tracer(tracer_name).start_as_current_span(name, context=parent, kind=kind, attributes=attrs) as span:
        yield span


@contextlib.contextmanager
def child(name: str, *, tracer_name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """A span under the current one, or one that records nothing when no span is current."""
    if not trace.get_current_span().get_span_context().is_valid:
        yield INVALID_SPAN
        return
    with tracer(tracer_name).start_as_current_span(name, attributes=dict(attributes or {})) as span:
        yield span


def fail(span: Span, message: str) -> None:
    """Mark a span as failed, with the reason a user reads in the trace."""
    span.set_status(Status(StatusCode.ERROR, message))
