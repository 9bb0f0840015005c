"""The route controller: its plan (pure), when it runs, and the controller itself against an API server
on the in-memory store and a fake cloud.

The fake cloud is declared openly below (``FakeCloud``): an aiohttp application serving the cloud
API's route contract (``GET /v1/routes``, ``PUT`` and ``DELETE /v1/routes/{name}``, a bearer token)
over a set of instances the test changes as it goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from agents.apiserver.server import ApiServer
from agents.controllers.base import Context
from agents.controllers.cloud import __main__ as ccm
from agents.controllers.cloud import route
from agents.controllers.cloud.provider import CloudConfig, CloudError, CloudProvider, Route
from agents.controllers.cloud.settings import CloudControllerManagerSettings
from agents.machinery.client import Client, ClientConfig
from agents.machinery.events import EventRecorder
from agents.machinery.objects import Object
from agents.machinery.resources import EVENTS, NODES
from agents.machinery.settings import SettingsError, load
from provisioner.lab.pki import Pki

CLUSTER = ("10.244.0.0/16",)
NETS = route.cluster_networks(",".join(CLUSTER))
PATIENCE = 5.0


def node(name: str, uid: str, *cidrs: str, conditions: list[dict[str, Any]] | None = None) -> Object:
    spec: dict[str, Any] = {}
    if cidrs:
        spec = {"podCIDR": cidrs[0], "podCIDRs": list(cidrs)}
    return {
        "metadata": {"name": name, "uid": uid},
        "spec": spec,
        "status": {"conditions": conditions or [{"type": "Ready", "status": "True"}]},
    }


def cloud_route(name: str, cidr: str, target: str, *, blackhole: bool = False) -> Route:
    return Route(name=name, destinationCIDR=cidr, targetInstance=target, nextHop="192.168.122.11", blackhole=blackhole)


def decide(nodes: list[Object], routes: list[Route]) -> route.Plan:
    return route.plan(nodes, routes, cluster_name="kubernetes", cluster_cidrs=NETS)


# --- the plan ------------------------------------------------------------------------------------


def test_every_node_with_an_ipv4_pod_cidr_wants_a_route_named_after_the_cluster_and_its_uid() -> None:
    nodes = [
        node("w2", "uid-2", "fd00:10:244:2::/64", "10.244.2.0/24"),  # dual stack: the IPv4 one
        node("w1", "uid-1", "10.244.1.0/24"),
        node("fresh", "uid-3"),  # no podCIDR yet
        node("v6", "uid-4", "fd00:10:244:4::/64"),
    ]
    decided = decide(nodes, [])
    assert decided.create == (
        route.WantedRoute("kubernetes-uid-1", "10.244.1.0/24", "w1"),
        route.WantedRoute("kubernetes-uid-2", "10.244.2.0/24", "w2"),
    )
    assert decided.delete == () and decided.routed == frozenset()
    other = route.plan(nodes[1:2], [], cluster_name="lab", cluster_cidrs=NETS)
    assert [w.name for w in other.create] == ["lab-uid-1"]


def test_a_route_already_in_the_cloud_is_left_and_its_node_counts_as_routed() -> None:
    nodes = [node("w1", "uid-1", "10.244.1.0/24"), node("w2", "uid-2", "10.244.2.0/24")]
    decided = decide(nodes, [cloud_route("kubernetes-uid-1", "10.244.1.0/24", "w1")])
    assert decided.routed == {"w1"} and decided.delete == ()
    assert [w.node for w in decided.create] == ["w2"]


def test_routes_no_node_wants_go_but_foreign_and_outside_ones_stay() -> None:
    routes = [
        cloud_route("kubernetes-gone", "10.244.9.0/24", "w9"),  # its node was deleted
        cloud_route("kubernetes-uid-1", "10.244.1.0/24", "w1"),
        cloud_route("other-cluster-x", "10.244.5.0/24", "w5"),  # not named after this cluster
        cloud_route("kubernetes-vpn", "192.168.50.0/24", "gw"),  # outside the cluster CIDR
        cloud_route("kubernetes-wide", "10.0.0.0/8", "gw"),  # reaching into the cluster CIDR: kube's test
        cloud_route("kubernetes-junk", "not-a-cidr", "w1"),
    ]
    decided = decide([node("w1", "uid-1", "10.244.1.0/24")], routes)
    assert [r["name"] for r in decided.delete] == ["kubernetes-gone"]
    assert decided.create == () and decided.routed == {"w1"}


def test_a_changed_or_recreated_node_has_its_route_replaced() -> None:
    # the node's podCIDR moved: the stale route goes and the right one is made (same name)
    moved = decide([node("w1", "uid-1", "10.244.7.0/24")], [cloud_route("kubernetes-uid-1", "10.244.1.0/24", "w1")])
    assert [r["name"] for r in moved.delete] == ["kubernetes-uid-1"]
    assert moved.create == (route.WantedRoute("kubernetes-uid-1", "10.244.7.0/24", "w1"),)
    # the node was deleted and registered again (a new UID): the old route goes, a new one comes
    again = decide([node("w1", "uid-new", "10.244.1.0/24")], [cloud_route("kubernetes-uid-1", "10.244.1.0/24", "w1")])
    assert [r["name"] for r in again.delete] == ["kubernetes-uid-1"]
    assert [w.name for w in again.create] == ["kubernetes-uid-new"] and again.routed == frozenset()
    # the route points at another instance
    wrong = decide([node("w1", "uid-1", "10.244.1.0/24")], [cloud_route("kubernetes-uid-1", "10.244.1.0/24", "w2")])
    assert len(wrong.delete) == 1 and len(wrong.create) == 1


def test_a_blackhole_route_is_deleted_and_made_again() -> None:
    hole = cloud_route("kubernetes-uid-1", "10.244.1.0/24", "w1", blackhole=True)
    decided = decide([node("w1", "uid-1", "10.244.1.0/24")], [hole])
    assert decided.delete == (hole,) and [w.node for w in decided.create] == ["w1"]
    assert decided.routed == frozenset()
    # a blackhole outside what the cluster owns is not its to delete
    foreign = cloud_route("elsewhere-1", "10.244.3.0/24", "x", blackhole=True)
    assert decide([], [foreign]).delete == ()


def test_the_network_condition_is_written_only_when_it_changes() -> None:
    now = "2026-12-07T17:00:00Z"
    bare = node("w1", "uid-1", "10.244.1.0/24")
    created = route.network_condition(bare, routed=True, now=now)
    assert created == {
        "status": {
            "conditions": [
                {
                    "type": "NetworkUnavailable",
                    "status": "False",
                    "reason": "RouteCreated",
                    "message": "RouteController created a route",
                    "lastTransitionTime": now,
                    "lastHeartbeatTime": now,
                }
            ]
        }
    }
    done = node("w1", "uid-1", "10.244.1.0/24", conditions=created["status"]["conditions"])
    assert route.network_condition(done, routed=True, now="later") is None
    failed = route.network_condition(done, routed=False, now=now)
    assert failed is not None
    (condition,) = failed["status"]["conditions"]
    assert (condition["status"], condition["reason"], condition["message"]) == (
        "True",
        "NoRouteCreated",
        "RouteController failed to create a route",
    )
    still = node("w1", "uid-1", "10.244.1.0/24", conditions=failed["status"]["conditions"])
    assert route.network_condition(still, routed=False, now="later") is None
    assert route.network_condition(bare, routed=False, now=now) is not None  # no condition yet: say so


def test_a_refused_route_is_a_warning_event_in_kubes_words() -> None:
    wanted = route.WantedRoute("kubernetes-uid-1", "10.244.1.0/24", "w1")
    event = route.failed_event(wanted, CloudError("no instance w1", status=404))
    assert (event.type, event.reason) == ("Warning", "FailedToCreateRoute")
    assert event.message == "Could not create route kubernetes-uid-1 10.244.1.0/24 for node w1: no instance w1"


# --- when it runs --------------------------------------------------------------------------------


def test_the_settings_use_kubes_flag_names_and_defaults(tmp_path: Path) -> None:
    defaults = CloudControllerManagerSettings()
    assert defaults.configure_cloud_routes and defaults.allocate_node_cidrs
    assert (defaults.cluster_cidr, defaults.cluster_name, defaults.route_reconciliation_period) == (
        "",
        "kubernetes",
        10.0,
    )
    config = tmp_path / "ccm.yaml"
    config.write_text("cluster-cidr: 10.244.0.0/16\ncluster-name: lab\nconfigure-cloud-routes: false\n")
    argv = ["--config", str(config), "--allocate-node-cidrs=false", "--route-reconciliation-period", "2.5"]
    got = load(CloudControllerManagerSettings, argv, env_prefix="KUBELAB_TEST_CCM", prog="ccm")
    assert (got.cluster_cidr, got.cluster_name, got.configure_cloud_routes) == ("10.244.0.0/16", "lab", False)
    assert not got.allocate_node_cidrs and got.route_reconciliation_period == 2.5


def test_the_route_controller_runs_only_with_node_cidrs_and_the_cluster_cidr() -> None:
    ok = CloudControllerManagerSettings(cluster_cidr="10.244.0.0/16")
    assert route.not_started(ok) == "" and "route" in ccm.enabled(ok)
    assert ccm.enabled(ok) == [
        "cloud-node",
        "cloud-node-lifecycle",
        "service",
        "route",
        "csi-provisioner",
        "csi-attacher",
        "csi-resizer",
    ]
    for off, why in [
        (replace(ok, configure_cloud_routes=False), "configure-cloud-routes is false"),
        (replace(ok, allocate_node_cidrs=False), "allocate-node-cidrs is false"),
        (replace(ok, cluster_cidr=""), "cluster-cidr is empty"),
    ]:
        assert route.not_started(off).startswith(why)
        assert "route" not in ccm.enabled(off) and "service" in ccm.enabled(off)
    assert "route" not in ccm.enabled(replace(ok, controllers=("*", "-route")))
    assert ccm.enabled(replace(ok, controllers=("route",))) == ["route"]


def test_a_cluster_cidr_that_is_not_one_is_refused(tmp_path: Path) -> None:
    assert route.cluster_networks("10.244.0.0/16, fd00:10:244::/48") == (
        ipaddress.ip_network("10.244.0.0/16"),
        ipaddress.ip_network("fd00:10:244::/48"),
    )
    settings = CloudControllerManagerSettings(cloud_config=tmp_path / "cloud.yaml", cluster_cidr="10.244.0.0/33")
    with pytest.raises(SettingsError, match="cluster-cidr"):
        ccm.check(settings)


# --- the controller, against the API server and a fake cloud ------------------------------------

TOKEN = "route-test-token"


@dataclass
class FakeCloud:
    """The cloud API's routes over ``instances`` (name -> address): a route to an instance that goes
    turns into a blackhole, as a cloud's router shows it. ``down`` makes every call answer 503;
    without ``routing`` the cloud has no routes at all (404, as a cloud without a router answers)."""

    instances: dict[str, str]
    routes: dict[str, dict[str, Any]] = field(default_factory=dict)
    lists: int = 0  # GET /v1/routes answered
    asked: int = 0  # requests of any kind, answered or refused
    down: bool = False
    routing: bool = True

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/v1/routes", self._list)
        app.router.add_put("/v1/routes/{name}", self._put)
        app.router.add_delete("/v1/routes/{name}", self._delete)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"error": "unauthorized"}, status=401)
        self.asked += 1
        if self.down:
            return web.json_response({"error": "the router is being restarted"}, status=503)
        if not self.routing:
            return web.json_response({"error": "this cloud has no routes"}, status=404)
        response: web.StreamResponse = await handler(request)
        return response

    def _shown(self, found: dict[str, Any]) -> dict[str, Any]:
        return {**found, "blackhole": found["targetInstance"] not in self.instances}

    async def _list(self, _request: web.Request) -> web.Response:
        self.lists += 1
        return web.json_response({"items": [self._shown(r) for r in self.routes.values()]})

    async def _put(self, request: web.Request) -> web.Response:
        name, body = request.match_info["name"], await request.json()
        try:
            cidr = str(ipaddress.ip_network(body["destinationCIDR"]))
            target = str(body["targetInstance"])
        except (KeyError, ValueError) as exc:
            return web.json_response({"error": f"bad route: {exc}"}, status=400)
        if target not in self.instances:
            return web.json_response({"error": f"instance {target} not found"}, status=404)
        holder = next((n for n, r in self.routes.items() if r["destinationCIDR"] == cidr and n != name), None)
        if holder is not None:
            return web.json_response({"error": f"{cidr} is routed by {holder}"}, status=409)
        self.routes[name] = {
            "name": name,
            "destinationCIDR": cidr,
            "targetInstance": target,
            "nextHop": self.instances[target],
        }
        return web.json_response(self._shown(self.routes[name]))

    async def _delete(self, request: web.Request) -> web.Response:
        if self.routes.pop(request.match_info["name"], None) is None:
            return web.json_response({"error": "no such route"}, status=404)
        return web.json_response({})

    def table(self) -> dict[str, tuple[str, str]]:
        return {n: (r["destinationCIDR"], r["targetInstance"]) for n, r in self.routes.items()}


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


@dataclass
class Running:
    client: Client
    cloud: FakeCloud
    errors: list[str]

    async def eventually(self, probe: Any, *, what: str) -> Any:
        answer = None
        try:
            async with asyncio.timeout(PATIENCE):
                while not (answer := await probe()):  # noqa: ASYNC110 - what the controller wrote is read back
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise AssertionError(f"{what} not reached; last answer {answer!r}; errors {self.errors!r}") from None
        return answer

    async def condition(self, name: str) -> dict[str, Any] | None:
        got = await self.client.get(NODES, name)
        found = [c for c in got["status"].get("conditions") or [] if c["type"] == "NetworkUnavailable"]
        return found[0] if found else None

    async def events(self, name: str) -> list[tuple[str, str, str]]:
        items, _ = await self.client.list(EVENTS, "default", field_selector=f"involvedObject.name={name}")
        return [(e["type"], e["reason"], e["message"]) for e in items]


@contextlib.asynccontextmanager
async def serving(cloud: FakeCloud, tmp_path: Path, *, token: str = TOKEN) -> AsyncIterator[CloudProvider]:
    """The cloud's client, as the cloud-controller-manager makes it, talking to ``cloud``."""
    back = TestServer(cloud.application())
    await back.start_server()
    pki = Pki(tmp_path / "pki")
    pki.ensure_ca()
    try:
        async with CloudProvider(CloudConfig(str(back.make_url("")).rstrip("/"), token, pki.ca_cert)) as provider:
            yield provider
    finally:
        await back.close()


