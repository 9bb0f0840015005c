"""The ingress controller's planner (agents/ingress/planner.py), classes and status: which Ingresses it
serves, where each host and path goes (kube's Prefix and Exact semantics, as nginx's locations carry
them out), default backends, TLS from Secrets, 503 for unusable backends, and the status address; the
executor's apply/refuse/unchanged behaviour against a fake nginx declared below; and which events the
controller records for a plan."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from agents.ingress import classes, planner, status
from agents.ingress.controller import IngressController
from agents.ingress.nginx import Applied, Nginx, NginxError
from agents.ingress.nginxconf import server_name
from agents.ingress.planner import Observed, Options, Plan, plan, route
from agents.ingress.settings import IngressSettings
from agents.machinery.client import Client, ClientConfig
from agents.machinery.informer import key_of

NS = "default"


# --- objects, in kube's shapes ---------------------------------------------------------------------


def ingress_class(name: str = "nginx", *, controller: str = classes.CONTROLLER, default: bool = True) -> dict[str, Any]:
    annotations = {classes.DEFAULT_CLASS_ANNOTATION: "true"} if default else {}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"controller": controller},
    }


def backend(service: str, port: int | str = 80) -> dict[str, Any]:
    key = "number" if isinstance(port, int) else "name"
    return {"service": {"name": service, "port": {key: port}}}


def path(p: str, service: str, *, kind: str = "Prefix", port: int | str = 80) -> dict[str, Any]:
    return {"path": p, "pathType": kind, "backend": backend(service, port)}


def ingress(
    name: str,
    rules: list[dict[str, Any]] | None = None,
    *,
    class_name: str | None = "nginx",
    default: dict[str, Any] | None = None,
    tls: list[dict[str, Any]] | None = None,
    created: str = "2026-01-01T00:00:00Z",
    annotations: dict[str, str] | None = None,
    namespace: str = NS,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"rules": rules or []}
    if class_name:
        spec["ingressClassName"] = class_name
    if default:
        spec["defaultBackend"] = default
    if tls:
        spec["tls"] = tls
    meta = {
        "name": name,
        "namespace": namespace,
        "uid": f"uid-{name}",
        "generation": 1,
        "creationTimestamp": created,
        "annotations": annotations or {},
    }
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def rule(host: str, *paths: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"http": {"paths": list(paths)}}
    if host:
        out["host"] = host
    return out


def service(name: str, ports: list[dict[str, Any]] | None = None, *, namespace: str = NS) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"ports": ports or [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    }


def endpoint_slice(
    name: str, ready: dict[str, bool | None], *, port: int = 8080, port_name: str = "http", namespace: str = NS
) -> dict[str, Any]:
    endpoints = []
    for ip, is_ready in ready.items():
        conditions = {} if is_ready is None else {"ready": is_ready}
        endpoints.append({"addresses": [ip], "conditions": conditions})
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-abcde",
            "namespace": namespace,
            "labels": {planner.SERVICE_NAME_LABEL: name},
        },
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


def tls_secret(name: str, *, kind: str = planner.TLS_SECRET_TYPE, namespace: str = NS) -> dict[str, Any]:
    cert = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    key = b"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": kind,
        "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(key).decode()},
    }


def cluster(*ingresses: dict[str, Any], secrets: tuple[dict[str, Any], ...] = (), **extra: Any) -> Observed:
    """Services web (10.244.0.5-6) and api (10.244.0.7), both ready, the default class, and ``ingresses``."""
    return Observed(
        ingresses=list(ingresses),
        classes=extra.get("classes", [ingress_class()]),
        services=extra.get("services", [service("web"), service("api")]),
        slices=extra.get(
            "slices",
            [
                endpoint_slice("web", {"10.244.0.5": True, "10.244.0.6": True}),
                endpoint_slice("api", {"10.244.0.7": True}),
            ],
        ),
        secrets=list(secrets),
    )


def target(p: Plan, host: str, request_path: str) -> str:
    """Where a request goes: an upstream's name, or the status it is answered with."""
    found = route(p, host, request_path)
    return found.upstream or str(found.status)


