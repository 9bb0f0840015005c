"""The Service ``kube-system/trace-collector`` and its EndpointSlice, which the collector keeps.

The collector is not a pod, so no controller gives its Service endpoints: like the API server with the
``kubernetes`` Service, it writes a Service without a selector and an EndpointSlice of its own (its
``managed-by`` label says so; the endpointslice controller leaves such slices alone) whose one ready
endpoint is its advertise address. The API server's service proxy then reaches it as
``services/trace-collector:4318/proxy/...``. Planning is pure (``desired_*``, ``differs``); ``keep``
applies it, and runs again periodically so that a deleted or changed object comes back.
"""

from __future__ import annotations

import asyncio
import copy
import logging

from agents.machinery.client import ApiError, Client
from agents.machinery.errors import TemporaryError
from agents.machinery.objects import Object
from agents.machinery.resources import ENDPOINT_SLICES, SERVICES, ResourceRef

log = logging.getLogger(__name__)

NAMESPACE = "kube-system"
NAME = "trace-collector"
SERVICE_PORT = 4318  # OTLP/HTTP's port, whatever port the collector itself listens on
PORT_NAME = "http"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGER = "kubelab-trace-collector"
RESYNC = 60.0  # seconds between two checks that the objects are still as written


def desired_service(port: int) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": {"app.kubernetes.io/name": NAME}},
        "spec": {
            "type": "ClusterIP",
            "ports": [{"name": PORT_NAME, "port": SERVICE_PORT, "protocol": "TCP", "targetPort": port}],
        },
    }


def desired_slice(address: str, port: int) -> Object:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {SERVICE_NAME_LABEL: NAME, MANAGED_BY_LABEL: MANAGER},
        },
        "addressType": "IPv6" if ":" in address else "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True, "serving": True, "terminating": False}}],
        "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
    }


def _labels(obj: Object) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def differs(current: Object, desired: Object) -> bool:
    """Whether ``current`` lacks what ``desired`` says: its labels, and the Service's ports or the slice's
    endpoints and ports (fields the API server defaults, as the ClusterIP, are not compared)."""
    if any(_labels(current).get(k) != v for k, v in _labels(desired).items()):
        return True
    if desired["kind"] == "Service":
        want = [(p["name"], p["port"], p["targetPort"]) for p in desired["spec"]["ports"]]
        have = [
            (p.get("name"), p.get("port"), p.get("targetPort")) for p in (current.get("spec") or {}).get("ports") or []
        ]
        return want != have or bool((current.get("spec") or {}).get("selector"))
    have_addresses = [e.get("addresses") for e in current.get("endpoints") or []]
    have_ready = [(e.get("conditions") or {}).get("ready") for e in current.get("endpoints") or []]
    have_ports = [(p.get("name"), p.get("port")) for p in current.get("ports") or []]
    return (
        have_addresses != [e["addresses"] for e in desired["endpoints"]]
        or have_ready != [True]
        or have_ports != [(p["name"], p["port"]) for p in desired["ports"]]
    )


def merged(current: Object, desired: Object) -> Object:
    """``current`` (copied) with what ``desired`` sets, ready to be written back."""
    out = copy.deepcopy(current)
    meta = out.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **_labels(desired)}
    if desired["kind"] == "Service":
        out["spec"]["ports"] = desired["spec"]["ports"]
        out["spec"].pop("selector", None)
    else:
        out["endpoints"], out["ports"] = desired["endpoints"], desired["ports"]
    return out


async def _ensure(client: Client, res: ResourceRef, desired: Object) -> str:
    """Create ``desired``, or bring the object there to it; what was done (created, updated, kept)."""
    try:
        current = await client.get(res, NAME, NAMESPACE)
    except ApiError as exc:
        if not exc.not_found:
            raise
        await client.create(res, desired, NAMESPACE)
        return "created"
    if not differs(current, desired):
        return "kept"
    await client.update(res, merged(current, desired))
    return "updated"


async def keep(client: Client, *, address: str, port: int, stop: asyncio.Event | None = None) -> None:
    """Write the Service and its EndpointSlice now and every ``RESYNC`` seconds (until ``stop``), logging
    what fails (the API server away, a conflict) and trying again at the next round."""
    first = True
    while True:
        try:
            service = await _ensure(client, SERVICES, desired_service(port))
            slice_ = await _ensure(client, ENDPOINT_SLICES, desired_slice(address, port))
            if first or (service, slice_) != ("kept", "kept"):
                log.info("Service %s/%s %s, its endpoint %s:%d %s", NAMESPACE, NAME, service, address, port, slice_)
            first = False
        except (ApiError, TemporaryError) as exc:
            log.warning("cannot keep the Service %s/%s: %s", NAMESPACE, NAME, exc)
        if stop is None:
            await asyncio.sleep(RESYNC)
            continue
        try:
            await asyncio.wait_for(stop.wait(), RESYNC)
            return
        except TimeoutError:
            continue
