"""What the proxy programs, as plain values: Services, their ports and their ready endpoints.

The API objects (Service, EndpointSlice) are turned into frozen dataclasses here, once, so that the
rule planner works on values it can trust and unit tests can build without JSON. Only IPv4 is kept
(the proxy owns a ``table ip``); ExternalName and headless Services are not proxied, as in kube-proxy.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from agents.machinery.objects import Object, labels_of, name_of, namespace_of

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

# Service port protocols the proxy programs, by their API spelling -> their nftables spelling.
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


@dataclass(frozen=True, order=True)
class Endpoint:
    """One ready backend of one Service port: where its traffic is sent (targetPort resolved)."""

    address: str
    port: int

    @property
    def sort_key(self) -> tuple[bytes, int]:
        """Numeric order: 10.0.0.9 before 10.0.0.10 (the 4 bytes of an address compare as its number)."""
        return socket.inet_aton(self.address), self.port


@dataclass(frozen=True, order=True)
class ServicePort:
    name: str  # "" for the single unnamed port of a Service
    protocol: str  # tcp, udp or sctp
    port: int
    node_port: int | None = None


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    cluster_ips: tuple[str, ...]  # IPv4 only
    ports: tuple[ServicePort, ...]


@dataclass(frozen=True, order=True)
class PortRef:
    """Which Service port a set of endpoints belongs to (EndpointSlices name ports, not numbers)."""

    namespace: str
    service: str
    port_name: str
    protocol: str


Endpoints = Mapping[PortRef, tuple[Endpoint, ...]]


def _ipv4(value: object) -> str | None:
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError:
        return None


def service_from(obj: Object) -> Service | None:
    """The proxied view of a Service object, or None when there is nothing to proxy."""
    spec = obj.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    if kind == "ExternalName":
        return None
    raw_ips = spec.get("clusterIPs") or [spec.get("clusterIP")]
    cluster_ips = tuple(ip for raw in raw_ips if raw and raw != "None" and (ip := _ipv4(raw)) is not None)
    if not cluster_ips:
        return None  # headless, or IPv6 only
    exposes_node_ports = kind in ("NodePort", "LoadBalancer")
    ports = []
    for port in spec.get("ports") or []:
        protocol = PROTOCOLS.get(str(port.get("protocol") or "TCP"))
        number = port.get("port")
        if protocol is None or not isinstance(number, int):
            continue
        node_port = port.get("nodePort") if exposes_node_ports else None
        ports.append(
            ServicePort(
                name=str(port.get("name") or ""),
                protocol=protocol,
                port=number,
                node_port=node_port if isinstance(node_port, int) and node_port > 0 else None,
            )
        )
    return Service(namespace_of(obj), name_of(obj), cluster_ips, tuple(ports))


def is_ready(endpoint: Object) -> bool:
    """Kubernetes' rule: a missing ``ready`` condition means ready; terminating endpoints never are."""
    conditions = endpoint.get("conditions") or {}
    if conditions.get("terminating") is True:
        return False
    return conditions.get("ready") is not False


def slice_endpoints(obj: Object) -> dict[PortRef, frozenset[Endpoint]]:
    """The ready IPv4 endpoints of one EndpointSlice, per Service port.

    Each slice carries the port numbers its endpoints listen on, so a named targetPort that resolves
    to different numbers on different pods arrives as different slices and is honoured per endpoint.
    Of an endpoint's addresses only the first is used, as the EndpointSlice API allows.
    """
    service = labels_of(obj).get(SERVICE_NAME_LABEL)
    if not service or (obj.get("addressType") or "IPv4") != "IPv4":
        return {}
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return {}
    addresses = []
    for endpoint in obj.get("endpoints") or []:
        first = next(iter(endpoint.get("addresses") or []), None)
        address = _ipv4(first) if first is not None else None
        if address is not None and is_ready(endpoint):
            addresses.append(address)
    found: dict[PortRef, frozenset[Endpoint]] = {}
    for port in obj.get("ports") or []:
        protocol = PROTOCOLS.get(str(port.get("protocol") or "TCP"))
        number = port.get("port")
        if protocol is None or not isinstance(number, int):
            continue  # a slice port without a number means "all ports": nothing to DNAT to
        ref = PortRef(namespace_of(obj), service, str(port.get("name") or ""), protocol)
        found[ref] = found.get(ref, frozenset()) | {Endpoint(address, number) for address in addresses}
    return found


def merge_endpoints(per_slice: Iterable[Mapping[PortRef, frozenset[Endpoint]]]) -> dict[PortRef, tuple[Endpoint, ...]]:
    """The endpoints of every Service port over all its slices, in numeric order."""
    merged: dict[PortRef, set[Endpoint]] = {}
    for found in per_slice:
        for ref, endpoints in found.items():
            merged.setdefault(ref, set()).update(endpoints)
    return {ref: tuple(sorted(eps, key=lambda e: e.sort_key)) for ref, eps in merged.items()}


def endpoints_from(slices: Iterable[Object]) -> dict[PortRef, tuple[Endpoint, ...]]:
    """Ready IPv4 endpoints per Service port, merged over all the Service's slices."""
    return merge_endpoints(slice_endpoints(obj) for obj in slices)
