"""The simulator: N nodes that register, heartbeat through Leases and play their pods' lifecycle.

A pod bound to one of its nodes becomes Running (with an IP from the node's pod CIDR) at once; a pod
that runs to completion ends after ``run_seconds``; a pod being deleted is removed with grace 0, as
a kubelet does once its containers stopped. A paused node does none of this.
"""

from __future__ import annotations

import asyncio
import logging

from agents.machinery import tasks
from agents.machinery.client import ApiError, ApiUnavailableError, Client
from agents.machinery.informer import Informer, key_of
from agents.machinery.leader import LeaderElector
from agents.machinery.objects import Object
from agents.machinery.resources import NODES, PODS
from agents.machinery.workqueue import WorkQueue, run_workers
from agents.simnodes import model
from agents.simnodes.settings import SimNodesSettings

log = logging.getLogger(__name__)
NODE_LEASES = "kube-node-lease"


class Simulator:
    def __init__(self, client: Client, settings: SimNodesSettings) -> None:
        self.client = client
        self.settings = settings
        self.names = [f"{settings.prefix}-{i}" for i in range(1, settings.count + 1)]
        self.index = {name: i for i, name in enumerate(self.names, start=1)}
        self.nodes = Informer(client, NODES, label_selector=f"{model.SIMULATED}=true")
        self.pods = Informer(client, PODS)
        self.pods.add_index("node", lambda p: [(p.get("spec") or {}).get("nodeName") or ""])
        self.queue = WorkQueue("simnodes-pods")
        self.addresses: dict[str, dict[str, int]] = {name: {} for name in self.names}  # node -> pod uid -> slot
        self.pods.on(add=self._pod_changed, update=lambda _o, n: self._pod_changed(n), delete=self._pod_deleted)
        self.nodes.on(update=self._node_updated)

    # --- nodes ---------------------------------------------------------------------------------

    async def register(self) -> None:
        zones = self.settings.zones or ("zone-a",)
        for name, index in self.index.items():
            body = model.node_object(
                name,
                index=index,
                cpu=self.settings.cpu,
                memory=self.settings.memory,
                pods=self.settings.pods,
                zone=zones[(index - 1) % len(zones)],
            )
            try:
                await self.client.create(NODES, body)
            except ApiError as exc:
                if not exc.already_exists:
                    raise
                await self.client.patch(NODES, name, {"status": body["status"]}, kind="merge", subresource="status")
        log.info("registered %d simulated nodes (%s .. %s)", len(self.names), self.names[0], self.names[-1])

    def _node(self, name: str) -> Object | None:
        return self.nodes.get(name)

    def _node_updated(self, old: Object, new: Object) -> None:
        if model.paused(old) and not model.paused(new):
            tasks.spawn(self._report(new["metadata"]["name"]), name="node report")
        if (old.get("spec") or {}).get("podCIDR") != (new.get("spec") or {}).get("podCIDR"):
            for pod in self.pods.by_index("node", new["metadata"]["name"]):
                self.queue.add(key_of(pod))

    async def _renew(self, name: str) -> None:
        elector = LeaderElector(self.client, name=name, identity=name, namespace=NODE_LEASES, lease_duration=40)
        await elector.try_acquire_or_renew()

    async def _report(self, name: str) -> None:
        node = self._node(name)
        if node is None or model.paused(node):
            return
        try:
            await self.client.patch(NODES, name, model.heartbeat_patch(node), kind="strategic", subresource="status")
            await self._renew(name)
        except (ApiError, ApiUnavailableError) as exc:
            log.warning("node %s could not report: %s", name, exc)
        for pod in self.pods.by_index("node", name):
            self.queue.add(key_of(pod))

    async def heartbeats(self) -> None:
        loop = asyncio.get_running_loop()
        last_status = loop.time()
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            report = loop.time() - last_status >= self.settings.status_interval
            for name in self.names:
                node = self._node(name)
                if node is None or model.paused(node):
                    continue
                try:
                    await self._renew(name)
                    if report:
                        await self.client.patch(
                            NODES, name, model.heartbeat_patch(node), kind="strategic", subresource="status"
                        )
                except (ApiError, ApiUnavailableError) as exc:
                    log.warning("node %s heartbeat failed: %s", name, exc)
            if report:
                last_status = loop.time()

    # --- pods ----------------------------------------------------------------------------------

    def _pod_changed(self, pod: Object) -> None:
        if (pod.get("spec") or {}).get("nodeName") in self.index:
            self.queue.add(key_of(pod))

    def _pod_deleted(self, pod: Object) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node in self.addresses:
            self.addresses[node].pop(pod["metadata"].get("uid", ""), None)

    def _address(self, node: Object, pod: Object) -> str | None:
        cidr = (node.get("spec") or {}).get("podCIDR")
        if not cidr:
            return None
        slots = self.addresses[node["metadata"]["name"]]
        uid = pod["metadata"]["uid"]
        if uid not in slots:
            used = set(slots.values())
            slots[uid] = next(i for i in range(len(used) + 1) if i not in used)
        return model.pod_address(cidr, slots[uid])

    async def sync(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None:
            return
        node_name = (pod.get("spec") or {}).get("nodeName")
        node = self._node(node_name or "")
        if node is None or model.paused(node):
            return
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        phase = (pod.get("status") or {}).get("phase", "Pending")
        if pod["metadata"].get("deletionTimestamp"):
            if pod["metadata"].get("finalizers"):
                return  # the finalizers' owners act first; the delete comes back as an update
            await self._delete(namespace, name, pod["metadata"]["uid"])
            return
        if phase == "Pending":
            ip = self._address(node, pod)
            if ip is None:
                return  # no pod CIDR yet: the node update will bring the pod back
            host = next(
                (
                    a["address"]
                    for a in (node.get("status") or {}).get("addresses") or []
                    if a.get("type") == "InternalIP"
                ),
                "",
            )
            status = model.running_status(pod, ip=ip, host_ip=host)
            await self._status(pod, status)
            if model.runs_to_completion(pod):
                self.queue.add_after(key, model.run_seconds(pod, self.settings.run_seconds))
            return
        if phase == "Running" and model.runs_to_completion(pod):
            started = (pod.get("status") or {}).get("startTime")
            if started:
                await self._status(pod, model.finished_status(pod))

    async def _status(self, pod: Object, status: dict[str, object]) -> None:
        body = dict(pod, status=status)
        try:
            await self.client.update_status(PODS, body)
        except ApiError as exc:
            if exc.conflict:
                self.queue.add(key_of(pod))  # a newer version arrives through the informer
            elif not exc.not_found:
                raise

    async def _delete(self, namespace: str, name: str, uid: str) -> None:
        try:
            await self.client.delete(PODS, name, namespace, grace_period=0, uid=uid)
        except ApiError as exc:
            if not (exc.not_found or exc.conflict):
                raise

    async def run(self, ready: asyncio.Event | None = None) -> None:
        await self.register()
        for name in self.names:
            await self._renew(name)
        tasks = [asyncio.create_task(self.nodes.run()), asyncio.create_task(self.pods.run())]
        try:
            await asyncio.gather(self.nodes.synced.wait(), self.pods.synced.wait())
            for pod in self.pods.items():
                self._pod_changed(pod)
            if ready is not None:
                ready.set()
            await asyncio.gather(
                self.heartbeats(), run_workers(self.queue, self.sync, workers=self.settings.concurrency)
            )
        finally:
            for task in tasks:
                task.cancel()
