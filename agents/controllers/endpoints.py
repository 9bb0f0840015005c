"""Endpoints and EndpointSlice controllers: which pods back each Service, on which ports.

For every Service with a selector, the pods that match it (and have an IP) become its endpoints:
ready ones in ``addresses``, others in ``notReadyAddresses`` (or, in EndpointSlices, with their
ready/serving/terminating conditions). Named target ports are resolved per pod. ``endpoints_for``
and ``slices_for`` are pure; the controllers write only when the result differs.
"""

from __future__ import annotations

import hashlib
from functools import partial
from typing import Any

from agents.controllers.base import Context, Controller, ignore_not_found
from agents.controllers.podutil import is_ready
from agents.machinery.client import ApiError
from agents.machinery.informer import key_of
from agents.machinery.objects import Object, deep_copy
from agents.machinery.resources import ENDPOINT_SLICES, ENDPOINTS, PODS, SERVICES
from agents.machinery.selectors import from_structured

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
MANAGER = "endpointslice-controller.k8s.io"
MAX_PER_SLICE = 100
ENDPOINTS_MANAGED_BY = "endpoints.kubernetes.io/managed-by"


def _port_for(service_port: dict[str, Any], pod: Object) -> int | None:
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and port.get("protocol", "TCP") == service_port.get("protocol", "TCP"):
                return int(port["containerPort"])
    return None


def selected_pods(service: Object, pods: list[Object]) -> list[Object]:
    selector = (service.get("spec") or {}).get("selector")
    if not selector:
        return []
    match = from_structured({"matchLabels": selector})
    out = []
    for pod in pods:
        if not match.matches(pod["metadata"].get("labels") or {}):
            continue
        status = pod.get("status") or {}
        if not status.get("podIP") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        out.append(pod)
    return sorted(out, key=lambda p: p["metadata"]["name"])