WEB, API = "default_web_http", "default_api_http"


# --- which Ingresses are served ----------------------------------------------------------------------


def test_an_ingress_of_its_class_is_served_and_one_of_another_controllers_class_is_not() -> None:
    observed = cluster(
        ingress("mine", [rule("a.example", path("/", "web"))]),
        ingress("theirs", [rule("b.example", path("/", "web"))], class_name="other"),
        classes=[ingress_class(), ingress_class("other", controller="example.com/other", default=False)],
    )
    p = plan(observed)
    assert p.ingresses == ("default/mine",)
    assert target(p, "a.example", "/") == WEB
    assert target(p, "b.example", "/") == "404"


def test_an_ingress_naming_no_class_is_served_only_while_its_class_is_the_default() -> None:
    classless = ingress("plain", [rule("a.example", path("/", "web"))], class_name=None)
    assert plan(cluster(classless)).ingresses == ("default/plain",)
    assert plan(cluster(classless, classes=[ingress_class(default=False)])).ingresses == ()


def test_the_older_class_annotation_is_honoured_when_the_field_is_absent() -> None:
    by_annotation = ingress("old", [rule("a.example", path("/", "web"))], class_name=None)
    by_annotation["metadata"]["annotations"] = {classes.CLASS_ANNOTATION: "nginx"}
    other = ingress("older", [rule("b.example", path("/", "web"))], class_name=None)
    other["metadata"]["annotations"] = {classes.CLASS_ANNOTATION: "traefik"}
    p = plan(cluster(by_annotation, other, classes=[ingress_class(default=True)]))
    assert p.ingresses == ("default/old",)


def test_an_ingress_being_deleted_is_no_longer_served() -> None:
    going = ingress("going", [rule("a.example", path("/", "web"))])
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert plan(cluster(going)).ingresses == ()


# --- paths -------------------------------------------------------------------------------------------


def test_prefix_matches_element_wise_not_character_wise() -> None:
    p = plan(cluster(ingress("i", [rule("a.example", path("/foo", "web"))])))
    assert target(p, "a.example", "/foo") == WEB
    assert target(p, "a.example", "/foo/") == WEB
    assert target(p, "a.example", "/foo/bar") == WEB
    assert target(p, "a.example", "/foobar") == "404"
    assert target(p, "a.example", "/") == "404"
    assert planner.prefix_matches("/foo", "/foo/bar") and not planner.prefix_matches("/foo", "/foobar")


def test_a_trailing_slash_on_a_prefix_does_not_count() -> None:
    p = plan(cluster(ingress("i", [rule("a.example", path("/foo/", "web"))])))
    assert target(p, "a.example", "/foo") == WEB
    assert target(p, "a.example", "/foo/x") == WEB
    assert target(p, "a.example", "/foox") == "404"


def test_exact_matches_only_the_path_itself() -> None:
    p = plan(cluster(ingress("i", [rule("a.example", path("/foo", "web", kind="Exact"))])))
    assert target(p, "a.example", "/foo") == WEB
    assert target(p, "a.example", "/foo/") == "404"
    assert target(p, "a.example", "/foo/bar") == "404"


def test_implementation_specific_is_taken_as_prefix() -> None:
    p = plan(cluster(ingress("i", [rule("a.example", path("/app", "web", kind="ImplementationSpecific"))])))
    assert target(p, "a.example", "/app/x") == WEB
    assert target(p, "a.example", "/apple") == "404"


