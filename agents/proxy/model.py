"""What the proxy programs, as plain values: Services, their ports and their endpoints.

The API objects (Service, EndpointSlice) are turned into frozen dataclasses here, once, so that the
rule planner works on values it can trust and unit tests can build without JSON. Only IPv4 is kept
(the proxy owns a ``table ip``); ExternalName and headless Services are not proxied, as in kube-proxy.

Endpoints keep their ``ready``/``serving``/``terminating`` conditions, because which of them take new
connections is decided per Service port (:func:`usable`): the ready ones; when none is left, those
still serving while they terminate (a pod in its preStop hook), as kube-proxy does, rather than
refusing every connection while a rolling update replaces the last ready pods.
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
    """One backend of one Service port: where its traffic is sent (targetPort resolved), and its
    EndpointSlice conditions."""

    address: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""  # the node the endpoint runs on (its slice's ``nodeName``), "" when not told

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
    external_local: bool = False  # externalTrafficPolicy Local: NodePort traffic to this node's endpoints only
    health_check_node_port: int | None = None  # where the load balancer asks for this node's local endpoints


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
    health_check = spec.get("healthCheckNodePort")
    external_local = exposes_node_ports and spec.get("externalTrafficPolicy") == "Local"
    return Service(
        namespace_of(obj),
        name_of(obj),
        cluster_ips,
        tuple(ports),
        external_local=external_local,
        health_check_node_port=(
            health_check
            if external_local and kind == "LoadBalancer" and isinstance(health_check, int) and health_check > 0
            else None
        ),
    )


@dataclass(frozen=True)
class Conditions:
    """An EndpointSlice endpoint's conditions, each one decided."""

    ready: bool
    serving: bool
    terminating: bool


def conditions_of(endpoint: Object) -> Conditions:
    """An endpoint's conditions as the EndpointSlice API defines a missing one: ``ready`` and
    ``serving`` mean true, ``terminating`` means false."""
    conditions = endpoint.get("conditions") or {}
    return Conditions(
        ready=conditions.get("ready") is not False,
        serving=conditions.get("serving") is not False,
        terminating=conditions.get("terminating") is True,
    )


def is_ready(endpoint: Object) -> bool:
    """Kubernetes' rule: a missing ``ready`` condition means ready. (The EndpointSlice controller
    never marks a terminating endpoint ready, unless its Service publishes not-ready addresses.)"""
    return conditions_of(endpoint).ready


def usable(endpoints: Iterable[Endpoint]) -> tuple[Endpoint, ...]:
    """The endpoints that take new connections to one Service port, in numeric order: the ready ones,
    or, when none is ready, those serving while terminating (kube-proxy's fallback); one per address
    and port."""
    candidates = list(endpoints)
    chosen = [e for e in candidates if e.ready]
    if not chosen:
        chosen = [e for e in candidates if e.serving and e.terminating]
    unique = {(e.address, e.port): e for e in sorted(chosen)}
    return tuple(sorted(unique.values(), key=lambda e: e.sort_key))


def local_endpoints(endpoints: Iterable[Endpoint], node_name: str) -> tuple[Endpoint, ...]:
    """The endpoints of one Service port on node ``node_name`` that take new connections (kube-proxy's
    rule for ``externalTrafficPolicy: Local``: the ready local ones, or the local ones still serving
    while they terminate)."""
    return usable(e for e in endpoints if node_name and e.node_name == node_name)


def slice_endpoints(obj: Object) -> dict[PortRef, frozenset[Endpoint]]:
    """The IPv4 endpoints of one EndpointSlice that may take traffic (ready, or serving while
    terminating), per Service port.

    Each slice carries the port numbers its endpoints listen on, so a named targetPort that resolves
    to different numbers on different pods arrives as different slices and is honoured per endpoint.
    Of an endpoint's addresses only the first is used, as the EndpointSlice API allows.
    """
    service = labels_of(obj).get(SERVICE_NAME_LABEL)
    if not service or (obj.get("addressType") or "IPv4") != "IPv4":
        return {}
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return {}
    addresses: list[tuple[str, Conditions, str]] = []
    for endpoint in obj.get("endpoints") or []:
        first = next(iter(endpoint.get("addresses") or []), None)
        address = _ipv4(first) if first is not None else None
        conditions = conditions_of(endpoint)
        if address is not None and (conditions.ready or (conditions.serving and conditions.terminating)):
            addresses.append((address, conditions, str(endpoint.get("nodeName") or "")))
    found: dict[PortRef, frozenset[Endpoint]] = {}
    for port in obj.get("ports") or []:
        protocol = PROTOCOLS.get(str(port.get("protocol") or "TCP"))
        number = port.get("port")
        if protocol is None or not isinstance(number, int):
            continue  # a slice port without a number means "all ports": nothing to DNAT to
        ref = PortRef(namespace_of(obj), service, str(port.get("name") or ""), protocol)
        found[ref] = found.get(ref, frozenset()) | {
            Endpoint(address, number, ready=c.ready, serving=c.serving, terminating=c.terminating, node_name=node)
            for address, c, node in addresses
        }
    return found


def merge_endpoints(per_slice: Iterable[Mapping[PortRef, frozenset[Endpoint]]]) -> dict[PortRef, tuple[Endpoint, ...]]:
    """The endpoints of every Service port over all its slices, in numeric order."""
    merged: dict[PortRef, set[Endpoint]] = {}
    for found in per_slice:
        for ref, endpoints in found.items():
            merged.setdefault(ref, set()).update(endpoints)
    return {ref: tuple(sorted(eps, key=lambda e: (e.sort_key, e))) for ref, eps in merged.items()}


def endpoints_from(slices: Iterable[Object]) -> dict[PortRef, tuple[Endpoint, ...]]:
    """The IPv4 endpoints (with their conditions) per Service port, merged over all its slices."""
    return merge_endpoints(slice_endpoints(obj) for obj in slices)
