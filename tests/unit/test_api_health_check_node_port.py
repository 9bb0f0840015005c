"""``spec.healthCheckNodePort`` through the API: allocated for a LoadBalancer Service with
``externalTrafficPolicy: Local``, kept on updates, released and cleared when the Service stops
needing it, refused on other Services, with kube's words."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

Client = TestClient[Any, Any]
SERVICES = "/api/v1/namespaces/default/services"


def service(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "ports": [{"port": 80}], **spec},
    }


async def created(http: Client, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.post(SERVICES, json=body)
    assert response.status == 201, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def updated(http: Client, body: dict[str, Any]) -> dict[str, Any]:
    response = await http.put(f"{SERVICES}/{body['metadata']['name']}", json=body)
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def test_a_local_load_balancer_gets_a_health_check_node_port_in_the_range_apart_from_its_node_ports(
    http: Client,
) -> None:
    svc = await created(http, service("lb"))
    port = svc["spec"]["healthCheckNodePort"]
    assert 30000 <= port <= 32767
    assert port != svc["spec"]["ports"][0]["nodePort"]
    clash = await http.post(SERVICES, json=service("other", healthCheckNodePort=port))
    assert clash.status == 500
    body = await clash.json()
    assert body["reason"] == "InternalError"
    assert body["message"] == (
        f"Internal error occurred: failed to allocate requested HealthCheck NodePort {port}:"
        " provided port is already allocated"
    )
    taken_as_node_port = await http.post(
        SERVICES,
        json=service("third", type="NodePort", externalTrafficPolicy="Cluster", ports=[{"port": 80, "nodePort": port}]),
    )
    assert taken_as_node_port.status == 422
    assert "provided port is already allocated" in (await taken_as_node_port.json())["message"]


async def test_a_cluster_policy_load_balancer_has_none(http: Client) -> None:
    svc = await created(http, service("lb", externalTrafficPolicy="Cluster"))
    assert "healthCheckNodePort" not in svc["spec"]
    default = await created(http, {**service("lb2"), "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})
    assert default["spec"]["externalTrafficPolicy"] == "Cluster" and "healthCheckNodePort" not in default["spec"]


async def test_a_requested_port_is_given_when_free_and_in_range_and_refused_otherwise(http: Client) -> None:
    svc = await created(http, service("lb", healthCheckNodePort=31234))
    assert svc["spec"]["healthCheckNodePort"] == 31234
    outside = await http.post(SERVICES, json=service("far", healthCheckNodePort=20000))
    assert outside.status == 500
    assert (await outside.json())["message"] == (
        "Internal error occurred: failed to allocate requested HealthCheck NodePort 20000:"
        " provided port is not in the valid range. The range of valid ports is 30000-32767"
    )
    nonsense = await http.post(SERVICES, json=service("bad", healthCheckNodePort=70000))
    assert nonsense.status == 422
    assert (
        "spec.healthCheckNodePort: Invalid value: 70000: must be between 1 and 65535, inclusive"
        in (await nonsense.json())["message"]
    )


async def test_other_services_may_not_set_one(http: Client) -> None:
    for spec in (
        {"externalTrafficPolicy": "Cluster"},
        {"type": "NodePort"},
        {"type": "ClusterIP", "externalTrafficPolicy": None},
    ):
        body = service("x", healthCheckNodePort=31000, **spec)
        body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
        refused = await http.post(SERVICES, json=body)
        assert refused.status == 422, spec
        assert (
            "spec.healthCheckNodePort: Invalid value: 31000: may only be set when `type` is 'LoadBalancer'"
            " and `externalTrafficPolicy` is 'Local'" in (await refused.json())["message"]
        )
    cluster_ip = await http.post(SERVICES, json=service("y", type="ClusterIP"))
    assert cluster_ip.status == 422
    assert (
        'spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services'
        in (await cluster_ip.json())["message"]
    )
    odd = await http.post(SERVICES, json=service("z", externalTrafficPolicy="Nearby"))
    assert odd.status == 422
    assert 'Unsupported value: "Nearby": supported values: "Cluster", "Local"' in (await odd.json())["message"]


async def test_the_port_is_kept_on_updates_and_may_not_change(http: Client) -> None:
    svc = await created(http, service("lb"))
    port = svc["spec"]["healthCheckNodePort"]
    left_out = service("lb")  # a client that sends the Service without the allocated fields
    left_out["metadata"]["resourceVersion"] = svc["metadata"]["resourceVersion"]
    kept = await updated(http, left_out)
    assert kept["spec"]["healthCheckNodePort"] == port
    kept["spec"]["healthCheckNodePort"] = port + 1 if port < 32767 else port - 1
    changed = await http.put(f"{SERVICES}/lb", json=kept)
    assert changed.status == 422
    assert "spec.healthCheckNodePort: Forbidden: field is immutable" in (await changed.json())["message"]


async def test_it_is_released_and_cleared_when_the_service_stops_needing_it(http: Client) -> None:
    svc = await created(http, service("lb"))
    port = svc["spec"]["healthCheckNodePort"]
    svc["spec"]["externalTrafficPolicy"] = "Cluster"
    cluster = await updated(http, svc)
    assert "healthCheckNodePort" not in cluster["spec"]
    reused = await created(http, service("next", healthCheckNodePort=port))
    assert reused["spec"]["healthCheckNodePort"] == port
    reused["spec"]["type"] = "ClusterIP"
    for key in ("externalTrafficPolicy",):
        reused["spec"].pop(key)
    for p in reused["spec"]["ports"]:
        p.pop("nodePort")
    as_cluster_ip = await updated(http, reused)
    assert "healthCheckNodePort" not in as_cluster_ip["spec"]
    again = await created(http, service("again", healthCheckNodePort=port))
    assert (await http.delete(f"{SERVICES}/again")).status == 200
    assert again["spec"]["healthCheckNodePort"] == port
    await created(http, service("last", healthCheckNodePort=port))


async def test_switching_to_local_allocates_one_and_a_dry_run_reserves_nothing(http: Client) -> None:
    svc = await created(http, service("lb", externalTrafficPolicy="Cluster"))
    svc["spec"]["externalTrafficPolicy"] = "Local"
    local = await updated(http, svc)
    port = local["spec"]["healthCheckNodePort"]
    assert 30000 <= port <= 32767
    dry = await http.post(f"{SERVICES}?dryRun=All", json=service("dry", healthCheckNodePort=30555))
    assert dry.status == 201 and (await dry.json())["spec"]["healthCheckNodePort"] == 30555
    await created(http, service("real", healthCheckNodePort=30555))