async def test_the_clouds_client_speaks_the_route_contract(tmp_path: Path) -> None:
    cloud = FakeCloud(instances={"w1": "192.168.122.11"})
    async with serving(cloud, tmp_path) as provider:
        made = await provider.create_route("kubernetes-a", destination_cidr="10.244.1.0/24", target_instance="w1")
        assert made == cloud_route("kubernetes-a", "10.244.1.0/24", "w1")
        assert await provider.list_routes() == [made]
        refused = [
            ("kubernetes-b", "10.244.1.0/24", "w1", 409),  # the CIDR is another route's
            ("kubernetes-b", "10.244.2.0/24", "nowhere", 404),  # no such instance
            ("kubernetes-b", "not-a-cidr", "w1", 400),
        ]
        for name, cidr, target, status in refused:
            with pytest.raises(CloudError) as caught:
                await provider.create_route(name, destination_cidr=cidr, target_instance=target)
            assert caught.value.status == status and str(caught.value)  # the cloud's own message
        assert await provider.delete_route("kubernetes-a") is True
        assert await provider.delete_route("kubernetes-a") is False  # already gone: no error
        cloud.routing = False
        with pytest.raises(CloudError, match="this cloud has no routes") as caught:
            await provider.list_routes()
        assert caught.value.status == 404
    async with serving(cloud, tmp_path, token="wrong") as stranger:
        with pytest.raises(CloudError) as caught:
            await stranger.list_routes()
        assert caught.value.status == 401


