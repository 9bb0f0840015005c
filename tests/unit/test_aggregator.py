"""The aggregation layer: APIService validation, endpoint choice, proxy headers, discovery conversion and
the availability planner as pure functions; then one API server on the in-memory store proxying to a
real HTTPS backend on this machine (front-proxy certificate, caBundle, user headers, 503 once gone)."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from agents.apiserver import aggregator as agg
from agents.apiserver import discovery
from agents.apiserver.kinds.apiregistration import APIServiceStrategy, apiservice_errors
from agents.apiserver.resources import Catalog
from agents.apiserver.server import ApiServer
from agents.apiserver.settings import (
    ApiServerSettings,
    ProxyClientSettings,
    RequestHeaderSettings,
    WatchCacheSettings,
)
from agents.apiserver.tables import table
from kubelab_testing.waiting import until
from provisioner.lab.pki import FRONT_PROXY_CA, FRONT_PROXY_CLIENT, Pki


def apiservice(
    name: str = "v1beta1.metrics.k8s.io", *, service: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    version, _, group = name.partition(".")
    body: dict[str, Any] = {
        "group": group,
        "version": version,
        "groupPriorityMinimum": 100,
        "versionPriority": 100,
        "service": service if service is not None else {"namespace": "kube-system", "name": "metrics-server"},
    }
    body.update(spec)
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": name}, "spec": body}


def messages(obj: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e.field, e.detail) for e in apiservice_errors(obj)]


# --- validation ----------------------------------------------------------------------------------


def test_a_well_formed_apiservice_is_valid_and_its_port_defaults_to_443() -> None:
    obj = apiservice()
    strategy = APIServiceStrategy(Catalog().by_kind("apiregistration.k8s.io", "APIService"))  # type: ignore[arg-type]
    strategy.default(obj)
    assert obj["spec"]["service"]["port"] == 443
    assert messages(obj) == []


def test_the_name_must_be_version_dot_group() -> None:
    obj = apiservice()
    obj["metadata"]["name"] = "metrics"
    assert ("metadata.name", 'must be `spec.version+"."+spec.group`') in messages(obj)


def test_group_and_version_are_required() -> None:
    obj = apiservice("v1beta1.metrics.k8s.io")
    obj["spec"]["group"], obj["spec"]["version"] = "", ""
    fields = [field for field, _ in messages(obj)]
    assert "spec.group" in fields and "spec.version" in fields


def test_priorities_must_be_positive_and_bounded() -> None:
    assert [f for f, _ in messages(apiservice(groupPriorityMinimum=0, versionPriority=1001))] == [
        "spec.groupPriorityMinimum",
        "spec.versionPriority",
    ]


def test_tls_settings_exclude_each_other_and_a_local_apiservice_has_none() -> None:
    both = apiservice(insecureSkipTLSVerify=True, caBundle=base64.b64encode(b"pem").decode())
    assert ("spec.insecureSkipTLSVerify", "may not be true if caBundle is present") in messages(both)
    local = apiservice(service=None, insecureSkipTLSVerify=True)
    local["spec"].pop("service")
    assert messages(local) == [("spec.insecureSkipTLSVerify", "local APIServices may not have insecureSkipTLSVerify")]


def test_a_service_reference_needs_a_namespace_a_name_and_a_valid_port() -> None:
    obj = apiservice(service={"port": 70000})
    assert {f for f, _ in messages(obj)} == {"spec.service.namespace", "spec.service.name", "spec.service.port"}


# --- endpoints -----------------------------------------------------------------------------------


def service(port: int = 443, name: str = "https") -> dict[str, Any]:
    return {
        "metadata": {"name": "metrics-server", "namespace": "kube-system"},
        "spec": {"ports": [{"name": name, "port": port, "targetPort": 4443}]},
    }


def endpoint_slice(*endpoints: tuple[str, bool], port_name: str = "https", port: int = 4443) -> dict[str, Any]:
    return {
        "addressType": "IPv4",
        "metadata": {"labels": {agg.SERVICE_NAME_LABEL: "metrics-server"}},
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip, ready in endpoints],
    }


BACKEND = agg.backend_of(apiservice(service={"namespace": "kube-system", "name": "metrics-server", "port": 443}))


def test_ready_endpoints_are_the_ready_addresses_at_the_target_port_of_the_named_service_port() -> None:
    assert BACKEND is not None
    found = agg.ready_endpoints(BACKEND, service(), [endpoint_slice(("10.244.0.5", True), ("10.244.0.6", False))])
    assert found == [agg.Endpoint("10.244.0.5", 4443)]


def test_a_missing_service_or_port_or_ready_endpoint_says_why() -> None:
    assert BACKEND is not None
    assert agg.ready_endpoints(BACKEND, None, []) == agg.Unreachable(
        "ServiceNotFound", 'service/metrics-server in "kube-system" is not present'
    )
    assert agg.ready_endpoints(BACKEND, service(port=8443), []).reason == "ServicePortError"  # type: ignore[union-attr]
    none_ready = agg.ready_endpoints(BACKEND, service(), [endpoint_slice(("10.244.0.6", False))])
    assert none_ready == agg.Unreachable(
        "MissingEndpoints",
        'endpoints for service/metrics-server in "kube-system" have no addresses with port name "https"',
    )
    other_port = agg.ready_endpoints(BACKEND, service(), [endpoint_slice(("10.244.0.5", True), port_name="metrics")])
    assert isinstance(other_port, agg.Unreachable)


# --- headers -------------------------------------------------------------------------------------


def test_the_backend_gets_the_authenticated_user_and_none_of_the_callers_credentials_or_claims() -> None:
    incoming = [
        ("Authorization", "Bearer secret"),
        ("Accept", "application/json"),
        ("X-Remote-User", "system:admin"),
        ("x-remote-group", "system:masters"),
        ("X-Remote-Extra-Scopes", "all"),
        ("Impersonate-User", "root"),
        ("Connection", "keep-alive"),
        ("Host", "api:6443"),
        ("User-Agent", "kubectl"),
    ]
    out = agg.proxy_headers(
        incoming, user="alice", groups=["dev", "system:authenticated"], extra={"acme.io/team": ["a", "b"]}
    )
    assert out == [
        ("Accept", "application/json"),
        ("User-Agent", "kubectl"),
        ("X-Remote-User", "alice"),
        ("X-Remote-Group", "dev"),
        ("X-Remote-Group", "system:authenticated"),
        ("X-Remote-Extra-acme.io%2Fteam", "a"),
        ("X-Remote-Extra-acme.io%2Fteam", "b"),
    ]


def test_hop_by_hop_headers_of_the_answer_are_dropped() -> None:
    upstream = [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked"), ("Connection", "close")]
    assert agg.response_headers(upstream) == [("Content-Type", "application/json")]


# --- discovery -----------------------------------------------------------------------------------

METRICS_LIST = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "metrics.k8s.io/v1beta1",
    "resources": [
        {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
        {
            "name": "pods",
            "singularName": "",
            "namespaced": True,
            "kind": "PodMetrics",
            "verbs": ["get", "list"],
            "shortNames": ["pm"],
        },
        {"name": "pods/status", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get"]},
    ],
}


def test_a_resource_list_becomes_an_aggregated_version_with_subresources_under_their_parent() -> None:
    version = agg.version_discovery(METRICS_LIST, group="metrics.k8s.io", version="v1beta1")
    assert version["version"] == "v1beta1" and version["freshness"] == "Current"
    nodes, pods = version["resources"]
    assert nodes == {
        "resource": "nodes",
        "responseKind": {"group": "metrics.k8s.io", "version": "v1beta1", "kind": "NodeMetrics"},
        "scope": "Cluster",
        "singularResource": "",
        "verbs": ["get", "list"],
    }
    assert pods["scope"] == "Namespaced" and pods["shortNames"] == ["pm"]
    assert pods["subresources"] == [
        {
            "subresource": "status",
            "responseKind": {"group": "metrics.k8s.io", "version": "v1beta1", "kind": "PodMetrics"},
            "verbs": ["get"],
        }
    ]


def backend(name: str, *, group_priority: int = 100, version_priority: int = 100) -> agg.Backend:
    found = agg.backend_of(apiservice(name, groupPriorityMinimum=group_priority, versionPriority=version_priority))
    assert found is not None
    return found


def test_group_lists_gain_the_aggregated_groups_with_the_preferred_version_first() -> None:
    backends = [backend("v1alpha1.metrics.k8s.io", version_priority=5), backend("v1beta1.metrics.k8s.io")]
    merged = agg.merge_group_list({"kind": "APIGroupList", "groups": [{"name": "apps"}]}, backends)
    assert [g["name"] for g in merged["groups"]] == ["apps", "metrics.k8s.io"]
    metrics = merged["groups"][1]
    assert metrics["preferredVersion"] == {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}
    assert [v["version"] for v in metrics["versions"]] == ["v1beta1", "v1alpha1"]


def test_aggregated_discovery_leaves_out_groups_without_a_discovery_document() -> None:
    backends = [backend("v1beta1.metrics.k8s.io"), backend("v1.down.example.com")]
    version = agg.version_discovery(METRICS_LIST, group="metrics.k8s.io", version="v1beta1")
    merged = agg.merge_aggregated({"items": [{"metadata": {"name": "apps"}}]}, backends, {backends[0].name: version})
    assert [item["metadata"]["name"] for item in merged["items"]] == ["apps", "metrics.k8s.io"]
    assert merged["items"][1]["versions"] == [version]


# --- availability --------------------------------------------------------------------------------


def test_availability_says_the_first_failing_check_in_kubes_words() -> None:
    missing = agg.availability(agg.Unreachable("ServiceNotFound", "gone"), None)
    assert (missing["status"], missing["reason"]) == ("False", "ServiceNotFound")
    failed = agg.availability(None, "failing or missing response from https://10.0.0.1:443/apis/x/v1: refused")
    assert (failed["status"], failed["reason"]) == ("False", "FailedDiscoveryCheck")
    assert agg.availability(None, None) == {
        "type": "Available",
        "status": "True",
        "reason": "Passed",
        "message": "all checks passed",
    }


def test_the_condition_is_written_only_when_it_changes_and_its_time_moves_with_its_status() -> None:
    passed = agg.availability(None, None)
    status = agg.status_change(None, passed, "2025-01-01T00:00:00Z")
    assert status == {"conditions": [{**passed, "lastTransitionTime": "2025-01-01T00:00:00Z"}]}
    assert agg.status_change(status, passed, "2025-01-02T00:00:00Z") is None
    down = agg.availability(agg.Unreachable("MissingEndpoints", "none"), None)
    changed = agg.status_change(status, down, "2025-01-03T00:00:00Z")
    assert changed is not None and changed["conditions"][0]["lastTransitionTime"] == "2025-01-03T00:00:00Z"
    other = agg.availability(agg.Unreachable("ServiceNotFound", "gone"), None)
    again = agg.status_change(changed, other, "2025-01-04T00:00:00Z")
    assert again is not None and again["conditions"][0]["lastTransitionTime"] == "2025-01-03T00:00:00Z"


def test_the_authentication_configmap_has_kubes_keys_with_json_lists() -> None:
    data = agg.extension_authentication(
        client_ca="CLIENT",
        requestheader_ca="PROXY",
        allowed_names=["front-proxy-client"],
        username_headers=["X-Remote-User"],
        group_headers=["X-Remote-Group"],
        extra_headers_prefix=["X-Remote-Extra-"],
    )
    assert data == {
        "client-ca-file": "CLIENT",
        "requestheader-client-ca-file": "PROXY",
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-username-headers": '["X-Remote-User"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
    }


def test_kubectl_get_apiservices_shows_the_service_and_why_it_is_unavailable() -> None:
    down = apiservice()
    down["status"] = {"conditions": [{"type": "Available", "status": "False", "reason": "FailedDiscoveryCheck"}]}
    local = apiservice("v1.apps", service=None)
    local["spec"].pop("service")
    local["status"] = {"conditions": [{"type": "Available", "status": "True", "reason": "Local"}]}
    rows = table("apiservices.apiregistration.k8s.io", [down, local])["rows"]
    assert [r["cells"][:3] for r in rows] == [
        ["v1beta1.metrics.k8s.io", "kube-system/metrics-server", "False (FailedDiscoveryCheck)"],
        ["v1.apps", "Local", "True"],
    ]


# --- one API server and a real HTTPS backend -----------------------------------------------------


@dataclass
class Backend:
    port: int
    seen: list[dict[str, Any]]


async def _backend_app(seen: list[dict[str, Any]]) -> web.Application:
    async def discovery(request: web.Request) -> web.Response:
        return web.json_response(METRICS_LIST)

    async def pods(request: web.Request) -> web.Response:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        peer = ssl_object.getpeercert() if ssl_object is not None else None
        subject = dict(item[0] for item in (peer or {}).get("subject", ()))
        record = {
            "user": request.headers.get("X-Remote-User"),
            "groups": request.headers.getall("X-Remote-Group", []),
            "authorization": request.headers.get("Authorization"),
            "client": subject.get("commonName"),
            "query": request.query_string,
        }
        seen.append(record)
        return web.json_response({"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "items": [record]})

    app = web.Application()
    app.router.add_get("/apis/metrics.k8s.io/v1beta1", discovery)
    app.router.add_get("/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods", pods)
    return app


@pytest.fixture
async def pki(tmp_path: Path) -> Pki:
    made = Pki(tmp_path / "pki")
    made.ensure_ca()
    made.ensure_front_proxy()
    made.ensure_serving(name="backend", dns_names=["metrics-server.kube-system.svc"], ips=[], common_name="backend")
    return made


@pytest.fixture
async def backend_server(pki: Pki) -> AsyncIterator[Backend]:
    """An HTTPS server on 127.0.0.1 that asks for a client certificate of the front-proxy CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(pki.serving_cert("backend")), str(pki.serving_key("backend")))
    context.load_verify_locations(str(pki.directory / f"{FRONT_PROXY_CA}.crt"))
    context.verify_mode = ssl.CERT_OPTIONAL
    seen: list[dict[str, Any]] = []
    runner = web.AppRunner(await _backend_app(seen))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    yield Backend(port, seen)
    await runner.cleanup()


