"""The ingress controller add-on on a local lab's real node: enabled through the add-on manager, its
nginx answers through the ingress-nginx-controller Service's NodePort (from inside the node's network
namespace, where NodePorts live on a local lab) by host and by path for two Deployments behind one
Ingress, answers 503 for a path whose Service is missing (with a warning on the Ingress), serves TLS
from a Secret, keeps serving when nginx refuses a configuration, and reports the node's address in
the Ingress's status (the LoadBalancer Service has no external address on a local lab)."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from provisioner.drivers.local import nodenet
from provisioner.system import packages
from tests.integration.conftest import running_lab
from tests.support.components import require

NAMESPACE = "ingress-nginx"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require(packages.CONTAINERD, packages.RUNC, packages.CNI_BRIDGE, packages.NFT, packages.CURL)
    with running_lab(tmp_path_factory.mktemp("ingress-home"), "ingress", "--nodes", "1") as running:
        yield running


@pytest.fixture(scope="module")
def k(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    kubectl = Kubectl(lab.kubeconfig, cache_dir=tmp_path_factory.mktemp("ingress-kubectl"))
    # the add-on's own namespace is not there yet: the add-on manager makes it before its dry run
    assert not kubectl("get", "namespace", NAMESPACE).ok
    enabled = lab.cli("addons", "enable", "ingress-nginx", "--name", lab.name)
    assert enabled.ok, enabled.err
    eventually(lambda: ready(kubectl), timeout=180, what="the ingress controller to be ready")
    return kubectl


def ready(k: Kubectl) -> bool:
    found = k("get", "deployment", "ingress-nginx-controller", "-n", NAMESPACE, "-o", "json")
    return (
        found.ok
        and k.json("get", "deployment", "ingress-nginx-controller", "-n", NAMESPACE)["status"].get("readyReplicas") == 1
    )


@pytest.fixture(scope="module")
def node_ports(k: Kubectl) -> dict[str, int]:
    spec = k.json("get", "service", "ingress-nginx-controller", "-n", NAMESPACE)["spec"]
    assert spec["type"] == "LoadBalancer"
    return {port["name"]: int(port["nodePort"]) for port in spec["ports"]}


def curl(lab: Lab, *args: str) -> tuple[int, str]:
    """curl inside the lab node's network namespace; (HTTP status, body)."""
    netns = nodenet.for_lab(lab.name).netns
    argv = ["ip", "netns", "exec", netns, "curl", "-s", "--max-time", "5", "-w", "\n%{http_code}", *args]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    body, _, code = done.stdout.rpartition("\n")
    return int(code or 0), body


def through_ingress(lab: Lab, port: int, host: str, path: str) -> tuple[int, str]:
    return curl(lab, "-H", f"Host: {host}", f"http://{nodenet.for_lab(lab.name).ip}:{port}{path}")


# every path answered with the pod's name and the request (the echo image answers only /)
ECHO = """
import http.server, os
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"pod {os.environ['POD_NAME']} host {self.headers['Host']} path {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("", 8080), Echo).serve_forever()
"""


def echo_deployment(k: Kubectl, name: str) -> None:
    container = {
        "name": "echo",
        "image": "python:3",
        "command": ["python3", "-c", ECHO],
        "ports": [{"containerPort": 8080}],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 2},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }
    k.ok("apply", "-f", "-", stdin=manifest(deployment) + "---\n" + manifest(service))


def rule(host: str, *paths: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "host": host,
        "http": {
            "paths": [
                {"path": p, "pathType": kind, "backend": {"service": {"name": svc, "port": {"name": "http"}}}}
                for p, kind, svc in paths
            ]
        },
    }


@pytest.fixture(scope="module")
def routed(k: Kubectl) -> str:
    """web and api behind one Ingress (of no class: the default class, nginx, is filled in)."""
    for name in ("web", "api"):
        echo_deployment(k, name)
    for name in ("web", "api"):
        eventually(
            lambda n=name: k.json("get", "deployment", n)["status"].get("readyReplicas") == 1,  # type: ignore[misc]
            timeout=120,
            what=f"{name} to be ready",
        )
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "shop"},
        "spec": {
            "rules": [
                rule("web.example", ("/", "Prefix", "web")),
                rule(
                    "shop.example",
                    ("/api", "Prefix", "api"),
                    ("/", "Prefix", "web"),
                    ("/missing", "Prefix", "nope"),
                    ("/exact", "Exact", "api"),
                ),
            ]
        },
    }
    k.ok("apply", "-f", "-", stdin=manifest(ingress))
    return "shop"


