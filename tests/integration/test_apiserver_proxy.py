"""The proxy subresources on a local lab's real node, driven by the real kubectl: ``pods/NAME/proxy``,
``services/NAME/proxy`` and ``nodes/NAME/proxy`` reach a pod's HTTP server and the node's kubelet
through the API server, and refuse in kube's words and codes."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import pytest

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually

pytestmark = pytest.mark.integration

PAGE = "proxied page"
# answers every GET with PAGE and the path it was asked, so a test sees what reached the pod
SERVER = f"""
import http.server
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("{PAGE} " + self.path).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""


@pytest.fixture(scope="module")
def served(node_kubectl: Kubectl) -> Iterator[str]:
    """A namespace with a ready pod ``web`` serving HTTP on 8080, the Service ``web`` over it (port
    ``http`` 80 -> 8080) and the Service ``empty`` that selects nothing."""
    k = node_kubectl
    namespace = f"apiproxy-{uuid.uuid4().hex[:6]}"
    k.ok("create", "namespace", namespace)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": namespace, "labels": {"app": "web"}},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "python:3",
                    "command": ["python3", "-c", SERVER],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                }
            ]
        },
    }

    def service(name: str, app: str) -> dict[str, object]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }

    try:
        k.ok("apply", "-f", "-", stdin=manifest(pod, service("web", "web"), service("empty", "nothing")))

        def ready() -> bool:
            conditions = k.json("get", "pod", "web", "-n", namespace)["status"].get("conditions") or []
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

        eventually(ready, timeout=120, what="the web pod to be ready")
        yield namespace
    finally:
        k("delete", "namespace", namespace, "--wait=false")


def test_a_pods_page_is_reached_through_the_api_server(node_kubectl: Kubectl, served: str) -> None:
    page = node_kubectl.ok("get", "--raw", f"/api/v1/namespaces/{served}/pods/web:8080/proxy/")
    assert page == f"{PAGE} /"
    deeper = node_kubectl.ok("get", "--raw", f"/api/v1/namespaces/{served}/pods/http:web:8080/proxy/a/b/?x=1")
    assert deeper == f"{PAGE} /a/b/?x=1"


def test_a_services_page_is_reached_by_port_name_or_number(node_kubectl: Kubectl, served: str) -> None:
    def page() -> bool:
        return node_kubectl("get", "--raw", f"/api/v1/namespaces/{served}/services/web:http/proxy/").out == f"{PAGE} /"

    eventually(page, timeout=30, what="the Service's endpoint")  # its EndpointSlice follows the pod's readiness
    by_number = node_kubectl.ok("get", "--raw", f"/api/v1/namespaces/{served}/services/web:80/proxy/status")
    assert by_number == f"{PAGE} /status"


def test_a_service_without_endpoints_is_unavailable_in_kubes_words(node_kubectl: Kubectl, served: str) -> None:
    refused = node_kubectl("get", "--raw", f"/api/v1/namespaces/{served}/services/empty:http/proxy/")
    assert refused.code != 0
    assert 'no endpoints available for service \\"empty:http\\"' in refused.err or (
        'no endpoints available for service "empty' in refused.err
    )
    missing = node_kubectl("get", "--raw", f"/api/v1/namespaces/{served}/services/nowhere/proxy/")
    assert 'services \\"nowhere\\" not found' in missing.err or 'services "nowhere" not found' in missing.err


def test_a_user_who_may_only_get_pods_is_refused_the_pods_proxy(
    node_lab: Lab, node_kubectl: Kubectl, served: str
) -> None:
    k = node_kubectl
    k.ok("create", "serviceaccount", "reader", "-n", served)
    k.ok("create", "role", "reader", "--verb=get", "--resource=pods", "-n", served)
    k.ok("create", "rolebinding", "reader", "--role=reader", f"--serviceaccount={served}:reader", "-n", served)
    token = k.ok("create", "token", "reader", "-n", served).strip()
    context = ssl.create_default_context(cafile=str(node_lab.root / "pki" / "ca.crt"))

    def status_of(path: str) -> int:
        request = urllib.request.Request(f"{node_lab.server}{path}", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    eventually(lambda: status_of(f"/api/v1/namespaces/{served}/pods/web") == 200, timeout=30, what="the binding")
    assert status_of(f"/api/v1/namespaces/{served}/pods/web:8080/proxy/") == 403


def test_the_nodes_kubelet_is_reached_through_the_api_server(node_kubectl: Kubectl, served: str) -> None:
    node = node_kubectl.json("get", "pod", "web", "-n", served)["spec"]["nodeName"]
    assert node_kubectl.ok("get", "--raw", f"/api/v1/nodes/{node}/proxy/healthz").strip() == "ok"
    summary = json.loads(node_kubectl.ok("get", "--raw", f"/api/v1/nodes/{node}/proxy/stats/summary"))
    assert summary["node"]["nodeName"] == node
