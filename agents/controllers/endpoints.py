"""Endpoints and EndpointSlice controllers: which pods back each Service, on which ports.

For every Service with a selector, the pods that match it (and have an IP) become its endpoints:
ready ones in ``addresses``, others in ``notReadyAddresses`` (or, in EndpointSlices, with their
ready/serving/terminating conditions). Named target ports are resolved per pod. ``endpoints_for``
and ``slices_for`` compute what they must hold; ``plan_endpoints`` and ``plan_slices`` (pure) compare
that with what exists and say what to create, update or delete, so nothing is written that holds
already.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from agents.controllers.base import Context, Controller, delete_object
from agents.controllers.podutil import is_ready
from agents.machinery import tracing
from agents.machinery.client import ApiError
from agents.machinery.informer import key_of, split_key
from agents.machinery.objects import Object, deep_copy
from agents.machinery.resources import ENDPOINT_SLICES, ENDPOINTS, PODS, SERVICES
from agents.machinery.selectors import from_structured

SERVICE_NAME = "kubernetes.io/service-name"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
MANAGER = "endpointslice-controller.k8s.io"
MAX_PER_SLICE = 100
ENDPOINTS_MANAGED_BY = "endpoints.kubernetes.io/managed-by"
TRACER = "controller-manager"


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


def hostname_in(service: Object, pod: Object) -> str:
    """The pod's DNS name under the Service (kube's rule): its ``hostname`` when its ``subdomain`` is
    this Service of its namespace, as a StatefulSet's pods are under their governing Service."""
    spec = pod.get("spec") or {}
    same = pod["metadata"].get("namespace") == service["metadata"].get("namespace")
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"] and same:
        return str(spec["hostname"])
    return ""


def _address(service: Object, pod: Object) -> dict[str, Any]:
    out: dict[str, Any] = {"ip": pod["status"]["podIP"], "targetRef": _target_ref(pod)}
    if hostname := hostname_in(service, pod):
        out["hostname"] = hostname
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
            group["addresses"].append(_address(service, pod))
        elif not terminating:
            group["notReadyAddresses"].append(_address(service, pod))
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
        if hostname := hostname_in(service, pod):
            endpoint["hostname"] = hostname
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


@dataclass(frozen=True)
class EndpointsPlan:
    create: Object | None = None
    update: Object | None = None
    delete: Object | None = None


