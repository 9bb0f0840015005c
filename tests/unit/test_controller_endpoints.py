"""The Endpoints and EndpointSlice controllers: their plans (pure) and their syncs."""

from __future__ import annotations

from typing import Any

from agents.apiserver.server import ApiServer
from agents.controllers.endpoints import (
    ENDPOINTS_MANAGED_BY,
    MANAGED_BY,
    MANAGER,
    SERVICE_NAME,
    EndpointsController,
    EndpointSliceController,
    endpoints_for,
    plan_endpoints,
    plan_slices,
    slice_name,
    slices_for,
)
from agents.machinery.objects import Object
from agents.machinery.resources import ENDPOINT_SLICES, ENDPOINTS, PODS, SERVICES
from tests.support.controllerharness import Harness, running


def service(*, selector: bool = True) -> Object:
    spec: dict[str, Any] = {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
    if selector:
        spec["selector"] = {"app": "web"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "uid": "svc"},
        "spec": spec,
    }


def pod(name: str, ip: str, *, ready: bool = True) -> Object:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "main"}]},
        "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": str(ready)}]},
    }


def existing_endpoints(svc: Object, pods: list[Object], *, managed: bool = True) -> Object:
    labels = {ENDPOINTS_MANAGED_BY: "endpoint-controller"} if managed else {}
    body: Object = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "web", "namespace": "default", "labels": labels},
    }
    if subsets := endpoints_for(svc, pods):
        body["subsets"] = subsets
    return body


# --- the plans -----------------------------------------------------------------------------------


def test_a_service_gets_endpoints_made_and_then_updated_only_when_its_pods_change() -> None:
    pods = [pod("a", "10.0.0.1")]
    made = plan_endpoints("default/web", service(), None, pods)
    assert made.create is not None and made.update is None
    assert [a["ip"] for a in made.create["subsets"][0]["addresses"]] == ["10.0.0.1"]
    assert made.create["metadata"]["labels"] == {ENDPOINTS_MANAGED_BY: "endpoint-controller"}
    current = existing_endpoints(service(), pods)
    assert plan_endpoints("default/web", service(), current, pods) == plan_endpoints("default/web", None, None, [])
    moved = plan_endpoints("default/web", service(), current, [*pods, pod("b", "10.0.0.2", ready=False)])
    assert moved.update is not None and moved.update["subsets"][0]["notReadyAddresses"][0]["ip"] == "10.0.0.2"


def test_endpoints_of_a_deleted_service_go_only_if_this_controller_made_them() -> None:
    ours = existing_endpoints(service(), [])
    assert plan_endpoints("default/web", None, ours, []).delete == ours
    by_hand = existing_endpoints(service(), [], managed=False)
    assert plan_endpoints("default/web", None, by_hand, []).delete is None


def test_a_service_without_selector_leaves_its_endpoints_alone() -> None:
    assert plan_endpoints("default/web", service(selector=False), None, [pod("a", "10.0.0.1")]).create is None


def test_a_service_without_endpoints_still_has_one_empty_slice_with_its_ports() -> None:
    decided = plan_slices("default/web", service(), [], [])
    [piece] = decided.create
    assert piece["metadata"]["name"] == slice_name("web", 0)
    assert piece["metadata"]["labels"] == {SERVICE_NAME: "web", MANAGED_BY: MANAGER}
    assert piece["endpoints"] == [] and piece["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]


def test_slices_are_updated_when_their_endpoints_change_and_dropped_when_not_needed() -> None:
    pods = [pod("a", "10.0.0.1")]
    [wanted] = slices_for(service(), pods)
    current = {**plan_slices("default/web", service(), [], pods).create[0], **wanted}
    assert plan_slices("default/web", service(), [current], pods) == plan_slices("default/web", None, [], [])
    grown = plan_slices("default/web", service(), [current], [*pods, pod("b", "10.0.0.2")])
    assert [len(s["endpoints"]) for s in grown.update] == [2]
    assert plan_slices("default/web", None, [current], pods).delete == [current]


def terminating(body: Object, *, phase: str = "Running") -> Object:
    body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:30Z"
    body["status"]["phase"] = phase
    return body


def conditions_by_ip(pieces: list[dict[str, Any]]) -> dict[str, dict[str, bool]]:
    return {e["addresses"][0]: e["conditions"] for piece in pieces for e in piece.get("endpoints") or []}


def test_a_terminating_pod_stays_in_its_slice_serving_but_not_ready_while_it_runs() -> None:
    pods = [
        pod("a", "10.0.0.1"),
        terminating(pod("b", "10.0.0.2")),  # in its preStop hook: still answering
        terminating(pod("c", "10.0.0.3", ready=False)),  # its containers stopped
        terminating(pod("d", "10.0.0.4"), phase="Succeeded"),  # done: no endpoint any more
    ]
    assert conditions_by_ip(slices_for(service(), pods)) == {
        "10.0.0.1": {"ready": True, "serving": True, "terminating": False},
        "10.0.0.2": {"ready": False, "serving": True, "terminating": True},
        "10.0.0.3": {"ready": False, "serving": False, "terminating": True},
    }


def test_a_service_publishing_not_ready_addresses_keeps_its_terminating_pods_ready() -> None:
    svc = service()
    svc["spec"]["publishNotReadyAddresses"] = True
    found = conditions_by_ip(slices_for(svc, [terminating(pod("b", "10.0.0.2", ready=False))]))
    assert found == {"10.0.0.2": {"ready": True, "serving": False, "terminating": True}}


def test_the_endpoints_object_leaves_terminating_pods_out_as_kube_s_does() -> None:
    subsets = endpoints_for(service(), [pod("a", "10.0.0.1"), terminating(pod("b", "10.0.0.2"))])
    assert [[a["ip"] for a in s.get("addresses", [])] for s in subsets] == [["10.0.0.1"]]
    assert all("notReadyAddresses" not in s for s in subsets)


# --- the syncs -----------------------------------------------------------------------------------


def manifest() -> Object:
    body = service()
    body["metadata"] = {"name": "web"}
    return body


async def backend(h: Harness, name: str, ip: str, *, ready: bool = True) -> None:
    made = await h.create(
        PODS,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        },
    )
    await h.set_pod(made, ready=ready, ip=ip)


