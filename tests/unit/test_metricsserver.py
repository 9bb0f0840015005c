"""The metrics-server add-on (agents/metricsserver): reading the kubelets' Prometheus text, rates
between points, which NodeMetrics and PodMetrics appear and in which shape, who may ask, and the
whole server over real HTTPS in-process against a fake kubelet that advances between scrapes.

Fakes, declared: ``FakeKubelet`` is an aiohttp HTTPS server with a certificate of a test CA that
answers ``/metrics/resource`` from a list of texts (one per scrape); ``Listed`` stands in for the
Node and Pod informers; ``FakeReviewer`` for the API server's TokenReview and SubjectAccessReview.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agents.machinery.selectors import parse_fields, parse_labels
from agents.machinery.settings import load
from agents.metricsserver import apiobjects, auth, views
from agents.metricsserver.__main__ import check
from agents.metricsserver.certs import serving_pair
from agents.metricsserver.durations import DurationError, format_nanos, parse_nanos
from agents.metricsserver.points import Batch, PodRef, Point, decode
from agents.metricsserver.scraper import Scraper, Target, target_of
from agents.metricsserver.server import Collector, MetricsApi, server_context
from agents.metricsserver.settings import MetricsServerSettings
from agents.metricsserver.storage import Storage, usage
from provisioner.addons import catalog, manager
from provisioner.lab.spec import LabSpec

S = 10**9  # nanoseconds in a second
T0 = 1_700_000_000_000  # ms: the kubelet's first sample time
NOW = datetime.datetime.fromtimestamp(T0 / 1000, datetime.UTC)


def kubelet_text(*, at_ms: int, node_cpu: float, web_cpu: float, side_cpu: float = 0.5, extra: str = "") -> str:
    """What a kubelet's /metrics/resource says: the node, pod default/web (containers app and side)."""
    return f"""# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{{container="app",namespace="default",pod="web"}} {web_cpu} {at_ms}
container_cpu_usage_seconds_total{{container="side",namespace="default",pod="web"}} {side_cpu} {at_ms}
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{{container="app",namespace="default",pod="web"}} 5.24288e+06 {at_ms}
container_memory_working_set_bytes{{container="side",namespace="default",pod="web"}} 1000 {at_ms}
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{{container="app",namespace="default",pod="web"}} 1.6e+09 {at_ms}
container_start_time_seconds{{container="side",namespace="default",pod="web"}} 1.6e+09 {at_ms}
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total {node_cpu} {at_ms}
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.073741824e+09 {at_ms}
# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds
# TYPE pod_cpu_usage_seconds_total counter
pod_cpu_usage_seconds_total{{namespace="default",pod="web"}} {web_cpu + side_cpu} {at_ms}
# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE scrape_error gauge
scrape_error 0
{extra}"""


# --- durations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nanos", "text"),
    [(0, "0s"), (15_011_000_000, "15.011s"), (250_000_000, "250ms"), (60_500_000_000, "1m0.5s"), (7200 * S, "2h0m0s")],
)
def test_windows_are_written_as_go_durations(nanos: int, text: str) -> None:
    assert format_nanos(nanos) == text
    assert parse_nanos(text) == nanos


def test_a_duration_without_a_unit_is_refused() -> None:
    with pytest.raises(DurationError, match='invalid duration "15"'):
        parse_nanos("15")


# --- reading a kubelet ----------------------------------------------------------------------------


def test_the_kubelets_text_becomes_a_point_per_node_and_container_with_millisecond_times() -> None:
    batch = decode(kubelet_text(at_ms=T0 + 123, node_cpu=100.25, web_cpu=2.5), node="n1", scraped_at=0)
    assert batch.nodes == {"n1": Point((T0 + 123) * 1_000_000, 100_250_000_000, 1_073_741_824)}
    web = batch.pods[PodRef("default", "web")]
    assert web["app"] == Point((T0 + 123) * 1_000_000, 2_500_000_000, 5_242_880, 1_600_000_000 * S)
    assert set(web) == {"app", "side"}


