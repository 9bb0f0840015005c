"""The spans the controllers, the scheduler, the kubelet and the proxy record for a user's change
(issue 20's contract), read from the OpenTelemetry SDK's in-memory exporter (``tests/support/tracedspans``).

Each component runs in its own unit harness: the controllers and the scheduler against an API server
on the in-memory store (``stamping`` plays the API server's part: a write made inside a span stores
that span's context in the object's annotation), the kubelet's pod workers on a fake runtime and a
status manager that writes nothing, the proxy on informer caches filled by hand and an nft that
keeps the ruleset it is given. Objects without the annotation are worked on without any span.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from ipaddress import IPv4Network
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar, cast

import pytest
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace import ReadableSpan

from agents.apiserver.server import ApiServer
from agents.controllers.deployment import DeploymentController
from agents.controllers.endpoints import EndpointSliceController
from agents.controllers.replicaset import ReplicaSetController
from agents.kubelet import dns, sandbox
from agents.kubelet.cni import BridgeNetwork, CniClient, PodRef
from agents.kubelet.containers import ContainerId
from agents.kubelet.podcache import PodCache, PodRecord
from agents.kubelet.podworkers import PodWorkers
from agents.kubelet.runtime import Runtime
from agents.kubelet.statusmanager import Outcome, StatusManager
from agents.machinery import tracing
from agents.machinery.client import Client, ClientConfig
from agents.machinery.events import EventRecorder
from agents.machinery.informer import Informer
from agents.machinery.objects import Object
from agents.machinery.resources import DEPLOYMENTS, NODES, PODS, SERVICES
from agents.proxy.nft import Nft
from agents.proxy.proxy import Proxy, ProxyConfig
from agents.scheduler.scheduler import Scheduler
from tests.support import tracedspans as recorded
from tests.support.controllerharness import running
from tests.support.tracedspans import Spans

spans = recorded.spans
stamping = recorded.stamping

CM = "controller-manager"
T = TypeVar("T")


def deployment(replicas: int = 2) -> Object:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
            },
        },
    }


def pod(name: str = "web-1", **spec: Any) -> Object:
    container = {"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [container], **spec},
    }


# --- controllers -------------------------------------------------------------------------------


@pytest.mark.usefixtures("stamping")
async def test_a_traced_deployment_gets_spans_from_the_deployment_and_replicaset_controllers_in_its_trace(
    server: ApiServer, spans: Spans
) -> None:
    async with running(server, DeploymentController, ReplicaSetController) as h:
        with spans.writing() as trace_id:
            await h.create(DEPLOYMENTS, deployment(2))
        created = await h.eventually(
            lambda: _spans(spans.named("create pods", tracer_name=CM)), what="the ReplicaSet's pods created"
        )
    [sync_deployment] = spans.named("sync deployment", tracer_name=CM)
    assert spans.trace_id(sync_deployment) == trace_id
    assert sync_deployment.attributes is not None and sync_deployment.attributes["k8s.object.name"] == "web"
    steps = {s.name: s for s in spans.children(sync_deployment)}
    assert {"create replicaset", "scale replicaset"} <= set(steps)
    assert steps["scale replicaset"].attributes == {
        "k8s.replicaset.name": steps["create replicaset"].attributes["k8s.replicaset.name"],  # type: ignore[index]
        "replicas": 2,
    }
    sync_replicaset = spans.named("sync replicaset", tracer_name=CM)
    assert sync_replicaset and all(spans.trace_id(s) == trace_id for s in sync_replicaset)
    assert sum(int(str(s.attributes["count"])) for s in created if s.attributes) == 2
    assert all(spans.trace_id(s) == trace_id for s in created)


@pytest.mark.usefixtures("stamping")
async def test_a_deployment_without_a_trace_is_synced_without_spans(server: ApiServer, spans: Spans) -> None:
    async with running(server, DeploymentController, ReplicaSetController) as h:
        await h.create(DEPLOYMENTS, deployment(2))
        await h.eventually(lambda: h.items(PODS), what="the pods")
    assert spans.of(CM) == []


@pytest.mark.usefixtures("stamping")
async def test_the_endpointslice_sync_continues_the_trace_of_the_pod_whose_endpoint_changed(
    server: ApiServer, spans: Spans
) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }
    async with running(server, EndpointSliceController) as h:
        await h.create(SERVICES, service)
        await h.eventually(lambda: h.items(SERVICES), what="the service")
        untraced = await h.create(PODS, pod("plain"))
        await h.set_pod(untraced, ip="10.0.0.1")
        with spans.writing() as trace_id:
            traced = await h.create(PODS, pod("traced"))
        await h.set_pod(traced, ip="10.0.0.2")
        [synced] = await h.eventually(
            lambda: _spans(spans.named("sync endpointslices", tracer_name=CM)), what="a traced slice sync"
        )
    assert spans.trace_id(synced) == trace_id
    assert synced.attributes is not None
    assert synced.attributes["k8s.object.name"] == "traced"
    assert synced.attributes["k8s.service.name"] == "web"
    assert synced.attributes["endpoints.ready"] == 2


async def _spans(found: list[ReadableSpan]) -> list[ReadableSpan]:
    """Spans found now, as the awaitable ``eventually`` asks for."""
    return found


# --- scheduler ---------------------------------------------------------------------------------


def node(name: str, **spec: Any) -> Object:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {}}, "spec": spec}


NODE_STATUS = {
    "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
    "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "ready"}],
}


@pytest.fixture
async def scheduler(server: ApiServer) -> AsyncIterator[Scheduler]:
    """A scheduler running against ``server``, with three Ready nodes, ``node-3`` cordoned."""
    front = TestServer(server.application())
    await front.start_server()
    client = Client(ClientConfig(server=str(front.make_url("")).rstrip("/"), token=""), user_agent="scheduler-test")
    for name, spec in (("node-1", {}), ("node-2", {}), ("node-3", {"unschedulable": True})):
        await client.create(NODES, node(name, **spec))
        await client.patch(NODES, name, {"status": NODE_STATUS}, subresource="status")
    ready = asyncio.Event()
    sched = Scheduler(client, EventRecorder(client, component="default-scheduler"))
    task = asyncio.create_task(sched.run(ready))
    await asyncio.wait_for(ready.wait(), 5)
    yield sched
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await client.close()
    await front.close()


async def until(probe: Callable[[], Awaitable[T]], *, within: float = 5.0) -> T:
    """The first truthy answer of ``probe`` within ``within`` seconds (a deadline, not a fixed sleep)."""
    async with asyncio.timeout(within):
        while not (answer := await probe()):  # noqa: ASYNC110 - what another task keeps is read back
            await asyncio.sleep(0.01)
    return answer


async def _bound(sched: Scheduler, name: str) -> str:
    async def node_name() -> str:
        return str((await sched.client.get(PODS, name, "default"))["spec"].get("nodeName") or "")

    return await until(node_name)


@pytest.mark.usefixtures("stamping")
async def test_a_traced_pod_s_scheduling_shows_the_nodes_filtered_out_the_scores_and_the_binding(
    scheduler: Scheduler, spans: Spans
) -> None:
    with spans.writing() as trace_id:
        await scheduler.client.create(PODS, pod(), "default")
    bound_to = await _bound(scheduler, "web-1")
    await until(lambda: _spans(spans.named("bind", tracer_name="scheduler")))
    [schedule] = spans.named("schedule pod", tracer_name="scheduler")
    assert spans.trace_id(schedule) == trace_id
    steps = {s.name: s for s in spans.children(schedule)}
    assert set(steps) == {"filter", "score", "bind"}
    assert steps["filter"].attributes == {"scheduler.feasible_nodes": 2}
    assert [(e.name, dict(e.attributes or {})) for e in steps["filter"].events] == [
        ("filtered out", {"k8s.node.name": "node-3", "reason": "node(s) were unschedulable"})
    ]
    scored = {str((e.attributes or {})["k8s.node.name"]) for e in steps["score"].events}
    assert scored == {"node-1", "node-2"}
    assert steps["bind"].attributes == {"k8s.node.name": bound_to}


@pytest.mark.usefixtures("stamping")
async def test_a_pod_without_a_trace_is_scheduled_without_spans(scheduler: Scheduler, spans: Spans) -> None:
    await scheduler.client.create(PODS, pod(), "default")
    await _bound(scheduler, "web-1")
    assert spans.of("scheduler") == []


# --- kubelet -----------------------------------------------------------------------------------

UID = "0f1e2d3c-aaaa-bbbb-cccc-000000000001"


class FakeClient:
    """Lists the pods it is given; its watch stays open without news."""

    def __init__(self, *pods: Object) -> None:
        self.pods = list(pods)

    async def list(self, resource: object, namespace: str = "", **_selectors: str) -> tuple[list[Any], str]:
        return list(self.pods), "1"

    async def watch(self, resource: object, namespace: str = "", **_options: str) -> AsyncIterator[tuple[str, Any]]:
        await asyncio.Event().wait()
        yield "BOOKMARK", {}


class FakeRuntime:
    """The runtime calls a pod's start makes: a sandbox at 10.244.1.5, an image present, containers
    created and started at once, every exec (the readiness probe's) answering 0."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sandboxes = object()  # the pod network is known
        self.dns = SimpleNamespace(cluster_dns=["10.96.0.10"])
        self.started: list[str] = []

    async def run_sandbox(self, _pod: Object) -> Any:
        return SimpleNamespace(ip="10.244.1.5")

    async def pod_identity(self, _pod: Object, _ip: str) -> dns.Resolver:
        return dns.Resolver(nameservers=("10.96.0.10",))

    def pod_dir(self, uid: str) -> Path:
        return self.root / uid

    async def has_image(self, _reference: str) -> bool:
        return True

    async def image_config(self, _reference: str) -> dict[str, Any]:
        return {"Env": ["PATH=/bin"], "Cmd": ["sh"]}

    def netns_path(self, _uid: str) -> Path:
        return self.root / "netns"

    def uts_path(self, _uid: str) -> str:
        return ""

    def hosts_path(self, uid: str) -> Path:
        return self.root / uid / "hosts"

    def resolv_path(self, uid: str) -> Path:
        return self.root / uid / "resolv.conf"

    async def create(self, _spec: Any) -> None:
        return None

    async def start(self, cid: ContainerId) -> None:
        self.started.append(str(cid))

    async def exec(self, _cid: str, _argv: list[str], _seconds: float) -> tuple[int, str]:
        return 0, ""

    async def tasks(self) -> dict[str, Any]:
        return {}


class QuietStatus(StatusManager):
    """Computes the status as the kubelet does and writes nothing."""

    async def update(self, pod: Object, record: PodRecord) -> Outcome:
        return "written"


def kubelet_pod(**annotations: str) -> Object:
    probe = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": UID,
            "resourceVersion": "1",
            "annotations": annotations,
        },
        "spec": {
            "nodeName": "n1",
            "containers": [{"name": "main", "image": "busybox:1.36", "readinessProbe": probe}],
        },
        "status": {"phase": "Pending"},
    }


