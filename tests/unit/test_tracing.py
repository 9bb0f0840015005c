"""agents.machinery.tracing: a trace carried by an object's annotation and by the traceparent header,
spans that record nothing when tracing is off or the object carries no trace, and the settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agents.machinery import tracing
from agents.machinery.settings import load

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)


def traced(name: str, parent: str = PARENT) -> dict[str, object]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": "u-1", "annotations": {tracing.ANNOTATION: parent}},
    }


def test_a_span_continues_the_trace_its_object_carries(spans: InMemorySpanExporter) -> None:
    with (
        tracing.span_for(traced("web"), "sync pod", tracer_name="kubelet"),
        tracing.child("sandbox", tracer_name="kubelet", attributes={"k8s.pod.ip": "10.244.1.5"}),
    ):
        pass
    child, parent = spans.get_finished_spans()
    assert parent.name == "sync pod" and child.name == "sandbox"
    assert format(parent.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert parent.parent is not None and format(parent.parent.span_id, "016x") == "b7ad6b7169203331"
    assert child.parent is not None and child.parent.span_id == parent.context.span_id
    assert parent.attributes == {
        "k8s.object.kind": "Pod",
        "k8s.namespace.name": "default",
        "k8s.object.name": "web",
        "k8s.object.uid": "u-1",
    }


def test_inside_a_span_requests_carry_it_and_objects_are_stamped_with_it(spans: InMemorySpanExporter) -> None:
    with tracing.span_for(traced("web"), "sync replicaset", tracer_name="controller-manager") as span:
        headers: dict[str, str] = {}
        tracing.inject(headers)
        created: dict[str, object] = {"metadata": {"name": "web-1", "annotations": {"a": "b"}}}
        tracing.stamp(created)
    own = f"00-0af7651916cd43dd8448eb211c80319c-{span.get_span_context().span_id:016x}-01"
    assert headers == {"traceparent": own}
    assert created["metadata"] == {"name": "web-1", "annotations": {"a": "b", tracing.ANNOTATION: own}}
    assert tracing.context_of(created) is not None


def test_objects_without_a_trace_and_steps_outside_one_record_nothing(spans: InMemorySpanExporter) -> None:
    with tracing.span_for({"metadata": {"name": "plain"}}, "sync pod", tracer_name="kubelet") as span:
        assert not span.is_recording()
        with tracing.child("sandbox", tracer_name="kubelet") as inner:
            assert not inner.is_recording()
        headers: dict[str, str] = {}
        tracing.inject(headers)
        assert headers == {}
    with tracing.span_for(traced("bad", parent="not-a-traceparent"), "sync pod", tracer_name="kubelet") as span:
        assert not span.is_recording()
    assert spans.get_finished_spans() == ()


def test_tracing_off_records_nothing_even_for_traced_objects() -> None:
    assert not tracing.enabled()
    with tracing.span_for(traced("web"), "sync pod", tracer_name="kubelet") as span:
        assert not span.is_recording()
    tracing.setup("kubelet", tracing.TracingSettings())  # no endpoint: stays off
    assert not tracing.enabled()


def test_the_endpoint_is_a_flag_and_every_users_write_is_sampled_by_default() -> None:
    @dataclasses.dataclass(frozen=True)
    class Settings:
        tracing: tracing.TracingSettings = dataclasses.field(default_factory=tracing.TracingSettings)

    loaded = load(Settings, ["--tracing-endpoint", "http://10.0.0.10:4318"], env_prefix="X", prog="x")
    assert loaded.tracing.endpoint == "http://10.0.0.10:4318"
    assert loaded.tracing.sampling_rate_per_million == 1_000_000
