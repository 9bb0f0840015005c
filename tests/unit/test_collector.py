"""The trace collector: its bounded store, its OTLP/HTTP receiver (binary protobuf from the real
OpenTelemetry exporter, and OTLP JSON), its query API and the Service it keeps."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from agents.collector import otlp, server, service
from agents.collector.spans import SpanJSON
from agents.collector.store import TraceStore

TRACE = "0af7651916cd43dd8448eb211c80319c"
OTHER = "1bf7651916cd43dd8448eb211c80319d"


def span(trace: str, span_id: str, *, parent: str = "", start: int = 0, name: str = "s") -> SpanJSON:
    return SpanJSON(
        traceId=trace,
        spanId=span_id,
        parentSpanId=parent,
        name=name,
        service="apiserver",
        instance="m",
        kind="INTERNAL",
        start=start,
        end=start + 10,
        attributes={},
        events=[],
        status={"code": "UNSET", "message": ""},
    )


# --- the store -------------------------------------------------------------------------------------


def test_store_answers_a_trace_with_its_spans_earliest_first() -> None:
    store = TraceStore()
    store.add([span(TRACE, "b" * 16, parent="a" * 16, start=5), span(TRACE, "a" * 16, start=1)], now=0)
    store.add([span(OTHER, "c" * 16, start=3)], now=1)
    found = store.trace(TRACE.upper())
    assert found is not None
    assert [s["spanId"] for s in found] == ["a" * 16, "b" * 16]
    assert store.trace("f" * 32) is None
    assert len(store) == 3


def test_store_keeps_one_copy_of_a_span_sent_twice() -> None:
    store = TraceStore()
    store.add([span(TRACE, "a" * 16, name="first")], now=0)
    store.add([span(TRACE, "a" * 16, name="again")], now=1)
    assert len(store) == 1
    assert [s["name"] for s in store.trace(TRACE) or []] == ["again"]


def test_store_evicts_the_least_recently_updated_traces_beyond_its_bound() -> None:
    store = TraceStore(max_spans=3)
    store.add([span(TRACE, "a" * 16), span(TRACE, "b" * 16)], now=0)
    store.add([span(OTHER, "c" * 16)], now=1)
    store.add([span(TRACE, "d" * 16)], now=2)  # TRACE is updated again: OTHER is now the older one
    assert store.trace(OTHER) is None
    assert len(store) == 3
    assert store.trace(TRACE) is not None


def test_store_trims_the_oldest_spans_of_a_trace_alone_larger_than_its_bound() -> None:
    store = TraceStore(max_spans=2)
    store.add([span(TRACE, f"{i:016x}", start=i) for i in range(5)], now=0)
    assert [s["spanId"] for s in store.trace(TRACE) or []] == [f"{3:016x}", f"{4:016x}"]


def test_store_forgets_traces_older_than_its_age_bound() -> None:
    store = TraceStore(max_age=60)
    store.add([span(TRACE, "a" * 16)], now=0)
    store.add([span(OTHER, "b" * 16)], now=30)
    store.expire(now=61)
    assert store.trace(TRACE) is None
    assert store.trace(OTHER) is not None


def test_store_lists_recent_traces_newest_first_with_their_root() -> None:
    store = TraceStore()
    store.add([span(TRACE, "b" * 16, parent="a" * 16, start=2, name="filter")], now=0)
    store.add([span(OTHER, "c" * 16, start=50, name="create pods")], now=0)
    store.add([span(TRACE, "a" * 16, start=1, name="create deployments")], now=1)
    listed = store.recent(10)
    assert [t["traceId"] for t in listed] == [OTHER, TRACE]
    assert listed[1] == {
        "traceId": TRACE,
        "root": "create deployments",
        "service": "apiserver",
        "start": 1,
        "end": 12,
        "spans": 2,
    }
    assert len(store.recent(1)) == 1


# --- the receiver ----------------------------------------------------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[TestClient[Any, Any]]:
    client = TestClient(TestServer(server.app(TraceStore(), clock=lambda: 100.0)))
    await client.start_server()
    yield client
    await client.close()


def recorded_spans() -> list[ReadableSpan]:
    """Spans as a component records them: a server span, a child with an event, a failed one."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "scheduler", "service.instance.id": "m1"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("scheduler")
    with tracer.start_as_current_span("schedule pod", kind=SpanKind.SERVER, attributes={"k8s.object.name": "web"}):
        with tracer.start_as_current_span("filter", attributes={"scheduler.feasible_nodes": 1}) as child:
            child.add_event("filtered out", {"k8s.node.name": "w2", "reason": "node(s) had untolerated taint"})
        with tracer.start_as_current_span("bind") as failed:
            failed.set_status(Status(StatusCode.ERROR, "binding refused"))
    provider.shutdown()
    return list(memory.get_finished_spans())


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
async def test_the_real_exporter_sends_protobuf_spans_the_collector_keeps(
    http: TestClient[Any, Any], compression: Compression
) -> None:
    spans = recorded_spans()
    exporter = OTLPSpanExporter(endpoint=str(http.make_url("/v1/traces")), timeout=5, compression=compression)
    result = await asyncio.to_thread(exporter.export, spans)
    exporter.shutdown()  # type: ignore[no-untyped-call]
    assert result is SpanExportResult.SUCCESS
    trace_id = f"{spans[0].context.trace_id:032x}"
    answer = await http.get(f"/api/v1/traces/{trace_id}")
    assert answer.status == 200
    body = await answer.json()
    by_name = {s["name"]: s for s in body["spans"]}
    assert body["traceId"] == trace_id
    assert set(by_name) == {"schedule pod", "filter", "bind"}
    root = by_name["schedule pod"]
    assert root["parentSpanId"] == "" and root["kind"] == "SERVER"
    assert root["service"] == "scheduler" and root["instance"] == "m1"
    assert root["attributes"] == {"k8s.object.name": "web"}
    assert by_name["filter"]["parentSpanId"] == root["spanId"]
    assert by_name["filter"]["attributes"] == {"scheduler.feasible_nodes": 1}
    event = by_name["filter"]["events"][0]
    assert event["name"] == "filtered out"
    assert event["attributes"] == {"k8s.node.name": "w2", "reason": "node(s) had untolerated taint"}
    assert event["time"] >= by_name["filter"]["start"]
    assert by_name["bind"]["status"] == {"code": "ERROR", "message": "binding refused"}
    assert root["start"] <= by_name["filter"]["start"] <= by_name["filter"]["end"] <= root["end"]