def test_a_pod_with_one_incomplete_container_is_left_out_and_a_missing_time_is_the_scrapes() -> None:
    text = kubelet_text(at_ms=T0, node_cpu=1, web_cpu=1) + (
        'container_cpu_usage_seconds_total{container="c",namespace="ns",pod="half"} 1\n'
        'container_cpu_usage_seconds_total{container="c",namespace="ns",pod="whole"} 1\n'
        'container_memory_working_set_bytes{container="c",namespace="ns",pod="whole"} 4096\n'
    )
    batch = decode(text, node="n1", scraped_at=42)
    assert PodRef("ns", "half") not in batch.pods
    assert batch.pods[PodRef("ns", "whole")]["c"].timestamp == 42


# --- rates ----------------------------------------------------------------------------------------


def test_cpu_is_nanocores_over_the_window_between_the_two_points() -> None:
    found = usage(Point(15 * S, 3 * S, 100), Point(0, 0, 50))
    assert found is not None
    assert (found.cpu, found.window, found.memory, found.timestamp) == (200_000_000, 15 * S, 100, 15 * S)
    assert usage(Point(15 * S, 1, 1), Point(0, 2, 1)) is None  # the counter went back


def _batch(at: int, cpu: int, *, node: str = "n1", pods: Mapping[str, int] | None = None) -> Batch:
    containers = {PodRef("default", p): {"app": Point(at, c, 4096)} for p, c in (pods or {}).items()}
    return Batch({node: Point(at, cpu, 8192)}, containers)


def test_a_node_has_usage_from_its_second_point_on_and_loses_it_when_a_scrape_misses_it() -> None:
    storage = Storage(resolution=15 * S)
    storage.store(_batch(T0 * 10**6, 10 * S))
    assert storage.ready and storage.node("n1") is None
    storage.store(_batch(T0 * 10**6 + 15 * S, 13 * S))
    assert storage.node("n1") == usage(Point(T0 * 10**6 + 15 * S, 13 * S, 8192), Point(T0 * 10**6, 10 * S, 8192))
    storage.store(Batch())  # the kubelet did not answer: nothing stale is served
    assert storage.node("n1") is None


def test_a_repeated_point_keeps_the_older_previous_one() -> None:
    storage = Storage(resolution=15 * S)
    first, second = _batch(0 + S, 1 * S), _batch(16 * S, 4 * S)
    storage.store(first)
    storage.store(second)
    storage.store(second)  # the kubelet has not measured again
    found = storage.node("n1")
    assert found is not None and found.window == 15 * S and found.cpu == 200_000_000


def test_a_pod_appears_only_when_all_its_containers_have_two_points() -> None:
    storage = Storage(resolution=15 * S)
    ref = PodRef("default", "web")
    storage.store(Batch({}, {ref: {"a": Point(S, S, 1)}}))
    storage.store(Batch({}, {ref: {"a": Point(16 * S, 2 * S, 1), "b": Point(16 * S, S, 1)}}))
    assert storage.pod(ref) is None  # b has one point
    storage.store(Batch({}, {ref: {"a": Point(31 * S, 3 * S, 1), "b": Point(31 * S, 4 * S, 2048)}}))
    found = storage.pod(ref)
    assert found is not None and [name for name, _ in found.containers] == ["a", "b"]
    assert found.containers[1][1].cpu == 200_000_000 and found.window == 15 * S


def test_a_restarted_container_starts_over_and_a_fresh_one_counts_from_its_start() -> None:
    storage = Storage(resolution=15 * S)
    ref = PodRef("default", "web")
    storage.store(Batch({}, {ref: {"a": Point(100 * S, 50 * S, 1, start=10 * S)}}))
    storage.store(Batch({}, {ref: {"a": Point(115 * S, 1 * S, 1, start=110 * S)}}))  # started again at 110 s
    assert storage.pod(ref) is None  # not a negative rate, and not 11 s of 'fresh' either: too young
    fresh = Storage(resolution=15 * S)
    fresh.store(Batch({}, {ref: {"a": Point(112 * S, 6 * S, 1, start=100 * S)}}))  # 12 s old
    found = fresh.pod(ref)
    assert found is not None and found.window == 12 * S and found.containers[0][1].cpu == 500_000_000


# --- shapes ---------------------------------------------------------------------------------------

