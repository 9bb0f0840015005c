"""Each pod's /etc/resolv.conf follows its dnsPolicy and dnsConfig, as kube's kubelet writes it."""

from __future__ import annotations

from typing import Any

import pytest

from agents.apiserver.kinds.podspec import validate_pod_spec
from agents.kubelet import dns

NODE = dns.parse_resolv_conf(
    "# written by the node\nsearch lab.example\nnameserver 192.168.123.1\noptions edns0 timeout:2\n"
)
CLUSTER = ("10.96.0.10",)


def pod(namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": namespace}, "spec": spec}


def resolver(p: dict[str, Any], cluster_dns: tuple[str, ...] = CLUSTER) -> dns.Resolver:
    return dns.pod_resolver(p, cluster_dns=cluster_dns, cluster_domain="cluster.local", node=NODE)


def test_the_node_file_is_read_as_the_c_library_reads_it() -> None:
    parsed = dns.parse_resolv_conf("domain a.example\nnameserver 1.1.1.1 ; x\n#nameserver 9.9.9.9\nsearch b c\n")
    assert parsed == dns.Resolver(("1.1.1.1",), ("b", "c"), ())
    assert NODE.options == ("edns0", "timeout:2")


def test_cluster_first_searches_the_namespace_then_the_cluster_then_the_node() -> None:
    got = resolver(pod())
    assert got.render() == (
        "search shop.svc.cluster.local svc.cluster.local cluster.local lab.example\n"
        "nameserver 10.96.0.10\n"
        "options ndots:5\n"
    )
    assert not dns.missing_cluster_dns(pod()["spec"], CLUSTER)


def test_the_default_policy_and_host_network_pods_get_the_nodes_resolver() -> None:
    assert resolver(pod(dnsPolicy="Default")) == NODE
    assert resolver(pod(hostNetwork=True)) == NODE
    # unless they ask for the cluster's DNS with the host network
    assert resolver(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet")).nameservers == CLUSTER


def test_without_cluster_dns_cluster_first_falls_back_to_the_node_and_says_so() -> None:
    assert resolver(pod(), cluster_dns=()) == NODE
    assert dns.missing_cluster_dns(pod()["spec"], ())
    assert not dns.missing_cluster_dns(pod(dnsPolicy="Default")["spec"], ())


def test_policy_none_is_only_the_dns_config() -> None:
    config = {
        "nameservers": ["1.2.3.4"],
        "searches": ["ns1.svc.cluster-domain.example"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
    }
    got = resolver(pod(dnsPolicy="None", dnsConfig=config))
    assert got.render() == "search ns1.svc.cluster-domain.example\nnameserver 1.2.3.4\noptions ndots:2 edns0\n"


def test_dns_config_adds_to_the_policys_base_and_its_options_win() -> None:
    config = {
        "nameservers": ["10.96.0.10", "9.9.9.9"],
        "searches": ["svc.cluster.local", "extra.example"],
        "options": [{"name": "ndots", "value": "1"}, {"name": "single-request"}],
    }
    got = resolver(pod(dnsConfig=config))
    assert got.nameservers == ("10.96.0.10", "9.9.9.9")
    assert got.searches[-1] == "extra.example" and got.searches.count("svc.cluster.local") == 1
    assert got.options == ("ndots:1", "single-request")


def test_beyond_three_nameservers_and_32_searches_is_dropped_and_reported() -> None:
    config = {"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3"], "searches": [f"s{i}.example" for i in range(40)]}
    got = resolver(pod(dnsConfig=config))
    assert got.nameservers == ("10.96.0.10", "1.1.1.1", "2.2.2.2")
    assert len(got.searches) == dns.MAX_SEARCHES
    assert "nameserver 3.3.3.3" in got.dropped and any(d.startswith("search ") for d in got.dropped)


def test_an_empty_resolver_writes_an_empty_file() -> None:
    assert dns.Resolver().render() == ""


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"dnsPolicy": "None"}, "spec.dnsConfig", "must provide `dnsConfig` when `dnsPolicy` is None"),
        (
            {"dnsPolicy": "None", "dnsConfig": {"searches": ["a.example"]}},
            "spec.dnsConfig.nameservers",
            "must provide at least one DNS nameserver when `dnsPolicy` is None",
        ),
        (
            {"dnsConfig": {"nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"]}},
            "spec.dnsConfig.nameservers",
            "must not have more than 3 nameservers",
        ),
        ({"dnsConfig": {"nameservers": ["dns.example"]}}, "spec.dnsConfig.nameservers[0]", "must be a valid IP"),
        ({"dnsConfig": {"searches": ["Not_A.Domain"]}}, "spec.dnsConfig.searches[0]", "RFC 1123 subdomain"),
        ({"dnsConfig": {"options": [{"value": "2"}]}}, "spec.dnsConfig.options[0].name", "must not be empty"),
    ],
)
def test_the_api_server_refuses_a_bad_dns_config_in_kubes_words(spec: dict[str, Any], field: str, message: str) -> None:
    full = {"containers": [{"name": "c", "image": "busybox"}], **spec}
    errors = validate_pod_spec("spec", full)
    assert any(e.field == field and message in e.render() for e in errors), [e.render() for e in errors]
    # a trailing dot in a search domain is allowed, as kube allows it
    assert not validate_pod_spec(
        "spec", {"containers": [{"name": "c", "image": "b"}], "dnsConfig": {"searches": ["a.example."]}}
    )