async def test_a_protobuf_export_is_answered_with_an_export_response(http: TestClient[Any, Any]) -> None:
    answer = await http.post("/v1/traces", data=b"", headers={"Content-Type": otlp.PROTOBUF})
    assert answer.status == 200
    assert answer.content_type == otlp.PROTOBUF
    ExportTraceServiceResponse.FromString(await answer.read())


def otlp_json(trace: str = TRACE) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "kubelet"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "kubelet"},
                        "spans": [
                            {
                                "traceId": trace,
                                "spanId": "051581bf3cb55c13",
                                "parentSpanId": "",
                                "name": "sync pod",
                                "kind": 1,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": 1700000001500000000,
                                "attributes": [
                                    {"key": "k8s.pod.ip", "value": {"stringValue": "10.244.1.5"}},
                                    {"key": "restarts", "value": {"intValue": "0"}},
                                    {"key": "image.cached", "value": {"boolValue": True}},
                                    {"key": "ports", "value": {"arrayValue": {"values": [{"intValue": 80}]}}},
                                ],
                                "events": [{"name": "ready", "timeUnixNano": "1700000001400000000"}],
                                "status": {"code": "STATUS_CODE_OK"},
                            }
                        ],
                    }
                ],
            }
        ]
    }


async def test_an_otlp_json_export_is_kept_and_answered_in_json(http: TestClient[Any, Any]) -> None:
    answer = await http.post("/v1/traces", json=otlp_json())
    assert answer.status == 200
    assert answer.content_type == otlp.JSON
    assert await answer.json() == {}
    body = await (await http.get(f"/api/v1/traces/{TRACE}")).json()
    (kept,) = body["spans"]
    assert kept["service"] == "kubelet" and kept["kind"] == "INTERNAL"
    assert kept["start"] == 1_700_000_000_000_000_000 and kept["end"] == 1_700_000_001_500_000_000
    assert kept["attributes"] == {"k8s.pod.ip": "10.244.1.5", "restarts": 0, "image.cached": True, "ports": [80]}
    assert kept["events"] == [{"name": "ready", "time": 1_700_000_001_400_000_000, "attributes": {}}]
    assert kept["status"] == {"code": "OK", "message": ""}