@pytest.fixture
async def proxying(schema_cache: Path, pki: Pki) -> AsyncIterator[tuple[ApiServer, TestClient[Any, Any]]]:
    settings = ApiServerSettings(
        storage_backend="memory",
        schema_cache_dir=schema_cache,
        watch=WatchCacheSettings(cache_size=500),
        proxy_client=ProxyClientSettings(
            cert_file=pki.serving_cert(FRONT_PROXY_CLIENT), key_file=pki.serving_key(FRONT_PROXY_CLIENT)
        ),
        requestheader=RequestHeaderSettings(client_ca_file=pki.directory / f"{FRONT_PROXY_CA}.crt"),
    )
    server = ApiServer(settings)
    await server.start()
    client = TestClient(TestServer(server.application()))
    await client.start_server()
    yield server, client
    await client.close()
    await server.stop()


def _condition(server: ApiServer) -> dict[str, Any]:
    """The APIService's Available condition as the server's watch cache has it ({} without one)."""
    obj = server.aggregator.apiservices.objects.get(agg.APISERVICES_PREFIX + "v1beta1.metrics.k8s.io") or {}
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Available"), {})


async def test_requests_are_proxied_with_the_front_proxy_certificate_and_answer_503_once_the_service_is_gone(
    proxying: tuple[ApiServer, TestClient[Any, Any]], backend_server: Backend, pki: Pki
) -> None:
    server, client = proxying
    ns = "kube-system"
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "metrics-server"}}
    svc["spec"] = {"ports": [{"name": "https", "port": 443, "targetPort": backend_server.port}]}
    assert (await client.post(f"/api/v1/namespaces/{ns}/services", json=svc)).status == 201
    piece = endpoint_slice(("127.0.0.1", True), port=backend_server.port)
    piece.update(apiVersion="discovery.k8s.io/v1", kind="EndpointSlice")
    piece["metadata"]["name"] = "metrics-server-1"
    assert (await client.post(f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices", json=piece)).status == 201
    bundle = base64.b64encode(pki.ca_cert.read_bytes()).decode()
    created = await client.post("/apis/apiregistration.k8s.io/v1/apiservices", json=apiservice(caBundle=bundle))
    assert created.status == 201, await created.text()

    await until(lambda: _condition(server).get("status") == "True", within=15, what="the APIService to be available")
    assert _condition(server)["reason"] == "Passed"

    got = await client.get(
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dweb",
        headers={"X-Remote-User": "mallory"},
    )
    assert got.status == 200, await got.text()
    record = (await got.json())["items"][0]
    # no authentication in this server: the caller is anonymous, and says so whatever it claims
    assert record == {
        "user": "system:anonymous",
        "groups": ["system:unauthenticated"],
        "authorization": None,
        "client": "front-proxy-client",
        "query": "labelSelector=app%3Dweb",
    }

    groups = await client.get("/apis")
    assert "metrics.k8s.io" in [g["name"] for g in (await groups.json())["groups"]]
    aggregated = await client.get("/apis", headers={"Accept": discovery.AGGREGATED_MEDIA})
    items = {i["metadata"]["name"]: i for i in json.loads(await aggregated.read())["items"]}
    assert [r["resource"] for r in items["metrics.k8s.io"]["versions"][0]["resources"]] == ["nodes", "pods"]
    group = await client.get("/apis/metrics.k8s.io")
    assert (await group.json())["preferredVersion"]["version"] == "v1beta1"

    assert (await client.delete(f"/api/v1/namespaces/{ns}/services/metrics-server")).status == 200

    await until(lambda: _condition(server).get("reason") == "ServiceNotFound", within=15, what="the Service gone")
    assert _condition(server)["message"] == 'service/metrics-server in "kube-system" is not present'
    refused = await client.get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")
    assert refused.status == 503
    assert (await refused.json())["message"] == "the server is currently unable to handle the request"
    aggregated = await client.get("/apis", headers={"Accept": discovery.AGGREGATED_MEDIA})
    assert "metrics.k8s.io" not in {i["metadata"]["name"] for i in json.loads(await aggregated.read())["items"]}


async def test_the_authentication_configmap_is_published_at_start(
    proxying: tuple[ApiServer, TestClient[Any, Any]], pki: Pki
) -> None:
    _server, client = proxying
    got = await client.get("/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication")
    data = (await got.json())["data"]
    assert data["requestheader-client-ca-file"] == (pki.directory / f"{FRONT_PROXY_CA}.crt").read_text()
    assert json.loads(data["requestheader-allowed-names"]) == ["front-proxy-client"]
