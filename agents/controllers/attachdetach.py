"""The attach/detach controller (kube's ``attachdetach``): a pod's disk is attached to its node
before the kubelet mounts it, and detached once no pod there uses it and the kubelet let it go.

Desired state: for every scheduled pod that is not done with its volumes, each claim it uses that
is Bound to a CSI PersistentVolume whose driver attaches (its CSIDriver's ``attachRequired``, true
without a CSIDriver) must be attached to the pod's node. Actual state: the VolumeAttachments, which
the driver's external attacher carries out (``status.attached``). Per node the pure ``plan_node``
decides:

* attach: a VolumeAttachment for each needed volume that has none (named as kube names it), unless
  a single-node volume (ReadWriteOnce) is still attached elsewhere: then a Multi-Attach error on the
  pods, and the attachment once the other node let go;
* detach: delete an attachment no pod of the node needs once the kubelet dropped the volume from
  ``node.status.volumesInUse`` (unmounted), at once when the node is gone or carries the
  ``node.kubernetes.io/out-of-service`` taint, and, on a node that is not Ready, after
  ``max-wait-for-unmount-duration`` (kube's force detach: a crashed machine never unmounts);
* ``node.status.volumesAttached``: the attached volumes, which the kubelet waits for;
* events on the pods as kube's: SuccessfulAttachVolume once an attachment is attached,
  FailedAttachVolume for an attach error or a Multi-Attach conflict, each told once.

The executor keeps two small memories per node, as kube's actual state of the world does: since when
each unwanted attachment has waited to be detached, and what has been told of each attachment.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.controllers import volumeutil as vu
from agents.controllers.base import Context, Controller, Event, delete_object
from agents.machinery.client import ApiError
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.objects import Object
from agents.machinery.resources import (
    CSI_DRIVERS,
    NODES,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    PODS,
    VOLUME_ATTACHMENTS,
)

log = logging.getLogger(__name__)

OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"
MULTI_ATTACH = "multi-attach"
ATTACHED = "attached"


@dataclass(frozen=True)
class Need:
    """A PersistentVolume that pods on one node need attached there."""

    pv_name: str
    driver: str
    multi_attach: bool  # its access modes let it be attached to several nodes at once
    pods: tuple[Object, ...]


def attach_required(driver: str, drivers: Mapping[str, Object]) -> bool:
    """Whether the CSI driver attaches its volumes: its CSIDriver says so, true when it has none."""
    found = drivers.get(driver)
    if found is None:
        return True
    return bool((found.get("spec") or {}).get("attachRequired", True))


def multi_attachable(volume: Mapping[str, Any]) -> bool:
    modes = set((volume.get("spec") or {}).get("accessModes") or [])
    return not modes or bool(modes & {"ReadWriteMany", "ReadOnlyMany"})


def needs(
    pods: Iterable[Object],
    *,
    claims: Mapping[str, Object],
    volumes: Mapping[str, Object],
    drivers: Mapping[str, Object],
) -> dict[str, dict[str, Need]]:
    """The desired state of the world: node name -> PV name -> what the node's pods need attached."""
    found: dict[str, dict[str, list[Object]]] = {}
    info: dict[str, tuple[str, bool]] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or vu.is_terminated(pod):
            continue
        for key in vu.claim_keys(pod):
            claim = claims.get(key)
            if claim is None or (claim.get("status") or {}).get("phase") != "Bound":
                continue
            pv_name = (claim.get("spec") or {}).get("volumeName") or ""
            volume = volumes.get(pv_name)
            if volume is None:
                continue
            if ((volume.get("spec") or {}).get("claimRef") or {}).get("uid") != claim["metadata"].get("uid"):
                continue
            csi = (volume.get("spec") or {}).get("csi") or {}
            driver = str(csi.get("driver") or "")
            if not driver or not attach_required(driver, drivers):
                continue
            info[pv_name] = (driver, multi_attachable(volume))
            users = found.setdefault(node, {}).setdefault(pv_name, [])
            if all(p["metadata"].get("uid") != pod["metadata"].get("uid") for p in users):
                users.append(pod)
    return {
        node: {pv: Need(pv, info[pv][0], info[pv][1], tuple(users)) for pv, users in by_pv.items()}
        for node, by_pv in found.items()
    }


