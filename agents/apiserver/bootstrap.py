"""Objects every cluster has from its first second: system namespaces and the ``kubernetes`` Service."""

from __future__ import annotations

import logging

from agents.apiserver.allocators import ServiceAllocator
from agents.apiserver.registry import ResourceStore
from agents.apiserver.status import StatusError
from agents.machinery.objects import Object

log = logging.getLogger(__name__)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


async def _ensure(store: ResourceStore, namespace: str, obj: Object) -> None:
    try:
        await store.create(namespace, obj)
    except StatusError as exc:
        if exc.code != 409:
            raise


async def ensure_namespaces(namespaces: ResourceStore) -> None:
    for name in SYSTEM_NAMESPACES:
        await _ensure(namespaces, "", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


async def ensure_kubernetes_service(
    *,
    services: ResourceStore,
    endpoints: ResourceStore,
    slices: ResourceStore,
    allocator: ServiceAllocator,
    address: str,
    port: int,
) -> None:
    """The Service clients in pods reach the API server by, with this server as its endpoint."""
    await _ensure(
        services,
        "default",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "clusterIP": allocator.first_ip,
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            },
        },
    )
    subsets = [{"addresses": [{"ip": address}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]

    def set_subsets(current: Object) -> Object:
        current["subsets"] = subsets
        return current

    body: Object = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
        },
        "subsets": subsets,
    }
    await endpoints.update("default", "kubernetes", set_subsets, create_body=body)
    slice_endpoints = [{"addresses": [address], "conditions": {"ready": True, "serving": True, "terminating": False}}]
    slice_ports = [{"name": "https", "port": port, "protocol": "TCP"}]

    def set_slice(current: Object) -> Object:
        current["endpoints"] = slice_endpoints
        current["ports"] = slice_ports
        return current

    try:
        await slices.update("default", "kubernetes", set_slice)
    except StatusError as exc:
        if exc.code != 404:
            raise
        await _ensure(
            slices,
            "default",
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "addressType": "IPv4",
                "metadata": {
                    "name": "kubernetes",
                    "labels": {
                        "kubernetes.io/service-name": "kubernetes",
                        "endpointslice.kubernetes.io/managed-by": "kubelab-apiserver",
                    },
                },
                "endpoints": slice_endpoints,
                "ports": slice_ports,
            },
        )
    log.info("kubernetes Service at %s:443 -> %s:%d", allocator.first_ip, address, port)