@contextlib.asynccontextmanager
async def running(server: ApiServer, cloud: FakeCloud, tmp_path: Path) -> AsyncIterator[Running]:
    """The route controller as the cloud-controller-manager runs it, against ``server`` and ``cloud``."""
    front = TestServer(server.application())
    await front.start_server()
    client = Client(ClientConfig(server=str(front.make_url("")).rstrip("/"), token=""), user_agent="route-test")
    recorder = EventRecorder(client, component="cloud-controller-manager")
    settings = CloudControllerManagerSettings(cluster_cidr=",".join(CLUSTER), route_reconciliation_period=0.1)
    ctx = Context(client, recorder, settings)
    errors = _Errors()
    logging.getLogger("agents").addHandler(errors)
    tasks: list[asyncio.Task[Any]] = []
    try:
        async with serving(cloud, tmp_path) as provider:
            controller = route.RouteController(ctx, provider)
            tasks = [asyncio.create_task(i.run()) for i in ctx.informers.values()]
            tasks += [asyncio.create_task(recorder.run()), asyncio.create_task(controller.run())]
            yield Running(client, cloud, errors.records)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        await front.close()
        logging.getLogger("agents").removeHandler(errors)
    assert not errors.records, "the controller logged errors:\n" + "\n".join(errors.records)


