"""The cluster DNS add-on's answers (kube's DNS specification for Services and Pods), and its
messages as a resolver reads them."""

from __future__ import annotations

from typing import Any

from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from agents.dns.records import Zone
from agents.dns.server import Resolver


def service(name: str, ns: str = "shop", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def endpoint_slice(svc: str, ns: str, endpoints: list[dict[str, Any]], ports: list[dict[str, Any]]) -> dict[str, Any]:
    meta = {"name": f"{svc}-abc", "namespace": ns, "labels": {"kubernetes.io/service-name": svc}}
    return {"metadata": meta, "endpoints": endpoints, "ports": ports}


def endpoint(ip: str, ready: bool | None = True, hostname: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"addresses": [ip], "conditions": {} if ready is None else {"ready": ready}}
    if hostname:
        out["hostname"] = hostname
    return out


WEB_PORTS = [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 9000}]


def zone() -> Zone:
    z = Zone("cluster.local")
    z.build(
        [
            service("web", clusterIP="10.96.4.7", clusterIPs=["10.96.4.7"], ports=WEB_PORTS),
            service("db", clusterIP="None", ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]),
            service("late", clusterIP="None", publishNotReadyAddresses=True),
            service("ext", type="ExternalName", externalName="db.shop.svc.cluster.local."),
            service("away", type="ExternalName", externalName="mail.example.org"),
        ],
        [
            endpoint_slice(
                "db",
                "shop",
                [
                    endpoint("10.244.1.5", hostname="db-0"),
                    endpoint("10.244.2.6", ready=None),
                    endpoint("10.244.2.9", False),
                ],
                [{"name": "pg", "port": 5432, "protocol": "TCP"}],
            ),
            endpoint_slice("late", "shop", [endpoint("10.244.1.8", False)], []),
        ],
    )
    return z


def values(z: Zone, name: str, qtype: str) -> list[str]:
    return [r.value for r in z.lookup(name, qtype).records]


def test_a_service_with_a_cluster_ip_is_that_ip_and_its_named_ports_are_srv() -> None:
    z = zone()
    assert values(z, "web.shop.svc.cluster.local", "A") == ["10.96.4.7"]
    assert values(z, "WEB.shop.svc.cluster.local.", "A") == ["10.96.4.7"]  # names are case-blind
    srv = z.lookup("_http._tcp.web.shop.svc.cluster.local", "SRV").records
    assert [(r.value, r.port) for r in srv] == [("web.shop.svc.cluster.local", 80)]
    assert z.lookup("_nope._tcp.web.shop.svc.cluster.local", "SRV").nxdomain


def test_a_headless_service_is_its_ready_endpoints_and_each_has_a_name() -> None:
    z = zone()
    assert values(z, "db.shop.svc.cluster.local", "A") == ["10.244.1.5", "10.244.2.6"]  # not the unready one
    assert values(z, "db-0.db.shop.svc.cluster.local", "A") == ["10.244.1.5"]  # a StatefulSet pod's name
    assert values(z, "10-244-2-6.db.shop.svc.cluster.local", "A") == ["10.244.2.6"]
    srv = z.lookup("_pg._tcp.db.shop.svc.cluster.local", "SRV").records
    assert sorted((r.value, r.port) for r in srv) == [
        ("10-244-2-6.db.shop.svc.cluster.local", 5432),
        ("db-0.db.shop.svc.cluster.local", 5432),
    ]
    assert values(z, "late.shop.svc.cluster.local", "A") == ["10.244.1.8"]  # publishNotReadyAddresses


def test_external_name_is_a_cname_followed_inside_the_cluster() -> None:
    z = zone()
    inside = z.lookup("ext.shop.svc.cluster.local", "A").records
    assert [(r.type, r.value) for r in inside] == [
        ("CNAME", "db.shop.svc.cluster.local"),
        ("A", "10.244.1.5"),
        ("A", "10.244.2.6"),
    ]
    assert values(z, "away.shop.svc.cluster.local", "A") == ["mail.example.org"]  # no upstream to follow it to


