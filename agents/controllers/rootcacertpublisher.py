"""Root CA publisher: every namespace has the ConfigMap ``kube-root-ca.crt`` holding the cluster's CA
(``ca.crt``), which pods' projected ServiceAccount volumes read to trust the API server."""

from __future__ import annotations

from dataclasses import dataclass

from agents.controllers.base import Context, Controller
from agents.machinery.client import ApiError
from agents.machinery.objects import Object
from agents.machinery.resources import CONFIGMAPS, NAMESPACES

NAME = "kube-root-ca.crt"


@dataclass(frozen=True)
class Plan:
    create: Object | None = None
    update: Object | None = None


def plan(namespace: Object, current: Object | None, ca: str) -> Plan:
    """What the namespace's kube-root-ca.crt needs: made, brought back to the CA, or nothing."""
    if namespace["metadata"].get("deletionTimestamp"):
        return Plan()
    name = namespace["metadata"]["name"]
    if current is None:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": name}}
        return Plan(create={**body, "data": {"ca.crt": ca}})
    if (current.get("data") or {}) != {"ca.crt": ca}:
        return Plan(update={**current, "data": {"ca.crt": ca}})
    return Plan()


class RootCaCertPublisher(Controller):
    name = "root-ca-cert-publisher"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        path = ctx.settings.root_ca_file
        self.ca = path.read_text() if path is not None else ""
        self.namespaces = ctx.informer(NAMESPACES)
        self.configmaps = ctx.informer(CONFIGMAPS)
        self.namespaces.on_any(lambda ns: self.queue.add(ns["metadata"]["name"]))
        self.configmaps.on_any(self._configmap_changed)

    def _configmap_changed(self, configmap: Object) -> None:
        if configmap["metadata"]["name"] == NAME:
            self.queue.add(configmap["metadata"]["namespace"])

    async def sync(self, key: str) -> None:
        namespace = self.namespaces.get(key)
        if namespace is None or not self.ca:
            return
        decided = plan(namespace, self.configmaps.get(f"{key}/{NAME}"), self.ca)
        try:
            if decided.create is not None:
                await self.client.create(CONFIGMAPS, decided.create)
            elif decided.update is not None:
                await self.client.update(CONFIGMAPS, decided.update)
        except ApiError as exc:
            if not (exc.already_exists or exc.code in (404, 409)):
                raise