def pod_of(answer: tuple[int, str]) -> str:
    """``web`` or ``api`` from the echo server's answer (``pod web-abc-xyz host ... path /``), else ''."""
    code, body = answer
    return body.split()[1].split("-")[0] if code == 200 and body.startswith("pod ") else ""


def test_the_ingress_class_is_the_default_and_the_ingress_gets_it(k: Kubectl, routed: str) -> None:
    cls = k.json("get", "ingressclass", "nginx")
    assert cls["spec"]["controller"] == "kubelab.dev/ingress-nginx"
    assert cls["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
    assert k.json("get", "ingress", routed)["spec"]["ingressClassName"] == "nginx"


def test_two_deployments_answer_by_host_and_by_path_through_the_controller(
    lab: Lab, k: Kubectl, node_ports: dict[str, int], routed: str
) -> None:
    http = node_ports["http"]
    eventually(lambda: pod_of(through_ingress(lab, http, "web.example", "/")) == "web", timeout=60, what="web.example")
    assert pod_of(through_ingress(lab, http, "web.example", "/anything/at/all")) == "web"
    assert pod_of(through_ingress(lab, http, "shop.example", "/api")) == "api"
    assert pod_of(through_ingress(lab, http, "shop.example", "/api/orders?id=1")) == "api"
    assert pod_of(through_ingress(lab, http, "shop.example", "/apiary")) == "web"  # element-wise prefix
    assert pod_of(through_ingress(lab, http, "shop.example", "/exact")) == "api"
    assert pod_of(through_ingress(lab, http, "shop.example", "/exact/more")) == "web"
    _code, body = through_ingress(lab, http, "shop.example", "/api/orders?id=1")
    assert body.endswith("path /api/orders?id=1")  # the request reaches the pod unchanged
    assert through_ingress(lab, http, "nobody.example", "/")[0] == 404  # no rule, no default backend


def test_a_path_whose_service_is_missing_answers_503_and_the_ingress_has_a_warning(
    lab: Lab, k: Kubectl, node_ports: dict[str, int], routed: str
) -> None:
    http = node_ports["http"]
    eventually(lambda: through_ingress(lab, http, "shop.example", "/missing")[0] == 503, timeout=60, what="503")
    assert through_ingress(lab, http, "shop.example", "/missing/deeper")[0] == 503
    assert pod_of(through_ingress(lab, http, "shop.example", "/missingness")) == "web"

    def reasons() -> dict[str, str]:
        found = k.json("get", "events", "--field-selector", f"involvedObject.name={routed}")["items"]
        return {e["reason"]: e["message"] for e in found if e["involvedObject"]["kind"] == "Ingress"}

    eventually(lambda: {"Sync", "ServiceNotFound"} <= set(reasons()), timeout=30, what="the Ingress's events")
    assert reasons()["Sync"] == "Scheduled for sync"
    assert reasons()["ServiceNotFound"] == 'service "default/nope" not found: shop.example/missing answers 503'
    described = k.ok("describe", "ingress", routed)
    assert "ServiceNotFound" in described and "nginx-ingress-controller" in described


def test_the_ingress_status_shows_the_address_of_the_node_the_controller_runs_on(k: Kubectl, routed: str) -> None:
    node = k.json("get", "nodes")["items"][0]
    internal = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")

    def address() -> list[dict[str, str]]:
        return list(k.json("get", "ingress", routed)["status"].get("loadBalancer", {}).get("ingress") or [])

    assert eventually(address, timeout=60, what="the Ingress's status address") == [{"ip": internal}]
    assert internal in k.ok("get", "ingress", routed)  # the ADDRESS column
    lease = k.json("get", "lease", "ingress-nginx-leader", "-n", NAMESPACE)
    assert lease["spec"]["holderIdentity"].startswith("ingress-nginx-controller-")
    pod = k.json("get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=controller")["items"][0]
    logs = k.ok("logs", "-n", NAMESPACE, pod["metadata"]["name"])
    assert "nginx master started" in logs and "Traceback" not in logs, logs


def test_tls_from_a_secret_serves_https_and_a_certificate_nginx_refuses_leaves_the_last_one_serving(
    lab: Lab, k: Kubectl, node_ports: dict[str, int], routed: str, tmp_path: Path
) -> None:
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=secure.example"),
            *("-keyout", str(tmp_path / "tls.key"), "-out", str(tmp_path / "tls.crt")),
        ],
        check=True,
        capture_output=True,
    )
    k.ok("create", "secret", "tls", "secure-cert", f"--cert={tmp_path / 'tls.crt'}", f"--key={tmp_path / 'tls.key'}")
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "secure"},
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["secure.example"], "secretName": "secure-cert"}],
            "rules": [rule("secure.example", ("/", "Prefix", "api"))],
        },
    }
    k.ok("apply", "-f", "-", stdin=manifest(ingress))
    https = node_ports["https"]
    ip = nodenet.for_lab(lab.name).ip
    resolve = f"secure.example:{https}:{ip}"
    url = f"https://secure.example:{https}/"

    def over_tls() -> str:
        return pod_of(curl(lab, "--cacert", str(tmp_path / "tls.crt"), "--resolve", resolve, url))

    assert eventually(over_tls, timeout=60, what="https://secure.example") == "api"  # the certificate checks out

    # a certificate nginx cannot load: the new configuration is refused, the last one keeps serving
    # (sent as a manifest: kubectl create secret tls checks the certificate itself; the API server does not)
    junk = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "junk-cert"},
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64.b64encode(junk.encode()).decode(),
            "tls.key": base64.b64encode((tmp_path / "tls.key").read_bytes()).decode(),
        },
    }
    k.ok("apply", "-f", "-", stdin=manifest(secret))
    broken = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "broken"},
        "spec": {
            "tls": [{"hosts": ["junk.example"], "secretName": "junk-cert"}],
            "rules": [rule("junk.example", ("/", "Prefix", "web"))],
        },
    }
    k.ok("apply", "-f", "-", stdin=manifest(broken))

    def refused() -> str:
        found = k.json("get", "events", "--field-selector", "involvedObject.name=broken")["items"]
        return next((e["message"] for e in found if e["reason"] == "RELOAD" and e["type"] == "Warning"), "")

    message = eventually(refused, timeout=60, what="the refusal's event")
    assert message.startswith("Error reloading NGINX: ") and "[emerg]" in message
    assert over_tls() == "api"
    assert through_ingress(lab, node_ports["http"], "junk.example", "/")[0] == 404  # not applied
    k.ok("delete", "ingress", "broken")
    # the next configuration nginx takes is applied again
    later = {
        **broken,
        "metadata": {"name": "later"},
        "spec": {"rules": [rule("later.example", ("/", "Prefix", "web"))]},
    }
    k.ok("apply", "-f", "-", stdin=manifest(later))
    answer = eventually(
        lambda: pod_of(through_ingress(lab, node_ports["http"], "later.example", "/")), timeout=30, what="later.example"
    )
    assert answer == "web"


def test_disabling_the_addon_removes_the_controller_its_namespace_and_its_class(lab: Lab, k: Kubectl) -> None:
    off = lab.cli("addons", "disable", "ingress-nginx", "--name", lab.name)
    assert off.ok, off.err
    assert "ingress-nginx: disabled" in off.out

    def gone() -> bool:
        return not any(
            k(*what).ok
            for what in (
                ("get", "namespace", NAMESPACE),
                ("get", "ingressclass", "nginx"),
                ("get", "clusterrole", "ingress-nginx"),
                ("get", "clusterrolebinding", "ingress-nginx"),
            )
        )

    eventually(gone, timeout=90, what="every object of the add-on to be gone")
    listed = lab.cli("addons", "list", "--name", lab.name)
    assert listed.ok and any(line.split()[:3] == ["ingress-nginx", "no", "not"] for line in listed.out.splitlines())
    assert k("get", "ingress", "shop").ok  # the users' Ingresses stay; nothing serves them now