@contextlib.asynccontextmanager
async def pod_workers(tmp_path: Path, body: Object) -> AsyncIterator[PodWorkers]:
    client = cast(Client, FakeClient(body))
    workers = PodWorkers(
        client,
        pods=Informer(client, PODS, field_selector="spec.nodeName=n1"),
        cache=PodCache(),
        runtime=cast(Runtime, FakeRuntime(tmp_path)),
        status=QuietStatus(client, host_ip="192.168.150.10"),
        recorder=EventRecorder(client, component="kubelet"),
        node_ip="192.168.150.10",
        name="n1",
    )
    informing = asyncio.create_task(workers.pods.run())
    try:
        await asyncio.wait_for(workers.pods.synced.wait(), 5)
        yield workers
    finally:
        informing.cancel()
        for record in workers.cache.records():
            for prober in record.probers.values():
                prober.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await informing


async def _readiness_seen(workers: PodWorkers) -> None:
    record = workers.cache.get(UID)
    assert record is not None
    prober = record.probers["main"]

    async def ready() -> bool:
        return prober.state.ready

    await until(ready)


async def test_a_traced_pod_s_start_is_spanned_from_its_first_sync_until_it_is_ready(
    tmp_path: Path, spans: Spans
) -> None:
    body, trace_id = spans.traced(kubelet_pod())
    async with pod_workers(tmp_path, body) as workers:
        await workers.sync(UID)  # sandbox, image, create, start; the readiness probe begins
        await _readiness_seen(workers)
        await workers.sync(UID)  # the probe's news: the pod is Ready
        await workers.sync(UID)  # a later sync of the ready pod
    first, second = spans.named("sync pod", tracer_name="kubelet")
    assert {spans.trace_id(first), spans.trace_id(second)} == {trace_id}
    assert [s.name for s in sorted(spans.children(first), key=lambda s: s.start_time or 0)] == [
        "sandbox",
        "pull image",
        "create container",
        "start container",
        "readiness probe",  # probed under the sync that started the container, until the pod is Ready
    ]
    steps = {s.name: s for s in spans.children(first)}
    assert steps["pull image"].attributes == {"container.image.name": "busybox:1.36", "image.cached": True}
    assert steps["start container"].attributes == {"k8s.container.name": "main"}
    probes = spans.named("readiness probe", tracer_name="kubelet")
    assert probes and all(p.attributes == {"result": "success"} for p in probes)
    assert probes[0].parent is not None and first.context is not None
    assert probes[0].parent.span_id == first.context.span_id
    assert [e.name for e in second.events] == ["ready"]
    assert workers.starting == {}