def _target_ref(pod: Object) -> dict[str, Any]:
    meta = pod["metadata"]
    return {"kind": "Pod", "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]}


def _address(pod: Object) -> dict[str, Any]:
    out: dict[str, Any] = {"ip": pod["status"]["podIP"], "targetRef": _target_ref(pod)}
    if (pod.get("spec") or {}).get("nodeName"):
        out["nodeName"] = pod["spec"]["nodeName"]
    return out


def endpoints_for(service: Object, pods: list[Object]) -> list[dict[str, Any]]:
    """The ``subsets`` of a Service's Endpoints: pods grouped by the ports they resolve to."""
    groups: dict[tuple[tuple[str, int, str], ...], dict[str, list[dict[str, Any]]]] = {}
    publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
    for pod in selected_pods(service, pods):
        ports = []
        service_ports = (service.get("spec") or {}).get("ports") or []
        for sp in service_ports:
            number = _port_for(sp, pod)
            if number is not None:
                ports.append((sp.get("name", ""), number, sp.get("protocol", "TCP")))
        if service_ports and not ports:
            continue  # the pod serves none of the Service's ports (e.g. a named port it lacks)
        group = groups.setdefault(tuple(ports), {"addresses": [], "notReadyAddresses": []})
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        if (is_ready(pod) and not terminating) or publish:
            group["addresses"].append(_address(pod))
        elif not terminating:
            group["notReadyAddresses"].append(_address(pod))
    subsets = []
    for resolved, addresses in groups.items():
        subset: dict[str, Any] = {k: v for k, v in addresses.items() if v}
        if not subset:
            continue
        subset["ports"] = [
            {**({"name": name} if name else {}), "port": number, "protocol": protocol}
            for name, number, protocol in resolved
        ]
        subsets.append(subset)
    return subsets


def slices_for(service: Object, pods: list[Object]) -> list[dict[str, Any]]:
    """The (endpoints, ports) of each EndpointSlice, at most 100 endpoints each."""
    by_ports: dict[tuple[tuple[str, int, str], ...], list[dict[str, Any]]] = {}
    for pod in selected_pods(service, pods):
        ports = tuple(
            (sp.get("name", ""), number, sp.get("protocol", "TCP"))
            for sp in (service.get("spec") or {}).get("ports") or []
            if (number := _port_for(sp, pod)) is not None
        )
        terminating = bool(pod["metadata"].get("deletionTimestamp"))
        ready = is_ready(pod)
        publish = bool((service.get("spec") or {}).get("publishNotReadyAddresses"))
        endpoint: dict[str, Any] = {
            "addresses": [pod["status"]["podIP"]],
            "conditions": {
                "ready": publish or (ready and not terminating),
                "serving": ready,
                "terminating": terminating,
            },
            "targetRef": _target_ref(pod),
        }
        if (pod.get("spec") or {}).get("nodeName"):
            endpoint["nodeName"] = pod["spec"]["nodeName"]
        by_ports.setdefault(ports, []).append(endpoint)
    out = []
    for ports, endpoints in sorted(by_ports.items()):
        for start in range(0, len(endpoints), MAX_PER_SLICE):
            out.append(
                {
                    "ports": [{"name": name, "port": number, "protocol": protocol} for name, number, protocol in ports],
                    "endpoints": endpoints[start : start + MAX_PER_SLICE],
                }
            )
    return out


class _ServiceController(Controller):
    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.services = ctx.informer(SERVICES)
        self.pods = ctx.informer(PODS)
        self.services.on_any(self.enqueue)
        self.pods.on(add=self._pod_changed, update=self._pod_updated, delete=self._pod_changed)

    def _pod_changed(self, pod: Object) -> None:
        labels = pod["metadata"].get("labels") or {}
        for service in self.services.by_index("namespace", pod["metadata"]["namespace"]):
            selector = (service.get("spec") or {}).get("selector")
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                self.enqueue(service)

    def _pod_updated(self, old: Object, new: Object) -> None:
        if old["metadata"].get("labels") != new["metadata"].get("labels"):
            self._pod_changed(old)
        relevant = (
            (old.get("status") or {}).get("podIP") != (new.get("status") or {}).get("podIP")
            or is_ready(old) != is_ready(new)
            or old["metadata"].get("deletionTimestamp") != new["metadata"].get("deletionTimestamp")
            or old["metadata"].get("labels") != new["metadata"].get("labels")
            or (old.get("status") or {}).get("phase") != (new.get("status") or {}).get("phase")
        )
        if relevant:
            self._pod_changed(new)


class EndpointsController(_ServiceController):
    name = "endpoints"
    source = "endpoint-controller"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.endpoints = ctx.informer(ENDPOINTS)

    async def sync(self, key: str) -> None:
        service = self.services.get(key)
        namespace, name = key.split("/", 1)
        if service is None:
            current = self.endpoints.get(key)
            if current is not None and (current["metadata"].get("labels") or {}).get(ENDPOINTS_MANAGED_BY):
                await ignore_not_found(partial(self.client.delete, ENDPOINTS, name, namespace))
            return
        if not (service.get("spec") or {}).get("selector"):
            return  # endpoints of services without selectors are managed by hand
        subsets = endpoints_for(service, self.pods.by_index("namespace", namespace))
        current = self.endpoints.get(key)
        labels = {**(service["metadata"].get("labels") or {}), ENDPOINTS_MANAGED_BY: "endpoint-controller"}
        if (
            current is not None
            and (current.get("subsets") or []) == subsets
            and (current["metadata"].get("labels") or {}) == labels
        ):
            return
        body: dict[str, Any] = (
            deep_copy(current)
            if current
            else {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": namespace}}
        )
        body["metadata"]["labels"] = labels
        body["subsets"] = subsets
        if not subsets:
            body.pop("subsets")
        if current is None:
            try:
                await self.client.create(ENDPOINTS, body)
            except ApiError as exc:
                if not exc.already_exists:
                    raise
                self.queue.add_after(key, 0.1)
        else:
            await self.client.update(ENDPOINTS, body)


class EndpointSliceController(_ServiceController):
    name = "endpointslice"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.slices = ctx.informer(ENDPOINT_SLICES)
        self.slices.on_any(self._slice_changed)

    def _slice_changed(self, piece: Object) -> None:
        labels = piece["metadata"].get("labels") or {}
        if labels.get(MANAGED_BY) == MANAGER and labels.get(SERVICE_NAME):
            self.queue.add(f"{piece['metadata']['namespace']}/{labels[SERVICE_NAME]}")

    async def sync(self, key: str) -> None:
        namespace, name = key.split("/", 1)
        owned = [
            s
            for s in self.slices.by_index("namespace", namespace)
            if (s["metadata"].get("labels") or {}).get(SERVICE_NAME) == name
            and (s["metadata"].get("labels") or {}).get(MANAGED_BY) == MANAGER
        ]
        service = self.services.get(key)
        wanted = (
            []
            if service is None or not (service.get("spec") or {}).get("selector")
            else slices_for(service, self.pods.by_index("namespace", namespace))
        )
        if service is not None and (service.get("spec") or {}).get("selector") and not wanted:
            wanted = [
                {
                    "ports": [
                        {
                            "name": p.get("name", ""),
                            "port": p.get("targetPort") if isinstance(p.get("targetPort"), int) else p.get("port"),
                            "protocol": p.get("protocol", "TCP"),
                        }
                        for p in service["spec"].get("ports") or []
                    ],
                    "endpoints": [],
                }
            ]
        for index, piece in enumerate(wanted):
            slice_name = f"{name}-{hashlib.sha256(f'{name}/{index}'.encode()).hexdigest()[:5]}"
            existing = next((s for s in owned if s["metadata"]["name"] == slice_name), None)
            if (
                existing is not None
                and existing.get("endpoints", []) == piece["endpoints"]
                and existing.get("ports", []) == piece["ports"]
            ):
                continue
            assert service is not None
            body: dict[str, Any] = (
                deep_copy(existing)
                if existing
                else {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "addressType": "IPv4",
                    "metadata": {
                        "name": slice_name,
                        "namespace": namespace,
                        "labels": {SERVICE_NAME: name, MANAGED_BY: MANAGER},
                        "ownerReferences": [
                            {
                                "apiVersion": "v1",
                                "kind": "Service",
                                "name": name,
                                "uid": service["metadata"]["uid"],
                                "controller": True,
                                "blockOwnerDeletion": True,
                            }
                        ],
                    },
                }
            )
            body["endpoints"] = piece["endpoints"]
            body["ports"] = piece["ports"]
            if existing is None:
                try:
                    await self.client.create(ENDPOINT_SLICES, body)
                except ApiError as exc:
                    if not exc.already_exists:
                        raise
            else:
                await self.client.update(ENDPOINT_SLICES, body)
        keep = {f"{name}-{hashlib.sha256(f'{name}/{i}'.encode()).hexdigest()[:5]}" for i in range(len(wanted))}
        for piece in owned:
            if piece["metadata"]["name"] not in keep:
                await ignore_not_found(
                    partial(self.client.delete, ENDPOINT_SLICES, piece["metadata"]["name"], namespace)
                )

    def enqueue(self, obj: Object) -> None:
        self.queue.add(key_of(obj))
