"""The proxy subresources' pure parts: names, the Service's port and endpoint, the pod's address,
headers, verbs and error wording (agents/apiserver/proxy.py)."""

from __future__ import annotations

import errno

import pytest

from agents.apiserver import proxy
from agents.apiserver.proxy import Location, ProxyName
from agents.apiserver.requestinfo import request_info
from agents.apiserver.status import StatusError
from agents.machinery.objects import Object


def service(*ports: Object, name: str = "web") -> Object:
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"ports": list(ports)}}


def endpoint_slice(ports: list[Object], *endpoints: tuple[str, bool | None]) -> Object:
    return {
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": [
            {"addresses": [ip], **({"conditions": {"ready": ready}} if ready is not None else {})}
            for ip, ready in endpoints
        ],
    }


def first(choices: object) -> tuple[str, int]:
    assert isinstance(choices, list)
    return choices[0]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("web", ProxyName("", "web", "")),
        ("web:8080", ProxyName("", "web", "8080")),
        ("web:http", ProxyName("", "web", "http")),
        ("https:dashboard:", ProxyName("https", "dashboard", "")),
        ("http:web:80", ProxyName("http", "web", "80")),
    ],
)
def test_a_name_may_carry_a_scheme_and_a_port(raw: str, expected: ProxyName) -> None:
    assert proxy.parse_name("service", raw) == expected


@pytest.mark.parametrize("raw", ["ftp:web:80", ":80", "a:b:c:d", "https::443"])
def test_a_malformed_name_is_a_bad_request_in_kubes_words(raw: str) -> None:
    with pytest.raises(StatusError) as caught:
        proxy.parse_name("service", raw)
    assert caught.value.code == 400
    assert caught.value.message == f'invalid service request "{raw}"'


def test_a_service_port_is_chosen_by_name_and_its_target_port_comes_from_the_slices() -> None:
    svc = service({"name": "http", "port": 80, "targetPort": "web"}, {"name": "admin", "port": 9000})
    slices = [endpoint_slice([{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}], ("10.1.0.5", True))]
    wanted = proxy.parse_name("service", "web:http")
    assert proxy.service_location(svc, slices, wanted, raw="web:http") == Location("http", "10.1.0.5", 8080)


def test_a_service_port_is_chosen_by_its_number() -> None:
    svc = service({"name": "http", "port": 80}, {"name": "admin", "port": 9000})
    slices = [endpoint_slice([{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}], ("10.1.0.5", True))]
    wanted = proxy.parse_name("service", "https:web:9000")
    assert proxy.service_location(svc, slices, wanted, raw="https:web:9000") == Location("https", "10.1.0.5", 9090)


def test_an_empty_port_is_the_services_unnamed_port() -> None:
    svc = service({"port": 443, "targetPort": 8443}, name="dashboard")
    slices = [endpoint_slice([{"port": 8443}], ("10.1.0.7", None))]
    wanted = proxy.parse_name("service", "https:dashboard:")
    assert proxy.service_location(svc, slices, wanted, raw="https:dashboard:") == Location("https", "10.1.0.7", 8443)


def test_only_ready_endpoints_are_chosen_among_at_random() -> None:
    svc = service({"port": 80})
    slices = [endpoint_slice([{"port": 8080}], ("10.1.0.1", False), ("10.1.0.2", True), ("10.1.0.3", True))]
    seen: list[object] = []

    def choose(options: object) -> tuple[str, int]:
        seen.append(options)
        return first(options)

    proxy.service_location(svc, slices, proxy.parse_name("service", "web"), raw="web", choose=choose)
    assert seen == [[("10.1.0.2", 8080), ("10.1.0.3", 8080)]]


def test_a_service_without_a_ready_endpoint_is_unavailable() -> None:
    svc = service({"port": 80})
    with pytest.raises(StatusError) as caught:
        proxy.service_location(svc, [], proxy.parse_name("service", "web"), raw="web")
    assert (caught.value.code, caught.value.message) == (503, 'no endpoints available for service "web"')
    not_ready = [endpoint_slice([{"port": 8080}], ("10.1.0.1", False))]
    with pytest.raises(StatusError) as caught:
        proxy.service_location(svc, not_ready, proxy.parse_name("service", "http:web:"), raw="http:web:")
    assert (caught.value.code, caught.value.message) == (503, 'no endpoints available for service "http:web:"')


def test_a_port_the_service_does_not_have_is_unavailable() -> None:
    svc = service({"name": "http", "port": 80})
    slices = [endpoint_slice([{"name": "http", "port": 8080}], ("10.1.0.5", True))]
    with pytest.raises(StatusError) as caught:
        proxy.service_location(svc, slices, proxy.parse_name("service", "web:grpc"), raw="web:grpc")
    assert (caught.value.code, caught.value.message) == (503, 'no endpoints available for service "web:grpc"')
    with pytest.raises(StatusError) as caught:
        proxy.service_location(svc, slices, proxy.parse_name("service", "web:81"), raw="web:81")
    assert (caught.value.code, caught.value.message) == (503, 'no service port 81 found for service "web"')


