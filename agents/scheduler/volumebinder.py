"""The scheduler's side of volume binding: the storage informers, assumptions, and the PreBind wait.

``volumebinding`` decides (pure); this module carries it out. It keeps informers on claims, volumes,
classes and CSINodes, and lays the scheduler's assumptions over their stores (a static volume taken
for one pod is not offered to the next before its claimRef is written). At bind time, for the chosen
node, it writes the claimRef of each chosen static volume (the volume controller completes the
binding) and the ``volume.kubernetes.io/selected-node`` annotation of each claim to provision, then
waits until the claims are bound: on every change of a claim or volume, bounded by ``bind_timeout``
(kube's 600 s). The wait runs in the pod's own binding task, so other pods are decided meanwhile;
it does hold one of the scheduler's ``bind_concurrency`` slots while it waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections import ChainMap
from collections.abc import Callable

from agents.machinery.client import ApiError, ApiUnavailableError, Client
from agents.machinery.informer import Informer, key_of
from agents.machinery.objects import Object
from agents.machinery.resources import CSI_NODES, PERSISTENT_VOLUME_CLAIMS, PERSISTENT_VOLUMES, STORAGE_CLASSES
from agents.scheduler.framework import NodeInfo, PodInfo
from agents.scheduler.volumebinding import Assumption, PodVolumes, Storage, assumed, prefilter, progress

log = logging.getLogger(__name__)

BIND_TIMEOUT = 600.0


class VolumeBindingError(Exception):
    """The pod's volumes could not be bound on the chosen node (kube's PreBind failure)."""


class VolumeBinder:
    def __init__(self, client: Client, *, bind_timeout: float = BIND_TIMEOUT) -> None:
        self.client = client
        self.bind_timeout = bind_timeout
        self.claims = Informer(client, PERSISTENT_VOLUME_CLAIMS)
        self.volumes = Informer(client, PERSISTENT_VOLUMES)
        self.classes = Informer(client, STORAGE_CLASSES)
        self.csi_nodes = Informer(client, CSI_NODES)
        self.informers = (self.claims, self.volumes, self.classes, self.csi_nodes)
        self._assumed_claims: dict[str, Object] = {}
        self._assumed_volumes: dict[str, Object] = {}
        self._changed = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []
        for informer in self.informers:
            informer.on(add=self._on_change, update=lambda _old, new: self._on_change(new), delete=self._on_change)

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever a storage object changes (pods waiting on it may fit now)."""
        self._listeners.append(listener)

    def _on_change(self, _obj: Object) -> None:
        self.poke()
        for listener in self._listeners:
            listener()

    def poke(self) -> None:
        """Wake the binding tasks waiting for claims (something they check changed)."""
        self._changed.set()
        self._changed = asyncio.Event()

    def storage(self) -> Storage:
        return Storage(
            claims=ChainMap(self._assumed_claims, self.claims.store),
            volumes=ChainMap(self._assumed_volumes, self.volumes.store),
            classes=self.classes.store,
            csi_nodes=self.csi_nodes.store,
        )

    def observed(self) -> Storage:
        """The objects as the API server last reported them, without the assumptions."""
        return Storage(
            claims=self.claims.store,
            volumes=self.volumes.store,
            classes=self.classes.store,
            csi_nodes=self.csi_nodes.store,
        )

    def prefilter(self, pod: PodInfo) -> PodVolumes | str | None:
        """The pod's claims sorted (None: it has none), or why no node can take it yet."""
        if not pod.claims:
            return None
        return prefilter(pod, self.storage())

    def assume(self, volumes: PodVolumes, node: NodeInfo) -> Assumption | None:
        """Reserve what binding the claims on ``node`` takes (None: nothing to bind)."""
        if volumes.all_bound:
            return None
        found = volumes.find(node)
        decided = assumed(found, node.name)
        for volume in decided.volumes:
            self._assumed_volumes[volume["metadata"]["name"]] = volume
        for claim in decided.claims:
            self._assumed_claims[key_of(claim)] = claim
        return decided

    def forget(self, assumption: Assumption) -> None:
        for volume in assumption.volumes:
            self._assumed_volumes.pop(volume["metadata"]["name"], None)
        for claim in assumption.claims:
            self._assumed_claims.pop(key_of(claim), None)

    async def bind(
        self, assumption: Assumption, *, node: Callable[[], NodeInfo | None], pod_exists: Callable[[], bool]
    ) -> None:
        """Write the assumption, then wait until its claims are bound (PreBind).

        ``node`` gives the chosen node as the scheduler's cache knows it now, ``pod_exists`` whether
        the pod is still there; a pod deleted meanwhile ends the wait.
        """
        try:
            written = Assumption(
                node=assumption.node,
                volumes=tuple([await self.client.update(PERSISTENT_VOLUMES, v) for v in assumption.volumes]),
                claims=tuple([await self.client.update(PERSISTENT_VOLUME_CLAIMS, c) for c in assumption.claims]),
            )
        except (ApiError, ApiUnavailableError) as exc:
            raise VolumeBindingError(f"binding volumes: {exc}") from exc
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.bind_timeout
        while True:
            changed = self._changed
            if not pod_exists():
                raise VolumeBindingError("binding volumes: pod does not exist any more")
            info = node()
            if info is None:
                raise VolumeBindingError(f'binding volumes: node "{assumption.node}" not found')
            state = progress(written, info, self.observed())
            if state.error:
                raise VolumeBindingError(f"binding volumes: {state.error}")
            if state.done:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise VolumeBindingError("binding volumes: timed out waiting for the condition")
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                continue
