"""The API server's spans (issue 20's contract): a user's write starts a trace, a ``traceparent`` header
is continued, each step of a request is a child of its span, and a traced write stores the span's
context in the object's annotation, so the components continue the trace from the object.

Spans are read from the OpenTelemetry SDK's in-memory exporter, given to ``agents.machinery.tracing``
for one test (its provider and ``tracer`` patched; OpenTelemetry's process-wide provider is left alone).
The API server runs on the in-memory store, with a token file and RBAC: ``alice`` is a member of
``system:masters``, ``bob`` of nothing, and ``system:kube-controller-manager`` is a component.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agents.apiserver import requesttracing
from agents.apiserver.auth import User
from agents.apiserver.requestinfo import request_info
from agents.apiserver.server import ApiServer
from agents.apiserver.settings import ApiServerSettings, WatchCacheSettings
from agents.machinery import tracing
from tests.support.kubectlrun import run_kubectl

Client = TestClient[Any, Any]

ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
CONTROLLERS = {"Authorization": "Bearer cm-token"}
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def configmap(name: str = "cfg", **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data or {"a": "1"}}


def pod(name: str = "web") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
    }


# --- fixtures: spans in memory, an API server that authenticates and authorizes --------------------------


def _provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test: the spans end up here."""
    found = InMemorySpanExporter()
    provider = _provider(found)
    monkeypatch.setattr(tracing, "_provider", provider)
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer)
    yield found
    provider.shutdown()


@pytest.fixture
async def api(schema_cache: Path, tmp_path: Path) -> AsyncIterator[ApiServer]:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(
        'alice-token,alice,1,"system:masters"\nbob-token,bob,2\ncm-token,system:kube-controller-manager,3,"system:masters"\n'
    )
    settings = ApiServerSettings(
        storage_backend="memory",
        schema_cache_dir=schema_cache,
        watch=WatchCacheSettings(cache_size=50, bookmark_interval=0.2),
        token_auth_file=tokens,
        authorization_mode=("RBAC",),
    )
    server = ApiServer(settings)
    await server.start()
    yield server
    await server.stop()


async def _client(server: ApiServer) -> Client:
    client = TestClient(TestServer(server.application()))
    await client.start_server()
    return client


@pytest.fixture
async def traced(api: ApiServer, exporter: InMemorySpanExporter) -> AsyncIterator[Client]:
    """The API server's HTTP front, made while tracing is on (as the server's run() sets it up first)."""
    client = await _client(api)
    yield client
    await client.close()


