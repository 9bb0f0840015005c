"""``kubelab trace`` on the session's local lab: a Deployment created with kubectl carries the API
server's trace, which the trace collector (started by the local driver for every lab) keeps and the
command prints through the API server's service proxy; bad input is one line in kube's words."""

from __future__ import annotations

import json

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually

ANNOTATION = "tracing.kubelab.dev/traceparent"


def test_kubelab_trace_prints_the_api_server_s_spans_for_a_deployment(
    lab: Lab, kubectl: Kubectl, namespace: str
) -> None:
    kubectl.ok("create", "deployment", "web", "--image=registry.k8s.io/pause:3.9", "-n", namespace)
    deployment = kubectl.json("get", "deployment", "web", "-n", namespace)
    trace_id = deployment["metadata"]["annotations"][ANNOTATION].split("-")[1]

    def printed() -> str:
        result = lab.cli("trace", "deployment/web", "-n", namespace, "--name", lab.name, timeout=30)
        return result.out if result.ok and "create deployments" in result.out else ""

    out = eventually(printed, timeout=10, what="the API server's span of the Deployment in kubelab trace")
    lines = out.splitlines()
    assert lines[0].startswith(f'trace {trace_id} of deployments.apps "web" in {namespace}: ')
    created = next(line for line in lines if "create deployments" in line)
    assert " apiserver " in created and "k8s.object.name=web" in created and "user.name=kubelab-admin" in created
    assert created.split()[0] == "+0.000s"


def test_the_collector_answers_its_query_api_through_the_service_proxy(kubectl: Kubectl) -> None:
    path = "/api/v1/namespaces/kube-system/services/trace-collector:4318/proxy/api/v1/traces?limit=5"
    listed = json.loads(kubectl.ok("get", "--raw", path))
    assert isinstance(listed["traces"], list)
    missing = kubectl("get", "--raw", path.replace("traces?limit=5", "traces/" + "0" * 31 + "1"))
    assert missing.code != 0 and "not found" in missing.err


def test_an_object_that_does_not_exist_is_one_line_in_kube_s_words(lab: Lab, namespace: str) -> None:
    result = lab.cli("trace", "deployment/nope", "-n", namespace, "--name", lab.name, timeout=30)
    assert result.code == 1
    assert result.err.strip().splitlines() == ['Error from server (NotFound): deployments.apps "nope" not found']


def test_an_object_without_a_trace_says_why(lab: Lab) -> None:
    # the collector writes its own Service as a component: no user's write, no trace
    result = lab.cli("trace", "service/trace-collector", "-n", "kube-system", "--name", lab.name, timeout=30)
    assert result.code == 1
    (line,) = result.err.strip().splitlines()
    assert line.startswith('services "trace-collector" carries no trace: it has no annotation')
    assert "Traceback" not in result.err


def test_an_unknown_kind_is_kubectl_s_line(lab: Lab) -> None:
    result = lab.cli("trace", "gizmo/x", "--name", lab.name, timeout=30)
    assert result.code == 1
    assert result.err.strip() == 'error: the server doesn\'t have a resource type "gizmo"'