def attachment(pv_name: str, driver: str, node_name: str) -> Object:
    """The VolumeAttachment that asks ``driver``'s attacher to attach the PV to the node."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "VolumeAttachment",
        "metadata": {"name": vu.attachment_name(pv_name, driver, node_name)},
        "spec": {"attacher": driver, "nodeName": node_name, "source": {"persistentVolumeName": pv_name}},
    }


def source_pv(va: Mapping[str, Any]) -> str:
    return str((((va.get("spec") or {}).get("source")) or {}).get("persistentVolumeName") or "")


def va_node(va: Mapping[str, Any]) -> str:
    return str((va.get("spec") or {}).get("nodeName") or "")


def handle_of(va: Mapping[str, Any], volumes: Mapping[str, Object]) -> str:
    """The volume's handle: its PV's ``spec.csi.volumeHandle``, else the serial the attacher reported."""
    volume = volumes.get(source_pv(va)) or {}
    handle = (((volume.get("spec") or {}).get("csi")) or {}).get("volumeHandle")
    if handle:
        return str(handle)
    return str((((va.get("status") or {}).get("attachmentMetadata")) or {}).get("serial") or "")


def is_ready(node: Mapping[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def out_of_service(node: Mapping[str, Any]) -> bool:
    taints = (node.get("spec") or {}).get("taints") or []
    return any(t.get("key") == OUT_OF_SERVICE and t.get("effect") == "NoExecute" for t in taints)


def multi_attach_message(pv_name: str, pod: Object, users_elsewhere: Sequence[Object]) -> str:
    """kube's Multi-Attach error for ``pod``: which pods hold the volume, named only in its own namespace."""
    prefix = f'Multi-Attach error for volume "{pv_name}"'
    if not users_elsewhere:
        return f"{prefix} Volume is already exclusively attached to one node and can't be attached to another"
    namespace = pod["metadata"].get("namespace")
    local = [p["metadata"]["name"] for p in users_elsewhere if p["metadata"].get("namespace") == namespace]
    others = len(users_elsewhere) - len(local)
    if local:
        message = f"Volume is already used by pod(s) {', '.join(local)}"
        if others:
            message += f" and {others} pod(s) in different namespaces"
    else:
        message = f"Volume is already used by {others} pod(s) in different namespaces"
    return f"{prefix} {message}"


@dataclass
class NodePlan:
    create: list[Object] = field(default_factory=list)  # VolumeAttachments to create (attach)
    delete: list[Object] = field(default_factory=list)  # VolumeAttachments to delete (detach)
    forced: list[str] = field(default_factory=list)  # of those, the names detached without an unmount
    waiting: list[str] = field(default_factory=list)  # unwanted attachments that wait to be detached
    requeue_after: float | None = None  # when a force detach comes due
    volumes_attached: list[dict[str, str]] | None = None  # node.status.volumesAttached, when it changes
    events: list[Event] = field(default_factory=list)
    announced: dict[str, str] = field(default_factory=dict)  # attachment name -> what was told of it


def plan_node(
    node_name: str,
    *,
    node: Object | None,
    wanted: Mapping[str, Need],
    attachments: Iterable[Object],
    volumes: Mapping[str, Object],
    users_elsewhere: Mapping[str, Sequence[Object]] | None = None,
    announced: Mapping[str, str] | None = None,
    waited: Mapping[str, float] | None = None,
    max_wait: float = 360.0,
    force_detach: bool = True,
) -> NodePlan:
    """What to attach to and detach from ``node_name`` (``node``: None when it is gone).

    ``wanted``: the node's needs by PV name; ``attachments``: every VolumeAttachment;
    ``users_elsewhere``: PV name -> the pods on other nodes that need it; ``announced``: what was told
    of the node's attachments so far; ``waited``: attachment name -> seconds it has waited to be
    detached.
    """
    announced, waited, users_elsewhere = announced or {}, waited or {}, users_elsewhere or {}
    plan = NodePlan()
    mine: dict[str, Object] = {}
    elsewhere: set[str] = set()
    for va in attachments:
        if not source_pv(va):
            continue
        if va_node(va) == node_name:
            mine[va["metadata"]["name"]] = va
        else:
            elsewhere.add(source_pv(va))
    if node is None:
        wanted = {}
    names: set[str] = set()
    for pv_name in sorted(wanted):
        need = wanted[pv_name]
        name = vu.attachment_name(pv_name, need.driver, node_name)
        names.add(name)
        _attach(
            plan,
            name,
            need,
            mine.get(name),
            node_name=node_name,
            attached_elsewhere=pv_name in elsewhere,
            users_elsewhere=users_elsewhere.get(pv_name, ()),
            told=announced.get(name, ""),
        )
    for name, va in sorted(mine.items()):
        if name in names or va["metadata"].get("deletionTimestamp"):
            continue
        _detach(
            plan,
            va,
            node=node,
            volumes=volumes,
            waited=waited.get(name, 0.0),
            max_wait=max_wait,
            force_detach=force_detach,
        )
    if node is not None:
        gone = {va["metadata"]["name"] for va in plan.delete}
        reported = sorted(
            (
                {"name": vu.unique_volume_name(str(va["spec"]["attacher"]), handle), "devicePath": ""}
                for name, va in mine.items()
                if name not in gone
                and not va["metadata"].get("deletionTimestamp")
                and (va.get("status") or {}).get("attached")
                and (handle := handle_of(va, volumes))
            ),
            key=lambda entry: entry["name"],
        )
        if reported != list((node.get("status") or {}).get("volumesAttached") or []):
            plan.volumes_attached = reported
    return plan