def pod(ip: str = "10.1.0.9", ports: list[Object] | None = None) -> Object:
    container: Object = {"name": "c", "ports": ports} if ports is not None else {"name": "c"}
    return {"metadata": {"name": "p"}, "spec": {"containers": [container]}, "status": {"podIP": ip}}


def test_a_pod_is_reached_at_its_ip_and_the_port_asked_or_its_first_container_port() -> None:
    ports: list[Object] = [{"name": "web", "containerPort": 8080}, {"containerPort": 9000}]
    assert proxy.pod_location(pod(ports=ports), ProxyName("", "p", "")) == Location("http", "10.1.0.9", 8080)
    assert proxy.pod_location(pod(ports=ports), ProxyName("https", "p", "9443")) == Location("https", "10.1.0.9", 9443)
    assert proxy.pod_location(pod(ports=ports), ProxyName("", "p", "web")) == Location("http", "10.1.0.9", 8080)
    assert proxy.pod_location(pod(), ProxyName("", "p", "")).netloc == "10.1.0.9"


@pytest.mark.parametrize("ip", ["", "127.0.0.1", "169.254.1.1", "0.0.0.0"])
def test_a_pod_without_a_usable_ip_is_refused(ip: str) -> None:
    with pytest.raises(StatusError) as caught:
        proxy.pod_location(pod(ip), ProxyName("", "p", "80"))
    assert (caught.value.code, caught.value.message) == (400, "address not allowed")


METHODS = {"GET": "get", "HEAD": "get", "OPTIONS": "get", "POST": "create", "PUT": "update"}


@pytest.mark.parametrize(("method", "verb"), [*METHODS.items(), ("PATCH", "patch"), ("DELETE", "delete")])
def test_the_verb_comes_from_the_method(method: str, verb: str) -> None:
    assert proxy.verb(method) == verb
    info = request_info(method, "/api/v1/namespaces/ns/services/web:80/proxy/a/b", {"watch": "true"})
    assert (info.verb, info.resource, info.subresource, info.name) == (verb, "services", "proxy", "web:80")


def test_another_method_is_not_allowed() -> None:
    with pytest.raises(StatusError) as caught:
        proxy.verb("TRACE")
    assert caught.value.code == 405


@pytest.mark.parametrize(
    ("path", "depth", "expected"),
    [
        ("/api/v1/namespaces/ns/pods/p/proxy", 6, "/"),
        ("/api/v1/namespaces/ns/pods/p/proxy/", 6, "/"),
        ("/api/v1/namespaces/ns/services/https:d:/proxy/a/b/", 6, "/a/b/"),
        ("/api/v1/nodes/n1/proxy/pods", 4, "/pods"),
        ("/api/v1/namespaces/proxy/pods/proxy/proxy/x%2Fy", 6, "/x%2Fy"),
    ],
)
def test_the_path_after_proxy_is_passed_on_as_it_came(path: str, depth: int, expected: str) -> None:
    assert proxy.backend_path(path, depth=depth) == expected


def test_hop_by_hop_headers_and_credentials_stay_here() -> None:
    incoming = [
        ("Accept", "text/html"),
        ("Connection", "keep-alive"),
        ("Authorization", "Bearer secret"),
        ("Host", "apiserver:6443"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "12"),
        ("Upgrade", "websocket"),
    ]
    assert proxy.request_headers(incoming) == [("Accept", "text/html"), ("Content-Length", "12")]
    upgraded = proxy.request_headers(incoming, upgrade=True)
    assert ("Connection", "keep-alive") in upgraded and ("Upgrade", "websocket") in upgraded
    answer = [("Content-Type", "text/html"), ("Keep-Alive", "timeout=5"), ("Content-Length", "3")]
    assert proxy.response_headers(answer) == [("Content-Type", "text/html")]


def test_a_redirect_on_the_backend_stays_under_the_proxy() -> None:
    backend = Location("http", "10.1.0.5", 8080)
    prefix = "/api/v1/namespaces/ns/services/web/proxy"
    assert proxy.rewrite_location("/login?next=1", backend=backend, prefix=prefix) == f"{prefix}/login?next=1"
    assert proxy.rewrite_location("http://10.1.0.5:8080/x", backend=backend, prefix=prefix) == f"{prefix}/x"
    assert proxy.rewrite_location("https://example.org/", backend=backend, prefix=prefix) == "https://example.org/"
    assert proxy.rewrite_location("next/", backend=backend, prefix=prefix) == "next/"


def test_a_refused_connection_is_worded_as_kube_words_it() -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")
    message = proxy.dial_error(Location("http", "10.1.0.5", 8080), refused)
    assert message == "error trying to reach service: dial tcp 10.1.0.5:8080: connect: connection refused"
    assert proxy.dial_error(Location("http", "10.1.0.5", 0), TimeoutError()).endswith("10.1.0.5:80: i/o timeout")