def plan_endpoints(key: str, service: Object | None, current: Object | None, pods: list[Object]) -> EndpointsPlan:
    """The write that makes the Endpoints ``key`` match ``service`` (None: it is gone) and ``pods``:
    Endpoints of a Service without selector are left to whoever wrote them; those of a Service that
    is gone are deleted if this controller made them."""
    namespace, name = split_key(key)
    if service is None:
        if current is not None and (current["metadata"].get("labels") or {}).get(ENDPOINTS_MANAGED_BY):
            return EndpointsPlan(delete=current)
        return EndpointsPlan()
    if not (service.get("spec") or {}).get("selector"):
        return EndpointsPlan()
    subsets = endpoints_for(service, pods)
    labels = {**(service["metadata"].get("labels") or {}), ENDPOINTS_MANAGED_BY: "endpoint-controller"}
    if (
        current is not None
        and (current.get("subsets") or []) == subsets
        and (current["metadata"].get("labels") or {}) == labels
    ):
        return EndpointsPlan()
    body: dict[str, Any] = (
        deep_copy(current)
        if current
        else {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": namespace}}
    )
    body["metadata"]["labels"] = labels
    body["subsets"] = subsets
    if not subsets:
        body.pop("subsets")
    return EndpointsPlan(create=body) if current is None else EndpointsPlan(update=body)


def slice_name(service: str, index: int) -> str:
    return f"{service}-{hashlib.sha256(f'{service}/{index}'.encode()).hexdigest()[:5]}"


@dataclass
class SlicesPlan:
    create: list[Object] = field(default_factory=list)
    update: list[Object] = field(default_factory=list)
    delete: list[Object] = field(default_factory=list)


def plan_slices(key: str, service: Object | None, owned: list[Object], pods: list[Object]) -> SlicesPlan:
    """The writes that make the EndpointSlices of Service ``key`` (``owned``: those this controller
    manages) match ``service`` (None: it is gone) and ``pods``. A Service with a selector but no
    endpoints still gets one empty slice, with its ports."""
    _, name = split_key(key)
    selector = service is not None and (service.get("spec") or {}).get("selector")
    wanted = slices_for(service, pods) if service is not None and selector else []
    if service is not None and selector and not wanted:
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
    result = SlicesPlan()
    for index, piece in enumerate(wanted):
        existing = next((s for s in owned if s["metadata"]["name"] == slice_name(name, index)), None)
        if (
            existing is not None
            and existing.get("endpoints", []) == piece["endpoints"]
            and existing.get("ports", []) == piece["ports"]
        ):
            continue
        assert service is not None
        body: dict[str, Any] = deep_copy(existing) if existing else _new_slice(service, slice_name(name, index))
        body["endpoints"] = piece["endpoints"]
        body["ports"] = piece["ports"]
        (result.update if existing is not None else result.create).append(body)
    keep = {slice_name(name, i) for i in range(len(wanted))}
    result.delete = [piece for piece in owned if piece["metadata"]["name"] not in keep]
    return result


def traced_cause(decided: SlicesPlan, owned: list[Object], pods: list[Object]) -> Object | None:
    """The pod whose trace the writes of ``decided`` continue: the newest pod carrying a trace among
    those whose endpoints the writes add or change (``owned``: the slices as they are); None when
    there is none (the sync is not traced)."""
    before = {s["metadata"]["name"]: s.get("endpoints") or [] for s in owned}
    changed = {
        str((endpoint.get("targetRef") or {}).get("uid") or "")
        for body in (*decided.create, *decided.update)
        for endpoint in body["endpoints"]
        if endpoint not in before.get(body["metadata"]["name"], [])
    }
    candidates = [p for p in pods if p["metadata"].get("uid") in changed and tracing.traceparent(p)]
    return max(candidates, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""), default=None)


def _new_slice(service: Object, name: str) -> Object:
    meta = service["metadata"]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "addressType": "IPv4",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {SERVICE_NAME: meta["name"], MANAGED_BY: MANAGER},
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
    }


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
        namespace, _ = split_key(key)
        decided = plan_endpoints(
            key, self.services.get(key), self.endpoints.get(key), self.pods.by_index("namespace", namespace)
        )
        if decided.delete is not None:
            await delete_object(self.client, ENDPOINTS, decided.delete)
        if decided.update is not None:
            await self.client.update(ENDPOINTS, decided.update)
        if decided.create is not None:
            try:
                await self.client.create(ENDPOINTS, decided.create)
            except ApiError as exc:
                if not exc.already_exists:
                    raise
                self.queue.add_after(key, 0.1)  # made meanwhile: look again once the informer has it


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
        namespace, name = split_key(key)
        owned = [
            s
            for s in self.slices.by_index("namespace", namespace)
            if (s["metadata"].get("labels") or {}).get(SERVICE_NAME) == name
            and (s["metadata"].get("labels") or {}).get(MANAGED_BY) == MANAGER
        ]
        pods = self.pods.by_index("namespace", namespace)
        decided = plan_slices(key, self.services.get(key), owned, pods)
        writes = bool(decided.create or decided.update)
        cause = traced_cause(decided, owned, pods) if writes and tracing.enabled() else None
        # the slices written inside the span continue the trace of the pod whose endpoint changed (no
        # such pod: a span that records nothing)
        with tracing.span_for(cause or {}, "sync endpointslices", tracer_name=TRACER) as span:
            if span.is_recording():
                written = [*decided.create, *decided.update]
                ready = sum(1 for s in written for e in s["endpoints"] if (e.get("conditions") or {}).get("ready"))
                span.set_attributes({"k8s.service.name": name, "endpoints.ready": ready})
            for body in decided.create:
                try:
                    await self.client.create(ENDPOINT_SLICES, body)
                except ApiError as exc:
                    if not exc.already_exists:
                        raise
            for body in decided.update:
                await self.client.update(ENDPOINT_SLICES, body)
            for piece in decided.delete:
                await delete_object(self.client, ENDPOINT_SLICES, piece)

    def enqueue(self, obj: Object) -> None:
        self.queue.add(key_of(obj))