def test_the_longest_matching_prefix_wins_and_exact_beats_a_prefix_of_the_same_path() -> None:
    p = plan(
        cluster(
            ingress(
                "i",
                [
                    rule(
                        "a.example",
                        path("/", "web"),
                        path("/api", "api"),
                        path("/api/v1", "web"),
                        path("/api", "web", kind="Exact"),
                    )
                ],
            )
        )
    )
    assert target(p, "a.example", "/") == WEB
    assert target(p, "a.example", "/other") == WEB
    assert target(p, "a.example", "/api") == WEB  # Exact wins over Prefix /api
    assert target(p, "a.example", "/api/x") == API
    assert target(p, "a.example", "/api/v1/y") == WEB
    # nginx sees the longest paths first, each location once
    server = next(s for s in p.servers if s.host == "a.example")
    paths = [loc.path for loc in server.locations]
    assert paths == sorted(paths, key=len, reverse=True) and len(set(server.locations)) == len(paths)
    keys = [loc.nginx_key for loc in server.locations]
    assert len(keys) == len(set(keys))


def test_where_two_ingresses_claim_one_host_and_path_the_older_one_wins() -> None:
    older = ingress("older", [rule("a.example", path("/x", "api"))], created="2026-01-01T00:00:00Z")
    newer = ingress("newer", [rule("a.example", path("/x", "web"), path("/y", "web"))], created="2026-02-01T00:00:00Z")
    p = plan(cluster(newer, older))
    assert target(p, "a.example", "/x") == API
    assert target(p, "a.example", "/y") == WEB  # the rules of both are merged
    assert p.ingresses == ("default/older", "default/newer")


# --- hosts and default backends ----------------------------------------------------------------------


def test_a_host_rule_and_a_catch_all_rule_route_by_the_host_header() -> None:
    p = plan(cluster(ingress("i", [rule("web.example", path("/", "web")), rule("", path("/", "api"))])))
    assert target(p, "web.example", "/") == WEB
    assert target(p, "WEB.example:8080", "/") == WEB  # case and port do not matter
    assert target(p, "other.example", "/") == API
    assert target(p, "10.250.0.2", "/") == API


def test_a_wildcard_host_matches_exactly_one_more_label() -> None:
    p = plan(cluster(ingress("i", [rule("*.example.com", path("/", "web"))])))
    assert target(p, "a.example.com", "/") == WEB
    assert target(p, "a.b.example.com", "/") == "404"
    assert target(p, "example.com", "/") == "404"
    assert server_name("*.example.com") == '"~^[^.]+\\\\.example\\\\.com$"'


def test_the_default_backend_answers_what_no_rule_matches() -> None:
    p = plan(cluster(ingress("i", [rule("a.example", path("/web", "web"))], default=backend("api"))))
    assert target(p, "a.example", "/web") == WEB
    assert target(p, "a.example", "/elsewhere") == API  # a path of the host no rule matches
    assert target(p, "nobody.example", "/") == API  # a host no rule names


def test_an_ingress_with_only_a_default_backend_takes_every_request() -> None:
    p = plan(cluster(ingress("i", default=backend("web"))))
    assert target(p, "any.example", "/any/path") == WEB


def test_without_any_default_backend_unmatched_requests_are_404() -> None:
    p = plan(cluster(ingress("i", [rule("a.example", path("/web", "web"))])))
    assert target(p, "a.example", "/nothing") == "404"
    assert target(p, "b.example", "/") == "404"
    assert "return 404;" in p.config


# --- backends ----------------------------------------------------------------------------------------


def test_upstreams_hold_the_ready_endpoints_of_the_service_port_by_number_or_name() -> None:
    by_number = plan(cluster(ingress("i", [rule("a.example", path("/", "web", port=80))])))
    by_name = plan(cluster(ingress("i", [rule("a.example", path("/", "web", port="http"))])))
    for p in (by_number, by_name):
        (upstream,) = p.upstreams
        assert upstream.upstream == WEB and upstream.endpoints == ("10.244.0.5:8080", "10.244.0.6:8080")
        assert (
            f"upstream {WEB} {{\n        server 10.244.0.5:8080;\n        server 10.244.0.6:8080;\n    }}" in p.config
        )
        assert f"proxy_pass http://{WEB};" in p.config


