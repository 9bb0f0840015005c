"""What the cluster's DNS answers, from the Services and EndpointSlices it watches (pure).

This is kube's DNS specification for Services and Pods (what kube-dns and CoreDNS's kubernetes
plugin answer), for the cluster domain ``D`` (``cluster.local``):

- ``<service>.<ns>.svc.D``: A/AAAA with the Service's ClusterIPs; for a headless Service
  (``clusterIP: None``) the addresses of its ready endpoints (all of them with
  ``publishNotReadyAddresses``); for an ExternalName Service a CNAME to its ``externalName``.
- ``<hostname>.<service>.<ns>.svc.D``: A/AAAA of the endpoint of a headless Service whose pod has
  that ``hostname`` and the Service as its ``subdomain`` (a StatefulSet's pods: ``web-0.nginx...``).
- ``_<port>._<proto>.<service>.<ns>.svc.D``: SRV for each named port, to the Service's name (with a
  ClusterIP) or to each endpoint's name (headless: its hostname, or its address with dashes).
- ``<a-b-c-d>.<ns>.pod.D``: A with that address (kube-dns's pod records, unverified).
- PTR for ClusterIPs and for the endpoints of headless Services.

A name under the cluster domain that is none of these is NXDOMAIN; one that exists with no record
of the asked type is NOERROR with no answer (NODATA). The lab is offline: there is no upstream, so
every name outside the cluster domain is NXDOMAIN at once (:meth:`Zone.lookup` says ``authoritative``
False for those).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Object = Mapping[str, Any]

A, AAAA, CNAME, PTR, SRV, SOA, ANY = "A", "AAAA", "CNAME", "PTR", "SRV", "SOA", "ANY"


@dataclass(frozen=True)
class Record:
    name: str  # absolute, lower case, no trailing dot
    type: str  # A, AAAA, CNAME, PTR or SRV
    value: str  # an address, or a target name
    port: int = 0  # SRV only
    priority: int = 0
    weight: int = 100


@dataclass(frozen=True)
class Answer:
    """NOERROR with ``records`` (empty: NODATA), or NXDOMAIN; ``authoritative`` for the cluster's names."""

    records: tuple[Record, ...] = ()
    nxdomain: bool = False
    authoritative: bool = True


def _ip_label(ip: str) -> str:
    return ip.replace(".", "-").replace(":", "-")


def _address_type(ip: str) -> str:
    return AAAA if ":" in ip else A


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


