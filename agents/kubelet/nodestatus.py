"""This node in the API: registration, status updates, the Lease heartbeat, and the pod network once
the node has its podCIDR.

kube's kubelet splits this over its node status code (register, then update the status) and the
node lease controller (renew the Lease in ``kube-node-lease``); kubelab keeps them in one loop: the
Lease every ``lease-interval`` seconds, the status every ``status-interval`` seconds. What the Node
says is :mod:`agents.kubelet.node` (pure); this module only sends it.

The podCIDR arrives in the node's spec (the controller-manager's node IPAM); the first one seen
makes the pod network (:func:`pod_network`), which the kubelet hands to its runtime, and, with
``cni-conf-dir`` set, is written as the node's CNI network list for people and tools on the node.

Persistent volumes: ``status.volumesInUse`` is written as soon as the volume manager's view changes
(:meth:`NodeStatus.report_volumes_in_use`), and the node's CSINode (the disk driver, its topology key
and attach limit) is created after registration.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from ipaddress import IPv4Network, ip_network
from pathlib import Path
from typing import Any

from agents.kubelet import csi
from agents.kubelet import node as nodes
from agents.kubelet.cni import CONFLIST_NAME, BridgeNetwork, bridge_conflist, write_conflist
from agents.kubelet.settings import KubeletSettings
from agents.machinery.client import ApiError, ApiUnavailableError, Client
from agents.machinery.informer import Informer
from agents.machinery.leader import LeaderElector
from agents.machinery.objects import Object
from agents.machinery.resources import CSI_NODES, NODES

log = logging.getLogger(__name__)

NODE_LEASES = "kube-node-lease"
LEASE_DURATION = 40
# Seconds between registration attempts, at most. kube's kubelet waits up to 7 s; a refused connection
# costs next to nothing, and on a lab's first boot every second of that wait comes after the API server
# serves.
REGISTER_DELAY_MAX = 2.0


def pod_network(node: Object, *, root: Path, bridge: str) -> BridgeNetwork | None:
    """The pods' bridge network from the node's podCIDR (None: it has none yet)."""
    cidr = (node.get("spec") or {}).get("podCIDR")
    if not cidr:
        return None
    subnet = ip_network(cidr)
    assert isinstance(subnet, IPv4Network)
    return BridgeNetwork(subnet, root / "cni" / "ipam", bridge=bridge)


class NodeStatus:
    """Registers the node, keeps its Lease and status, and learns its pod network."""

    def __init__(
        self,
        client: Client,
        settings: KubeletSettings,
        *,
        runtime_version: Callable[[], str],
        on_pod_network: Callable[[BridgeNetwork], None],
    ) -> None:
        self.client = client
        self.settings = settings
        self.name = settings.node_name
        self.runtime_version = runtime_version
        self.on_pod_network = on_pod_network
        self.network: BridgeNetwork | None = None
        self.volumes_in_use: list[str] | None = None  # as last written to the status
        self.volumes_lock = asyncio.Lock()
        self.csinode_done = False
        self.informer = Informer(client, NODES, field_selector=f"metadata.name={self.name}")
        self.informer.on(add=self.node_changed, update=lambda _o, n: self.node_changed(n))

    def node_object(self) -> dict[str, Any]:
        return nodes.node_object(
            self.name,
            ip=self.settings.node_ip,
            facts=nodes.machine_facts(self.settings.root_dir),
            max_pods=self.settings.max_pods,
            runtime_version=self.runtime_version(),
            port=self.settings.server.port,
            labels=nodes.parse_labels(self.settings.node_labels),
            taints=nodes.parse_taints(self.settings.register_with_taints),
            external_cloud=self.external_cloud,
        )

    @property
    def external_cloud(self) -> bool:
        return self.settings.cloud_provider == "external"

    async def register(self) -> None:
        """Create the Node, trying again while the API server does not answer (a node's kubelet may
        start before the master's API server serves, as on a lab's first boot): a delay of 0.5 s that
        doubles up to ``REGISTER_DELAY_MAX`` between attempts."""
        delay = 0.5
        while True:
            try:
                await self._register()
                await self.ensure_csinode()
                return
            except ApiUnavailableError as exc:
                log.info("unable to register node %s with the API server: %s; retrying in %.1fs", self.name, exc, delay)
            except ApiError as exc:
                if exc.code < 500:
                    raise
                log.warning(
                    "unable to register node %s with the API server: %s; retrying in %.1fs", self.name, exc, delay
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, REGISTER_DELAY_MAX)

    async def _register(self) -> None:
        """Create the Node; one registered before only gets its status refreshed (labels and taints
        count at creation alone)."""
        body = self.node_object()
        try:
            await self.client.create(NODES, body)
            log.info("registered node %s", self.name)
        except ApiError as exc:
            if not exc.already_exists:
                raise
            current = await self.client.get(NODES, self.name)
            await self.client.patch(
                NODES,
                self.name,
                nodes.heartbeat(current, body, external_cloud=self.external_cloud),
                kind="strategic",
                subresource="status",
            )
            log.info("node %s was registered before; status refreshed", self.name)

    async def heartbeats(self) -> None:
        """Renew the Lease every ``lease-interval``, patch the status every ``status-interval``, until cancelled."""
        elector = LeaderElector(
            self.client, name=self.name, identity=self.name, namespace=NODE_LEASES, lease_duration=LEASE_DURATION
        )
        last_status = time.monotonic()
        while True:
            try:
                await elector.try_acquire_or_renew()
                if time.monotonic() - last_status >= self.settings.status_interval:
                    current = self.informer.get(self.name) or await self.client.get(NODES, self.name)
                    patch = nodes.heartbeat(current, self.node_object(), external_cloud=self.external_cloud)
                    await self.client.patch(NODES, self.name, patch, kind="strategic", subresource="status")
                    last_status = time.monotonic()
                    if not self.csinode_done:
                        await self.ensure_csinode()
            except (ApiError, ApiUnavailableError) as exc:
                log.warning("node %s heartbeat failed: %s", self.name, exc)
            await asyncio.sleep(self.settings.lease_interval)

    async def report_volumes_in_use(self, names: list[str]) -> None:
        """Write ``status.volumesInUse`` when it changed (kube's unique volume names); the volume
        manager awaits this before it mounts a disk, so the attach/detach controller knows it is used."""
        async with self.volumes_lock:
            if names == self.volumes_in_use:
                return
            patch = {"status": {"volumesInUse": list(names)}}
            await self.client.patch(NODES, self.name, patch, kind="merge", subresource="status")
            self.volumes_in_use = list(names)

    async def ensure_csinode(self) -> None:
        """Create or correct this node's CSINode (the disk driver, its topology key, the attach limit,
        owned by the Node); an API server that refuses is logged and asked again at the next status."""
        try:
            node_uid = str((await self.client.get(NODES, self.name))["metadata"].get("uid") or "")
            if not node_uid:
                log.warning("CSINode %s not written: the Node has no uid to own it", self.name)
                return
            body = csi.csinode_object(self.name, node_uid=node_uid, attach_limit=self.settings.volume_attach_limit)
            try:
                await self.client.create(CSI_NODES, body)
                log.info("CSINode %s created", self.name)
            except ApiError as exc:
                if not exc.already_exists:
                    raise
                current = await self.client.get(CSI_NODES, self.name)
                meta = current["metadata"]
                owners = body["metadata"]["ownerReferences"]
                if current.get("spec") != body["spec"] or meta.get("ownerReferences") != owners:
                    updated = dict(current, spec=body["spec"])
                    updated["metadata"] = dict(meta, ownerReferences=owners)
                    await self.client.update(CSI_NODES, updated)
                    log.info("CSINode %s updated", self.name)
            self.csinode_done = True
        except (ApiError, ApiUnavailableError) as exc:
            log.warning("CSINode %s not written: %s", self.name, exc)

    def node_changed(self, node: Object) -> None:
        """The node informer's handler: the first podCIDR seen becomes the pod network."""
        if self.network is not None:
            return
        network = pod_network(node, root=self.settings.root_dir, bridge=self.settings.network.bridge)
        if network is None:
            return
        self.network = network
        log.info("pod network %s on bridge %s", network.subnet, network.bridge)
        self.on_pod_network(network)
        if self.settings.cni_conf_dir is not None:
            self._write_conflist(self.settings.cni_conf_dir / CONFLIST_NAME, network)

    def _write_conflist(self, path: Path, network: BridgeNetwork) -> None:
        """The node's network list as a file, for people and tools (cnitool) on the node; the
        kubelet itself runs the list it holds in memory."""
        try:
            if write_conflist(path, bridge_conflist(network)):
                log.info("CNI network list written to %s", path)
        except OSError as exc:
            log.warning("could not write the CNI network list %s: %s", path, exc)