def test_endpoints_that_are_not_ready_are_left_out_and_unknown_readiness_counts_as_ready() -> None:
    slices = [endpoint_slice("web", {"10.244.0.5": False, "10.244.0.6": None}), endpoint_slice("api", {})]
    p = plan(cluster(ingress("i", [rule("a.example", path("/", "web"))]), slices=slices))
    assert p.upstreams[0].endpoints == ("10.244.0.6:8080",)
    assert "10.244.0.5" not in p.config


def test_a_service_with_no_ready_endpoint_answers_503_without_a_warning() -> None:
    slices = [endpoint_slice("web", {"10.244.0.5": False})]
    p = plan(cluster(ingress("i", [rule("a.example", path("/", "web"))]), slices=slices))
    assert target(p, "a.example", "/") == "503"
    assert route(p, "a.example", "/").problem == 'service "default/web" has no ready endpoints'
    assert not p.upstreams and p.notices == ()


def test_a_missing_service_answers_503_for_its_path_alone_and_warns_on_the_ingress() -> None:
    p = plan(cluster(ingress("i", [rule("a.example", path("/missing", "nope"), path("/", "web"))])))
    assert target(p, "a.example", "/missing") == "503"
    assert target(p, "a.example", "/missing/x") == "503"
    assert target(p, "a.example", "/") == WEB
    (notice,) = p.notices
    assert (notice.ingress, notice.type, notice.reason) == ("default/i", "Warning", "ServiceNotFound")
    assert notice.message == 'service "default/nope" not found: a.example/missing answers 503'


def test_a_missing_service_port_answers_503_and_warns() -> None:
    p = plan(cluster(ingress("i", [rule("a.example", path("/", "web", port=9999))])))
    assert target(p, "a.example", "/") == "503"
    assert [n.reason for n in p.notices] == ["BadBackend"]
    assert "has no port 9999" in p.notices[0].message


def test_a_service_in_another_namespace_is_not_found() -> None:
    elsewhere = ingress("i", [rule("a.example", path("/", "web"))], namespace="other")
    p = plan(cluster(elsewhere))
    assert target(p, "a.example", "/") == "503"


def test_an_unnamed_service_port_finds_the_unnamed_slice_port() -> None:
    services = [service("web", [{"port": 80, "targetPort": 9000, "protocol": "TCP"}])]
    slices = [endpoint_slice("web", {"10.244.0.9": True}, port=9000, port_name="")]
    p = plan(cluster(ingress("i", [rule("a.example", path("/", "web"))]), services=services, slices=slices))
    assert p.upstreams[0].endpoints == ("10.244.0.9:9000",) and p.upstreams[0].upstream == "default_web_80"


def test_backends_whose_names_run_together_with_dashes_keep_upstreams_of_their_own() -> None:
    # namespace a-b, Service c  and  namespace a, Service b-c
    observed = cluster(
        ingress("one", [rule("one.example", path("/", "c"))], namespace="a-b"),
        ingress("two", [rule("two.example", path("/", "b-c"))], namespace="a"),
        services=[service("c", namespace="a-b"), service("b-c", namespace="a")],
        slices=[
            endpoint_slice("c", {"10.244.1.1": True}, namespace="a-b"),
            endpoint_slice("b-c", {"10.244.2.2": True}, namespace="a"),
        ],
    )
    p = plan(observed)
    assert route(p, "one.example", "/").endpoints == ("10.244.1.1:8080",)
    assert route(p, "two.example", "/").endpoints == ("10.244.2.2:8080",)
    assert len({b.upstream for b in p.upstreams}) == 2


# --- TLS ---------------------------------------------------------------------------------------------