@dataclass
class Zone:
    """The records of one cluster domain, rebuilt from the watched objects (:meth:`build`)."""

    domain: str = "cluster.local"
    _names: dict[str, list[Record]] = field(default_factory=dict)
    _nodes: set[str] = field(default_factory=set)  # every name that exists, records or not
    _reverse: dict[str, list[Record]] = field(default_factory=dict)

    def build(self, services: Iterable[Object], slices: Iterable[Object]) -> None:
        names: dict[str, list[Record]] = {}
        reverse: dict[str, list[Record]] = {}
        by_service: dict[tuple[str, str], list[Object]] = {}
        for piece in slices:
            meta = piece.get("metadata") or {}
            owner = (meta.get("labels") or {}).get("kubernetes.io/service-name")
            if owner:
                by_service.setdefault((str(meta.get("namespace") or ""), str(owner)), []).append(piece)
        for service in services:
            meta, spec = service.get("metadata") or {}, service.get("spec") or {}
            namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
            base = f"{name}.{namespace}.svc.{self.domain}".lower()
            records = names.setdefault(base, [])
            if spec.get("type") == "ExternalName":
                target = str(spec.get("externalName") or "").rstrip(".").lower()
                if target:
                    records.append(Record(base, CNAME, target))
                continue
            cluster_ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None"]
            ports = [p for p in spec.get("ports") or [] if p.get("name")]
            if cluster_ips:
                for ip in cluster_ips:
                    records.append(Record(base, _address_type(ip), ip))
                    reverse.setdefault(reverse_name(ip), []).append(Record(reverse_name(ip), PTR, base))
                for port in ports:
                    srv = f"_{port['name']}._{str(port.get('protocol') or 'TCP').lower()}.{base}"
                    names.setdefault(srv, []).append(Record(srv, SRV, base, int(port.get("port") or 0)))
                continue
            # headless: the endpoints themselves
            publish = bool(spec.get("publishNotReadyAddresses"))
            for piece in by_service.get((namespace, name), []):
                slice_ports = [p for p in piece.get("ports") or [] if p.get("name")]
                for endpoint in piece.get("endpoints") or []:
                    ready = (endpoint.get("conditions") or {}).get("ready")
                    if not (publish or ready is None or ready):
                        continue
                    for ip in endpoint.get("addresses") or []:
                        host = str(endpoint.get("hostname") or "").lower()
                        own = f"{host or _ip_label(ip)}.{base}"
                        records.append(Record(base, _address_type(ip), ip))
                        names.setdefault(own, []).append(Record(own, _address_type(ip), ip))
                        reverse.setdefault(reverse_name(ip), []).append(Record(reverse_name(ip), PTR, own))
                        for port in slice_ports:
                            srv = f"_{port['name']}._{str(port.get('protocol') or 'TCP').lower()}.{base}"
                            names.setdefault(srv, []).append(Record(srv, SRV, own, int(port.get("port") or 0)))
        self._names = {k: _unique(v) for k, v in names.items()}
        self._reverse = {k: _unique(v) for k, v in reverse.items()}
        nodes: set[str] = set()
        for name in self._names:
            parts = name.split(".")
            for i in range(len(parts)):
                nodes.add(".".join(parts[i:]))
        self._nodes = nodes

    # --- answering --------------------------------------------------------------------------------

    def in_zone(self, name: str) -> bool:
        return name == self.domain or name.endswith("." + self.domain)

    def lookup(self, qname: str, qtype: str) -> Answer:
        name = qname.rstrip(".").lower()
        if name.endswith(".in-addr.arpa") or name.endswith(".ip6.arpa"):
            found = self._reverse.get(name)
            if found is None:
                return Answer(nxdomain=True, authoritative=False)
            return Answer(tuple(found) if qtype in (PTR, ANY) else ())
        if not self.in_zone(name):
            return Answer(nxdomain=True, authoritative=False)  # no upstream: the lab is offline
        pod = self._pod_record(name)
        if pod is not None:
            return Answer((pod,) if qtype in (pod.type, ANY) else ())
        records = self._names.get(name)
        if records is None:
            base = f"svc.{self.domain}"
            exists = name in self._nodes or name in (self.domain, base, f"pod.{self.domain}")
            return Answer() if exists else Answer(nxdomain=True)
        cname = [r for r in records if r.type == CNAME]
        if cname and qtype not in (CNAME, ANY):
            # the alias, and what it names when that is in the cluster too
            chased = self.lookup(cname[0].value, qtype) if self.in_zone(cname[0].value) else Answer()
            return Answer((cname[0], *chased.records))
        return Answer(tuple(r for r in records if qtype in (ANY, r.type)))

    def _pod_record(self, name: str) -> Record | None:
        """``a-b-c-d.<ns>.pod.<domain>`` (or an IPv6 address with dashes) is that address."""
        suffix = f".pod.{self.domain}"
        if not name.endswith(suffix):
            return None
        labels = name[: -len(suffix)].split(".")
        if len(labels) != 2:
            return None
        dashed = labels[0]
        for candidate in (dashed.replace("-", "."), dashed.replace("-", ":")):
            try:
                ip = ipaddress.ip_address(candidate)
            except ValueError:
                continue
            return Record(name, _address_type(str(ip)), str(ip))
        return None

    def soa(self) -> tuple[str, str, str]:
        """The zone's SOA (name, primary server, mailbox), for negative answers' authority section."""
        return self.domain, f"ns.dns.{self.domain}", f"hostmaster.{self.domain}"

    @property
    def size(self) -> int:
        return sum(len(v) for v in self._names.values())


def _unique(records: list[Record]) -> list[Record]:
    seen: dict[Record, None] = {}
    for record in records:
        seen.setdefault(record, None)
    return list(seen)