async def test_endpoints_list_the_ready_pods_of_a_service_and_follow_them(server: ApiServer) -> None:
    async with running(server, EndpointsController) as h:
        await backend(h, "a", "10.0.0.1")
        await backend(h, "b", "10.0.0.2", ready=False)
        await h.create(SERVICES, manifest())

        async def addresses(kind: str, expected: set[str]) -> bool:
            found = await h.get(ENDPOINTS, "web")
            subsets = (found or {}).get("subsets") or []
            return {a["ip"] for s in subsets for a in s.get(kind) or []} == expected

        await h.eventually(lambda: addresses("addresses", {"10.0.0.1"}), what="the ready pod listed")
        assert await addresses("notReadyAddresses", {"10.0.0.2"})
        await h.client.delete(PODS, "a", "default")
        await h.eventually(lambda: addresses("addresses", set()), what="the deleted pod gone")


async def test_endpoint_slices_list_every_serving_pod_of_a_service_and_go_with_it(server: ApiServer) -> None:
    async with running(server, EndpointSliceController) as h:
        await backend(h, "a", "10.0.0.1")
        await h.create(SERVICES, manifest())

        async def sliced() -> list[Object]:
            return await h.items(ENDPOINT_SLICES, labels=f"{SERVICE_NAME}=web")

        async def addresses(expected: set[str]) -> bool:
            found = {e["addresses"][0] for s in await sliced() for e in s.get("endpoints") or []}
            return found == expected

        await h.eventually(lambda: addresses({"10.0.0.1"}), what="a slice with the pod")
        await backend(h, "b", "10.0.0.2")
        await h.eventually(lambda: addresses({"10.0.0.1", "10.0.0.2"}), what="both pods")
        await h.client.delete(SERVICES, "web", "default")

        async def none_left() -> bool:
            return not await sliced()

        await h.eventually(none_left, what="the slices gone with the service")


async def test_a_pod_deleted_with_grace_stays_in_its_slice_as_terminating_until_it_is_gone(server: ApiServer) -> None:
    async with running(server, EndpointSliceController) as h:
        made = await h.create(
            PODS,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "a", "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": "busybox"}]},
            },
        )
        await h.set_pod(made, ip="10.0.0.1")
        await h.create(SERVICES, manifest())

        async def conditions(expected: dict[str, dict[str, bool]]) -> bool:
            return conditions_by_ip(await h.items(ENDPOINT_SLICES, labels=f"{SERVICE_NAME}=web")) == expected

        ready = {"ready": True, "serving": True, "terminating": False}
        await h.eventually(lambda: conditions({"10.0.0.1": ready}), what="the ready pod")
        await h.client.delete(PODS, "a", "default")  # bound to a node: the kubelet has 30 s to stop it
        draining = {"ready": False, "serving": True, "terminating": True}
        await h.eventually(lambda: conditions({"10.0.0.1": draining}), what="the pod serving while it terminates")
        await h.client.delete(PODS, "a", "default", grace_period=0)  # its kubelet confirms it stopped
        await h.eventually(lambda: conditions({}), what="the pod gone from the slice")