async def test_a_gzipped_json_export_is_read(http: TestClient[Any, Any]) -> None:
    data = gzip.compress(json.dumps(otlp_json()).encode())
    headers = {"Content-Type": otlp.JSON, "Content-Encoding": "gzip"}
    assert (await http.post("/v1/traces", data=data, headers=headers)).status == 200
    assert (await http.get(f"/api/v1/traces/{TRACE}")).status == 200


async def test_an_unreadable_export_is_a_400_saying_why_in_the_request_encoding(http: TestClient[Any, Any]) -> None:
    bad = otlp_json(trace="xyz")
    answer = await http.post("/v1/traces", json=bad)
    assert answer.status == 400
    assert "traceId: 'xyz' is not 32 hex digits" in (await answer.json())["message"]
    answer = await http.post("/v1/traces", data=b"\xff\xff\xff", headers={"Content-Type": otlp.PROTOBUF})
    assert answer.status == 400
    assert answer.content_type == otlp.PROTOBUF


async def test_another_content_type_is_a_415(http: TestClient[Any, Any]) -> None:
    answer = await http.post("/v1/traces", data=b"x", headers={"Content-Type": "text/plain"})
    assert answer.status == 415


async def test_an_unknown_or_malformed_trace_id_is_a_status_in_kube_shape(http: TestClient[Any, Any]) -> None:
    missing = await http.get(f"/api/v1/traces/{OTHER}")
    assert missing.status == 404
    assert await missing.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'trace "{OTHER}" not found',
        "reason": "NotFound",
        "code": 404,
    }
    malformed = await http.get("/api/v1/traces/nope")
    assert malformed.status == 400
    assert (await malformed.json())["reason"] == "BadRequest"


async def test_recent_traces_are_listed_newest_first_up_to_the_limit(http: TestClient[Any, Any]) -> None:
    await http.post("/v1/traces", json=otlp_json(TRACE))
    later = otlp_json(OTHER)
    later["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["startTimeUnixNano"] = "1800000000000000000"
    await http.post("/v1/traces", json=later)
    body = await (await http.get("/api/v1/traces?limit=1")).json()
    assert [t["traceId"] for t in body["traces"]] == [OTHER]
    assert body["traces"][0]["root"] == "sync pod"
    assert (await http.get("/api/v1/traces?limit=0")).status == 400


async def test_health_is_answered_on_the_same_port(http: TestClient[Any, Any]) -> None:
    assert await (await http.get("/healthz")).text() == "ok"
    assert (await http.get("/readyz")).status == 200


# --- the Service it keeps --------------------------------------------------------------------------


def test_the_service_has_no_selector_and_its_slice_one_ready_endpoint() -> None:
    svc = service.desired_service(40123)
    assert "selector" not in svc["spec"]
    assert svc["spec"]["ports"] == [{"name": "http", "port": 4318, "protocol": "TCP", "targetPort": 40123}]
    piece = service.desired_slice("10.250.0.2", 40123)
    assert piece["metadata"]["labels"] == {
        "kubernetes.io/service-name": "trace-collector",
        "endpointslice.kubernetes.io/managed-by": "kubelab-trace-collector",
    }
    assert piece["endpoints"][0]["addresses"] == ["10.250.0.2"]
    assert piece["endpoints"][0]["conditions"]["ready"] is True
    assert piece["ports"] == [{"name": "http", "port": 40123, "protocol": "TCP"}]


def test_objects_as_written_are_kept_and_changed_ones_brought_back() -> None:
    piece = service.desired_slice("10.250.0.2", 4318)
    stored = {**piece, "metadata": {**piece["metadata"], "resourceVersion": "7", "uid": "u"}}
    assert not service.differs(stored, piece)
    moved = service.desired_slice("192.168.122.10", 4318)
    assert service.differs(stored, moved)
    fixed = service.merged(stored, moved)
    assert fixed["metadata"]["resourceVersion"] == "7"
    assert not service.differs(fixed, moved)
    svc = service.desired_service(4318)
    defaulted = {**svc, "spec": {**svc["spec"], "clusterIP": "10.96.0.20", "selector": {"app": "x"}}}
    assert service.differs(defaulted, svc)
    assert "selector" not in service.merged(defaulted, svc)["spec"]
    assert service.merged(defaulted, svc)["spec"]["clusterIP"] == "10.96.0.20"
