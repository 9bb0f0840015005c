"""The kubelet: registers its node, keeps its Lease, and runs the pods bound to it.

This module only wires the kubelet's parts, which follow kube's own seams:

- :mod:`~agents.kubelet.nodestatus`: the Node's registration and status, the Lease, the pod network
  once the node has its podCIDR;
- :mod:`~agents.kubelet.podworkers`: each pod driven towards its spec, one sync at a time per pod;
- :mod:`~agents.kubelet.pleg`: containerd's exit events and relist turned into events for the workers;
- :mod:`~agents.kubelet.statusmanager`: pod status to the API server, only when it changes;
- :mod:`~agents.kubelet.runtime`: everything asked of containerd and the node;
- :mod:`~agents.kubelet.podcache`: what the kubelet knows of each pod's runs, which they share;
- :mod:`~agents.kubelet.volumemanager`: persistent volumes' disks staged, published and cleaned up;
- :mod:`~agents.kubelet.server`: the kubelet's HTTPS port (logs and exec for the API server, the
  usage :mod:`~agents.kubelet.resourcestats` reads every few seconds).

Start order: containerd's version, the port, the Node; then the informers; once they have synced,
the PLEG adopts what an earlier kubelet left, every pod is queued, and the loops run.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from agents.kubelet import podstate
from agents.kubelet.cni import BridgeNetwork
from agents.kubelet.containerd import Containerd
from agents.kubelet.dns import DnsSettings
from agents.kubelet.nodestatus import NodeStatus
from agents.kubelet.pleg import PLEG, PodLifecycleEvent
from agents.kubelet.podcache import PodCache, containerd_id
from agents.kubelet.podworkers import PodWorkers
from agents.kubelet.portforward import PodNetwork
from agents.kubelet.resourcestats import ContainerRun, PodRuns, Sampler
from agents.kubelet.runtime import Runtime
from agents.kubelet.server import KubeletServer
from agents.kubelet.serverauth import ServerAuth
from agents.kubelet.settings import KubeletSettings
from agents.kubelet.statusmanager import StatusManager
from agents.kubelet.volumemanager import VolumeManager
from agents.machinery.client import Client
from agents.machinery.events import EventRecorder
from agents.machinery.informer import Informer
from agents.machinery.objects import parse_time
from agents.machinery.resources import PODS, SERVICES

log = logging.getLogger(__name__)


class Kubelet:
    def __init__(
        self, client: Client, settings: KubeletSettings, *, containerd: Containerd, recorder: EventRecorder
    ) -> None:
        self.client = client
        self.settings = settings
        self.recorder = recorder
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={settings.node_name}")
        self.services = Informer(client, SERVICES)
        self.cache = PodCache()
        self.runtime = Runtime(
            containerd,
            root=settings.root_dir,
            network=settings.network,
            node_name=settings.node_name,
            dns=DnsSettings(settings.cluster_dns, settings.cluster_domain, settings.resolv_conf),
        )
        self.status = StatusManager(client, host_ip=settings.node_ip)
        self.node_status = NodeStatus(
            client, settings, runtime_version=lambda: self.runtime.version, on_pod_network=self._pod_network
        )
        self.volumes = VolumeManager(
            client,
            node_name=settings.node_name,
            root=settings.root_dir,
            by_id_dir=settings.disk_by_id_dir,
            report=self.node_status.report_volumes_in_use,
            recorder=recorder,
        )
        self.workers = PodWorkers(
            client,
            pods=self.pods,
            cache=self.cache,
            runtime=self.runtime,
            status=self.status,
            recorder=recorder,
            node_ip=settings.node_ip,
            name=settings.node_name,
            services=self.services,
            volume_manager=self.volumes,
        )
        self.pleg = PLEG(self.runtime, self.cache, on_event=self._lifecycle_event)
        self.sampler = Sampler(node_name=settings.node_name, pods=self.pod_runs)

    def _lifecycle_event(self, event: PodLifecycleEvent) -> None:
        self.workers.enqueue_uid(event.pod_uid)

    def _pod_network(self, network: BridgeNetwork) -> None:
        self.runtime.use_network(network)
        for pod in self.pods.items():  # the pods that waited for a sandbox
            self.workers.enqueue(pod)

    def live_pods(self) -> set[str]:
        """For the volume manager: the UIDs of this node's pods and of those whose containers still
        run here (their disks stay mounted)."""
        return {str(p["metadata"]["uid"]) for p in self.pods.items()} | {r.uid for r in self.cache.records()}

    def runs_of(self, namespace: str, name: str, container: str) -> tuple[str, list[podstate.Attempt]] | None:
        """For the server: the pod's UID and the container's runs (None: no such pod on this node)."""
        pod = self.pods.get(f"{namespace}/{name}")
        if pod is None:
            return None
        record = self.cache.get(pod["metadata"]["uid"])
        return pod["metadata"]["uid"], list((record.attempts.get(container) if record else None) or [])

    def container_of(self, namespace: str, name: str, container: str) -> dict[str, Any] | None:
        """For the server's attach: the container's spec in the pod (None: no such pod or container)."""
        spec = (self.pods.get(f"{namespace}/{name}") or {}).get("spec") or {}
        kinds = ("containers", "initContainers", "ephemeralContainers")
        containers = [c for kind in kinds for c in spec.get(kind) or []]
        return next((dict(c) for c in containers if c.get("name") == container), None)

    def network_of(self, namespace: str, name: str) -> PodNetwork | None:
        """For the server's port-forward: the pod's network namespace (None: no such pod here, or no
        sandbox yet)."""
        pod = self.pods.get(f"{namespace}/{name}")
        if pod is None:
            return None
        if (pod.get("spec") or {}).get("hostNetwork"):
            return PodNetwork(sandbox=name, netns=None)
        path = self.runtime.netns_path(pod["metadata"]["uid"])
        if path is None or not path.exists():
            return None
        return PodNetwork(sandbox=path.name, netns=path)

    def pod_runs(self) -> list[PodRuns]:
        """For the usage sampler: this node's pods and their running containers' cgroups."""
        out = []
        for record in self.cache.records():
            pod = self.pods.get(record.key)
            if pod is None or pod["metadata"]["uid"] != record.uid:
                continue
            start = (pod.get("status") or {}).get("startTime")
            started = parse_time(start).timestamp() if isinstance(start, str) else record.started_at
            runs = tuple(
                ContainerRun(name, self.runtime.containerd.cgroup(containerd_id(run)), run.started_at)
                for name, run in record.running().items()
            )
            out.append(PodRuns(pod["metadata"]["namespace"], pod["metadata"]["name"], record.uid, started, runs))
        return out

    async def serve(self) -> KubeletServer | None:
        server = self.settings.server
        if not server.port or server.cert_file is None or server.key_file is None:
            log.info("no serving certificate: the kubelet's port is not served (no kubectl logs)")
            return None
        tokens = set(server.token_file.read_text().split()) if server.token_file else set()
        running = KubeletServer(
            runs_of=self.runs_of,
            log_file=self.runtime.log_file,
            auth=ServerAuth(tokens=tokens, node=self.settings.node_name, client=self.client),
            exec_process=self.runtime.exec_process,
            snapshot=self.sampler.snapshot,
            network_of=self.network_of,
            container_of=self.container_of,
            attach_runtime=self.runtime.containerd,
        )
        await running.start(address=server.address, port=server.port, cert=server.cert_file, key=server.key_file)
        return running

    async def run(self, ready: asyncio.Event | None = None) -> None:
        await self.runtime.read_version()
        server = await self.serve()
        await self.node_status.register()
        informers = [
            asyncio.create_task(self.node_status.informer.run()),
            asyncio.create_task(self.pods.run()),
            asyncio.create_task(self.services.run()),
            asyncio.create_task(self.recorder.run()),
        ]
        try:
            await asyncio.gather(
                self.node_status.informer.synced.wait(), self.pods.synced.wait(), self.services.synced.wait()
            )
            await self.pleg.adopt()
            self.workers.enqueue_all()
            if ready is not None:
                ready.set()
            await asyncio.gather(
                self.node_status.heartbeats(),
                self.pleg.follow_exits(),
                self.pleg.run_relist(),
                self.workers.run(self.settings.pod_workers),
                self.workers.refresh_tokens(),
                self.sampler.run(),
                self.volumes.run(self.live_pods, self.pods.items),
            )
        finally:
            for task in informers:
                task.cancel()
            if server is not None:
                await server.stop()