def _attach(
    plan: NodePlan,
    name: str,
    need: Need,
    va: Object | None,
    *,
    node_name: str,
    attached_elsewhere: bool,
    users_elsewhere: Sequence[Object],
    told: str,
) -> None:
    pv_name = need.pv_name
    if va is None:
        if attached_elsewhere and not need.multi_attach:
            plan.announced[name] = MULTI_ATTACH
            if told != MULTI_ATTACH:
                for pod in need.pods:
                    message = multi_attach_message(pv_name, pod, users_elsewhere)
                    plan.events.append(Event(WARNING, "FailedAttachVolume", message, about=pod))
            return
        plan.create.append(attachment(pv_name, need.driver, node_name))
        return
    if va["metadata"].get("deletionTimestamp"):
        return  # still being detached: attached again once it is gone
    status = va.get("status") or {}
    if status.get("attached"):
        plan.announced[name] = ATTACHED
        if told != ATTACHED:
            message = f'AttachVolume.Attach succeeded for volume "{pv_name}"'
            plan.events.extend(Event(NORMAL, "SuccessfulAttachVolume", message, about=pod) for pod in need.pods)
        return
    error = status.get("attachError") or {}
    if error:
        marker = f"error {error.get('time', '')} {error.get('message', '')}"
        plan.announced[name] = marker
        if told != marker:
            message = f'AttachVolume.Attach failed for volume "{pv_name}" : {error.get("message", "")}'
            plan.events.extend(Event(WARNING, "FailedAttachVolume", message, about=pod) for pod in need.pods)
        return
    if told:
        plan.announced[name] = told


def _detach(
    plan: NodePlan,
    va: Object,
    *,
    node: Object | None,
    volumes: Mapping[str, Object],
    waited: float,
    max_wait: float,
    force_detach: bool,
) -> None:
    name = va["metadata"]["name"]
    if node is None or out_of_service(node):
        plan.delete.append(va)
        return
    in_use = set((node.get("status") or {}).get("volumesInUse") or [])
    handle = handle_of(va, volumes)
    if not handle or vu.unique_volume_name(str(va["spec"].get("attacher", "")), handle) not in in_use:
        plan.delete.append(va)  # unmounted: safe to detach
        return
    if force_detach and not is_ready(node):
        if waited >= max_wait:
            plan.delete.append(va)
            plan.forced.append(name)
            return
        left = max_wait - waited + 0.05
        plan.requeue_after = left if plan.requeue_after is None else min(plan.requeue_after, left)
    plan.waiting.append(name)


def _by_name(items: Iterable[Object]) -> dict[str, Object]:
    return {o["metadata"]["name"]: o for o in items}


