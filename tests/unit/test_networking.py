"""networking.k8s.io/v1 Ingresses and IngressClasses through the API server on the in-memory store:
kube's validation and wording, DefaultIngressClass admission, the status subresource, the table."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from agents.apiserver import bootstrappolicy
from agents.apiserver.kinds.networking import default_class

Client = TestClient[Any, Any]
GROUP = "/apis/networking.k8s.io/v1"
INGRESSES = f"{GROUP}/namespaces/default/ingresses"
CLASSES = f"{GROUP}/ingressclasses"
TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
DEFAULT = "ingressclass.kubernetes.io/is-default-class"


def backend(name: str = "web", port: int | str = 80) -> dict[str, Any]:
    number_or_name = {"number": port} if isinstance(port, int) else {"name": port}
    return {"service": {"name": name, "port": number_or_name}}


def ingress(name: str = "web", **spec: Any) -> dict[str, Any]:
    body = spec or {
        "rules": [
            {
                "host": "foo.example.com",
                "http": {"paths": [{"path": "/bar", "pathType": "Prefix", "backend": backend()}]},
            }
        ]
    }
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name}, "spec": body}


def ingress_class(name: str, controller: str = "example.com/ingress", *, default: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if default:
        meta["annotations"] = {DEFAULT: "true"}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": meta,
        "spec": {"controller": controller},
    }


def with_path(**item: Any) -> dict[str, Any]:
    """An Ingress whose one rule has one path, ``item`` laid over a valid Prefix path to ``web:80``."""
    path = {"path": "/", "pathType": "Prefix", "backend": backend(), **item}
    path = {k: v for k, v in path.items() if v is not None}
    return ingress(rules=[{"host": "a.example.com", "http": {"paths": [path]}}])


async def created(http: Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await http.post(url, json=body)
    assert answer.status == 201, await answer.text()
    return dict(await answer.json())


async def refused(http: Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await http.post(url, json=body)
    assert answer.status == 422, await answer.text()
    return dict(await answer.json())


# --- serving ---------------------------------------------------------------------------------------


async def test_both_kinds_are_discovered_with_kubes_names_and_scopes(http: Client) -> None:
    listed = await (await http.get(GROUP)).json()
    found = {r["name"]: r for r in listed["resources"]}
    assert found["ingresses"]["namespaced"] and found["ingresses"]["shortNames"] == ["ing"]
    assert found["ingresses"]["kind"] == "Ingress" and "ingresses/status" in found
    assert not found["ingressclasses"]["namespaced"] and found["ingressclasses"]["kind"] == "IngressClass"
    assert "ingressclasses/status" not in found


async def test_a_valid_ingress_is_stored_with_an_empty_load_balancer_status_and_generation_one(http: Client) -> None:
    body = ingress(
        "full",
        defaultBackend=backend("fallback", "http"),
        rules=[
            {
                "host": "*.example.com",
                "http": {
                    "paths": [
                        {"path": "/exact", "pathType": "Exact", "backend": backend("one", 8080)},
                        {"path": "/prefix/", "pathType": "Prefix", "backend": backend("two", "web")},
                        {"pathType": "ImplementationSpecific", "backend": backend("three")},
                        {
                            "path": "/bucket",
                            "pathType": "Prefix",
                            "backend": {"resource": {"apiGroup": "example.com", "kind": "Bucket", "name": "static"}},
                        },
                    ]
                },
            },
            {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend()}]}},
        ],
        tls=[{"hosts": ["a.example.com", "*.example.com"], "secretName": "example-tls"}],
        ingressClassName="lab",
    )
    stored = await created(http, INGRESSES, body)
    assert stored["status"] == {"loadBalancer": {}}
    assert stored["metadata"]["generation"] == 1
    assert stored["spec"] == body["spec"]  # kube's v1 defaults nothing in an Ingress


async def test_kubectls_protobuf_create_body_is_read_with_host_and_http_side_by_side(http: Client) -> None:
    # captured from kubectl 1.32: create ingress web --rule="foo.example.com/bar*=svc1:8080"
    # --rule="a.example.com/=svc2:https,tls=a-cert" --class=lab --default-backend=fallback:80
    body = (Path(__file__).with_name("data") / "create-ingresses.pb").read_bytes()
    answer = await http.post(INGRESSES, data=body, headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert answer.status == 201, await answer.text()
    spec = (await answer.json())["spec"]
    assert spec["ingressClassName"] == "lab"
    assert spec["defaultBackend"] == backend("fallback", 80)
    assert spec["tls"] == [{"hosts": ["a.example.com"], "secretName": "a-cert"}]
    first, second = spec["rules"]
    assert first == {
        "host": "foo.example.com",
        "http": {"paths": [{"path": "/bar", "pathType": "Prefix", "backend": backend("svc1", 8080)}]},
    }
    assert second["http"]["paths"][0] == {"path": "/", "pathType": "Exact", "backend": backend("svc2", "https")}


async def test_a_valid_ingress_class_defaults_its_parameters_scope_to_cluster(http: Client) -> None:
    body = ingress_class("nginx", "k8s.io/ingress-nginx")
    body["spec"]["parameters"] = {"apiGroup": "example.com", "kind": "Settings", "name": "global"}
    stored = await created(http, CLASSES, body)
    assert stored["spec"]["parameters"]["scope"] == "Cluster"
    assert "namespace" not in stored["metadata"] and stored["metadata"]["generation"] == 1


# --- validation -----------------------------------------------------------------------------------

_INVALID_INGRESSES: list[tuple[str, dict[str, Any], str]] = [
    (
        "neither rules nor default backend",
        ingress(ingressClassName="lab"),
        "spec: Invalid value: null: either `defaultBackend` or `rules` must be specified",
    ),
    (
        "host an IP address",
        ingress(rules=[{"host": "10.0.0.1"}]),
        'spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address',
    ),
    (
        "host not a DNS subdomain",
        ingress(rules=[{"host": "Foo_bar.example.com"}]),
        'spec.rules[0].host: Invalid value: "Foo_bar.example.com": a lowercase RFC 1123 subdomain',
    ),
    (
        "wildcard not only as the first label",
        ingress(rules=[{"host": "foo.*.example.com"}]),
        "a wildcard DNS-1123 subdomain must start with '*.'",
    ),
    (
        "http with no paths",
        ingress(rules=[{"host": "a.example.com", "http": {"paths": []}}]),
        "spec.rules[0].http.paths: Required value",
    ),
    (
        "no pathType",
        with_path(pathType=None),
        "spec.rules[0].http.paths[0].pathType: Required value",
    ),
    (
        "unknown pathType",
        with_path(pathType="Regex"),
        'spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported values:'
        ' "Exact", "ImplementationSpecific", "Prefix"',
    ),
    (
        "relative Prefix path",
        with_path(path="bar"),
        'spec.rules[0].http.paths[0].path: Invalid value: "bar": must be an absolute path',
    ),
    (
        "relative Exact path",
        with_path(path="bar", pathType="Exact"),
        'spec.rules[0].http.paths[0].path: Invalid value: "bar": must be an absolute path',
    ),
    (
        "Prefix path with a double slash",
        with_path(path="/a//b"),
        "spec.rules[0].http.paths[0].path: Invalid value: \"/a//b\": must not contain '//'",
    ),
    (
        "both service and resource",
        with_path(backend={**backend(), "resource": {"kind": "Bucket", "name": "b"}}),
        'spec.rules[0].http.paths[0].backend: Invalid value: "": cannot set both resource and service backends',
    ),
    (
        "neither service nor resource",
        with_path(backend={}),
        'spec.rules[0].http.paths[0].backend: Invalid value: "": resource or service backend is required',
    ),
    (
        "service name not a DNS-1035 label",
        with_path(backend=backend("1web")),
        'spec.rules[0].http.paths[0].backend.service.name: Invalid value: "1web": a DNS-1035 label',
    ),
    (
        "service port both name and number",
        with_path(backend={"service": {"name": "web", "port": {"name": "http", "number": 80}}}),
        'spec.rules[0].http.paths[0].backend: Invalid value: "": cannot set both port name & port number',
    ),
    (
        "service port neither name nor number",
        with_path(backend={"service": {"name": "web", "port": {}}}),
        "spec.rules[0].http.paths[0].backend: Required value: port name or number is required",
    ),
    (
        "service port number out of range",
        with_path(backend=backend(port=70000)),
        "spec.rules[0].http.paths[0].backend.service.port.number: Invalid value: 70000:"
        " must be between 1 and 65535, inclusive",
    ),
    (
        "resource backend without a kind",
        with_path(backend={"resource": {"name": "b"}}),
        "spec.rules[0].http.paths[0].backend.resource.kind: Required value",
    ),
    (
        "default backend checked as a path's",
        ingress(defaultBackend=backend("Web")),
        'spec.defaultBackend.service.name: Invalid value: "Web": a DNS-1035 label',
    ),
    (
        "tls host not a DNS subdomain",
        ingress(defaultBackend=backend(), tls=[{"hosts": ["a..example.com"]}]),
        'spec.tls[0].hosts[0]: Invalid value: "a..example.com": a lowercase RFC 1123 subdomain',
    ),
    (
        "tls secret not a DNS subdomain",
        ingress(defaultBackend=backend(), tls=[{"secretName": "My_Secret"}]),
        'spec.tls[0].secretName: Invalid value: "My_Secret": a lowercase RFC 1123 subdomain',
    ),
    (
        "class name not a DNS subdomain",
        ingress(defaultBackend=backend(), ingressClassName="Lab"),
        'spec.ingressClassName: Invalid value: "Lab": a lowercase RFC 1123 subdomain',
    ),
]


@pytest.mark.parametrize(("case", "body", "message"), _INVALID_INGRESSES, ids=[c[0] for c in _INVALID_INGRESSES])
async def test_an_invalid_ingress_is_refused_with_the_field_and_kubes_message(
    http: Client, case: str, body: dict[str, Any], message: str
) -> None:
    status = await refused(http, INGRESSES, body)
    assert status["reason"] == "Invalid"
    assert status["message"].startswith(f'Ingress.networking.k8s.io "{body["metadata"]["name"]}" is invalid: ')
    assert message in status["message"], status["message"]
    field = message.split(":", 1)[0] if message.startswith("spec") else ""
    if field:
        assert field in [c["field"] for c in status["details"]["causes"]]


_INVALID_CLASSES: list[tuple[str, dict[str, Any], str]] = [
    ("no controller", {}, "spec.controller: Required value"),
    (
        "controller without a domain",
        {"controller": "ingress-nginx"},
        'spec.controller: Invalid value: "ingress-nginx": must be a domain-prefixed path (such as "acme.io/foo")',
    ),
    (
        "controller domain not a subdomain",
        {"controller": "Example.com/ingress"},
        'spec.controller: Invalid value: "Example.com": a lowercase RFC 1123 subdomain',
    ),
    (
        "parameters without kind and name",
        {"controller": "example.com/ingress", "parameters": {}},
        "spec.parameters.kind: Required value",
    ),
    (
        "namespace-scoped parameters without a namespace",
        {"controller": "example.com/ingress", "parameters": {"kind": "K", "name": "n", "scope": "Namespace"}},
        "spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'",
    ),
    (
        "unknown parameters scope",
        {"controller": "example.com/ingress", "parameters": {"kind": "K", "name": "n", "scope": "Galaxy"}},
        'spec.parameters.scope: Unsupported value: "Galaxy": supported values: "Cluster", "Namespace"',
    ),
]


@pytest.mark.parametrize(("case", "spec", "message"), _INVALID_CLASSES, ids=[c[0] for c in _INVALID_CLASSES])
async def test_an_invalid_ingress_class_is_refused_with_the_field_and_kubes_message(
    http: Client, case: str, spec: dict[str, Any], message: str
) -> None:
    body = ingress_class("broken")
    body["spec"] = spec
    status = await refused(http, CLASSES, body)
    assert status["message"].startswith('IngressClass.networking.k8s.io "broken" is invalid: ')
    assert message in status["message"], status["message"]


async def test_an_ingress_class_controller_cannot_change(http: Client) -> None:
    stored = await created(http, CLASSES, ingress_class("lab", "example.com/one"))
    stored["spec"]["controller"] = "example.com/two"
    answer = await http.put(f"{CLASSES}/lab", json=stored)
    assert answer.status == 422
    assert 'spec.controller: Invalid value: "example.com/two": field is immutable' in (await answer.json())["message"]
    relabeled = await (await http.get(f"{CLASSES}/lab")).json()
    relabeled["metadata"]["labels"] = {"tier": "edge"}
    assert (await http.put(f"{CLASSES}/lab", json=relabeled)).status == 200


# --- DefaultIngressClass admission ----------------------------------------------------------------


async def test_an_ingress_without_a_class_gets_the_default_one(http: Client) -> None:
    await created(http, CLASSES, ingress_class("plain"))
    assert "ingressClassName" not in (await created(http, INGRESSES, ingress("before")))["spec"]
    await created(http, CLASSES, ingress_class("lab", default=True))
    assert (await created(http, INGRESSES, ingress("after")))["spec"]["ingressClassName"] == "lab"


async def test_a_class_chosen_by_field_or_by_the_old_annotation_is_kept(http: Client) -> None:
    await created(http, CLASSES, ingress_class("lab", default=True))
    await created(http, CLASSES, ingress_class("other"))
    chosen = ingress("chosen")
    chosen["spec"]["ingressClassName"] = "other"
    assert (await created(http, INGRESSES, chosen))["spec"]["ingressClassName"] == "other"
    annotated = ingress("annotated")
    annotated["metadata"]["annotations"] = {"kubernetes.io/ingress.class": "nginx"}
    assert "ingressClassName" not in (await created(http, INGRESSES, annotated))["spec"]


async def test_only_a_true_annotation_makes_a_class_default_and_updates_are_not_defaulted(http: Client) -> None:
    almost = ingress_class("almost")
    almost["metadata"]["annotations"] = {DEFAULT: "True"}
    await created(http, CLASSES, almost)
    stored = await created(http, INGRESSES, ingress())
    assert "ingressClassName" not in stored["spec"]
    await created(http, CLASSES, ingress_class("lab", default=True))
    stored["metadata"]["labels"] = {"touched": "yes"}
    updated = await (await http.put(f"{INGRESSES}/web", json=stored)).json()
    assert "ingressClassName" not in updated["spec"]


def test_of_several_default_classes_the_newest_wins_and_a_tie_goes_to_the_first_name() -> None:
    def cls(name: str, created_at: str, *, default: bool = True) -> dict[str, Any]:
        body = ingress_class(name, default=default)
        body["metadata"]["creationTimestamp"] = created_at
        return body

    older, newer = cls("zeta", "2026-01-01T00:00:00Z"), cls("alpha", "2026-01-02T00:00:00Z")
    assert default_class([older, newer]) == "alpha"
    assert default_class([cls("b", "2026-01-03T00:00:00Z"), cls("a", "2026-01-03T00:00:00Z"), older]) == "a"
    assert default_class([cls("x", "2026-01-09T00:00:00Z", default=False), older]) == "zeta"
    assert default_class([cls("x", "2026-01-09T00:00:00Z", default=False)]) is None


# --- status subresource and generation ------------------------------------------------------------


async def test_status_changes_only_through_its_subresource_and_generation_follows_the_spec(http: Client) -> None:
    stored = await created(http, INGRESSES, ingress())
    address = {"loadBalancer": {"ingress": [{"ip": "192.168.122.240", "ports": [{"port": 80, "protocol": "TCP"}]}]}}
    sneaky = copy.deepcopy(stored)
    sneaky["status"] = address
    through_main = await (await http.put(f"{INGRESSES}/web", json=sneaky)).json()
    assert through_main["status"] == {"loadBalancer": {}} and through_main["metadata"]["generation"] == 1
    through_status = await http.patch(
        f"{INGRESSES}/web/status",
        json={"status": address},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert through_status.status == 200, await through_status.text()
    written = await through_status.json()
    assert written["status"] == address and written["metadata"]["generation"] == 1
    written["spec"]["rules"][0]["host"] = "bar.example.com"
    respecced = await (await http.put(f"{INGRESSES}/web", json=written)).json()
    assert respecced["metadata"]["generation"] == 2 and respecced["status"] == address


async def test_a_status_address_must_be_an_ip_and_a_host_name_must_not_be_one(http: Client) -> None:
    await created(http, INGRESSES, ingress())
    for entry, message in (
        ({"ip": "not-an-ip"}, 'status.loadBalancer.ingress[0].ip: Invalid value: "not-an-ip": must be a valid IP'),
        (
            {"hostname": "10.1.2.3"},
            'status.loadBalancer.ingress[0].hostname: Invalid value: "10.1.2.3": must be a DNS name, not an IP address',
        ),
    ):
        answer = await http.patch(
            f"{INGRESSES}/web/status",
            json={"status": {"loadBalancer": {"ingress": [entry]}}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert answer.status == 422
        assert message in (await answer.json())["message"]


# --- tables ----------------------------------------------------------------------------------------


async def test_ingress_table_has_kubes_columns_class_hosts_address_and_ports(http: Client) -> None:
    await created(http, INGRESSES, ingress("plain"))
    tls = ingress(
        "secure",
        ingressClassName="lab",
        rules=[{"host": h} for h in ("a.example.com", "b.example.com", "c.example.com", "d.example.com")],
        tls=[{"hosts": ["a.example.com"], "secretName": "a-tls"}],
    )
    await created(http, INGRESSES, tls)
    await created(http, INGRESSES, ingress("catchall", defaultBackend=backend()))
    await created(http, INGRESSES, ingress("late", rules=[{}, {}, {}, {"host": "late.example.com"}]))
    status = {"loadBalancer": {"ingress": [{"ip": "192.168.122.241"}, {"hostname": "lb.example.com"}]}}
    patched = await http.patch(
        f"{INGRESSES}/secure/status", json={"status": status}, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert patched.status == 200
    table = await (await http.get(INGRESSES, headers=TABLE)).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Class", "Hosts", "Address", "Ports", "Age"]
    rows = {r["cells"][0]: r["cells"][1:5] for r in table["rows"]}
    assert rows["plain"] == ["<none>", "foo.example.com", "", "80"]
    assert rows["secure"] == [
        "lab",
        "a.example.com,b.example.com,c.example.com + 1 more...",
        "192.168.122.241,lb.example.com",
        "80, 443",
    ]
    assert rows["catchall"] == ["<none>", "*", "", "80"]
    assert rows["late"][1] == "late.example.com"  # the first three named hosts, wherever their rules are


async def test_ingress_class_table_has_controller_and_parameters(http: Client) -> None:
    await created(http, CLASSES, ingress_class("plain", "example.com/plain"))
    with_params = ingress_class("tuned", "example.com/tuned")
    with_params["spec"]["parameters"] = {"apiGroup": "example.com", "kind": "Settings", "name": "fast"}
    await created(http, CLASSES, with_params)
    table = await (await http.get(CLASSES, headers=TABLE)).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Controller", "Parameters", "Age"]
    rows = {r["cells"][0]: r["cells"][1:3] for r in table["rows"]}
    assert rows == {
        "plain": ["example.com/plain", "<none>"],
        "tuned": ["example.com/tuned", "Settings.example.com/fast"],
    }


# --- RBAC ------------------------------------------------------------------------------------------


def _grants(role: str, group: str, resource: str, verb: str) -> bool:
    found = next(r for r in bootstrappolicy.CLUSTER_ROLES if r["metadata"]["name"] == role)
    return any(
        group in rule.get("apiGroups", []) and resource in rule.get("resources", []) and verb in rule["verbs"]
        for rule in found["rules"]
    )


def test_edit_writes_ingresses_and_view_reads_them_and_their_status() -> None:
    for verb in ("create", "update", "patch", "delete", "deletecollection"):
        assert _grants("system:aggregate-to-edit", "networking.k8s.io", "ingresses", verb)
    for resource in ("ingresses", "ingresses/status"):
        for verb in ("get", "list", "watch"):
            assert _grants("system:aggregate-to-view", "networking.k8s.io", resource, verb)
    assert not _grants("system:aggregate-to-view", "networking.k8s.io", "ingressclasses", "get")