def test_tls_hosts_get_an_https_server_with_the_secrets_certificate_and_key_in_a_file() -> None:
    options = Options(config_dir="/etc/ic")
    p = plan(
        cluster(
            ingress(
                "i",
                [rule("secure.example", path("/", "web")), rule("plain.example", path("/", "api"))],
                tls=[{"hosts": ["secure.example"], "secretName": "cert"}],
            ),
            secrets=(tls_secret("cert"),),
        ),
        options,
    )
    (file,) = p.files
    assert file.path.startswith("/etc/ic/ssl/default-cert-") and file.path.endswith(".pem")
    assert b"BEGIN CERTIFICATE" in file.content and b"BEGIN PRIVATE KEY" in file.content
    secure = next(s for s in p.servers if s.host == "secure.example")
    plain = next(s for s in p.servers if s.host == "plain.example")
    assert secure.tls is not None and secure.tls.path == file.path and plain.tls is None
    block = p.config.split("server_name secure.example;")[0].rsplit("server {", 1)[1]
    assert "listen 443 ssl;" in block and "listen 80;" in block
    assert f'ssl_certificate "{file.path}";' in p.config and f'ssl_certificate_key "{file.path}";' in p.config
    assert p.notices == ()


def test_a_missing_or_wrong_tls_secret_leaves_the_host_on_http_with_a_warning() -> None:
    for secrets in ((), (tls_secret("cert", kind="Opaque"),)):
        p = plan(
            cluster(
                ingress(
                    "i",
                    [rule("secure.example", path("/", "web"))],
                    tls=[{"hosts": ["secure.example"], "secretName": "cert"}],
                ),
                secrets=secrets,
            )
        )
        assert p.files == () and all(s.tls is None for s in p.servers)
        assert target(p, "secure.example", "/") == WEB  # still served, over HTTP
        (notice,) = p.notices
        assert notice.reason == "SecretNotFound" and notice.message.endswith("secure.example served without TLS")


def test_the_catch_all_server_is_the_default_on_both_ports_and_refuses_unknown_tls_names() -> None:
    p = plan(cluster())
    assert "listen 80 default_server;" in p.config and "listen 443 ssl default_server;" in p.config
    assert "ssl_reject_handshake on;" in p.config and "daemon off;" in p.config
    assert p.config.startswith("# generated by kubelab")


def test_the_same_objects_give_the_same_text() -> None:
    objs = [
        ingress("a", [rule("x.example", path("/p", "web"))]),
        ingress("b", [rule("y.example", path("/q", "api"))], created="2026-03-01T00:00:00Z"),
    ]
    assert plan(cluster(*objs)).config == plan(cluster(*reversed(objs))).config


def test_paths_are_quoted_so_nginx_syntax_in_them_stays_data() -> None:
    p = plan(cluster(ingress("i", [rule("a.example", path("/a;b", "web", kind="Exact"))])))
    assert 'location = "/a;b" {' in p.config


# --- status ------------------------------------------------------------------------------------------