class AttachDetachController(Controller):
    name = "attachdetach"
    source = "attachdetach-controller"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.max_wait = float(ctx.settings.max_wait_for_unmount_duration)
        self.force_detach = not ctx.settings.disable_force_detach_on_timeout
        self.period = float(ctx.settings.attach_detach_reconcile_sync_period)
        self.nodes = ctx.informer(NODES)
        self.pods = ctx.informer(PODS)
        self.claims = ctx.informer(PERSISTENT_VOLUME_CLAIMS)
        self.volumes = ctx.informer(PERSISTENT_VOLUMES)
        self.attachments = ctx.informer(VOLUME_ATTACHMENTS)
        self.drivers = ctx.informer(CSI_DRIVERS)
        self.pods.add_index("claims", vu.claim_keys)
        self.announced: dict[str, dict[str, str]] = {}
        self.waiting_since: dict[str, dict[str, float]] = {}
        self.nodes.on_any(self.enqueue)
        self.pods.on(add=self._pod_changed, update=self._pod_updated, delete=self._pod_changed)
        self.attachments.on(
            add=self._attachment_changed,
            update=lambda _o, n: self._attachment_changed(n),
            delete=lambda _va: self._everywhere(),
        )
        self.claims.on(add=self._claim_changed, update=lambda _o, n: self._claim_changed(n))
        self.volumes.on_any(lambda _v: self._everywhere())
        self.drivers.on_any(lambda _d: self._everywhere())

    def _pod_changed(self, pod: Object) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            self.queue.add(node)

    def _pod_updated(self, old: Object, new: Object) -> None:
        self._pod_changed(old)
        self._pod_changed(new)

    def _attachment_changed(self, va: Object) -> None:
        if va_node(va):
            self.queue.add(va_node(va))

    def _claim_changed(self, claim: Object) -> None:
        namespace = claim["metadata"].get("namespace", "")
        for pod in self.pods.by_index("claims", f"{namespace}/{claim['metadata']['name']}"):
            self._pod_changed(pod)

    def _everywhere(self) -> None:
        for name in self._node_names():
            self.queue.add(name)

    def _node_names(self) -> set[str]:
        names = {n["metadata"]["name"] for n in self.nodes.items()}
        names |= {va_node(va) for va in self.attachments.items() if va_node(va)}
        return names

    async def sync(self, key: str) -> None:
        volumes = _by_name(self.volumes.items())
        claims = {f"{c['metadata'].get('namespace', '')}/{c['metadata']['name']}": c for c in self.claims.items()}
        world = needs(self.pods.items(), claims=claims, volumes=volumes, drivers=_by_name(self.drivers.items()))
        elsewhere: dict[str, list[Object]] = {}
        for node_name, by_pv in world.items():
            if node_name != key:
                for pv_name, need in by_pv.items():
                    elsewhere.setdefault(pv_name, []).extend(need.pods)
        clock = asyncio.get_running_loop().time()
        since = self.waiting_since.get(key, {})
        plan = plan_node(
            key,
            node=self.nodes.get(key),
            wanted=world.get(key, {}),
            attachments=self.attachments.items(),
            volumes=volumes,
            users_elsewhere=elsewhere,
            announced=self.announced.get(key, {}),
            waited={name: clock - at for name, at in since.items()},
            max_wait=self.max_wait,
            force_detach=self.force_detach,
        )
        self.waiting_since[key] = {name: since.get(name, clock) for name in plan.waiting}
        self.announced[key] = plan.announced
        await self._execute(key, plan)

    async def _execute(self, node_name: str, plan: NodePlan) -> None:
        for body in plan.create:
            try:
                await self.client.create(VOLUME_ATTACHMENTS, body)
            except ApiError as exc:
                if not exc.already_exists:
                    raise
            log.info("attaching %s to node %s (%s)", source_pv(body), node_name, body["metadata"]["name"])
        for va in plan.delete:
            forced = va["metadata"]["name"] in plan.forced
            await delete_object(self.client, VOLUME_ATTACHMENTS, va)
            if forced:
                log.warning(
                    "force detaching %s from node %s: not unmounted after %.0fs and the node is not ready",
                    source_pv(va),
                    node_name,
                    self.max_wait,
                )
            else:
                log.info("detaching %s from node %s", source_pv(va), node_name)
        if plan.volumes_attached is not None:
            patch = {"status": {"volumesAttached": plan.volumes_attached or None}}
            try:
                await self.client.patch(NODES, node_name, patch, subresource="status")
            except ApiError as exc:
                if not exc.not_found:
                    raise
        for event in plan.events:
            self.record(event.about or {}, event)
        if plan.requeue_after is not None:
            self.queue.add_after(node_name, plan.requeue_after)

    async def _seed(self) -> None:
        """What was attached before this controller started has been told already (kube's actual state
        of the world starts from the attachments it finds)."""
        await self.attachments.synced.wait()
        for va in self.attachments.items():
            if (va.get("status") or {}).get("attached") and va_node(va):
                self.announced.setdefault(va_node(va), {})[va["metadata"]["name"]] = ATTACHED

    async def _resync(self) -> None:
        await asyncio.gather(self.nodes.synced.wait(), self.attachments.synced.wait(), self.pods.synced.wait())
        while True:
            self._everywhere()
            await asyncio.sleep(self.period)

    async def run(self) -> None:
        await self._seed()
        await asyncio.gather(self._resync(), super().run())