async def test_an_untraced_pod_starts_without_spans(tmp_path: Path, spans: Spans) -> None:
    async with pod_workers(tmp_path, kubelet_pod()) as workers:
        await workers.sync(UID)
        await _readiness_seen(workers)
        await workers.sync(UID)
    assert spans.of("kubelet") == []
    assert workers.starting == {}


class FakeCni:
    """A CNI ADD that gives the sandbox's eth0 10.244.7.9."""

    async def add(self, _conflist: Any, _attachment: Any, *, runtime: Any = None) -> dict[str, Any]:
        return {
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
            "ips": [{"address": "10.244.7.9/24", "interface": 0}],
        }


async def test_a_traced_sandbox_s_network_step_names_the_pod_ip(
    tmp_path: Path, spans: Spans, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_netns(_name: str) -> None:
        return None

    monkeypatch.setattr(sandbox, "_add_netns", no_netns)  # no namespace made: the CNI ADD is the fake's
    manager = sandbox.SandboxManager(
        cni=cast(CniClient, FakeCni()),
        network=BridgeNetwork(subnet=IPv4Network("10.244.7.0/24"), data_dir=tmp_path / "cni"),
        state_dir=tmp_path / "sandboxes",
    )
    body, trace_id = spans.traced(kubelet_pod())
    with tracing.span_for(body, "sync pod", tracer_name="kubelet"):
        await manager.ensure(PodRef("default", "web", UID))
    [network] = spans.named("network", tracer_name="kubelet")
    assert spans.trace_id(network) == trace_id
    assert network.attributes == {"k8s.pod.ip": "10.244.7.9"}


# --- proxy -------------------------------------------------------------------------------------


class KeptNft:
    """Keeps the ruleset it is given."""

    def __init__(self) -> None:
        self.applied = ""

    async def apply(self, ruleset: str, *, force: bool = False) -> bool:
        self.applied = ruleset
        return True


def proxy_with_a_service() -> Proxy:
    proxy = Proxy(cast(Client, FakeClient()), ProxyConfig(node_name="n1"), nft=cast(Nft, KeptNft()), routes=None)
    proxy.services._put(
        {
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "1"},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": "10.96.0.20",
                "clusterIPs": ["10.96.0.20"],
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
            },
        }
    )
    proxy.slices.synced.set()
    return proxy