def test_status_is_the_published_services_load_balancer_address_when_it_has_one() -> None:
    svc = service("ingress-nginx-controller")
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "192.168.122.240", "ipMode": "VIP"}]}}
    node = {"metadata": {"name": "n1"}, "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.5"}]}}
    pod = {"metadata": {"name": "c"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
    assert status.addresses(service=svc, pods=[pod], nodes={"n1": node}) == [{"ip": "192.168.122.240"}]


def test_status_falls_back_to_the_internal_ips_of_the_nodes_running_controller_pods() -> None:
    nodes = {
        f"n{i}": {
            "status": {"addresses": [{"type": "Hostname", "address": f"n{i}"}, {"type": "InternalIP", "address": ip}]}
        }
        for i, ip in ((1, "10.0.0.5"), (2, "10.0.0.6"), (3, "10.0.0.7"))
    }
    pods = [
        {"spec": {"nodeName": "n2"}, "status": {"phase": "Running"}},
        {"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}},
        {"spec": {"nodeName": "n3"}, "status": {"phase": "Pending"}},
    ]
    pending_lb = service("ingress-nginx-controller")
    assert status.addresses(service=pending_lb, pods=pods, nodes=nodes) == [{"ip": "10.0.0.5"}, {"ip": "10.0.0.6"}]


def test_status_updates_only_the_ingresses_whose_address_differs_and_never_the_cached_object() -> None:
    current = ingress("done")
    current["status"] = {"loadBalancer": {"ingress": [{"ip": "10.0.0.5"}]}}
    stale = ingress("stale")
    changed = status.updates([current, stale], [{"ip": "10.0.0.5"}])
    assert [c["metadata"]["name"] for c in changed] == ["stale"]
    assert changed[0]["status"] == {"loadBalancer": {"ingress": [{"ip": "10.0.0.5"}]}}
    assert "status" not in stale


# --- the executor, against a fake nginx ------------------------------------------------------------

# A stand-in for nginx declared openly: ``-t`` accepts a configuration unless it holds the word
# REFUSE (then it answers as nginx does, on stderr, status 1); every call is logged.
FAKE_NGINX = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/calls"
for last; do :; done
if [ "$1" = "-t" ]; then
  if grep -q REFUSE "$last"; then
    echo 'nginx: [emerg] unknown directive "REFUSE" in '"$last"':3' >&2
    exit 1
  fi
  exit 0
fi
"""


@pytest.fixture
def fake_nginx(tmp_path: Path) -> Path:
    program = tmp_path / "bin" / "nginx"
    program.parent.mkdir()
    program.write_text(FAKE_NGINX)
    program.chmod(0o755)
    return program


def _plan(config: str, files: tuple[planner.TlsFile, ...] = ()) -> Plan:
    return Plan(config=config, files=files, servers=(), upstreams=(), ingresses=())


def test_the_executor_writes_checks_and_replaces_and_does_nothing_for_an_unchanged_plan(
    tmp_path: Path, fake_nginx: Path
) -> None:
    conf = tmp_path / "conf"
    nginx = Nginx(binary=str(fake_nginx), config_dir=conf)
    cert = planner.TlsFile(str(conf / "ssl" / "default-cert-1.pem"), b"CERT\nKEY\n")

    first = asyncio.run(nginx.apply(_plan("events {}\n", (cert,))))
    assert first.changed and not first.refused
    assert (conf / "nginx.conf").read_text() == "events {}\n"
    assert Path(cert.path).read_bytes() == b"CERT\nKEY\n"
    assert stat.S_IMODE(os.stat(cert.path).st_mode) == 0o600
    calls = (fake_nginx.parent / "calls").read_text().splitlines()
    assert calls == [f"-t -q -e stderr -c {conf / 'nginx.conf.next'}"]

    again = asyncio.run(nginx.apply(_plan("events {}\n", (cert,))))
    assert not again.changed and len((fake_nginx.parent / "calls").read_text().splitlines()) == 1

    # a new certificate replaces the old file, which is removed
    cert2 = planner.TlsFile(str(conf / "ssl" / "default-cert-2.pem"), b"CERT2\nKEY2\n")
    assert asyncio.run(nginx.apply(_plan("events {}\n", (cert2,)))).changed
    assert sorted(p.name for p in (conf / "ssl").iterdir()) == ["default-cert-2.pem"]


def test_a_configuration_nginx_refuses_is_not_applied_and_the_previous_one_stays(
    tmp_path: Path, fake_nginx: Path
) -> None:
    conf = tmp_path / "conf"
    nginx = Nginx(binary=str(fake_nginx), config_dir=conf)
    assert asyncio.run(nginx.apply(_plan("events {}\n"))).changed
    refused = asyncio.run(nginx.apply(_plan("events {}\nREFUSE;\n")))
    assert not refused.changed
    assert refused.refused.startswith('nginx: [emerg] unknown directive "REFUSE"')
    assert (conf / "nginx.conf").read_text() == "events {}\n"
    assert not (conf / "nginx.conf.next").exists()
    # the same refused plan is not checked again; the old one is still "unchanged"
    calls = len((fake_nginx.parent / "calls").read_text().splitlines())
    assert asyncio.run(nginx.apply(_plan("events {}\nREFUSE;\n"))).refused == refused.refused
    assert len((fake_nginx.parent / "calls").read_text().splitlines()) == calls
    assert asyncio.run(nginx.apply(_plan("events {}\n"))) == asyncio.run(nginx.apply(_plan("events {}\n")))


# --- the controller's events (its informers' stores filled by hand; a recorder that only lists) ------


class ListingRecorder:
    """Stands in for the EventRecorder: the events it was asked to record, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str]] = []

    def record(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((obj["metadata"]["name"], type_, reason, message))


def controller_with(monkeypatch: pytest.MonkeyPatch, observed: Observed) -> tuple[IngressController, ListingRecorder]:

    controller = IngressController(
        Client(ClientConfig("https://127.0.0.1:1", ""), user_agent="test"), IngressSettings()
    )
    recorder = ListingRecorder()
    monkeypatch.setattr(controller, "recorder", recorder)
    controller.pod = {"metadata": {"name": "controller-pod", "namespace": "ingress-nginx"}}
    for informer, objs in (
        (controller.ingresses, observed.ingresses),
        (controller.classes, observed.classes),
        (controller.services, observed.services),
        (controller.slices, observed.slices),
        (controller.secrets, observed.secrets),
    ):
        informer.store = {key_of(dict(o)): dict(o) for o in objs}
    return controller, recorder


def test_sync_and_warning_events_are_recorded_once_each_while_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    shop = ingress("shop", [rule("a.example", path("/", "web"), path("/missing", "nope"))])
    controller, recorder = controller_with(monkeypatch, cluster(shop))
    first = plan(controller.observed())
    controller.report(first, Applied(changed=True))
    assert recorder.events == [
        ("controller-pod", "Normal", "RELOAD", "NGINX reload triggered due to a change in configuration"),
        ("shop", "Normal", "Sync", "Scheduled for sync"),
        ("shop", "Warning", "ServiceNotFound", 'service "default/nope" not found: a.example/missing answers 503'),
    ]
    controller.report(first, Applied(changed=False))  # the same again: nothing new to say
    assert len(recorder.events) == 3
    # a new generation is announced again
    controller.ingresses.store["default/shop"]["metadata"]["generation"] = 2
    controller.report(first, Applied(changed=False))
    assert recorder.events[3:] == [("shop", "Normal", "Sync", "Scheduled for sync")]


def test_a_refused_configuration_is_told_once_on_the_pod_and_the_ingresses_it_would_have_added(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    controller, recorder = controller_with(monkeypatch, cluster(ingress("new", [rule("a.example", path("/", "web"))])))
    refused = Applied(changed=False, refused="nginx: [emerg] cannot load certificate")
    p = plan(controller.observed())
    controller.report(p, refused)
    controller.report(p, refused)
    message = "Error reloading NGINX: nginx: [emerg] cannot load certificate"
    assert recorder.events == [
        ("controller-pod", "Warning", "RELOAD", message),
        ("new", "Warning", "RELOAD", message),
    ]
    assert controller.served == ()  # nothing of it is served, so no status is written for it


def test_the_controller_learns_when_the_nginx_master_exits(tmp_path: Path, fake_nginx: Path) -> None:
    nginx = Nginx(binary=str(fake_nginx), config_dir=tmp_path / "conf")

    async def scenario() -> str:
        await nginx.apply(_plan("events {}\n"))
        await nginx.start()  # the fake master ends at once, as a crashed one would
        with pytest.raises(NginxError) as exited:
            await nginx.wait()
        await nginx.stop()  # nothing left to stop: returns at once
        return str(exited.value)

    assert asyncio.run(scenario()) == "nginx exited with status 0"
    assert (fake_nginx.parent / "calls").read_text().splitlines()[
        -1
    ] == f"-e stderr -c {tmp_path / 'conf' / 'nginx.conf'}"
