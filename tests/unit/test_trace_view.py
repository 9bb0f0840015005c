"""``kubelab trace``: naming the resource, reading the trace id, and the timeline it prints."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.cli import trace
from provisioner.lab import traceview
from provisioner.lab.apiclient import Answer

TRACE = "0af7651916cd43dd8448eb211c80319c"
APPS = [
    {
        "name": "deployments",
        "singularName": "deployment",
        "namespaced": True,
        "kind": "Deployment",
        "shortNames": ["deploy"],
    },
    {"name": "deployments/scale", "singularName": "", "namespaced": True, "kind": "Scale"},
]


def span(span_id: str, name: str, start_ms: float, took_ms: float, **extra: Any) -> dict[str, Any]:
    base = 1_700_000_000_000_000_000
    return {
        "traceId": TRACE,
        "spanId": span_id,
        "parentSpanId": "",
        "name": name,
        "service": "apiserver",
        "instance": "master",
        "kind": "INTERNAL",
        "start": base + int(start_ms * 1e6),
        "end": base + int((start_ms + took_ms) * 1e6),
        "attributes": {},
        "events": [],
        "status": {"code": "UNSET", "message": ""},
        **extra,
    }


@pytest.mark.parametrize("typed", ["deployment", "deployments", "deploy", "Deployment", "deployments.apps"])
def test_a_kind_is_named_as_kubectl_accepts_it(typed: str) -> None:
    found = traceview.match_resource(typed, "apps/v1", APPS)
    assert found == traceview.Resource("apps", "v1", "deployments", "Deployment", True)
    assert found.qualified == "deployments.apps"
    assert found.path("web", "x") == "/apis/apps/v1/namespaces/web/deployments/x"


def test_other_groups_and_subresources_do_not_match() -> None:
    assert traceview.match_resource("deployments.extensions", "apps/v1", APPS) is None
    assert traceview.match_resource("scale", "apps/v1", APPS) is None
    pods = [{"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod", "shortNames": ["po"]}]
    found = traceview.match_resource("po", "v1", pods)
    assert found is not None and found.qualified == "pods" and found.path("a", "b") == "/api/v1/namespaces/a/pods/b"


def test_a_target_is_kind_slash_name() -> None:
    assert traceview.parse_target("deployment/web") == ("deployment", "web")
    for bad in ("web", "deployment/", "/web", "a/b/c"):
        with pytest.raises(ValueError, match="resource/name form"):
            traceview.parse_target(bad)


def test_the_trace_id_is_the_traceparent_s_second_field() -> None:
    assert traceview.trace_id(f"00-{TRACE.upper()}-b7ad6b7169203331-01") == TRACE
    assert traceview.trace_id("00-" + "0" * 32 + "-b7ad6b7169203331-01") == ""
    assert traceview.trace_id("garbage") == ""


def test_the_collector_is_reached_through_the_service_proxy() -> None:
    assert (
        traceview.collector_path(f"/api/v1/traces/{TRACE}")
        == f"/api/v1/namespaces/kube-system/services/trace-collector:4318/proxy/api/v1/traces/{TRACE}"
    )


def test_the_timeline_is_sorted_by_start_indented_by_parent_with_events_under_their_span() -> None:
    trace = {
        "traceId": TRACE,
        "spans": [
            span(
                "0000000000000003",
                "filter",
                812.0,
                1.5,
                parentSpanId="0000000000000002",
                service="scheduler",
                attributes={"scheduler.feasible_nodes": 1},
                events=[
                    {
                        "name": "filtered out",
                        "time": 1_700_000_000_813_000_000,
                        "attributes": {"k8s.node.name": "w2", "reason": "node(s) had untolerated taint"},
                    }
                ],
            ),
            span(
                "0000000000000001",
                "create deployments",
                0.0,
                12.3,
                attributes={"user.name": "kubelab-admin", "k8s.object.uid": "u-1", "k8s.object.name": "web"},
            ),
            span("0000000000000002", "schedule pod", 810.0, 40.0, parentSpanId="0000000000000001", service="scheduler"),
            span(
                "0000000000000004",
                "etcd write",
                9.0,
                0.25,
                parentSpanId="0000000000000001",
                status={"code": "ERROR", "message": "etcdserver: request timed out"},
            ),
        ],
    }
    lines = traceview.render(trace, title='deployments.apps "web" in default')
    assert lines[0] == (
        f'trace {TRACE} of deployments.apps "web" in default: 4 spans over 850ms (apiserver, scheduler)'
    )
    body = [line.rstrip() for line in lines[2:]]
    assert body == [
        "  +0.000s     12ms  apiserver            create deployments  user.name=kubelab-admin k8s.object.name=web",
        "  +0.009s    0.2ms  apiserver              etcd write  ERROR: etcdserver: request timed out",
        "  +0.810s     40ms  scheduler              schedule pod",
        "  +0.812s    1.5ms  scheduler                filter  scheduler.feasible_nodes=1",
        "  +0.813s                                      * filtered out"
        '  k8s.node.name=w2 reason="node(s) had untolerated taint"',
    ]


def test_a_span_whose_parent_is_missing_starts_at_the_left_and_instances_are_told_apart() -> None:
    trace = {
        "traceId": TRACE,
        "spans": [
            span(
                "0000000000000005",
                "sync rules",
                1.0,
                2.0,
                parentSpanId="00000000000000ff",
                service="proxy",
                instance="w1",
            ),
            span(
                "0000000000000006",
                "sync rules",
                1.5,
                2.0,
                parentSpanId="00000000000000ff",
                service="proxy",
                instance="w2",
            ),
        ],
    }
    body = traceview.render(trace)[2:]
    assert "proxy@w1             sync rules" in body[0]
    assert "proxy@w2             sync rules" in body[1]


def test_an_empty_trace_says_so() -> None:
    assert traceview.render({"traceId": TRACE, "spans": []}) == [f"trace {TRACE}: no spans"]


def test_a_parent_comes_before_a_child_that_started_in_the_same_nanosecond() -> None:
    trace = {
        "traceId": TRACE,
        "spans": [
            span("0000000000000002", "authentication", 0.0, 0.01, parentSpanId="0000000000000001"),
            span("0000000000000001", "patch replicasets", 0.0, 20.0),
        ],
    }
    body = traceview.render(trace)[2:]
    assert "patch replicasets" in body[0] and "  authentication" in body[1]


class FakeApi:
    """The lab's API server as the command sees it: answers by path, a 404 Status for anything else."""

    def __init__(self, answers: dict[str, Answer]) -> None:
        self.answers = answers

    def ask(self, method: str, path: str, *, timeout: float = 5.0, body: Any = None) -> Answer:
        return self.answers.get(path, Answer(404, {}, "the server could not find the requested resource"))