async def make_node(client: Client, name: str, cidr: str = "") -> Object:
    body: Object = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {}}
    if cidr:
        body["spec"] = {"podCIDR": cidr, "podCIDRs": [cidr]}
    made = await client.create(NODES, body)
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}
    await client.patch(NODES, name, {"status": {"conditions": [ready]}}, subresource="status")
    return made


async def test_the_controller_routes_every_node_and_clears_what_no_node_wants(
    server: ApiServer, tmp_path: Path
) -> None:
    cloud = FakeCloud(instances={"w1": "192.168.122.11", "w2": "192.168.122.12"})
    cloud.routes = {
        "kubernetes-gone": {
            "name": "kubernetes-gone",
            "destinationCIDR": "10.244.9.0/24",
            "targetInstance": "w2",
            "nextHop": "192.168.122.12",
        },
        "elsewhere-a": {
            "name": "elsewhere-a",
            "destinationCIDR": "10.244.8.0/24",
            "targetInstance": "w1",
            "nextHop": "192.168.122.11",
        },
        "kubernetes-vpn": {
            "name": "kubernetes-vpn",
            "destinationCIDR": "192.168.50.0/24",
            "targetInstance": "w1",
            "nextHop": "192.168.122.11",
        },
    }
    async with running(server, cloud, tmp_path) as run:
        w1 = await make_node(run.client, "w1", "10.244.1.0/24")
        w2 = await make_node(run.client, "w2", "10.244.2.0/24")
        await make_node(run.client, "fresh")  # no podCIDR yet: nothing to route
        want = {
            f"kubernetes-{w1['metadata']['uid']}": ("10.244.1.0/24", "w1"),
            f"kubernetes-{w2['metadata']['uid']}": ("10.244.2.0/24", "w2"),
            "elsewhere-a": ("10.244.8.0/24", "w1"),
            "kubernetes-vpn": ("192.168.50.0/24", "w1"),
        }

        async def routed() -> bool:
            return cloud.table() == want

        await run.eventually(routed, what="the cloud's routes")
        for name in ("w1", "w2"):
            condition = await run.eventually(lambda n=name: run.condition(n), what=f"{name}'s condition")
            assert (condition["status"], condition["reason"]) == ("False", "RouteCreated")
            got = await run.client.get(NODES, name)
            assert any(c["type"] == "Ready" for c in got["status"]["conditions"])  # merged by type
        assert await run.condition("fresh") is None

        # settled: more periods pass without a write to the nodes
        settled = {n: (await run.client.get(NODES, n))["metadata"]["resourceVersion"] for n in ("w1", "w2")}
        lists = cloud.lists

        async def periods_passed() -> bool:
            return cloud.lists >= lists + 3

        await run.eventually(periods_passed, what="three more reconciliations")
        for name, version in settled.items():
            assert (await run.client.get(NODES, name))["metadata"]["resourceVersion"] == version

        # a node goes: its route goes with it
        await run.client.delete(NODES, "w2")

        async def w2_unrouted() -> bool:
            return all(target != "w2" for _cidr, target in cloud.table().values())

        await run.eventually(w2_unrouted, what="w2's route deleted")


