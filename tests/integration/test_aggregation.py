"""The aggregation layer on a local lab's real node: an HTTPS server in a pod, registered by an
APIService, serves its group through the API server to the real kubectl (who the caller is, in the
front proxy's headers, over the front proxy's client certificate), and answers 503 once its Service
is gone.

The backend runs in a pod (the ``python`` image, its script, certificate and the front proxy's CA in a
ConfigMap), so the API server reaches it as it reaches metrics-server: through the Service's
endpoints, at a pod address on the node's bridge. The session's lab has no node, hence a lab of its own.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually

GROUP, VERSION = "demo.kubelab.io", "v1"
APISERVICE = f"{VERSION}.{GROUP}"
NS = "aggregation-demo"

BACKEND = r"""
import http.server, json, ssl
GV = "/apis/demo.kubelab.io/v1"
RESOURCES = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "demo.kubelab.io/v1", "resources": [
    {"name": "widgets", "singularName": "widget", "namespaced": True, "kind": "Widget", "verbs": ["get", "list"]}]}

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        peer = self.connection.getpeercert()
        subject = dict(item[0] for item in peer["subject"]) if peer else {}
        if self.path == GV:
            body = RESOURCES
        elif self.path.startswith(GV + "/namespaces/") and "/widgets" in self.path:
            body = {"kind": "WidgetList", "apiVersion": "demo.kubelab.io/v1", "metadata": {}, "items": [{
                "kind": "Widget", "apiVersion": "demo.kubelab.io/v1", "metadata": {"name": "seen"},
                "user": self.headers.get("X-Remote-User"), "groups": self.headers.get_all("X-Remote-Group") or [],
                "authorization": self.headers.get("Authorization"), "client": subject.get("commonName")}]}
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/etc/backend/tls.crt", "/etc/backend/tls.key")
context.load_verify_locations("/etc/backend/front-proxy-ca.crt")  # a certificate of another CA is refused
context.verify_mode = ssl.CERT_OPTIONAL
server = http.server.ThreadingHTTPServer(("", 8443), Handler)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def self_signed(name: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


@pytest.fixture(scope="module")
def lab(node_lab: Lab) -> Lab:
    return node_lab


@pytest.fixture(scope="module")
def k(node_kubectl: Kubectl) -> Kubectl:
    return node_kubectl


def condition(k: Kubectl) -> dict[str, Any]:
    found = k.json("get", "apiservice", APISERVICE)
    return next((c for c in (found.get("status") or {}).get("conditions") or [] if c["type"] == "Available"), {})


def deploy_backend(k: Kubectl) -> None:
    auth = k.json("get", "configmap", "extension-apiserver-authentication", "-n", "kube-system")["data"]
    assert json.loads(auth["requestheader-allowed-names"]) == ["front-proxy-client"]
    assert json.loads(auth["requestheader-username-headers"]) == ["X-Remote-User"]
    cert, key = self_signed(f"backend.{NS}.svc")
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "backend", "namespace": NS},
            "data": {
                "server.py": BACKEND,
                "tls.crt": cert,
                "tls.key": key,
                "front-proxy-ca.crt": auth["requestheader-client-ca-file"],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "backend", "namespace": NS, "labels": {"app": "backend"}},
            "spec": {
                "containers": [
                    {
                        "name": "server",
                        "image": "python",
                        "command": ["python", "/etc/backend/server.py"],
                        "ports": [{"containerPort": 8443, "name": "https"}],
                        "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
                        "volumeMounts": [{"name": "backend", "mountPath": "/etc/backend"}],
                    }
                ],
                "volumes": [{"name": "backend", "configMap": {"name": "backend"}}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "backend", "namespace": NS},
            "spec": {"selector": {"app": "backend"}, "ports": [{"name": "https", "port": 443, "targetPort": 8443}]},
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": APISERVICE},
            "spec": {
                "group": GROUP,
                "version": VERSION,
                "service": {"namespace": NS, "name": "backend"},
                "insecureSkipTLSVerify": True,
                "groupPriorityMinimum": 1000,
                "versionPriority": 15,
            },
        },
    ]
    for obj in objects:
        k.ok("apply", "-f", "-", stdin=manifest(obj))


def test_an_aggregated_group_is_served_through_the_api_server_until_its_service_goes(k: Kubectl) -> None:
    try:
        deploy_backend(k)
        eventually(lambda: condition(k).get("status") == "True", timeout=120, what="the APIService to be available")
        assert condition(k)["reason"] == "Passed" and condition(k)["message"] == "all checks passed"

        listed = json.loads(k.ok("get", "--raw", f"/apis/{GROUP}/{VERSION}/namespaces/default/widgets"))
        seen = listed["items"][0]
        whoami = k.json("auth", "whoami")["status"]["userInfo"]
        assert seen["user"] == whoami["username"]
        assert set(seen["groups"]) == set(whoami["groups"])
        assert seen["client"] == "front-proxy-client"  # verified against the front proxy's CA
        assert seen["authorization"] is None  # the caller's credentials stay with the API server

        resources = k.ok("api-resources", f"--api-group={GROUP}")
        assert "widgets" in resources and f"{GROUP}/{VERSION}" in resources
        table = k.ok("get", "apiservices")
        row = next(line.split() for line in table.splitlines() if line.startswith(APISERVICE))
        assert row[:3] == [APISERVICE, f"{NS}/backend", "True"]

        k.ok("delete", "service", "backend", "-n", NS)
        eventually(lambda: condition(k).get("status") == "False", timeout=60, what="the APIService to be unavailable")
        assert condition(k)["reason"] == "ServiceNotFound"
        refused = k("get", "--raw", f"/apis/{GROUP}/{VERSION}/namespaces/default/widgets")
        assert not refused.ok
        assert "the server is currently unable to handle the request" in refused.err
        row = next(line.split() for line in k.ok("get", "apiservices").splitlines() if line.startswith(APISERVICE))
        assert row[2:4] == ["False", "(ServiceNotFound)"]
        assert k("get", "pods", "-n", NS).ok  # kubectl still works with the group unavailable
    finally:
        k("delete", "apiservice", APISERVICE, "--ignore-not-found")
        k("delete", "namespace", NS, "--wait=false")
