"""The proxy's pure planners (Services -> nftables ruleset, Nodes -> routes) and its thin executors.

The executors run against a fake ``nft``: a shell script declared below that records what it is fed.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import pytest

from agents.proxy.errors import NftError
from agents.proxy.model import Endpoint, PortRef, Service, ServicePort, endpoints_from, is_ready, service_from
from agents.proxy.nft import Nft, parse_routes
from agents.proxy.routes import ROUTE_PROTOCOL, InstalledRoute, Route, RouteAction, plan_routes, wanted_routes
from agents.proxy.rules import HEADER, NodeConfig, render

NODE = NodeConfig(cluster_cidr="10.244.0.0/16")

# --- builders: plain dicts shaped like the API's objects ----------------------------------------


def service_obj(
    name: str = "web",
    *,
    namespace: str = "default",
    kind: str = "ClusterIP",
    cluster_ip: str = "10.96.0.10",
    ports: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": kind,
            "clusterIP": cluster_ip,
            "clusterIPs": [cluster_ip],
            "ports": ports if ports is not None else [{"name": "http", "port": 80, "protocol": "TCP"}],
        },
    }


def slice_obj(
    service: str,
    endpoints: list[dict[str, Any]],
    *,
    ports: list[dict[str, Any]] | None = None,
    namespace: str = "default",
    name: str = "",
    address_type: str = "IPv4",
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name or f"{service}-abcde",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": address_type,
        "endpoints": endpoints,
        "ports": ports if ports is not None else [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def endpoint(address: str, **conditions: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"addresses": [address]}
    if conditions:
        out["conditions"] = conditions
    return out


def web(*ports: ServicePort, ips: tuple[str, ...] = ("10.96.0.10",), name: str = "web") -> Service:
    return Service("default", name, ips, ports or (ServicePort("http", "tcp", 80),))


def eps(*addresses: str, port: int = 8080) -> tuple[Endpoint, ...]:
    return tuple(Endpoint(a, port) for a in addresses)


def ref(port_name: str = "http", protocol: str = "tcp", service: str = "web") -> PortRef:
    return PortRef("default", service, port_name, protocol)


def chain_body(ruleset: str, name: str) -> list[str]:
    """The rules of chain ``name`` in a rendered ruleset."""
    match = re.search(rf"\tchain {re.escape(name)} {{\n(.*?)\n\t}}", ruleset, re.S)
    assert match, f"no chain {name} in:\n{ruleset}"
    return [line.strip() for line in match.group(1).splitlines()]


def set_elements(ruleset: str, name: str) -> list[str]:
    match = re.search(rf"\tset {re.escape(name)} {{\n(.*?)\n\t}}", ruleset, re.S)
    assert match, f"no set {name}"
    return [line.strip().rstrip(",") for line in match.group(1).splitlines() if line.strip()[:1].isdigit()]


def map_elements(ruleset: str, name: str) -> list[str]:
    match = re.search(rf"\tmap {re.escape(name)} {{\n(.*?)\n\t}}", ruleset, re.S)
    assert match, f"no map {name}"
    return [line.strip().rstrip(",") for line in match.group(1).splitlines() if " : " in line and "type" not in line]


# --- API objects -> model ------------------------------------------------------------------------


def test_a_clusterip_service_becomes_its_ip_and_ports() -> None:
    obj = service_obj(ports=[{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}])
    assert service_from(obj) == Service(
        "default", "web", ("10.96.0.10",), (ServicePort("http", "tcp", 80), ServicePort("dns", "udp", 53))
    )


def test_node_ports_count_only_for_nodeport_and_loadbalancer_services() -> None:
    ports = [{"name": "http", "port": 80, "nodePort": 30080}]
    node_port = service_from(service_obj(kind="NodePort", ports=ports))
    cluster_ip = service_from(service_obj(kind="ClusterIP", ports=ports))
    assert node_port is not None and node_port.ports[0].node_port == 30080
    assert cluster_ip is not None and cluster_ip.ports[0].node_port is None


def test_headless_externalname_and_ipv6_only_services_are_not_proxied() -> None:
    assert service_from(service_obj(cluster_ip="None")) is None
    assert service_from(service_obj(cluster_ip="fd00::10")) is None
    external = service_obj()
    external["spec"] = {"type": "ExternalName", "externalName": "example.org"}
    assert service_from(external) is None


def test_a_missing_ready_condition_means_ready_as_in_kubernetes() -> None:
    assert is_ready({"addresses": ["10.244.1.5"]})
    assert is_ready({"addresses": ["10.244.1.5"], "conditions": {"serving": True}})
    assert not is_ready({"addresses": ["10.244.1.5"], "conditions": {"ready": False}})


def test_endpoints_that_are_neither_ready_nor_serving_while_terminating_are_left_out() -> None:
    found = endpoints_from(
        [
            slice_obj(
                "web",
                [
                    endpoint("10.244.1.5", ready=True),
                    endpoint("10.244.1.6", ready=False),
                    endpoint("10.244.1.7", ready=False, serving=False, terminating=True),
                    endpoint("10.244.1.8"),
                    endpoint("10.244.1.9", ready=False, serving=True, terminating=True),
                ],
            )
        ]
    )
    draining = Endpoint("10.244.1.9", 8080, ready=False, serving=True, terminating=True)
    assert found == {ref(): (*eps("10.244.1.5", "10.244.1.8"), draining)}


def test_a_missing_serving_condition_means_serving_as_the_api_defines() -> None:
    found = endpoints_from([slice_obj("web", [endpoint("10.244.1.5", ready=False, terminating=True)])])
    # not ready, but serving (nil means true) while it terminates: the port falls back on it
    assert found == {ref(): (Endpoint("10.244.1.5", 8080, ready=False, serving=True, terminating=True),)}


def test_the_ready_endpoints_of_a_port_take_new_connections_and_draining_ones_do_not() -> None:
    draining = Endpoint("10.244.1.9", 8080, ready=False, serving=True, terminating=True)
    ruleset = render([web()], {ref(): (*eps("10.244.1.5"), draining)}, NODE)
    assert chain_body(ruleset, "svc-default/web/tcp/80")[-1] == "meta l4proto tcp dnat to 10.244.1.5:8080"
    assert set_elements(ruleset, "hairpin-endpoints") == ["10.244.1.5 . 10.244.1.5"]


def test_with_no_ready_endpoint_left_a_port_falls_back_to_those_serving_while_terminating() -> None:
    draining = [
        Endpoint("10.244.1.9", 8080, ready=False, serving=True, terminating=True),
        Endpoint("10.244.1.10", 8080, ready=False, serving=True, terminating=True),
    ]
    gone = Endpoint("10.244.1.11", 8080, ready=False, serving=False, terminating=True)
    service = web(ServicePort("http", "tcp", 80, node_port=30080))
    ruleset = render([service], {ref(): (*draining, gone)}, NODE)
    assert map_elements(ruleset, "no-endpoint-services") == []
    assert map_elements(ruleset, "service-nodeports") == ["tcp . 30080 : goto ext-default/web/tcp/80"]
    assert chain_body(ruleset, "svc-default/web/tcp/80")[-1] == (
        "meta l4proto tcp dnat ip to numgen random mod 2 map { 0 : 10.244.1.9 . 8080, 1 : 10.244.1.10 . 8080 }"
    )


def test_a_port_whose_endpoints_all_stopped_serving_rejects_new_connections() -> None:
    stopped = Endpoint("10.244.1.9", 8080, ready=False, serving=False, terminating=True)
    ruleset = render([web()], {ref(): (stopped,)}, NODE)
    assert map_elements(ruleset, "no-endpoint-services") == ["10.96.0.10 . tcp . 80 : goto reject-chain"]


def test_an_address_in_two_slices_at_once_is_one_endpoint_ready_first() -> None:
    found = endpoints_from(
        [
            slice_obj("web", [endpoint("10.244.1.5", ready=False, serving=True, terminating=True)], name="web-a"),
            slice_obj("web", [endpoint("10.244.1.5", ready=True)], name="web-b"),
        ]
    )
    assert chain_body(render([web()], found, NODE), "svc-default/web/tcp/80")[-1] == (
        "meta l4proto tcp dnat to 10.244.1.5:8080"
    )


def test_a_named_target_port_is_resolved_per_endpoint_from_each_slice() -> None:
    found = endpoints_from(
        [
            slice_obj("web", [endpoint("10.244.1.5")], ports=[{"name": "http", "port": 8080}], name="web-a"),
            slice_obj("web", [endpoint("10.244.2.9")], ports=[{"name": "http", "port": 9090}], name="web-b"),
        ]
    )
    assert found == {ref(): (Endpoint("10.244.1.5", 8080), Endpoint("10.244.2.9", 9090))}
    dnat = chain_body(render([web()], found, NODE), "svc-default/web/tcp/80")[-1]
    assert dnat.endswith("map { 0 : 10.244.1.5 . 8080, 1 : 10.244.2.9 . 9090 }")


def test_slices_that_are_not_ipv4_or_belong_to_no_service_are_ignored() -> None:
    unlabelled = slice_obj("web", [endpoint("10.244.1.5")])
    unlabelled["metadata"]["labels"] = {}
    v6 = slice_obj("web", [endpoint("fd00::5")], address_type="IPv6")
    assert endpoints_from([unlabelled, v6]) == {}


# --- the ruleset ---------------------------------------------------------------------------------


def test_the_file_starts_with_the_generated_line_then_replaces_the_table_in_one_transaction() -> None:
    lines = render([], {}, NODE, table="kubelab").splitlines()
    assert lines[:4] == [HEADER, "table ip kubelab {}", "delete table ip kubelab", "table ip kubelab {"]
    assert lines[-1] == "}"


def test_a_clusterip_with_three_endpoints_is_dnatted_at_random_across_all_three() -> None:
    ruleset = render([web()], {ref(): eps("10.244.1.5", "10.244.1.6", "10.244.2.7")}, NODE)
    assert map_elements(ruleset, "service-ips") == ["10.96.0.10 . tcp . 80 : goto svc-default/web/tcp/80"]
    assert chain_body(ruleset, "svc-default/web/tcp/80")[-1] == (
        "meta l4proto tcp dnat ip to numgen random mod 3 map "
        "{ 0 : 10.244.1.5 . 8080, 1 : 10.244.1.6 . 8080, 2 : 10.244.2.7 . 8080 }"
    )


def test_a_single_endpoint_is_dnatted_without_a_random_pick() -> None:
    ruleset = render([web()], {ref(): eps("10.244.1.5")}, NODE)
    assert chain_body(ruleset, "svc-default/web/tcp/80")[-1] == "meta l4proto tcp dnat to 10.244.1.5:8080"


def test_udp_ports_get_udp_dnat_beside_tcp_ports_of_the_same_service() -> None:
    service = web(ServicePort("dns", "udp", 53), ServicePort("dns-tcp", "tcp", 53))
    endpoints = {ref("dns", "udp"): eps("10.244.1.5", port=5353), ref("dns-tcp", "tcp"): eps("10.244.1.5", port=5353)}
    ruleset = render([service], endpoints, NODE)
    assert map_elements(ruleset, "service-ips") == [
        "10.96.0.10 . tcp . 53 : goto svc-default/web/tcp/53",
        "10.96.0.10 . udp . 53 : goto svc-default/web/udp/53",
    ]
    assert chain_body(ruleset, "svc-default/web/udp/53")[-1] == "meta l4proto udp dnat to 10.244.1.5:5353"
    assert chain_body(ruleset, "svc-default/web/tcp/53")[-1] == "meta l4proto tcp dnat to 10.244.1.5:5353"


def test_a_nodeport_on_local_addresses_masquerades_then_uses_the_service_chain() -> None:
    service = web(ServicePort("http", "tcp", 80, node_port=30080))
    ruleset = render([service], {ref(): eps("10.244.1.5", "10.244.1.6")}, NODE)
    assert map_elements(ruleset, "service-nodeports") == ["tcp . 30080 : goto ext-default/web/tcp/80"]
    assert chain_body(ruleset, "services")[1] == (
        "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"
    )
    assert chain_body(ruleset, "ext-default/web/tcp/80") == ["jump mark-for-masquerade", "goto svc-default/web/tcp/80"]


def test_a_nodeport_answers_only_on_the_node_ip_when_one_is_given() -> None:
    service = web(ServicePort("http", "tcp", 80, node_port=30080))
    node = NodeConfig(cluster_cidr="10.244.0.0/16", node_port_addresses=("192.168.122.11",))
    ruleset = render([service], {ref(): eps("10.244.1.5")}, node)
    assert chain_body(ruleset, "services")[1] == (
        "ip daddr { 192.168.122.11 } meta l4proto . th dport vmap @service-nodeports"
    )


def test_a_clusterip_reached_from_outside_the_pod_network_is_masqueraded() -> None:
    ruleset = render([web()], {ref(): eps("10.244.1.5")}, NodeConfig(cluster_cidr="10.244.0.1/16"))
    assert chain_body(ruleset, "svc-default/web/tcp/80")[0] == "ip saddr != 10.244.0.0/16 jump mark-for-masquerade"
    assert chain_body(ruleset, "masquerading")[1:] == [
        "meta mark & 0x4000 == 0 return",
        "meta mark set meta mark ^ 0x4000",
        "masquerade fully-random",
    ]


def test_an_endpoint_reaching_itself_through_its_service_is_masqueraded() -> None:
    ruleset = render([web()], {ref(): eps("10.244.1.6", "10.244.1.5")}, NODE)
    assert set_elements(ruleset, "hairpin-endpoints") == ["10.244.1.5 . 10.244.1.5", "10.244.1.6 . 10.244.1.6"]
    assert chain_body(ruleset, "masquerading")[0] == (
        "ct status dnat ip saddr . ip daddr @hairpin-endpoints jump mark-for-masquerade"
    )


def test_without_a_cluster_cidr_only_hairpin_and_nodeport_traffic_is_masqueraded() -> None:
    ruleset = render([web()], {ref(): eps("10.244.1.5")}, NodeConfig())
    assert chain_body(ruleset, "svc-default/web/tcp/80") == ["meta l4proto tcp dnat to 10.244.1.5:8080"]


def test_a_service_without_ready_endpoints_is_rejected_at_once() -> None:
    service = web(ServicePort("http", "tcp", 80, node_port=30080), ServicePort("dns", "udp", 53))
    ruleset = render([service], {ref(): eps()}, NODE)
    assert map_elements(ruleset, "service-ips") == []
    assert map_elements(ruleset, "no-endpoint-services") == [
        "10.96.0.10 . tcp . 80 : goto reject-chain",
        "10.96.0.10 . udp . 53 : goto reject-chain",
    ]
    assert map_elements(ruleset, "no-endpoint-nodeports") == ["tcp . 30080 : goto reject-chain"]
    assert chain_body(ruleset, "reject-chain") == [
        "meta l4proto tcp reject with tcp reset",
        "reject with icmp type port-unreachable",
    ]
    assert "svc-default/web" not in ruleset.split("chain reject-chain")[1]
    forward = chain_body(ruleset, "filter-forward")
    assert forward[-1] == "ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services"


def test_endpoints_of_another_port_name_do_not_serve_a_port() -> None:
    ruleset = render([web()], {ref("metrics"): eps("10.244.1.5")}, NODE)
    assert map_elements(ruleset, "no-endpoint-services") == ["10.96.0.10 . tcp . 80 : goto reject-chain"]


def test_every_cluster_ip_of_a_service_leads_to_the_same_chain() -> None:
    service = web(ips=("10.96.0.10", "10.96.0.9"))
    ruleset = render([service], {ref(): eps("10.244.1.5")}, NODE)
    assert map_elements(ruleset, "service-ips") == [
        "10.96.0.9 . tcp . 80 : goto svc-default/web/tcp/80",
        "10.96.0.10 . tcp . 80 : goto svc-default/web/tcp/80",
    ]


def test_the_output_is_the_same_whatever_the_input_order() -> None:
    a = web(ServicePort("http", "tcp", 80, node_port=30080), ServicePort("dns", "udp", 53))
    b = Service("other", "api", ("10.96.0.20",), (ServicePort("", "tcp", 443),))
    endpoints_1 = {
        ref(): eps("10.244.1.9", "10.244.1.10", "10.244.1.5"),
        ref("dns", "udp"): eps("10.244.1.5"),
        PortRef("other", "api", "", "tcp"): eps("10.244.2.1", port=6443),
    }
    endpoints_2 = dict(reversed(list({k: tuple(reversed(v)) for k, v in endpoints_1.items()}.items())))
    first = render([a, b], endpoints_1, NODE)
    assert first == render([b, a], endpoints_2, NODE)
    pick = chain_body(first, "svc-default/web/tcp/80")[-1]
    assert pick.index("10.244.1.5 ") < pick.index("10.244.1.9 ") < pick.index("10.244.1.10 ")  # numeric order


def test_a_table_name_that_nft_would_not_parse_is_refused() -> None:
    with pytest.raises(ValueError, match="table name"):
        render([], {}, NODE, table="kube lab; flush ruleset")


# --- routes --------------------------------------------------------------------------------------


def node_obj(name: str, ip: str | None, *cidrs: str) -> dict[str, Any]:
    out: dict[str, Any] = {"metadata": {"name": name}, "spec": {}, "status": {}}
    if cidrs:
        out["spec"] = {"podCIDR": cidrs[0], "podCIDRs": list(cidrs)}
    if ip:
        out["status"]["addresses"] = [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]
    return out


def test_routes_go_to_the_pod_cidrs_of_other_nodes_only() -> None:
    nodes = [
        node_obj("node-1", "192.168.122.11", "10.244.1.0/24"),
        node_obj("node-3", "192.168.122.13", "10.244.3.0/24"),
        node_obj("node-2", "192.168.122.12", "10.244.2.0/24"),
    ]
    assert wanted_routes(nodes, node_name="node-1") == [
        Route("10.244.2.0/24", "192.168.122.12"),
        Route("10.244.3.0/24", "192.168.122.13"),
    ]


def test_nodes_without_a_pod_cidr_or_an_internal_ip_get_no_route() -> None:
    nodes = [node_obj("node-2", "192.168.122.12"), node_obj("node-3", None, "10.244.3.0/24")]
    assert wanted_routes(nodes, node_name="node-1") == []


def test_a_node_with_this_nodes_ip_is_this_node_whatever_its_name() -> None:
    nodes = [node_obj("old-name", "192.168.122.11", "10.244.1.0/24")]
    assert wanted_routes(nodes, node_name="node-1", node_ip="192.168.122.11") == []


def test_only_ipv4_pod_cidrs_are_routed() -> None:
    nodes = [node_obj("node-2", "192.168.122.12", "10.244.2.0/24", "fd00:2::/64")]
    assert wanted_routes(nodes, node_name="node-1") == [Route("10.244.2.0/24", "192.168.122.12")]


def test_missing_or_moved_routes_are_replaced_and_stale_own_routes_deleted() -> None:
    wanted = [Route("10.244.2.0/24", "192.168.122.12"), Route("10.244.3.0/24", "192.168.122.13")]
    installed = [
        InstalledRoute("10.244.3.0/24", "192.168.122.99", ours=True),
        InstalledRoute("10.244.4.0/24", "192.168.122.14", ours=True),
        InstalledRoute("192.168.122.0/24", "", ours=False),
    ]
    plan = plan_routes(wanted, installed)
    assert plan.actions == (
        RouteAction("replace", Route("10.244.2.0/24", "192.168.122.12")),
        RouteAction("replace", Route("10.244.3.0/24", "192.168.122.13")),
        RouteAction("delete", Route("10.244.4.0/24", "192.168.122.14")),
    )
    assert plan.blocked == ()


def test_routes_the_proxy_did_not_add_are_never_replaced_or_deleted() -> None:
    wanted = [Route("10.244.2.0/24", "192.168.122.12")]
    installed = [
        InstalledRoute("10.244.2.0/24", "192.168.122.50", ours=False),
        InstalledRoute("10.9.0.0/16", "", False),
    ]
    plan = plan_routes(wanted, installed)
    assert plan.actions == ()
    assert plan.blocked == (Route("10.244.2.0/24", "192.168.122.12"),)


def test_routes_already_in_place_need_nothing() -> None:
    wanted = [Route("10.244.2.0/24", "192.168.122.12")]
    assert plan_routes(wanted, [InstalledRoute("10.244.2.0/24", "192.168.122.12", ours=True)]).actions == ()


def test_ip_route_json_is_read_with_the_proxys_protocol_marking_its_own_routes() -> None:
    text = (
        '[{"dst":"default","gateway":"192.168.122.1","dev":"eth0","protocol":"boot"},'
        '{"dst":"10.244.2.0/24","gateway":"192.168.122.12","dev":"eth0","protocol":"75"},'
        '{"dst":"192.168.122.7","dev":"eth0","protocol":"kernel"}]'
    )
    assert parse_routes(text, protocol=ROUTE_PROTOCOL) == [
        InstalledRoute("0.0.0.0/0", "192.168.122.1", ours=False),
        InstalledRoute("10.244.2.0/24", "192.168.122.12", ours=True),
        InstalledRoute("192.168.122.7/32", "", ours=False),
    ]


# --- the nft executor, against a fake nft ---------------------------------------------------------


def fake_nft(tmp_path: Path, *, fail: str = "") -> tuple[Path, Path]:
    """A stand-in for ``nft``: appends each ruleset it reads to a log, or fails with ``fail``."""
    log = tmp_path / "applied.log"
    script = tmp_path / "nft"
    body = f'echo "{fail}" >&2; exit 1' if fail else f'cat >> "{log}"; echo "--- end" >> "{log}"'
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


async def test_an_unchanged_ruleset_is_not_written_again(tmp_path: Path) -> None:
    binary, log = fake_nft(tmp_path)
    nft = Nft(binary=str(binary))
    ruleset = render([web()], {ref(): eps("10.244.1.5")}, NODE)
    assert await nft.apply(ruleset)
    assert not await nft.apply(ruleset)
    assert await nft.apply(ruleset, force=True)
    assert log.read_text().count("--- end") == 2
    assert log.read_text().startswith(HEADER)


async def test_a_ruleset_nft_refuses_raises_nft_error_with_nfts_message(tmp_path: Path) -> None:
    binary, _ = fake_nft(tmp_path, fail="Error: syntax error, unexpected junk")
    nft = Nft(binary=str(binary))
    with pytest.raises(NftError, match="unexpected junk") as caught:
        await nft.apply("junk\n")
    assert caught.value.__cause__ is not None
    assert nft.applied is None  # the next sync tries again


async def test_a_missing_nft_binary_is_an_nft_error(tmp_path: Path) -> None:
    with pytest.raises(NftError, match="cannot run"):
        await Nft(binary=str(tmp_path / "absent")).apply("table ip t {}\n")