def endpoint_slice(version: str, *addresses: str) -> Object:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "web-abcde",
            "namespace": "default",
            "resourceVersion": version,
            "labels": {"kubernetes.io/service-name": "web"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


async def test_a_traced_slice_s_change_is_carried_into_the_next_sync_of_the_rules(spans: Spans) -> None:
    proxy = proxy_with_a_service()
    piece, trace_id = spans.traced(endpoint_slice("2", "10.244.1.5", "10.244.2.7"))
    proxy.slices._put(piece)
    await proxy.sync()
    [synced] = spans.named("sync rules", tracer_name="proxy")
    assert spans.trace_id(synced) == trace_id
    assert synced.attributes is not None and synced.attributes["k8s.node.name"] == "n1"
    [applied] = spans.children(synced)
    assert applied.name == "nft apply"
    assert applied.attributes is not None and int(applied.attributes["rules.count"]) > 0  # type: ignore[arg-type]
    await proxy.sync()  # nothing traced changed since: no span
    proxy.slices._put(dict(piece, metadata={**piece["metadata"], "resourceVersion": "3"}))  # the same trace again
    await proxy.sync()
    assert len(spans.named("sync rules", tracer_name="proxy")) == 1


async def test_a_slice_without_a_trace_is_synced_without_spans(spans: Spans) -> None:
    proxy = proxy_with_a_service()
    proxy.slices._put(endpoint_slice("2", "10.244.1.5"))
    await proxy.sync()
    assert spans.of("proxy") == []
