"""Request attributes read from the URL as kube-apiserver's RequestInfoFactory reads them."""

from __future__ import annotations

import pytest

from agents.apiserver.requestinfo import RequestInfo, request_info


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        ("GET", "/api/v1/pods", {}, ("list", "", "v1", "", "pods", "", "")),
        ("GET", "/api/v1/namespaces/ns/pods", {"watch": "true"}, ("watch", "", "v1", "ns", "pods", "", "")),
        ("GET", "/api/v1/namespaces/ns/pods/web", {}, ("get", "", "v1", "ns", "pods", "", "web")),
        ("GET", "/api/v1/namespaces/ns/pods/web/log", {}, ("get", "", "v1", "ns", "pods", "log", "web")),
        ("POST", "/api/v1/namespaces/ns/pods/web/binding", {}, ("create", "", "v1", "ns", "pods", "binding", "web")),
        ("POST", "/apis/apps/v1/namespaces/ns/deployments", {}, ("create", "apps", "v1", "ns", "deployments", "", "")),
        (
            "PUT",
            "/apis/apps/v1/namespaces/ns/deployments/d/scale",
            {},
            ("update", "apps", "v1", "ns", "deployments", "scale", "d"),
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/ns/deployments/d",
            {},
            ("patch", "apps", "v1", "ns", "deployments", "", "d"),
        ),
        ("DELETE", "/api/v1/namespaces/ns/pods/web", {}, ("delete", "", "v1", "ns", "pods", "", "web")),
        ("DELETE", "/api/v1/namespaces/ns/pods", {}, ("deletecollection", "", "v1", "ns", "pods", "", "")),
        ("GET", "/api/v1/nodes/n1", {}, ("get", "", "v1", "", "nodes", "", "n1")),
        # a namespace is its own namespace; status and finalize are its subresources
        ("GET", "/api/v1/namespaces", {}, ("list", "", "v1", "", "namespaces", "", "")),
        ("GET", "/api/v1/namespaces/ns", {}, ("get", "", "v1", "ns", "namespaces", "", "ns")),
        ("PUT", "/api/v1/namespaces/ns/finalize", {}, ("update", "", "v1", "ns", "namespaces", "finalize", "ns")),
        ("GET", "/api/v1/namespaces/ns/status", {}, ("get", "", "v1", "ns", "namespaces", "status", "ns")),
    ],
)
def test_resource_requests(method: str, path: str, query: dict[str, str], expected: tuple[str, ...]) -> None:
    info = request_info(method, path, query)
    assert info.resource_request
    got = (info.verb, info.api_group, info.api_version, info.namespace, info.resource, info.subresource, info.name)
    assert got == expected


@pytest.mark.parametrize(
    ("method", "path", "verb"),
    [
        ("GET", "/healthz", "get"),
        ("GET", "/version", "get"),
        ("GET", "/api", "get"),
        ("GET", "/api/v1", "get"),
        ("GET", "/apis/apps", "get"),
        ("GET", "/apis/apps/v1", "get"),
        ("GET", "/openapi/v2", "get"),
        ("POST", "/logs", "post"),
    ],
)
def test_everything_else_is_a_non_resource_request_with_the_method_as_verb(method: str, path: str, verb: str) -> None:
    assert request_info(method, path, {}) == RequestInfo(path=path, verb=verb)


def test_a_watch_flag_of_one_also_watches_and_false_lists() -> None:
    assert request_info("GET", "/api/v1/pods", {"watch": "1"}).verb == "watch"
    assert request_info("GET", "/api/v1/pods", {"watch": "false"}).verb == "list"