def lab_api(deployment: Answer, collector: Answer | None = None) -> FakeApi:
    answers = {
        "/api/v1": Answer(200, {"resources": []}),
        "/apis": Answer(200, {"groups": [{"preferredVersion": {"groupVersion": "apps/v1"}}]}),
        "/apis/apps/v1": Answer(200, {"resources": APPS}),
        "/apis/apps/v1/namespaces/default/deployments/web": deployment,
    }
    if collector is not None:
        answers[traceview.collector_path(f"/api/v1/traces/{TRACE}")] = collector
    return FakeApi(answers)


def annotated(value: str) -> Answer:
    return Answer(200, {"metadata": {"name": "web", "annotations": {traceview.ANNOTATION: value}}})


def test_the_command_prints_the_collector_s_trace_of_the_object() -> None:
    api = lab_api(
        annotated(f"00-{TRACE}-b7ad6b7169203331-01"),
        Answer(200, {"traceId": TRACE, "spans": [span("0000000000000001", "create deployments", 0, 5)]}),
    )
    lines = trace.timeline(api, "deploy", "web", "default")
    assert lines[0].startswith(f'trace {TRACE} of deployments.apps "web" in default: 1 spans')


@pytest.mark.parametrize(
    ("deployment", "collector", "line"),
    [
        (
            Answer(404, {}, 'deployments.apps "web" not found'),
            None,
            'Error from server (NotFound): deployments.apps "web" not found',
        ),
        (
            Answer(200, {"metadata": {"name": "web"}}),
            None,
            'deployments.apps "web" carries no trace: it has no annotation tracing.kubelab.dev/traceparent',
        ),
        (
            annotated(f"00-{TRACE}-b7ad6b7169203331-01"),
            Answer(503, {}, 'no endpoints available for service "trace-collector"'),
            "error: the trace collector (service kube-system/trace-collector) cannot be reached: no endpoints"
            ' available for service "trace-collector"',
        ),
        (
            annotated(f"00-{TRACE}-b7ad6b7169203331-01"),
            Answer(404, {}, f'trace "{TRACE}" not found'),
            f'trace {TRACE} of deployments.apps "web" is not in the trace collector',
        ),
        (
            Answer(0, {}, "https://127.0.0.1:6443: Connection refused"),
            None,
            "error: the lab's API server cannot be reached: https://127.0.0.1:6443: Connection refused",
        ),
    ],
)
def test_what_goes_wrong_is_one_line(deployment: Answer, collector: Answer | None, line: str) -> None:
    with pytest.raises(trace.TraceError) as caught:
        trace.timeline(lab_api(deployment, collector), "deployment", "web", "default")
    assert str(caught.value).startswith(line)
    assert "\n" not in str(caught.value)


def test_an_unknown_kind_is_kubectl_s_line() -> None:
    with pytest.raises(trace.TraceError) as caught:
        trace.resolve(lab_api(annotated("")), "gizmo")
    assert str(caught.value) == 'error: the server doesn\'t have a resource type "gizmo"'