async def _send(client: Client, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
    response = await client.request(method, path, json=body, headers=headers)
    return response.status, await response.json()


def _named(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, [span.name for span in spans]
    return found[0]


def _children(spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    kids = [span for span in spans if span.parent is not None and span.parent.span_id == parent.context.span_id]
    return sorted(kids, key=lambda span: span.start_time or 0)


def _traceparent(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-{span.context.trace_flags:02x}"


def _annotation(obj: dict[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(tracing.ANNOTATION)


# --- which requests are traced, and their spans' names (pure) --------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "user", "continued", "expected"),
    [
        ("POST", "/apis/apps/v1/namespaces/ns/deployments", "alice", False, True),
        ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/web", "alice", False, True),
        ("DELETE", "/api/v1/namespaces/ns/pods/web", "alice", False, True),
        ("POST", "/api/v1/namespaces/ns/pods", "system:kube-controller-manager", False, False),
        ("POST", "/api/v1/namespaces/ns/pods", "system:kube-controller-manager", True, True),
        ("PUT", "/api/v1/namespaces/ns/pods/web/status", "alice", False, False),  # a subresource
        ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/web/scale", "alice", False, True),  # kubectl scale
        ("POST", "/api/v1/namespaces/ns/pods/web/binding", "system:kube-scheduler", True, True),
        ("GET", "/api/v1/namespaces/ns/pods/web", "alice", False, False),  # reads only when continued
        ("GET", "/api/v1/namespaces/ns/pods", "alice", True, True),
        ("GET", "/api/v1/namespaces/ns/pods?watch=1", "alice", True, False),  # never a watch
        ("PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l", "alice", True, False),
        ("POST", "/api/v1/namespaces/ns/events", "alice", False, False),
        ("POST", "/apis/events.k8s.io/v1/namespaces/ns/events", "alice", True, False),
        ("GET", "/version", "alice", True, False),
    ],
)
def test_a_request_is_traced_when_it_continues_a_trace_or_is_a_users_write_of_a_main_resource(
    method: str, path: str, user: str, continued: bool, expected: bool
) -> None:
    route, _, query = path.partition("?")
    info = request_info(method, route, dict([query.split("=")]) if query else {})
    assert requesttracing.traced(info, user=user, continued=continued) is expected


def test_a_dry_run_starts_no_trace() -> None:
    info = request_info("POST", "/api/v1/namespaces/ns/configmaps", {})
    assert not requesttracing.traced(info, user="alice", continued=False, dry_run=True)


def test_a_span_is_named_by_the_verb_and_the_resource() -> None:
    assert requesttracing.span_name(request_info("POST", "/apis/apps/v1/namespaces/ns/deployments", {})) == (
        "create deployments"
    )
    assert requesttracing.span_name(request_info("POST", "/api/v1/namespaces/ns/pods/web/binding", {})) == (
        "create pods/binding"
    )
    info = request_info("PATCH", "/api/v1/namespaces/ns/pods/web", {})
    assert requesttracing.request_attributes(info, method="PATCH", user="alice") == {
        "http.request.method": "PATCH",
        "url.path": "/api/v1/namespaces/ns/pods/web",
        "user.name": "alice",
        "k8s.namespace.name": "ns",
        "k8s.object.name": "web",
    }


def test_the_authorization_and_admission_steps_say_what_decided_and_what_ran() -> None:
    assert requesttracing.authorization_attributes(allowed_by="RBAC", refusal="") == {
        "authorization.decision": "allow",
        "authorization.reason": "allowed by RBAC",
    }
    assert requesttracing.authorization_attributes(allowed_by="", refusal="no")["authorization.decision"] == "forbid"
    assert requesttracing.admission_plugins("pods", "create", namespaced=True) == [
        "NamespaceLifecycle",
        "ServiceAccount",
        "Priority",
        "DefaultTolerationSeconds",
    ]
    assert requesttracing.admission_plugins("persistentvolumeclaims", "update", namespaced=True) == [
        "PersistentVolumeClaimResize"
    ]
    assert requesttracing.admission_plugins("nodes", "create", namespaced=False) == []


def test_an_update_that_leaves_the_annotation_out_keeps_the_stored_one(exporter: InMemorySpanExporter) -> None:
    old = {"metadata": {"annotations": {tracing.ANNOTATION: TRACEPARENT, "x": "1"}}}
    new: dict[str, Any] = {"metadata": {"annotations": {"x": "2"}}}
    requesttracing.keep(new, old)
    assert new["metadata"]["annotations"] == {"x": "2", tracing.ANNOTATION: TRACEPARENT}
    other = f"00-{TRACE_ID}-{'1' * 16}-01"
    given = {"metadata": {"annotations": {tracing.ANNOTATION: other}}}
    requesttracing.keep(given, old)  # one the body carries is the body's
    assert _annotation(given) == other


# --- the API server's spans ------------------------------------------------------------------------------


async def test_a_users_create_gets_a_span_per_step_and_the_stored_object_the_spans_context(
    traced: Client, exporter: InMemorySpanExporter
) -> None:
    code, created = await _send(traced, "POST", "/api/v1/namespaces/default/pods", pod(), **ALICE)
    assert code == 201, created
    spans = exporter.get_finished_spans()
    server = _named(spans, "create pods")
    assert server.kind == SpanKind.SERVER and server.parent is None  # a new trace
    assert server.instrumentation_scope is not None and server.instrumentation_scope.name == "apiserver"
    assert server.attributes == {
        "http.request.method": "POST",
        "url.path": "/api/v1/namespaces/default/pods",
        "user.name": "alice",
        "k8s.namespace.name": "default",
        "k8s.object.name": "web",
        "k8s.object.uid": created["metadata"]["uid"],
    }
    assert server.status.status_code == StatusCode.UNSET
    steps = _children(spans, server)
    assert [s.name for s in steps] == ["authentication", "authorization", "validation", "admission", "etcd write"]
    by_name = {s.name: s for s in steps}
    assert by_name["authorization"].attributes == {
        "authorization.decision": "allow",
        "authorization.reason": "allowed by the group system:masters",
    }
    assert by_name["admission"].attributes == {
        "admission.plugins": ("NamespaceLifecycle", "ServiceAccount", "Priority", "DefaultTolerationSeconds")
    }
    assert by_name["etcd write"].attributes == {
        "etcd.key": "/registry/pods/default/web",
        "etcd.revision": int(created["metadata"]["resourceVersion"]),
    }
    assert all(s.start_time and server.start_time and s.start_time >= server.start_time for s in steps)
    assert _annotation(created) == _traceparent(server)
    code, stored = await _send(traced, "GET", "/api/v1/namespaces/default/pods/web", **ALICE)
    assert _annotation(stored) == _traceparent(server)
    assert len(exporter.get_finished_spans()) == len(spans)  # a read without a traceparent: no span


async def test_a_traceparent_is_continued_and_a_change_in_the_trace_restamps_the_object(
    traced: Client, exporter: InMemorySpanExporter
) -> None:
    code, created = await _send(traced, "POST", CONFIGMAPS, configmap(), traceparent=TRACEPARENT, **CONTROLLERS)
    assert code == 201, created
    server = _named(exporter.get_finished_spans(), "create configmaps")
    assert server.context is not None and f"{server.context.trace_id:032x}" == TRACE_ID
    assert server.parent is not None and f"{server.parent.span_id:016x}" == PARENT_ID
    assert server.attributes is not None and server.attributes["user.name"] == "system:kube-controller-manager"
    assert _annotation(created) == _traceparent(server)

    exporter.clear()  # a later step of the same trace changes the object: it points at the new span
    later = f"00-{TRACE_ID}-{'2' * 16}-01"
    code, updated = await _send(
        traced, "PUT", f"{CONFIGMAPS}/cfg", {**created, "data": {"a": "2"}}, traceparent=later, **CONTROLLERS
    )
    assert code == 200, updated
    update = _named(exporter.get_finished_spans(), "update configmaps")
    assert [s.name for s in _children(exporter.get_finished_spans(), update)] == [
        "authentication",
        "authorization",
        "validation",
        "admission",
        "etcd write",
    ]
    assert _annotation(updated) == _traceparent(update)

    exporter.clear()  # the same object written again unchanged in the trace: no write, no new stamp
    code, again = await _send(traced, "PUT", f"{CONFIGMAPS}/cfg", updated, traceparent=later, **CONTROLLERS)
    assert code == 200 and again["metadata"]["resourceVersion"] == updated["metadata"]["resourceVersion"]
    assert _annotation(again) == _traceparent(update)
    assert "etcd write" not in [s.name for s in exporter.get_finished_spans()]

    exporter.clear()  # a component's change outside any trace, its body without the annotation: kept
    body = {**updated, "data": {"a": "3"}, "metadata": {**updated["metadata"], "annotations": {}}}
    code, outside = await _send(traced, "PUT", f"{CONFIGMAPS}/cfg", body, **CONTROLLERS)
    assert code == 200 and outside["data"] == {"a": "3"}
    assert _annotation(outside) == _traceparent(update)
    assert exporter.get_finished_spans() == ()


async def test_a_status_write_in_a_trace_is_traced_but_does_not_restamp(
    traced: Client, exporter: InMemorySpanExporter
) -> None:
    code, created = await _send(traced, "POST", "/api/v1/namespaces/default/pods", pod(), **ALICE)
    stamped = _annotation(created)
    body = {**created, "status": {"phase": "Running"}}
    code, updated = await _send(
        traced, "PUT", "/api/v1/namespaces/default/pods/web/status", body, traceparent=TRACEPARENT, **CONTROLLERS
    )
    assert code == 200, updated
    assert _named(exporter.get_finished_spans(), "update pods/status")
    assert _annotation(updated) == stamped


async def test_leases_and_events_are_never_traced(traced: Client, exporter: InMemorySpanExporter) -> None:
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": {}}
    leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    code, created = await _send(traced, "POST", leases, lease, traceparent=TRACEPARENT, **ALICE)
    assert code == 201, created
    code, renewed = await _send(traced, "PUT", f"{leases}/l", {**created, "spec": {"holderIdentity": "me"}}, **ALICE)
    assert code == 200, renewed
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "e"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"},
        "reason": "Started",
        "message": "started",
    }
    code, answer = await _send(traced, "POST", "/api/v1/namespaces/default/events", event, **ALICE)
    assert code == 201, answer
    assert exporter.get_finished_spans() == ()
    assert _annotation(created) is None and _annotation(renewed) is None and _annotation(answer) is None


async def test_a_refused_write_fails_its_span_with_kubes_message(
    traced: Client, exporter: InMemorySpanExporter
) -> None:
    code, answer = await _send(traced, "POST", CONFIGMAPS, configmap(), **BOB)
    assert code == 403, answer
    spans = exporter.get_finished_spans()
    server = _named(spans, "create configmaps")
    assert server.status.status_code == StatusCode.ERROR
    assert server.status.description == answer["message"]
    assert answer["message"].startswith('configmaps is forbidden: User "bob" cannot create resource "configmaps"')
    steps = _children(spans, server)
    assert [s.name for s in steps] == ["authentication", "authorization"]
    assert steps[1].attributes == {"authorization.decision": "forbid", "authorization.reason": answer["message"]}
    assert steps[1].status.status_code == StatusCode.ERROR


async def test_an_invalid_write_fails_its_validation_span(traced: Client, exporter: InMemorySpanExporter) -> None:
    code, answer = await _send(traced, "POST", CONFIGMAPS, configmap("Not_A_Name"), **ALICE)
    assert code == 422, answer
    spans = exporter.get_finished_spans()
    server = _named(spans, "create configmaps")
    assert server.status.status_code == StatusCode.ERROR and server.status.description == answer["message"]
    assert _named(spans, "validation").status.status_code == StatusCode.ERROR
    assert "etcd write" not in [s.name for s in spans]


async def test_an_unauthenticated_write_is_traced_only_when_it_continues_a_trace(
    traced: Client, exporter: InMemorySpanExporter
) -> None:
    code, answer = await _send(traced, "POST", CONFIGMAPS, configmap(), Authorization="Bearer wrong")
    assert code == 401, answer
    assert exporter.get_finished_spans() == ()  # an unknown caller starts no trace
    code, answer = await _send(traced, "POST", CONFIGMAPS, configmap(), traceparent=TRACEPARENT)
    assert code == 401, answer
    spans = exporter.get_finished_spans()
    server = _named(spans, "create configmaps")
    assert server.parent is not None and f"{server.parent.span_id:016x}" == PARENT_ID
    assert (server.status.status_code, server.status.description) == (StatusCode.ERROR, "Unauthorized")
    [authentication] = _children(spans, server)
    assert authentication.name == "authentication" and authentication.status.status_code == StatusCode.ERROR


async def test_a_components_write_reads_and_dry_runs_start_no_trace(
    traced: Client, exporter: InMemorySpanExporter
) -> None:
    code, created = await _send(traced, "POST", CONFIGMAPS, configmap(), **CONTROLLERS)
    assert code == 201 and _annotation(created) is None
    code, _ = await _send(traced, "GET", f"{CONFIGMAPS}/cfg", **ALICE)
    assert code == 200
    code, dry = await _send(traced, "POST", f"{CONFIGMAPS}?dryRun=All", configmap("dry"), **ALICE)
    assert code == 201 and _annotation(dry) is None
    assert exporter.get_finished_spans() == ()


async def test_tracing_off_adds_no_middleware_no_span_and_no_annotation(
    api: ApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = InMemorySpanExporter()
    monkeypatch.setattr(tracing, "tracer", _provider(found).get_tracer)  # would record, were tracing on
    assert not tracing.enabled()
    client = await _client(api)
    try:
        assert api._trace not in client.app.middlewares
        code, created = await _send(client, "POST", CONFIGMAPS, configmap(), traceparent=TRACEPARENT, **ALICE)
        assert code == 201 and _annotation(created) is None
        code, _ = await _send(client, "POST", CONFIGMAPS, configmap("x"), traceparent=TRACEPARENT, **BOB)
        assert code == 403
    finally:
        await client.close()
    assert found.get_finished_spans() == ()


# --- kubectl: the annotation does not disturb apply, diff or server-side apply ---------------------------


@web.middleware
async def _as_alice(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """kubectl sends no token over plain HTTP: the test's server takes every request for alice's."""
    request["user"] = User("alice", "1", ("system:masters",))
    return await handler(request)


@pytest.fixture
async def kubectl_front(server: ApiServer, exporter: InMemorySpanExporter) -> AsyncIterator[Client]:
    """The unit tier's server (no authentication), with tracing on and every request alice's."""
    app = server.application()
    app.middlewares.insert(0, _as_alice)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield client
    await client.close()


def _kubeconfig(client: Client, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    cluster = {"server": f"http://{client.host}:{client.port}"}
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "default"}}],
                "current-context": "x",
            }
        )
    )
    return path


async def test_kubectl_apply_twice_diff_and_server_side_apply_see_no_change_from_the_annotation(
    kubectl_front: Client, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    config, manifest = _kubeconfig(kubectl_front, tmp_path), tmp_path / "cfg.yaml"
    manifest.write_text(json.dumps(configmap()))

    async def live() -> dict[str, Any]:
        code, obj = await _send(kubectl_front, "GET", f"{CONFIGMAPS}/cfg")
        assert code == 200, obj
        return dict(obj)

    code, out = await run_kubectl(config, "apply", "-f", str(manifest))
    assert code == 0 and "created" in out, out
    first = await live()
    assert _annotation(first) == _traceparent(_named(exporter.get_finished_spans(), "create configmaps"))
    assert (
        tracing.ANNOTATION not in first["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    )

    code, out = await run_kubectl(config, "apply", "-f", str(manifest))
    assert code == 0 and "unchanged" in out, out
    code, out = await run_kubectl(config, "diff", "-f", str(manifest))
    assert code == 0 and out == "", out
    assert await live() == first

    manifest.write_text(json.dumps(configmap(a="2")))  # a change the user makes: a new trace, restamped
    exporter.clear()
    code, out = await run_kubectl(config, "apply", "-f", str(manifest))
    assert code == 0 and "configured" in out, out
    second = await live()
    assert _annotation(second) == _traceparent(_named(exporter.get_finished_spans(), "patch configmaps"))
    code, out = await run_kubectl(config, "apply", "-f", str(manifest))
    assert code == 0 and "unchanged" in out and await live() == second, out

    code, out = await run_kubectl(config, "apply", "--server-side", "-f", str(manifest))
    assert code == 0, out
    applied = await live()
    code, out = await run_kubectl(config, "apply", "--server-side", "-f", str(manifest))
    assert code == 0 and await live() == applied, out  # reapplying changes nothing, the annotation included
    assert tracing.ANNOTATION not in json.dumps(applied["metadata"].get("managedFields"))