async def test_a_refused_route_marks_the_network_unavailable_until_the_cloud_takes_it(
    server: ApiServer, tmp_path: Path
) -> None:
    cloud = FakeCloud(instances={"w1": "192.168.122.11"}, down=True)
    async with running(server, cloud, tmp_path) as run:
        await make_node(run.client, "w1", "10.244.1.0/24")
        lost = await make_node(run.client, "lost", "10.244.3.0/24")  # the cloud has no such machine (yet)

        async def refused_thrice() -> bool:
            return cloud.asked >= 3

        await run.eventually(refused_thrice, what="three periods of a cloud that does not answer")
        assert cloud.routes == {} and await run.condition("w1") is None  # nothing decided, nothing broken
        cloud.down = False
        condition = await run.eventually(lambda: run.condition("lost"), what="lost's condition")
        assert (condition["status"], condition["reason"], condition["message"]) == (
            "True",
            "NoRouteCreated",
            "RouteController failed to create a route",
        )
        events = await run.eventually(lambda: run.events("lost"), what="the FailedToCreateRoute event")
        name = f"kubernetes-{lost['metadata']['uid']}"
        assert events[0][:2] == ("Warning", "FailedToCreateRoute")
        assert events[0][2] == f"Could not create route {name} 10.244.3.0/24 for node lost: instance lost not found"
        assert (await run.eventually(lambda: run.condition("w1"), what="w1's condition"))["status"] == "False"

        # the machine appears: the next period routes it and the condition turns
        cloud.instances["lost"] = "192.168.122.13"

        async def recovered() -> bool:
            found = await run.condition("lost")
            return found is not None and found["status"] == "False"

        await run.eventually(recovered, what="lost routed")
        assert cloud.table()[name] == ("10.244.3.0/24", "lost")

        # its machine goes: the route turns into a blackhole, is deleted, and the node is unrouted again
        del cloud.instances["lost"]

        async def unrouted() -> bool:
            found = await run.condition("lost")
            return name not in cloud.routes and found is not None and found["status"] == "True"

        await run.eventually(unrouted, what="the blackhole deleted")