NODE = {"metadata": {"name": "n1", "labels": {"zone": "a", "kubernetes.io/hostname": "n1"}}}
NODE2 = {"metadata": {"name": "n2", "labels": {"zone": "b"}}}
POD = {"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}}
POD_OTHER = {"metadata": {"name": "db", "namespace": "data", "labels": {"app": "db"}}}


def _stored() -> Storage:
    storage = Storage(resolution=15 * S)
    for at, cpu in ((T0 * 10**6, 10 * S), (T0 * 10**6 + 15_011_000_000, 13 * S)):
        pods = {PodRef("default", "web"): {"app": Point(at, cpu // 10, 5_242_880), "side": Point(at, cpu, 1000)}}
        storage.store(Batch({"n1": Point(at, cpu, 1_073_741_824)}, pods))
    return storage


def test_node_metrics_have_kubes_shape_with_canonical_quantities() -> None:
    got = views.node_get(NODE, "n1", _stored(), now=1_700_000_100)
    assert got == {
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {
            "name": "n1",
            "creationTimestamp": "2023-11-14T22:15:00Z",
            "labels": {"zone": "a", "kubernetes.io/hostname": "n1"},
        },
        "timestamp": "2023-11-14T22:13:35Z",
        "window": "15.011s",
        "usage": {"cpu": "199853440n", "memory": "1Gi"},
    }


def test_pod_metrics_list_their_containers_by_name() -> None:
    listed = views.pod_list(
        [POD, POD_OTHER], _stored(), namespace="", labels=parse_labels(""), fields=parse_fields("", ()), now=0
    )
    assert listed["kind"] == "PodMetricsList" and listed["metadata"] == {}
    (item,) = listed["items"]
    assert item["metadata"]["namespace"] == "default" and item["metadata"]["labels"] == {"app": "web"}
    assert item["containers"] == [  # type: ignore[typeddict-item]
        {"name": "app", "usage": {"cpu": "19985344n", "memory": "5Mi"}},
        {"name": "side", "usage": {"cpu": "199853440n", "memory": "1000"}},
    ]


def test_selectors_choose_by_the_objects_labels_and_names() -> None:
    storage = _stored()
    storage.store(Batch({"n1": Point(T0 * 10**6 + 30 * S, 14 * S, 1), "n2": Point(T0 * 10**6 + 30 * S, 1, 1)}))

    def names(labels: str, fields: str = "") -> list[str]:
        chosen = views.node_list(
            [NODE, NODE2], storage, labels=parse_labels(labels), fields=parse_fields(fields, views.NODE_FIELDS), now=0
        )
        return [i["metadata"]["name"] for i in chosen["items"]]

    assert names("") == ["n1"]  # n2 has one point only
    assert names("zone=a") == ["n1"] and names("zone=b") == [] and names("", "metadata.name=n2") == []
    with pytest.raises(apiobjects.ApiStatusError) as refused:
        views.selectors({"fieldSelector": "spec.unschedulable=true"}, views.NODE_FIELDS)
    assert refused.value.code == 400 and "field label not supported" in refused.value.message


def test_missing_objects_and_missing_metrics_are_kubes_not_found() -> None:
    storage = _stored()
    with pytest.raises(apiobjects.ApiStatusError) as no_node:
        views.node_get(None, "ghost", storage, now=0)
    assert no_node.value.message == 'nodes "ghost" not found'
    with pytest.raises(apiobjects.ApiStatusError) as no_metrics:
        views.node_get(NODE2, "n2", storage, now=0)
    assert no_metrics.value.status()["message"] == 'nodemetrics.metrics.k8s.io "n2" not found'
    with pytest.raises(apiobjects.ApiStatusError) as no_pod_metrics:
        views.pod_get(POD_OTHER, PodRef("data", "db"), storage, now=0)
    assert no_pod_metrics.value.status()["details"] == {
        "name": "data/db",
        "kind": "podmetrics",
        "group": "metrics.k8s.io",
    }


def test_discovery_lists_nodes_and_pods_read_only() -> None:
    resources = apiobjects.api_resource_list()["resources"]
    assert [(r["name"], r["kind"], r["namespaced"], r["verbs"]) for r in resources] == [
        ("nodes", "NodeMetrics", False, ["get", "list"]),
        ("pods", "PodMetrics", True, ["get", "list"]),
    ]
    assert apiobjects.api_group()["preferredVersion"] == {
        "groupVersion": "metrics.k8s.io/v1beta1",
        "version": "v1beta1",
    }


# --- who asks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def write(self, directory: Path, name: str) -> tuple[str, str]:
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        cert.write_bytes(self.cert_pem)
        key.write_bytes(self.key_pem)
        return str(cert), str(key)


def _issue(common_name: str, *, issuer: Pki | None = None, client: bool = False, server: bool = False) -> Pki:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=36500))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is None:
        usage_bits = dict.fromkeys(
            ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement"),
            False,
        )
        builder = builder.add_extension(
            x509.KeyUsage(**usage_bits, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True,
        )
    if client:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    if server:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return Pki(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


@pytest.fixture(scope="module")
def front_proxy_ca() -> Pki:
    return _issue("front-proxy-ca")


@pytest.fixture(scope="module")
def front_proxy_client(front_proxy_ca: Pki) -> Pki:
    return _issue("front-proxy-client", issuer=front_proxy_ca, client=True)


def _trust(ca: Pki, allowed: Sequence[str] = ("front-proxy-client",)) -> auth.RequestHeaderConfig:
    config = auth.read_config(
        {
            "requestheader-client-ca-file": ca.cert_pem.decode(),
            "requestheader-allowed-names": json.dumps(list(allowed)),
            "requestheader-username-headers": '["X-Remote-User"]',
            "requestheader-group-headers": '["X-Remote-Group"]',
            "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
            "client-ca-file": "not read",
        }
    )
    assert config is not None
    return config


HEADERS = [
    ("X-Remote-User", "alice"),
    ("X-Remote-Group", "devs"),
    ("x-remote-group", "system:authenticated"),
    ("X-Remote-Extra-Scopes", "a"),
    ("X-Remote-Extra-Acme.com%2Fproject", "p1"),
]


def test_the_front_proxy_is_believed_for_the_user_groups_and_extras_it_names(
    front_proxy_ca: Pki, front_proxy_client: Pki
) -> None:
    der = front_proxy_client.cert.public_bytes(serialization.Encoding.DER)
    user = auth.front_proxy_user(der, _trust(front_proxy_ca), HEADERS, now=NOW)
    assert user == auth.UserInfo(
        "alice", "", ("devs", "system:authenticated"), (("scopes", ("a",)), ("acme.com/project", ("p1",)))
    )
    assert isinstance(auth.front_proxy_user(der, _trust(front_proxy_ca, allowed=()), HEADERS, now=NOW), auth.UserInfo)


def test_the_front_proxy_is_not_believed_without_its_ca_its_name_or_a_user(
    front_proxy_ca: Pki, front_proxy_client: Pki
) -> None:
    der = front_proxy_client.cert.public_bytes(serialization.Encoding.DER)
    other_ca = _issue("someone-else")
    stranger = _issue("front-proxy-client", issuer=other_ca, client=True).cert.public_bytes(serialization.Encoding.DER)
    trust = _trust(front_proxy_ca)
    assert auth.front_proxy_user(stranger, trust, HEADERS, now=NOW) == (
        "the client certificate is not signed by the front-proxy CA"
    )
    assert auth.front_proxy_user(der, _trust(front_proxy_ca, ["aggregator"]), HEADERS, now=NOW) == (
        "x509: subject with cn=front-proxy-client is not in the allowed list"
    )
    assert auth.front_proxy_user(der, trust, HEADERS[1:], now=NOW) == "the front proxy named no user"
    assert auth.front_proxy_user(None, trust, HEADERS, now=NOW) == "no client certificate"
    assert auth.front_proxy_user(der, None, HEADERS, now=NOW) == "no front-proxy CA is published"
    later = NOW + datetime.timedelta(days=40000)
    assert "expired" in str(auth.front_proxy_user(der, trust, HEADERS, now=later))
    assert auth.read_config({"client-ca-file": "x"}) is None


def test_requests_are_authorized_with_kubes_attributes_and_refused_in_kubes_words() -> None:
    assert auth.attributes_for("GET", "/apis/metrics.k8s.io/v1beta1/nodes") == auth.Attributes(
        "list", "/apis/metrics.k8s.io/v1beta1/nodes", "nodes"
    )
    pod = auth.attributes_for("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods/web")
    assert (pod.verb, pod.resource, pod.namespace, pod.name) == ("get", "pods", "ns", "web")
    spec = pod.review_spec(auth.UserInfo("bob", groups=("g",)))
    assert spec["resourceAttributes"] == {
        "verb": "get",
        "group": "metrics.k8s.io",
        "version": "v1beta1",
        "resource": "pods",
        "namespace": "ns",
        "name": "web",
    }
    discovery = auth.attributes_for("GET", "/apis/metrics.k8s.io/v1beta1")
    assert discovery.review_spec(auth.UserInfo("bob"))["nonResourceAttributes"] == {
        "path": "/apis/metrics.k8s.io/v1beta1",
        "verb": "get",
    }
    nodes = auth.attributes_for("GET", "/apis/metrics.k8s.io/v1beta1/nodes")
    assert auth.forbidden(auth.UserInfo("bob"), nodes).message == (
        'nodes.metrics.k8s.io is forbidden: User "bob" cannot list resource "nodes" in API group "metrics.k8s.io"'
        " at the cluster scope"
    )
    assert auth.forbidden(auth.UserInfo("bob"), pod).message.endswith('in the namespace "ns"')


# --- settings and manifests -----------------------------------------------------------------------


def test_the_deployments_args_are_the_servers_own_settings() -> None:
    known = catalog.load()
    values = manager.values_for(LabSpec(name="x", service_cidr="10.100.0.0/16"), {"metrics-server": "ms:1.0-abc"})
    objects = {(m.kind, m.name): m.body for m in catalog.render(known["metrics-server"], values)}
    container = objects[("Deployment", "metrics-server")]["spec"]["template"]["spec"]["containers"][0]
    settings = load(MetricsServerSettings, container["args"], env_prefix="UNUSED_PREFIX", prog="test")
    check(settings)
    assert settings.secure_port == 10250 and settings.kubelet.use_node_status_port
    assert settings.kubelet.preferred_address_types == ("InternalIP", "ExternalIP", "Hostname")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"https": settings.secure_port}
    # the kubelet probes the API port itself, over TLS, where /readyz and /livez are open
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        assert container[probe]["httpGet"] == {"path": path, "port": "https", "scheme": "HTTPS"}
    assert container["image"] == "ms:1.0-abc"
    service = objects[("Service", "metrics-server")]["spec"]
    assert service["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]
    api_service = objects[("APIService", "v1beta1.metrics.k8s.io")]["spec"]
    assert api_service["service"] == {"name": "metrics-server", "namespace": "kube-system", "port": 443}
    reader = objects[("ClusterRole", "system:aggregated-metrics-reader")]
    assert reader["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"


def test_a_resolution_under_ten_seconds_is_refused() -> None:
    from agents.machinery.settings import SettingsError  # noqa: PLC0415

    with pytest.raises(SettingsError, match="at least 10s"):
        check(MetricsServerSettings(metric_resolution="5s"))


# --- the whole server, over HTTPS ---------------------------------------------------------------


@dataclass
class Listed:
    """The informers' stand-in: objects by key."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.objects.get(key)

    def items(self) -> list[dict[str, Any]]:
        return list(self.objects.values())


@dataclass
class FakeReviewer:
    tokens: dict[str, auth.UserInfo] = field(default_factory=dict)
    allowed: set[str] = field(default_factory=set)  # user names
    asked: list[tuple[str, auth.Attributes]] = field(default_factory=list)

    async def authenticate_token(self, token: str) -> auth.UserInfo | None:
        return self.tokens.get(token)

    async def authorize(self, user: auth.UserInfo, attrs: auth.Attributes) -> tuple[bool, str]:
        self.asked.append((user.name, attrs))
        return user.name in self.allowed, ""


class FakeKubelet:
    """An HTTPS /metrics/resource that answers ``texts[step]``; it wants ``Bearer kubelet-token``."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.step = 0
        self.seen_tokens: list[str] = []

    async def metrics(self, request: web.Request) -> web.Response:
        self.seen_tokens.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != "Bearer kubelet-token":
            return web.Response(status=401, text="Unauthorized")
        return web.Response(text=self.texts[min(self.step, len(self.texts) - 1)], content_type="text/plain")


@dataclass
class Lab:
    api: MetricsApi
    url: str
    collector: Collector
    kubelet: FakeKubelet
    reviewer: FakeReviewer
    cluster_ca: Pki
    front_proxy_ca: Pki
    front_proxy_client: Pki
    tmp: Path

    def context(self, *, client: Pki | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the serving certificate is self-signed: the APIService skips it too
        if client is not None:
            cert, key = client.write(self.tmp, "client")
            context.load_cert_chain(cert, key)
        return context

    async def get(
        self, path: str, *, client: Pki | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        connector = aiohttp.TCPConnector(ssl=self.context(client=client))
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.get(self.url + path, headers=dict(headers or {})) as resp,
        ):
            text = await resp.text()
            return resp.status, json.loads(text) if resp.content_type == "application/json" else text


async def _serve(app: web.Application, context: ssl.SSLContext) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    return runner, int(port)


@pytest.fixture
async def lab(tmp_path: Path, front_proxy_ca: Pki, front_proxy_client: Pki) -> AsyncIterator[Lab]:
    cluster_ca = _issue("cluster-ca")
    kubelet_pki = _issue("kubelet", issuer=cluster_ca, server=True)
    start = T0
    texts = [
        kubelet_text(at_ms=start, node_cpu=100.0, web_cpu=2.0),
        kubelet_text(at_ms=start + 15_011, node_cpu=103.0, web_cpu=2.3),
        kubelet_text(at_ms=start + 30_000, node_cpu=106.0, web_cpu=2.6),
    ]
    kubelet = FakeKubelet(texts)
    kubelet_app = web.Application()
    kubelet_app.router.add_get("/metrics/resource", kubelet.metrics)
    kubelet_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    kubelet_tls.load_cert_chain(*kubelet_pki.write(tmp_path, "kubelet"))
    kubelet_runner, kubelet_port = await _serve(kubelet_app, kubelet_tls)

    node = {
        "metadata": {"name": "n1", "labels": {"zone": "a"}},
        "status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        },
    }
    nodes = Listed({"n1": node})
    pods = Listed({"default/web": dict(POD)})
    storage = Storage(resolution=15 * S)
    reviewer = FakeReviewer(tokens={"alice-token": auth.UserInfo("alice")}, allowed={"alice", "ops"})
    cert, key = serving_pair(tmp_path / "certs")
    api = MetricsApi(
        storage=storage,
        nodes=nodes,
        pods=pods,
        reviewer=reviewer,
        tls=server_context(str(cert), str(key)),
        clock=lambda: T0 / 1000 + 60,
    )
    api.set_trust(_trust(front_proxy_ca))
    assert api.tls is not None
    runner, port = await _serve(api.app(), api.tls)
    kubelet_trust = ssl.create_default_context(cadata=cluster_ca.cert_pem.decode())
    scraper = Scraper(ssl_context=kubelet_trust, token=lambda: "kubelet-token", timeout=5.0)
    collector = Collector(
        scraper,
        nodes=nodes,
        storage=storage,
        preferred=("InternalIP", "Hostname"),
        port=10250,
        use_status_port=True,
        resolution=15.0,
    )
    try:
        yield Lab(
            api,
            f"https://127.0.0.1:{port}",
            collector,
            kubelet,
            reviewer,
            cluster_ca,
            front_proxy_ca,
            front_proxy_client,
            tmp_path,
        )
    finally:
        await scraper.close()
        await runner.cleanup()
        await kubelet_runner.cleanup()


FRONT = {"X-Remote-User": "ops", "X-Remote-Group": "system:masters-not"}


async def test_the_server_serves_rates_after_two_scrapes_to_the_front_proxy(lab: Lab) -> None:
    status, body = await lab.get("/readyz")
    assert status == 503  # nothing scraped yet
    first = await lab.collector.collect_once()
    assert not first.errors and set(first.batch.nodes) == {"n1"}
    assert lab.kubelet.seen_tokens == ["Bearer kubelet-token"]
    status, body = await lab.get("/readyz")
    assert (status, body) == (200, "ok")
    status, body = await lab.get("/apis/metrics.k8s.io/v1beta1/nodes", client=lab.front_proxy_client, headers=FRONT)
    assert (status, body["kind"], body["items"]) == (200, "NodeMetricsList", [])  # one point only

    lab.kubelet.step = 1
    await lab.collector.collect_once()
    status, body = await lab.get("/apis/metrics.k8s.io/v1beta1/nodes", client=lab.front_proxy_client, headers=FRONT)
    assert status == 200
    (node,) = body["items"]
    assert node["metadata"]["labels"] == {"zone": "a"}
    assert (node["window"], node["usage"]) == ("15.011s", {"cpu": "199853440n", "memory": "1Gi"})
    status, pod = await lab.get(
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web", client=lab.front_proxy_client, headers=FRONT
    )
    assert status == 200 and pod["kind"] == "PodMetrics"
    assert [(c["name"], c["usage"]["cpu"]) for c in pod["containers"]] == [("app", "19985344n"), ("side", "0")]
    status, listed = await lab.get(
        "/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Dweb", client=lab.front_proxy_client, headers=FRONT
    )
    assert [p["metadata"]["name"] for p in listed["items"]] == ["web"]
    status, none = await lab.get(
        "/apis/metrics.k8s.io/v1beta1/namespaces/other/pods", client=lab.front_proxy_client, headers=FRONT
    )
    assert none["items"] == []
    assert (
        "ops",
        auth.Attributes("get", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web", "pods", "default", "web"),
    ) in lab.reviewer.asked


async def test_unknown_objects_tokens_and_refusals_answer_kubes_statuses(lab: Lab) -> None:
    await lab.collector.collect_once()
    status, body = await lab.get(
        "/apis/metrics.k8s.io/v1beta1/nodes/n1", headers={"Authorization": "Bearer alice-token"}
    )
    assert (status, body["reason"], body["message"]) == (404, "NotFound", 'nodemetrics.metrics.k8s.io "n1" not found')
    status, body = await lab.get(
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/ghost", client=lab.front_proxy_client, headers=FRONT
    )
    assert (status, body["message"]) == (404, 'pods "ghost" not found')
    status, body = await lab.get("/apis/metrics.k8s.io/v1beta1/nodes")
    assert (status, body["reason"], body["kind"]) == (401, "Unauthorized", "Status")
    status, body = await lab.get("/apis/metrics.k8s.io/v1beta1/nodes", headers={"Authorization": "Bearer wrong"})
    assert status == 401
    # a certificate of another CA fails the handshake; one of the front-proxy CA whose name is not
    # allowed is no front proxy's, and the request may still authenticate with a token
    stranger = _issue("front-proxy-client", issuer=_issue("someone-else"), client=True)
    with pytest.raises(aiohttp.ClientError):
        await lab.get("/apis/metrics.k8s.io/v1beta1/nodes", client=stranger, headers=FRONT)
    lab.api.set_trust(_trust(lab.front_proxy_ca, allowed=["aggregator"]))
    status, body = await lab.get("/apis/metrics.k8s.io/v1beta1/nodes", client=lab.front_proxy_client, headers=FRONT)
    assert status == 401
    status, body = await lab.get(
        "/apis/metrics.k8s.io/v1beta1/nodes",
        client=lab.front_proxy_client,
        headers={**FRONT, "Authorization": "Bearer alice-token"},
    )
    assert status == 200
    lab.api.set_trust(_trust(lab.front_proxy_ca))
    status, body = await lab.get(
        "/apis/metrics.k8s.io/v1beta1/nodes", client=lab.front_proxy_client, headers={"X-Remote-User": "mallory"}
    )
    assert (status, body["reason"]) == (403, "Forbidden")
    assert body["message"].startswith('nodes.metrics.k8s.io is forbidden: User "mallory" cannot list resource "nodes"')
    status, body = await lab.get("/apis/metrics.k8s.io", headers={"Authorization": "Bearer alice-token"})
    assert (status, body["kind"]) == (200, "APIGroup")
    status, body = await lab.get(
        "/apis/metrics.k8s.io/v1beta1/nodes?watch=true", headers={"Authorization": "Bearer alice-token"}
    )
    assert (status, body["reason"]) == (405, "MethodNotAllowed")
    status, body = await lab.get(
        "/apis/metrics.k8s.io/v1beta1/deployments", headers={"Authorization": "Bearer alice-token"}
    )
    assert (status, body["reason"]) == (404, "NotFound")


async def test_a_kubelet_that_refuses_is_named_and_its_node_has_no_metrics(lab: Lab) -> None:
    scraper = Scraper(ssl_context=lab.collector.scraper.ssl_context, token=lambda: "wrong", timeout=5.0)
    try:
        lab.collector.scraper = scraper
        result = await lab.collector.collect_once()
    finally:
        await scraper.close()
    assert "HTTP 401" in result.errors["n1"] and not result.batch.nodes
    assert lab.api.storage.ready


async def test_the_kubelets_certificate_is_checked_against_the_cluster_ca(lab: Lab) -> None:
    untrusting = Scraper(ssl_context=ssl.create_default_context(), token=lambda: "kubelet-token", timeout=5.0)
    try:
        target = target_of(lab.collector.nodes.items()[0], preferred=("InternalIP",), port=1, use_status_port=True)
        assert isinstance(target, Target) and target.url.startswith("https://127.0.0.1:")
        result = await untrusting.scrape([target])
    finally:
        await untrusting.close()
    assert "certificate verify failed" in result.errors["n1"]


def test_a_node_without_a_preferred_address_is_not_scraped() -> None:
    node = {"metadata": {"name": "n9"}, "status": {"addresses": [{"type": "Hostname", "address": "n9"}]}}
    assert target_of(node, preferred=("InternalIP",), port=10250, use_status_port=False) == (
        "node n9 has no address of the preferred types InternalIP"
    )
    found = target_of(node, preferred=("InternalIP", "Hostname"), port=10250, use_status_port=True)
    assert found == Target("n9", "n9", 10250)


# --- delegation, against a fake API server ------------------------------------------------------


@dataclass
class FakeApiServer:
    """Answers TokenReviews, SubjectAccessReviews and the authentication ConfigMap; refuses its watch."""

    ca_pem: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    watched: asyncio.Event = field(default_factory=asyncio.Event)

    async def token_review(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        ok = body["spec"]["token"] == "good"
        user = {"username": "alice", "uid": "u1", "groups": ["devs"], "extra": {"scopes": ["a"]}}
        return web.json_response({**body, "status": {"authenticated": ok, **({"user": user} if ok else {})}})

    async def access_review(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        allowed = body["spec"]["resourceAttributes"]["resource"] == "pods"
        return web.json_response({**body, "status": {"allowed": allowed, "reason": "" if allowed else "no rule"}})

    async def configmap(self, request: web.Request) -> web.Response:
        if request.query.get("watch"):
            self.watched.set()
            return web.json_response({"kind": "Status", "code": 403, "reason": "Forbidden"}, status=403)
        data = {"requestheader-client-ca-file": self.ca_pem, "requestheader-allowed-names": '["front-proxy-client"]'}
        return web.json_response(
            {"kind": "ConfigMap", "metadata": {"name": auth.AUTH_CONFIGMAP, "resourceVersion": "7"}, "data": data}
        )


async def test_reviews_are_asked_of_the_api_server_and_kept_for_a_while(front_proxy_ca: Pki) -> None:
    from agents.machinery.client import Client, ClientConfig  # noqa: PLC0415
    from agents.metricsserver.delegate import Delegate, TrustFollower  # noqa: PLC0415

    fake = FakeApiServer(front_proxy_ca.cert_pem.decode())
    app = web.Application()
    app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", fake.token_review)
    app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", fake.access_review)
    app.router.add_get("/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication", fake.configmap)
    app.router.add_get("/api/v1/namespaces/kube-system/configmaps", fake.configmap)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    client = Client(ClientConfig(f"http://127.0.0.1:{runner.addresses[0][1]}", "sa-token"), user_agent="test")
    now = [0.0]
    delegate = Delegate(client, clock=lambda: now[0])
    try:
        user = await delegate.authenticate_token("good")
        assert user == auth.UserInfo("alice", "u1", ("devs",), (("scopes", ("a",)),))
        assert await delegate.authenticate_token("bad") is None
        pods = auth.attributes_for("GET", "/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods")
        nodes = auth.attributes_for("GET", "/apis/metrics.k8s.io/v1beta1/nodes")
        assert await delegate.authorize(user, pods) == (True, "")
        assert await delegate.authorize(user, nodes) == (False, "no rule")
        assert await delegate.authorize(user, pods) == (True, "") and delegate.reviews == 4  # from the cache
        now[0] = 11.0
        await delegate.authorize(user, pods)
        assert delegate.reviews == 5  # kept ten seconds only
        assert fake.bodies[2]["spec"]["extra"] == {"scopes": ["a"]}
        assert fake.bodies[2]["spec"]["resourceAttributes"]["namespace"] == "ns"

        heard: list[auth.RequestHeaderConfig | None] = []
        follower = TrustFollower(client, heard.append)
        task = asyncio.create_task(follower.run())
        try:
            async with asyncio.timeout(5):
                await follower.loaded.wait()
                await fake.watched.wait()  # refused: the follower reads it again later instead
        finally:
            task.cancel()
        assert len(heard) == 1 and heard[0] is not None and heard[0].allowed_names == ("front-proxy-client",)
    finally:
        await client.close()
        await runner.cleanup()
