"""The service controller: a cloud load balancer for every ``type: LoadBalancer`` Service.

For each such Service ``plan`` (pure) decides what the cloud must have: a load balancer named as kube
names it (``a`` and the Service's UID without dashes, 32 characters), forwarding each of the Service's
TCP ports to its NodePort on every node that may take the traffic (Ready, not
``node.kubernetes.io/exclude-from-external-load-balancers``, with an InternalIP), and, for
``externalTrafficPolicy: Local``, checking each node at the Service's ``healthCheckNodePort``. The
Service first gets the ``service.kubernetes.io/load-balancer-cleanup`` finalizer, so that deleting it
(or changing its type) takes the load balancer away before the Service goes; then the cloud's address
goes into ``status.loadBalancer.ingress``. A pool with no address left, or anything else the cloud
refuses, is a Warning event (``SyncLoadBalancerFailed``, in kube's words) and another try later; the
Service stays pending meanwhile (``kubectl get svc``: ``EXTERNAL-IP <pending>``). Events follow kube's
service controller: ``EnsuringLoadBalancer``, ``EnsuredLoadBalancer``, ``UpdatedLoadBalancer``,
``DeletingLoadBalancer``, ``DeletedLoadBalancer``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from agents.controllers.base import Context, Controller, Event
from agents.controllers.cloud.provider import CloudError, CloudProvider
from agents.machinery.client import ApiError
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.informer import key_of
from agents.machinery.objects import Object
from agents.machinery.resources import NODES, SERVICES

log = logging.getLogger(__name__)

CLEANUP_FINALIZER = "service.kubernetes.io/load-balancer-cleanup"
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
RETRY_SECONDS = 15.0


def load_balancer_name(service: Object) -> str:
    """kube's cloud provider name for a Service's load balancer: ``a`` + its UID without dashes, 32 long."""
    return ("a" + str(service["metadata"].get("uid", "")).replace("-", ""))[:32]


def wants_load_balancer(service: Object) -> bool:
    meta = service.get("metadata") or {}
    return (service.get("spec") or {}).get("type") == "LoadBalancer" and not meta.get("deletionTimestamp")


def eligible_nodes(nodes: list[Object]) -> list[dict[str, str]]:
    """The nodes a load balancer sends to: Ready, not excluded, with an InternalIP; by name."""
    out = []
    for node in nodes:
        meta, status = node.get("metadata") or {}, node.get("status") or {}
        if EXCLUDE_LABEL in (meta.get("labels") or {}):
            continue
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        address = next((a["address"] for a in status.get("addresses") or [] if a.get("type") == "InternalIP"), None)
        if ready and address:
            out.append({"name": str(meta.get("name")), "address": str(address)})
    return sorted(out, key=lambda n: n["name"])


def load_balancer_body(service: Object, nodes: list[dict[str, str]]) -> dict[str, Any]:
    spec = service.get("spec") or {}
    ports = [
        {"name": p.get("name", ""), "protocol": p.get("protocol", "TCP"), "port": p["port"], "nodePort": p["nodePort"]}
        for p in spec.get("ports") or []
        if p.get("nodePort")
    ]
    body: dict[str, Any] = {"ports": ports, "nodes": nodes}
    if spec.get("externalTrafficPolicy") == "Local" and spec.get("healthCheckNodePort"):
        body["healthCheckNodePort"] = spec["healthCheckNodePort"]
    return body


def ingress_of(address: str) -> list[dict[str, str]]:
    return [{"ip": address, "ipMode": "VIP"}]


@dataclass(frozen=True)
class Plan:
    add_finalizer: bool = False
    ensure: dict[str, Any] | None = None  # the load balancer's body to PUT
    delete: bool = False  # the load balancer goes, then the status and the finalizer
    events: tuple[Event, ...] = field(default_factory=tuple)


def plan(service: Object, nodes: list[Object], *, known_nodes: list[dict[str, str]] | None) -> Plan:
    """What the cloud and the Service need. ``known_nodes``: the nodes the load balancer was last given
    (None: not known here), to word an update as kube does."""
    finalizers = (service.get("metadata") or {}).get("finalizers") or []
    if not wants_load_balancer(service):
        if CLEANUP_FINALIZER in finalizers or (service.get("status") or {}).get("loadBalancer", {}).get("ingress"):
            return Plan(delete=True, events=(Event(NORMAL, "DeletingLoadBalancer", "Deleting load balancer"),))
        return Plan()
    if CLEANUP_FINALIZER not in finalizers:
        return Plan(add_finalizer=True)
    chosen = eligible_nodes(nodes)
    body = load_balancer_body(service, chosen)
    if known_nodes is not None and known_nodes != chosen:
        return Plan(ensure=body, events=(Event(NORMAL, "UpdatedLoadBalancer", "Updated load balancer with new hosts"),))
    if known_nodes is None and not (service.get("status") or {}).get("loadBalancer", {}).get("ingress"):
        return Plan(ensure=body, events=(Event(NORMAL, "EnsuringLoadBalancer", "Ensuring load balancer"),))
    return Plan(ensure=body)


class ServiceController(Controller):
    name = "service"
    source = "service-controller"
    workers = 2

    def __init__(self, ctx: Context, cloud: CloudProvider) -> None:
        super().__init__(ctx)
        self.cloud = cloud
        self.services = ctx.informer(SERVICES)
        self.nodes = ctx.informer(NODES)
        self.services.on(add=self._changed, update=lambda _o, n: self._changed(n))
        self.nodes.on(add=self._nodes_changed, update=self._node_updated, delete=self._nodes_changed)
        self._given: dict[str, list[dict[str, str]]] = {}  # service key -> the nodes its load balancer has

    def _changed(self, service: Object) -> None:
        finalizers = (service.get("metadata") or {}).get("finalizers") or []
        if (service.get("spec") or {}).get("type") == "LoadBalancer" or CLEANUP_FINALIZER in finalizers:
            self.enqueue(service)

    def _node_updated(self, old: Object, new: Object) -> None:
        if eligible_nodes([old]) != eligible_nodes([new]):
            self._nodes_changed(new)

    def _nodes_changed(self, _node: Object) -> None:
        for service in self.services.items():
            self._changed(service)

    async def sync(self, key: str) -> None:
        service = self.services.get(key)
        if service is None:
            self._given.pop(key, None)
            return
        decided = plan(service, self.nodes.items(), known_nodes=self._given.get(key))
        self.record(service, *decided.events)
        meta = service["metadata"]
        name = load_balancer_name(service)
        try:
            if decided.add_finalizer:
                await self._set_finalizers(service, [*(meta.get("finalizers") or []), CLEANUP_FINALIZER])
                return  # the informer brings the Service back with it
            if decided.delete:
                await self.cloud.delete_load_balancer(name)
                self._given.pop(key, None)
                await self._write_ingress(service, [])
                await self._set_finalizers(service, [f for f in meta.get("finalizers") or [] if f != CLEANUP_FINALIZER])
                self.record(service, Event(NORMAL, "DeletedLoadBalancer", "Deleted load balancer"))
                log.info("service %s: load balancer %s deleted", key, name)
                return
            if decided.ensure is not None:
                made = await self.cloud.ensure_load_balancer(name, decided.ensure)
                self._given[key] = list(decided.ensure["nodes"])
                await self._write_ingress(service, ingress_of(str(made["address"])))
                if any(e.reason == "EnsuringLoadBalancer" for e in decided.events):
                    self.record(service, Event(NORMAL, "EnsuredLoadBalancer", "Ensured load balancer"))
                    log.info("service %s: load balancer %s at %s", key, name, made["address"])
        except CloudError as exc:
            self._given.pop(key, None)
            what = "delete" if decided.delete else "ensure"
            message = f"Error syncing load balancer: failed to {what} load balancer: {exc}"
            self.record(service, Event(WARNING, "SyncLoadBalancerFailed", message))
            log.warning("service %s: %s", key, message)
            self.queue.add_after(key, RETRY_SECONDS)
        except ApiError as exc:
            if exc.not_found:
                return
            if exc.code == 409:
                self.queue.add_after(key, 0.5)
                return
            raise

    async def _set_finalizers(self, service: Object, finalizers: list[str]) -> None:
        meta = service["metadata"]
        body = {"metadata": {"finalizers": finalizers or None, "resourceVersion": meta["resourceVersion"]}}
        await self.client.patch(SERVICES, meta["name"], body, meta["namespace"])

    async def _write_ingress(self, service: Object, ingress: list[dict[str, str]]) -> bool:
        """Put ``ingress`` into the Service's status; whether it changed."""
        current = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if current == ingress:
            return False
        meta = service["metadata"]
        await self.client.patch(
            SERVICES,
            meta["name"],
            {"status": {"loadBalancer": {"ingress": ingress or None}}},
            meta["namespace"],
            subresource="status",
        )
        log.debug("service %s: status.loadBalancer.ingress %s", key_of(service), ingress)
        return True