def test_pod_names_reverse_names_and_what_does_not_exist() -> None:
    z = zone()
    assert values(z, "10-244-1-5.shop.pod.cluster.local", "A") == ["10.244.1.5"]
    assert values(z, "7.4.96.10.in-addr.arpa", "PTR") == ["web.shop.svc.cluster.local"]
    assert values(z, "5.1.244.10.in-addr.arpa", "PTR") == ["db-0.db.shop.svc.cluster.local"]
    assert z.lookup("nope.shop.svc.cluster.local", "A").nxdomain
    assert z.lookup("x.y.z.pod.cluster.local", "A").nxdomain
    # a name that exists without records of the asked type: NODATA, not NXDOMAIN
    for name, qtype in (("web.shop.svc.cluster.local", "AAAA"), ("shop.svc.cluster.local", "A")):
        found = z.lookup(name, qtype)
        assert not found.nxdomain and not found.records
    # outside the cluster domain: NXDOMAIN at once, not authoritative (the lab has no upstream)
    outside = z.lookup("example.org", "A")
    assert outside.nxdomain and not outside.authoritative


def ask(resolver: Resolver, name: str, qtype: str = "A", *, limit: int = 0, edns: int = 0) -> DNSRecord:
    question = DNSRecord.question(name, qtype)
    if edns:
        question.add_ar(EDNS0(udp_len=edns))
    reply = resolver.answer(question.pack(), limit=limit)
    assert reply is not None
    parsed = DNSRecord.parse(reply)
    assert parsed.header.id == question.header.id and parsed.header.qr == 1
    return parsed


def test_the_resolver_answers_authoritatively_with_the_ttl_and_an_soa_for_misses() -> None:
    resolver = Resolver(zone(), ttl=5)
    hit = ask(resolver, "web.shop.svc.cluster.local")
    assert hit.header.rcode == RCODE.NOERROR and hit.header.aa == 1
    assert [(str(r.rdata), r.ttl) for r in hit.rr] == [("10.96.4.7", 5)]
    miss = ask(resolver, "nope.shop.svc.cluster.local")
    assert miss.header.rcode == RCODE.NXDOMAIN and miss.auth[0].rtype == QTYPE.SOA and not miss.rr
    outside = ask(resolver, "deb.debian.org")
    assert outside.header.rcode == RCODE.NXDOMAIN and outside.header.aa == 0
    srv = ask(resolver, "_http._tcp.web.shop.svc.cluster.local", "SRV")
    assert srv.rr[0].rdata.port == 80 and str(srv.rr[0].rdata.target) == "web.shop.svc.cluster.local."


def test_a_udp_answer_too_big_for_the_client_is_truncated() -> None:
    many = [endpoint(f"10.244.3.{i}") for i in range(1, 60)]
    z = Zone("cluster.local")
    z.build([service("big", clusterIP="None")], [endpoint_slice("big", "shop", many, [])])
    resolver = Resolver(z)
    assert ask(resolver, "big.shop.svc.cluster.local").header.tc == 0  # TCP: no limit
    cut = ask(resolver, "big.shop.svc.cluster.local", limit=512)
    assert cut.header.tc == 1 and not cut.rr
    assert len(ask(resolver, "big.shop.svc.cluster.local", limit=512, edns=4096).rr) == 59


def test_garbage_gets_formerr_or_nothing_and_answers_are_never_answered() -> None:
    resolver = Resolver(zone())
    assert resolver.answer(b"\x12\x34") is None
    formerr = resolver.answer(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff\xff")
    assert formerr is not None and DNSRecord.parse(formerr).header.rcode == RCODE.FORMERR
    reply = resolver.answer(DNSRecord.question("web.shop.svc.cluster.local").pack())
    assert reply is not None and resolver.answer(reply) is None
