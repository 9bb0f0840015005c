"""The controller: watches feed the planner, the executor applies its plan, events and status report
it (ingress-nginx's sync loop, in one asyncio process beside the nginx master it runs).

Informers keep Ingresses, IngressClasses, Services, EndpointSlices and Secrets; every change of any of
them only enqueues the one key there is (the whole configuration), and the sync re-reads the caches,
plans and applies (level-triggered: a missed event costs nothing, a burst of them is one sync, at most
one every ``--sync-interval``). After a sync that changed nginx's configuration:

- each newly served Ingress (or new generation of one) gets a ``Normal Sync`` event, "Scheduled for
  sync", as ingress-nginx words it; the planner's warnings (a missing Service or TLS Secret) are
  recorded once on their Ingress while they last;
- the controller's own Pod gets ``Normal RELOAD``; a configuration nginx refused gets ``Warning
  RELOAD`` there instead, with nginx's reason (also on the Ingresses it would have added), and the
  previous configuration keeps serving;
- the leader (a Lease, ``--election-id``, in the pod's namespace: several replicas all serve, one
  writes status) brings the served Ingresses' ``status.loadBalancer`` to the address of
  :mod:`agents.ingress.status`, then again every ``--status-update-interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from agents.ingress import planner, status
from agents.ingress.nginx import Applied, Nginx
from agents.ingress.settings import IngressSettings
from agents.machinery import events
from agents.machinery.client import ApiError, ApiUnavailableError, Client
from agents.machinery.component import identity
from agents.machinery.events import EventRecorder
from agents.machinery.informer import Informer
from agents.machinery.leader import LeaderElector, LostLeadershipError
from agents.machinery.objects import Object
from agents.machinery.resources import ENDPOINT_SLICES, NODES, PODS, SECRETS, SERVICES, ResourceRef
from agents.machinery.workqueue import WorkQueue, run_workers

log = logging.getLogger(__name__)

INGRESSES = ResourceRef("networking.k8s.io", "v1", "ingresses", "Ingress")
INGRESS_CLASSES = ResourceRef("networking.k8s.io", "v1", "ingressclasses", "IngressClass", namespaced=False)
COMPONENT = "nginx-ingress-controller"  # the events' source, as ingress-nginx names itself
KEY = "nginx.conf"
TEMPLATE_HASH = "pod-template-hash"


def options_of(settings: IngressSettings) -> planner.Options:
    return planner.Options(
        controller=settings.controller_class,
        ingress_class=settings.ingress_class,
        config_dir=str(settings.config_dir),
        http_port=settings.http_port,
        https_port=settings.https_port,
        user=settings.nginx_user,
        worker_processes=settings.worker_processes,
    )


class IngressController:
    def __init__(self, client: Client, settings: IngressSettings) -> None:
        self.client = client
        self.settings = settings
        self.options = options_of(settings)
        self.ingresses = Informer(client, INGRESSES)
        self.classes = Informer(client, INGRESS_CLASSES)
        self.services = Informer(client, SERVICES)
        self.slices = Informer(client, ENDPOINT_SLICES)
        self.secrets = Informer(client, SECRETS)
        self.informers = (self.ingresses, self.classes, self.services, self.slices, self.secrets)
        self.queue = WorkQueue("ingress-nginx")
        self.nginx = Nginx(binary=settings.nginx_binary, config_dir=settings.config_dir)
        self.recorder = EventRecorder(client, component=COMPONENT, host=settings.pod_name)
        self.pod: Object | None = None
        self.served: tuple[str, ...] = ()
        self._announced: dict[str, tuple[str, int]] = {}  # ingress -> (uid, generation) of its Sync event
        self._noticed: set[planner.Notice] = set()
        self._refused = ""  # nginx's reason for the last configuration it refused, while it lasts
        self._status_due = asyncio.Event()
        self._last_sync = 0.0
        for informer in self.informers:
            informer.on_any(lambda _obj: self.queue.add(KEY))

    def observed(self) -> planner.Observed:
        return planner.Observed(
            ingresses=self.ingresses.items(),
            classes=self.classes.items(),
            services=self.services.items(),
            slices=self.slices.items(),
            secrets=self.secrets.items(),
        )

    # --- the sync ----------------------------------------------------------------------------------

    async def sync(self, _key: str) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last_sync + self.settings.sync_interval - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)  # coalesce a burst of changes into one sync
        self._last_sync = loop.time()
        plan = planner.plan(self.observed(), self.options)
        applied = await self.nginx.apply(plan)
        self.report(plan, applied)
        self._status_due.set()

    def report(self, plan: planner.Plan, applied: Applied) -> None:
        pending = [key for key in plan.ingresses if self._generation(key) != self._announced.get(key)]
        if applied.refused:
            if applied.refused == self._refused:
                return  # told already
            self._refused = applied.refused
            message = f"Error reloading NGINX: {applied.refused}"
            if self.pod is not None:
                self.recorder.record(self.pod, events.WARNING, "RELOAD", message)
            for key in pending:
                ingress = self.ingresses.get(key)
                if ingress is not None:
                    self.recorder.record(ingress, events.WARNING, "RELOAD", message)
            return
        self._refused = ""
        if applied.changed and self.pod is not None:
            self.recorder.record(
                self.pod, events.NORMAL, "RELOAD", "NGINX reload triggered due to a change in configuration"
            )
        self.served = plan.ingresses
        for key in pending:
            ingress = self.ingresses.get(key)
            if ingress is not None:
                self.recorder.record(ingress, events.NORMAL, "Sync", "Scheduled for sync")
                self._announced[key] = self._generation(key)
        for key in set(self._announced) - set(plan.ingresses):
            del self._announced[key]
        notices = set(plan.notices)
        for notice in plan.notices:
            if notice in self._noticed:
                continue
            ingress = self.ingresses.get(notice.ingress)
            if ingress is not None:
                self.recorder.record(ingress, notice.type, notice.reason, notice.message)
                log.warning("ingress %s: %s", notice.ingress, notice.message)
        self._noticed = notices

    def _generation(self, key: str) -> tuple[str, int]:
        meta = (self.ingresses.get(key) or {}).get("metadata") or {}
        return (str(meta.get("uid") or ""), int(meta.get("generation") or 0))

    # --- status (the leader only) ------------------------------------------------------------------

    async def write_status(self) -> None:
        publish = self.settings.publish_service
        service = self.services.get(publish) if publish else None
        pods: list[Object] = []
        nodes: dict[str, Object] = {}
        if not status.service_addresses(service):
            pods = await self._controller_pods()
            for name in {str((p.get("spec") or {}).get("nodeName") or "") for p in pods} - {""}:
                try:
                    nodes[name] = await self.client.get(NODES, name)
                except ApiError as exc:
                    if not exc.not_found:
                        raise
        wanted = status.addresses(service=service, pods=pods, nodes=nodes)
        served = [obj for obj in (self.ingresses.get(k) for k in self.served) if obj is not None]
        for ingress in status.updates(served, wanted):
            meta = ingress.get("metadata") or {}
            try:
                await self.client.update_status(INGRESSES, ingress)
                log.info("ingress %s/%s: status address %s", meta.get("namespace"), meta.get("name"), wanted)
            except ApiError as exc:
                if not (exc.conflict or exc.not_found):
                    raise
                self._status_due.set()  # the cache was behind: again after its watch event

    async def _controller_pods(self) -> list[Object]:
        """The pods of this controller: those with this pod's labels (but its template hash)."""
        if self.pod is None:
            return []
        labels = {k: v for k, v in ((self.pod.get("metadata") or {}).get("labels") or {}).items() if k != TEMPLATE_HASH}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        namespace = str((self.pod.get("metadata") or {}).get("namespace") or "")
        if not selector:
            return [await self.client.get(PODS, str(self.pod["metadata"]["name"]), namespace)]
        items, _ = await self.client.list(PODS, namespace, label_selector=selector)
        return items

    async def _status_loop(self) -> None:
        while True:
            self._status_due.clear()
            try:
                await self.write_status()
            except (ApiError, ApiUnavailableError) as exc:
                log.warning("updating ingress status: %s", exc)
                self._status_due.set()
                await asyncio.sleep(2.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._status_due.wait(), self.settings.status_update_interval)

    async def lead_status(self) -> None:
        """Stand for the status writer's Lease for good; lead while holding it."""
        elector = LeaderElector(
            self.client,
            name=self.settings.election_id,
            identity=self.settings.pod_name or identity(),
            namespace=self.settings.pod_namespace or "default",
        )
        while True:
            try:
                await elector.run(self._status_loop)
            except LostLeadershipError as exc:
                log.warning("status writer: %s; standing again", exc)

    # --- the process -------------------------------------------------------------------------------

    async def _find_pod(self) -> None:
        if not (self.settings.pod_name and self.settings.pod_namespace):
            log.info("no --pod-name/--pod-namespace: no RELOAD events, no node address fallback")
            return
        try:
            self.pod = await self.client.get(PODS, self.settings.pod_name, self.settings.pod_namespace)
        except (ApiError, ApiUnavailableError) as exc:
            log.warning("reading this pod %s/%s: %s", self.settings.pod_namespace, self.settings.pod_name, exc)

    async def run(self, ready: asyncio.Event) -> None:
        tasks: list[asyncio.Task[Any]] = [asyncio.create_task(i.run()) for i in self.informers]
        tasks.append(asyncio.create_task(self.recorder.run()))
        try:
            await self._find_pod()
            await asyncio.gather(*(i.synced.wait() for i in self.informers))
            plan = planner.plan(self.observed(), self.options)
            first = await self.nginx.apply(plan)
            if first.refused:  # start serving nothing rather than not at all
                await self.nginx.apply(planner.plan(planner.Observed(), self.options))
            self.report(plan, first)
            await self.nginx.start()
            log.info("nginx serving %d ingresses (%d servers)", len(plan.ingresses), len(plan.servers))
            ready.set()
            tasks.append(asyncio.create_task(run_workers(self.queue, self.sync)))
            if self.settings.update_status:
                tasks.append(asyncio.create_task(self.lead_status()))
            tasks.append(asyncio.create_task(self.nginx.wait()))
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.nginx.stop()
