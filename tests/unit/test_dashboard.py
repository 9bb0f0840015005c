"""The dashboard's pure parts: the architecture map from objects, the login's handling of tokens and
of the API server's answers, the writes it lets through, the trace's layout, and its add-on."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from agents.dashboard import overview, session, timeline
from agents.dashboard.server import Answer, Dashboard, event_summary
from agents.dashboard.session import LoginError
from provisioner.addons import catalog, manager
from provisioner.artefacts import containerimages
from provisioner.cli import dashboard as dashboard_cli
from provisioner.cli import main
from provisioner.lab.paths import LabPaths
from provisioner.lab.spec import LabSpec
from provisioner.project import ROOT

NOW = 1_700_000_100.0  # 2023-11-14T22:15:00Z
RENEWED = "2023-11-14T22:14:55.000000Z"  # NOW - 5 s


def node(name: str, ready: str = "True", **info: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"podCIDR": "10.244.1.0/24"},
        "status": {
            "conditions": [
                {"type": "Ready", "status": ready, "reason": "KubeletReady" if ready == "True" else "NodeStatusUnknown"}
            ],
            "addresses": [{"type": "InternalIP", "address": "192.168.123.11"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0", "containerRuntimeVersion": "containerd://1.6.20", **info},
        },
    }


def pod(namespace: str, name: str, *, node_name: str = "", ip: str = "", ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"nodeName": node_name} if node_name else {},
        "status": {
            "phase": "Running" if node_name else "Pending",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def lease(name: str, holder: str = "", renewed: str = RENEWED, namespace: str = "kube-system") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"holderIdentity": holder, "renewTime": renewed, "leaseDurationSeconds": 15},
    }


def build(**given: Any) -> overview.Overview:
    values: dict[str, Any] = {
        "nodes": [],
        "pods": [],
        "leases": [],
        "node_leases": [],
        "readyz": (200, "ok"),
        "revision": "42",
        "now": NOW,
    }
    values.update(given)
    return overview.build(**values)


# --- the architecture map -------------------------------------------------------------------------


def test_each_node_carries_its_pods_with_their_ips_and_its_heartbeat_age() -> None:
    built = build(
        nodes=[node("worker-1"), node("worker-2")],
        pods=[
            pod("default", "web-b", node_name="worker-1", ip="10.244.1.3"),
            pod("default", "web-a", node_name="worker-1", ip="10.244.1.2"),
            pod("default", "waiting"),
        ],
        node_leases=[lease("worker-1", "worker-1", namespace="kube-node-lease")],
    )
    first, second = built["nodes"]
    assert [(p["name"], p["ip"]) for p in first["pods"]] == [("web-a", "10.244.1.2"), ("web-b", "10.244.1.3")]
    assert first["heartbeatAgeSeconds"] == pytest.approx(5.0)
    assert (first["containerd"], first["internalIP"], first["failed"]) == (
        "containerd://1.6.20",
        "192.168.123.11",
        False,
    )
    assert second["pods"] == [] and second["heartbeatAgeSeconds"] is None
    assert [p["name"] for p in built["pending"]] == ["waiting"]


@pytest.mark.parametrize("status", ["False", "Unknown"])
def test_a_node_whose_ready_condition_is_not_true_is_drawn_failed(status: str) -> None:
    (view,) = build(nodes=[node("worker-1", status)])["nodes"]
    assert view["failed"] and view["ready"] == status and view["reason"] == "NodeStatusUnknown"


def test_a_node_without_a_ready_condition_is_unknown_and_failed() -> None:
    bare = {"metadata": {"name": "new"}, "status": {}}
    (view,) = build(nodes=[bare])["nodes"]
    assert (view["ready"], view["failed"]) == ("Unknown", True)


def test_the_leaders_are_the_holders_of_their_leases_healthy_while_renewed_in_time() -> None:
    built = build(
        leases=[
            lease("kube-scheduler", "master_1"),
            lease("kube-controller-manager", "master_2", "2023-11-14T22:14:00Z"),
        ]
    )
    scheduler, manager_ = built["controlPlane"]["scheduler"], built["controlPlane"]["controllerManager"]
    assert (scheduler["holder"], scheduler["healthy"]) == ("master_1", True)
    assert manager_["renewAgeSeconds"] == pytest.approx(60.0) and not manager_["healthy"]


def test_a_missing_lease_has_no_leader() -> None:
    scheduler = build()["controlPlane"]["scheduler"]
    assert scheduler == {"lease": "kube-scheduler", "holder": "", "renewAgeSeconds": None, "healthy": False}


def test_etcd_is_the_lists_revision_and_its_size_is_said_to_be_unknown() -> None:
    etcd = build(revision="1234")["controlPlane"]["etcd"]
    assert etcd == {"revision": "1234", "size": "not exposed by the API server"}


def test_the_api_servers_health_is_its_readyz() -> None:
    failing = build(readyz=(500, "[-]etcd failed: reason withheld\nreadyz check failed"))["controlPlane"]["apiserver"]
    assert not failing["healthy"] and failing["code"] == 500 and "[-]etcd" in failing["readyz"]


def test_addons_are_the_workloads_the_addon_manager_labelled() -> None:
    labelled = {
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {overview.ADDON_LABEL: "dns"}},
        "spec": {"replicas": 2},
        "status": {"readyReplicas": 1},
    }
    other = {"metadata": {"name": "mine", "namespace": "kube-system"}, "spec": {}, "status": {}}
    (addon,) = build(deployments=[labelled, other])["controlPlane"]["addons"]
    assert (addon["name"], addon["ready"], addon["wanted"], addon["healthy"]) == ("dns", 1, 2, False)


def test_what_could_not_be_listed_is_carried_as_the_api_servers_message() -> None:
    built = build(errors={"leases": 'leases.coordination.k8s.io is forbidden: User "u" cannot list'})
    assert built["errors"]["leases"].startswith("leases.coordination.k8s.io is forbidden")


# --- logging in -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("abc.def", "abc.def"),
        ("  Bearer abc  ", "abc"),
        ("Bearer eyJhbGciOi.eyJzdWIi.c2ln-_", "eyJhbGciOi.eyJzdWIi.c2ln-_"),
        ("a+b/c==", "a+b/c=="),
    ],
)
def test_a_token_is_taken_trimmed_and_without_its_scheme(given: str, kept: str) -> None:
    assert session.checked_token(given) == kept


@pytest.mark.parametrize("given", ["", "   ", None, 42, "two words", "x" * 9000, "caf\u00e9", "a;b", 'a"b', "a,b"])
def test_what_cannot_be_a_token_is_refused_as_unauthorized(given: object) -> None:
    with pytest.raises(LoginError) as caught:
        session.checked_token(given)
    assert caught.value.code == 401 and caught.value.message.startswith("Unauthorized")


def test_the_cookie_is_httponly_strict_and_scoped_to_the_login_requests_directory() -> None:
    assert session.set_cookie("abc") == f"{session.COOKIE}=abc; HttpOnly; SameSite=Strict"
    assert "Max-Age=0" in session.clear_cookie() and "Path" not in session.clear_cookie()
    assert session.token_of({session.COOKIE: "abc"}) == "abc"
    assert session.token_of({}) is None and session.token_of({session.COOKIE: "a b"}) is None


def test_the_api_servers_status_message_is_what_the_page_shows() -> None:
    refused = {"kind": "Status", "code": 403, "message": 'pods is forbidden: User "u" cannot list resource "pods"'}
    assert session.status_message(403, refused) == 'pods is forbidden: User "u" cannot list resource "pods"'
    assert session.status_message(401, None) == "Unauthorized"
    assert session.status_message(502, "x", "bad gateway") == "bad gateway"
    assert session.user_of({"status": {"userInfo": {"username": "kubelab-admin"}}}) == "kubelab-admin"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/web/scale", True),
        ("PUT", "/apis/apps/v1/namespaces/ns/deployments/web/scale", True),
        ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/web", False),
        ("PATCH", "/apis/apps/v1/namespaces/ns/statefulsets/web/scale", False),
        ("DELETE", "/api/v1/namespaces/ns/pods/web-1", True),
        ("DELETE", "/apis/apps/v1/namespaces/ns/deployments/web", True),
        ("DELETE", "/api/v1/nodes/worker-1", True),
        ("DELETE", "/api/v1/namespaces/ns", False),
        ("DELETE", "/api/v1/namespaces/ns/pods", False),
        ("POST", "/api/v1/namespaces/ns/pods", False),
        ("PUT", "/api/v1/namespaces/ns/configmaps/c", False),
    ],
)
def test_only_a_deployments_scale_and_deleting_one_object_are_writes_let_through(
    method: str, path: str, allowed: bool
) -> None:
    assert session.is_write_allowed(method, path) is allowed


# --- the backend's HTTP side, with a fake API server ----------------------------------------------


class FakeApi:
    """Answers as the API server would, and records the token of every call."""

    def __init__(self, answers: dict[tuple[str, str], Answer]) -> None:
        self.answers = answers
        self.tokens: list[str] = []

    async def call(self, method: str, path: str, token: str, **_: Any) -> Answer:
        self.tokens.append(token)
        return self.answers.get(
            (method, path), Answer(404, b'{"kind":"Status","message":"not found"}', "application/json")
        )


UNAUTHORIZED = Answer(401, b'{"kind":"Status","code":401,"message":"Unauthorized"}', "application/json")
REVIEW = Answer(201, b'{"status":{"userInfo":{"username":"alice"}}}', "application/json")


@contextlib.asynccontextmanager
async def client_for(api: FakeApi) -> AsyncIterator[TestClient[Any, Any]]:
    app = Dashboard(api, clock=lambda: NOW).app()  # type: ignore[arg-type]
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_a_login_keeps_a_token_the_api_server_accepts_in_an_httponly_strict_cookie() -> None:
    api = FakeApi({("POST", session.SELF_SUBJECT_REVIEW): REVIEW})
    async with client_for(api) as client:
        response = await client.post("/login", json={"token": "good"}, headers={session.CSRF_HEADER: "1"})
        assert response.status == 200 and (await response.json()) == {"user": "alice"}
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith(f"{session.COOKIE}=good;") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Path=" not in cookie and api.tokens == ["good"]


async def test_a_refused_login_answers_the_api_servers_status() -> None:
    async with client_for(FakeApi({("POST", session.SELF_SUBJECT_REVIEW): UNAUTHORIZED})) as client:
        response = await client.post("/login", json={"token": "bad"}, headers={session.CSRF_HEADER: "1"})
        assert response.status == 401 and (await response.json())["message"] == "Unauthorized"
        assert "Set-Cookie" not in response.headers


async def test_a_write_without_the_pages_header_is_refused() -> None:
    async with client_for(FakeApi({})) as client:
        response = await client.post("/login", json={"token": "good"})
        assert response.status == 403


async def test_without_a_token_the_api_answers_unauthorized() -> None:
    async with client_for(FakeApi({})) as client:
        response = await client.get("/api/overview")
        assert response.status == 401 and (await response.json())["reason"] == "Unauthorized"


async def test_a_forbidden_read_passes_kubes_wording_through() -> None:
    forbidden = Answer(403, b'{"kind":"Status","code":403,"message":"pods is forbidden"}', "application/json")
    api = FakeApi({("GET", "/api/v1/pods"): forbidden})
    async with client_for(api) as client:
        client.session.cookie_jar.update_cookies({session.COOKIE: "tok"})
        response = await client.get("/k8s/api/v1/pods")
        assert response.status == 403 and (await response.json())["message"] == "pods is forbidden"
        assert api.tokens == ["tok"]


async def test_the_page_and_its_assets_are_served_with_relative_urls() -> None:
    async with client_for(FakeApi({})) as client:
        page = await (await client.get("/")).text()
        assert 'href="static/style.css"' in page and 'src="static/app.js"' in page
        assert 'src="/' not in page and 'href="/' not in page
        script = await client.get("/static/app.js")
        assert script.status == 200 and script.content_type == "text/javascript"
        assert (await client.get("/static/..%2Fserver.py")).status == 404


def test_a_lease_renewal_event_carries_its_holder_and_time() -> None:
    event = {"type": "MODIFIED", "object": lease("worker-1", "worker-1", namespace="kube-node-lease")}
    assert event_summary("Lease", event) == {
        "type": "MODIFIED",
        "kind": "Lease",
        "namespace": "kube-node-lease",
        "name": "worker-1",
        "resourceVersion": "",
        "holder": "worker-1",
        "renewTime": RENEWED,
    }


# --- the trace's layout ---------------------------------------------------------------------------


def span(
    span_id: str, parent: str, name: str, *, service: str, start_ms: float, end_ms: float, **extra: Any
) -> dict[str, Any]:
    base = 1_700_000_000_000_000_000
    return {
        "traceId": "ab" * 16,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "service": service,
        "start": base + int(start_ms * 1e6),
        "end": base + int(end_ms * 1e6),
        **extra,
    }


def test_spans_are_rows_under_their_parents_with_offsets_and_durations_in_ms() -> None:
    trace = {
        "traceId": "ab" * 16,
        "spans": [
            span("c", "a", "sync deployment", service="controller-manager", start_ms=4, end_ms=6),
            span("a", "", "create deployments", service="apiserver", start_ms=0, end_ms=3),
            span(
                "b",
                "a",
                "authentication",
                service="apiserver",
                start_ms=0.5,
                end_ms=1,
                events=[
                    {"name": "filtered out", "time": 1_700_000_000_000_000_000 + 800_000, "attributes": {"k": "v"}}
                ],
            ),
            span(
                "d",
                "zz",
                "sync pod",
                service="kubelet",
                start_ms=7,
                end_ms=10,
                status={"code": "ERROR", "message": "image not found"},
            ),
        ],
    }
    laid = timeline.layout(trace)
    assert [(r["name"], r["depth"]) for r in laid["rows"]] == [
        ("create deployments", 0),
        ("authentication", 1),
        ("sync deployment", 1),
        ("sync pod", 0),
    ]
    assert laid["totalMs"] == pytest.approx(10.0)
    auth = laid["rows"][1]
    assert auth["offsetMs"] == pytest.approx(0.5) and auth["durationMs"] == pytest.approx(0.5)
    assert auth["events"] == [{"name": "filtered out", "offsetMs": pytest.approx(0.8), "attributes": {"k": "v"}}]
    assert laid["rows"][3]["status"] == "ERROR" and laid["rows"][3]["message"] == "image not found"
    assert laid["services"] == ["apiserver", "controller-manager", "kubelet"]


def test_an_empty_trace_has_no_rows() -> None:
    assert timeline.layout({"traceId": "x", "spans": []}) == {
        "traceId": "x",
        "totalMs": 0.0,
        "services": [],
        "rows": [],
    }


@pytest.mark.parametrize(
    ("traceparent", "trace_id"),
    [
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
        ("garbage", None),
        ("00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),
    ],
)
def test_the_trace_id_is_read_from_the_objects_traceparent(traceparent: str, trace_id: str | None) -> None:
    assert timeline.trace_id_of(traceparent) == trace_id


# --- the add-on and its image ---------------------------------------------------------------------


def test_the_addon_renders_a_service_on_port_80_to_the_pods_http_port_and_a_serviceaccount_without_bindings() -> None:
    addon = catalog.load()["dashboard"]
    assert not addon.default and addon.images == ("dashboard",)
    values = manager.values_for(LabSpec(name="x"), {"dashboard": "dashboard:1.0-abc"})
    objects = {(m.kind, m.name): m.body for m in catalog.render(addon, values)}
    assert set(objects) == {("ServiceAccount", "dashboard"), ("Deployment", "dashboard"), ("Service", "dashboard")}
    (port,) = objects[("Service", "dashboard")]["spec"]["ports"]
    assert (port["name"], port["port"], port["targetPort"]) == ("http", 80, "http")
    pod_spec = objects[("Deployment", "dashboard")]["spec"]["template"]["spec"]
    (container,) = pod_spec["containers"]
    assert container["image"] == "dashboard:1.0-abc" and container["ports"][0]["containerPort"] == 8080
    assert pod_spec["serviceAccountName"] == "dashboard"


def test_the_image_takes_every_file_of_the_page() -> None:
    recipe = containerimages.recipes()["dashboard"]
    assert recipe.python is not None
    page = {str(p.relative_to(ROOT)) for p in (ROOT / "agents/dashboard/static").iterdir()}
    assert page <= set(recipe.python.code)
    assert recipe.config["Entrypoint"] == ["/usr/bin/python3", "-m", "agents.dashboard"]
    assert yaml.safe_load(Path(ROOT / "images/containers/dashboard.yaml").read_text())["on-demand"] is True


# --- kubelab dashboard ----------------------------------------------------------------------------


def test_kubelab_dashboard_takes_the_lab_by_name_or_lab() -> None:
    assert main.parser().parse_args(["dashboard", "--lab", "x"]).name == "x"
    assert main.parser().parse_args(["dashboard", "--name", "y"]).name == "y"
    assert main.COMMANDS["dashboard"] is dashboard_cli.run


def test_the_printed_url_is_the_dashboard_under_the_api_servers_service_proxy() -> None:
    found = dashboard_cli.STARTED.search("Starting to serve on 127.0.0.1:41234\n")
    assert found is not None
    assert dashboard_cli.url_of(found.group(1), int(found.group(2))) == (
        "http://127.0.0.1:41234/api/v1/namespaces/kube-system/services/http:dashboard:http/proxy/"
    )


def test_a_lab_without_an_admin_token_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(dashboard_cli.DashboardError, match="run kubelab up again"):
        dashboard_cli.admin_token(LabPaths(tmp_path))
