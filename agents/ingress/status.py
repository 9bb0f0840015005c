"""The address the served Ingresses report in ``status.loadBalancer.ingress`` (pure), as ingress-nginx
decides it.

With ``--publish-service=NAMESPACE/NAME`` (the controller's own LoadBalancer Service), the addresses
that Service's load balancer has (``status.loadBalancer.ingress``: its IP or hostname); while it has
none (the cloud has not given one yet), the InternalIP of every node a running controller pod is on,
which is ingress-nginx's fallback. Only the elected leader writes them (:mod:`agents.ingress.controller`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Object = Mapping[str, Any]
Address = dict[str, str]


def service_addresses(service: Object | None) -> list[Address]:
    entries = ((service or {}).get("status") or {}).get("loadBalancer", {}).get("ingress") or []
    out = []
    for entry in entries:
        found = {k: str(entry[k]) for k in ("ip", "hostname") if entry.get(k)}
        if found:
            out.append(found)
    return sorted(out, key=lambda a: (a.get("ip", ""), a.get("hostname", "")))


def node_addresses(pods: Iterable[Object], nodes: Mapping[str, Object]) -> list[Address]:
    """The InternalIP of every node a running, not deleted pod of the controller is bound to."""
    found: set[str] = set()
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        if (pod.get("status") or {}).get("phase") != "Running":
            continue
        node = nodes.get(str((pod.get("spec") or {}).get("nodeName") or ""))
        for address in ((node or {}).get("status") or {}).get("addresses") or []:
            if address.get("type") == "InternalIP" and address.get("address"):
                found.add(str(address["address"]))
    return [{"ip": ip} for ip in sorted(found)]


def addresses(*, service: Object | None, pods: Iterable[Object], nodes: Mapping[str, Object]) -> list[Address]:
    return service_addresses(service) or node_addresses(pods, nodes)


def current(ingress: Object) -> list[Address]:
    entries = ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [{k: str(v) for k, v in e.items() if k in ("ip", "hostname") and v} for e in entries]


def updates(ingresses: Sequence[Object], wanted: list[Address]) -> list[dict[str, Any]]:
    """The served Ingresses whose status differs from ``wanted``, each as a copy with it (to PUT to
    the status subresource; the cached objects are never changed)."""
    out: list[dict[str, Any]] = []
    for ingress in ingresses:
        if current(ingress) == wanted:
            continue
        copy: dict[str, Any] = {
            **ingress,
            "status": {**(ingress.get("status") or {}), "loadBalancer": {"ingress": wanted}},
        }
        if not wanted:
            copy["status"]["loadBalancer"] = {}
        out.append(copy)
    return out
