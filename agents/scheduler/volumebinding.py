"""Where a pod's PersistentVolumeClaims let it run: kube's VolumeBinding and NodeVolumeLimits plugins.

Volumes are not free-floating: a bound claim's PersistentVolume may be reachable from some nodes only
(its ``nodeAffinity``), a claim of a ``WaitForFirstConsumer`` class is bound only once the scheduler
has chosen a node (to an Available static volume that node reaches, or to one a provisioner makes
there), and a node takes at most so many volumes of a CSI driver (its CSINode's
``allocatable.count``). ``prefilter`` sorts the pod's claims once per attempt and answers for the
whole cluster when a claim is missing, being deleted or unbound with Immediate binding;
``PodVolumes.filter`` is the per-node check (limits first, then binding, kube's order) with kube's
reason strings; ``PodVolumes.find`` is also what the executor binds after the decision:
``assumed`` writes the claimRef of each chosen static volume and the ``selected-node`` annotation of
each claim to provision, and ``progress`` says whether the claims are bound yet. Everything here is
pure: it reads the ``Storage`` it is given (the informers' stores, with the scheduler's assumptions
over them) and never the API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agents.machinery import quantity
from agents.machinery.objects import Object, deep_copy
from agents.machinery.selectors import SelectorError, from_structured
from agents.scheduler.framework import NodeInfo, PodInfo, node_term_matches

SELECTED_NODE = "volume.kubernetes.io/selected-node"
BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
BETA_CLASS = "volume.beta.kubernetes.io/storage-class"
NO_PROVISIONER = "kubernetes.io/no-provisioner"  # a class of static volumes only
WAIT_FOR_FIRST_CONSUMER = "WaitForFirstConsumer"

# kube's reason strings
UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
NODE_CONFLICT = "node(s) had volume node affinity conflict"
BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"
PV_NOT_EXIST = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
MAX_VOLUME_COUNT = "node(s) exceed max volume count"


@dataclass(frozen=True)
class Storage:
    """The storage objects a decision reads: claims by ``namespace/name``, the rest by name."""

    claims: Mapping[str, Object]
    volumes: Mapping[str, Object]
    classes: Mapping[str, Object]
    csi_nodes: Mapping[str, Object]


# --- reading the objects -------------------------------------------------------------------------


def claim_class(claim: Object) -> str:
    """The class a claim asks for ("" for none): the beta annotation wins, as in kube."""
    annotations = claim["metadata"].get("annotations") or {}
    if BETA_CLASS in annotations:
        return str(annotations[BETA_CLASS])
    return str((claim.get("spec") or {}).get("storageClassName") or "")


def volume_class(volume: Object) -> str:
    annotations = volume["metadata"].get("annotations") or {}
    if BETA_CLASS in annotations:
        return str(annotations[BETA_CLASS])
    return str((volume.get("spec") or {}).get("storageClassName") or "")


def fully_bound(claim: Object) -> bool:
    """Bound, and the binding completed by the volume controller (kube's isPVCFullyBound)."""
    return bool((claim.get("spec") or {}).get("volumeName")) and BIND_COMPLETED in (
        claim["metadata"].get("annotations") or {}
    )


def affinity_matches(volume: Object, node: NodeInfo) -> bool:
    """Whether the volume's ``spec.nodeAffinity`` lets ``node`` reach it (no affinity: every node)."""
    required = ((volume.get("spec") or {}).get("nodeAffinity") or {}).get("required")
    if required is None:
        return True
    return any(node_term_matches(term, node) for term in required.get("nodeSelectorTerms") or [])


def topology_allows(class_: Object, node: NodeInfo) -> bool:
    """A class's ``allowedTopologies`` (none: anywhere): any term whose every expression the node's
    labels satisfy."""
    terms = class_.get("allowedTopologies") or []
    if not terms:
        return True
    return any(
        all(
            node.labels.get(e.get("key", "")) in (e.get("values") or [])
            for e in term.get("matchLabelExpressions") or []
        )
        for term in terms
    )


def _requested(claim: Object) -> int:
    storage = (((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage", "0")
    return quantity.whole(storage)


def _capacity(volume: Object) -> int:
    return quantity.whole(((volume.get("spec") or {}).get("capacity") or {}).get("storage", "0"))


def bound_to(volume: Object, claim: Object) -> bool:
    """The volume's claimRef names this claim (and its uid, when the ref has one)."""
    ref = (volume.get("spec") or {}).get("claimRef")
    meta = claim["metadata"]
    if not ref or ref.get("name") != meta["name"] or ref.get("namespace") != meta.get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == meta.get("uid")


def matching_volume(claim: Object, volumes: Iterable[Object], node: NodeInfo, excluded: set[str]) -> Object | None:
    """The volume for ``claim`` on ``node``: the one pre-bound to it if that one fits, else the smallest
    Available one of its class, big enough, with its access modes, selector and volume mode, that
    ``node`` reaches (kube's FindMatchingVolume, scheduler path)."""
    spec = claim.get("spec") or {}
    wanted, klass = _requested(claim), claim_class(claim)
    mode = spec.get("volumeMode") or "Filesystem"
    modes = set(spec.get("accessModes") or [])
    try:
        selector = from_structured(spec["selector"]) if spec.get("selector") else None
    except SelectorError:
        return None
    best: Object | None = None
    for volume in volumes:
        meta, vspec = volume["metadata"], volume.get("spec") or {}
        if meta["name"] in excluded or (vspec.get("claimRef") and not bound_to(volume, claim)):
            continue
        if _capacity(volume) < wanted or (vspec.get("volumeMode") or "Filesystem") != mode:
            continue
        if meta.get("deletionTimestamp"):
            continue
        reachable = affinity_matches(volume, node)
        if bound_to(volume, claim):
            return volume if reachable else None
        if (volume.get("status") or {}).get("phase") != "Available":
            continue
        if selector is not None and not selector.matches(meta.get("labels") or {}):
            continue
        if volume_class(volume) != klass or not reachable or not modes <= set(vspec.get("accessModes") or []):
            continue
        if best is None or _capacity(volume) < _capacity(best):
            best = volume
    return best


# --- the pod's claims (PreFilter) -----------------------------------------------------------------


@dataclass(frozen=True)
class NodeVolumes:
    """What binding the pod's claims on one node takes: static volumes to bind to claims, claims to
    provision; ``reasons`` when the node cannot have them."""

    reasons: tuple[str, ...] = ()
    bindings: tuple[tuple[Object, Object], ...] = ()  # (claim, volume)
    provisions: tuple[Object, ...] = ()


@dataclass(frozen=True)
class PodVolumes:
    """The pod's claims, sorted: bound ones, and unbound ones waiting for the first consumer."""

    pod: PodInfo
    bound: tuple[Object, ...]
    delayed: tuple[Object, ...]
    storage: Storage

    @property
    def all_bound(self) -> bool:
        return not self.delayed

    def filter(self, node: NodeInfo) -> list[str]:
        """Why the pod's volumes keep it off ``node`` (NodeVolumeLimits, then VolumeBinding)."""
        limits = volume_limits(self.pod, node, self.storage)
        if limits:
            return limits
        return list(self.find(node).reasons)

    def find(self, node: NodeInfo) -> NodeVolumes:
        """kube's FindPodVolumes: the bound claims' volumes must reach the node; the unbound ones need
        a static volume there or a class that provisions there."""
        reasons: list[str] = []
        for claim in self.bound:
            volume = self.storage.volumes.get(claim["spec"]["volumeName"])
            if volume is None:
                reasons.append(PV_NOT_EXIST)
                break
            if not affinity_matches(volume, node):
                reasons.append(NODE_CONFLICT)
                break
        if not self.delayed:
            return NodeVolumes(reasons=tuple(reasons))
        provision: list[Object] = []
        matching: list[Object] = []
        for claim in self.delayed:
            selected = (claim["metadata"].get("annotations") or {}).get(SELECTED_NODE)
            if selected is None:
                matching.append(claim)
            elif selected != node.name:  # provisioning for another node is under way
                return NodeVolumes(reasons=(*reasons, BIND_CONFLICT))
            else:
                provision.append(claim)
        bindings: list[tuple[Object, Object]] = []
        chosen: set[str] = set()
        for claim in sorted(matching, key=_requested):  # the smallest claims pick first
            klass = claim_class(claim)
            candidates = [v for v in self.storage.volumes.values() if volume_class(v) == klass]
            volume = matching_volume(claim, candidates, node, chosen)
            if volume is None:
                provision.append(claim)
            else:
                chosen.add(volume["metadata"]["name"])
                bindings.append((claim, volume))
        for claim in provision:
            found = self.storage.classes.get(claim_class(claim))
            provisioner = (found or {}).get("provisioner") or ""
            if found is None or provisioner in ("", NO_PROVISIONER) or not topology_allows(found, node):
                return NodeVolumes(reasons=(*reasons, BIND_CONFLICT))
        if reasons:
            return NodeVolumes(reasons=tuple(reasons))
        return NodeVolumes(bindings=tuple(bindings), provisions=tuple(provision))


def prefilter(pod: PodInfo, storage: Storage) -> PodVolumes | str:
    """The pod's claims sorted, or why no node can take the pod until the claims change."""
    bound: list[Object] = []
    delayed: list[Object] = []
    immediate = False
    for name in pod.claims:
        claim = storage.claims.get(f"{pod.namespace}/{name}")
        if claim is None:
            return f'persistentvolumeclaim "{name}" not found'
        spec = claim.get("spec") or {}
        if (claim.get("status") or {}).get("phase") == "Lost":
            return (
                f'persistentvolumeclaim "{name}" bound to non-existent persistentvolume "{spec.get("volumeName", "")}"'
            )
        if claim["metadata"].get("deletionTimestamp"):
            return f'persistentvolumeclaim "{name}" is being deleted'
        if fully_bound(claim):
            bound.append(claim)
            continue
        klass = storage.classes.get(claim_class(claim)) if claim_class(claim) else None
        if (
            klass is not None
            and klass.get("volumeBindingMode") == WAIT_FOR_FIRST_CONSUMER
            and not spec.get("volumeName")
        ):
            delayed.append(claim)
        else:  # Immediate binding (or pre-bound to a volume): the volume controller binds it first
            immediate = True
    if immediate:
        return UNBOUND_IMMEDIATE
    return PodVolumes(pod=pod, bound=tuple(bound), delayed=tuple(delayed), storage=storage)


# --- NodeVolumeLimits (CSI) ------------------------------------------------------------------------


def _attachable(namespace: str, names: Iterable[str], storage: Storage, into: dict[str, str]) -> None:
    """Add the CSI volumes the claims stand for to ``into`` (unique name -> driver): a bound claim's
    by its volume's driver and handle, an unbound one's by its class's provisioner and its own name."""
    for name in names:
        claim = storage.claims.get(f"{namespace}/{name}")
        if claim is None:
            continue
        volume_name = (claim.get("spec") or {}).get("volumeName")
        volume = storage.volumes.get(volume_name) if volume_name else None
        if volume is not None:
            csi = (volume.get("spec") or {}).get("csi")
            if csi and csi.get("driver") and csi.get("volumeHandle"):
                into[f"{csi['driver']}/{csi['volumeHandle']}"] = csi["driver"]
            continue
        klass = storage.classes.get(claim_class(claim))
        if klass is not None and klass.get("provisioner"):
            into[f"{klass['provisioner']}/claim:{namespace}/{name}"] = klass["provisioner"]


def csi_limits(csi_node: Object | None) -> dict[str, int]:
    """Volumes a node takes, per CSI driver, from its CSINode's ``allocatable.count``."""
    limits: dict[str, int] = {}
    for driver in ((csi_node or {}).get("spec") or {}).get("drivers") or []:
        count = (driver.get("allocatable") or {}).get("count")
        if driver.get("name") and count is not None:
            limits[driver["name"]] = int(count)
    return limits


def volume_limits(pod: PodInfo, node: NodeInfo, storage: Storage) -> list[str]:
    """kube's NodeVolumeLimits for CSI: the distinct volumes of each driver the node's pods use, with
    the pod's new ones, must not exceed the node's limit for that driver."""
    if not pod.claims:
        return []
    new: dict[str, str] = {}
    _attachable(pod.namespace, pod.claims, storage, new)
    if not new:
        return []
    limits = csi_limits(storage.csi_nodes.get(node.name))
    if not limits:
        return []
    attached: dict[str, str] = {}
    for other in node.pods.values():
        if other.key != pod.key:
            _attachable(other.namespace, other.claims, storage, attached)
    used: dict[str, int] = {}
    for unique, driver in attached.items():
        new.pop(unique, None)  # one volume used by several pods counts once
        used[driver] = used.get(driver, 0) + 1
    adding: dict[str, int] = {}
    for driver in new.values():
        adding[driver] = adding.get(driver, 0) + 1
    for driver, count in adding.items():
        if driver in limits and used.get(driver, 0) + count > limits[driver]:
            return [MAX_VOLUME_COUNT]
    return []


# --- binding (Reserve/PreBind) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Assumption:
    """What the scheduler writes for a pod's volumes on the chosen node: the static volumes with their
    claimRef set, the claims to provision with the ``selected-node`` annotation."""

    node: str
    volumes: tuple[Object, ...] = ()
    claims: tuple[Object, ...] = ()


def claim_ref(claim: Object) -> dict[str, Any]:
    meta = claim["metadata"]
    return {
        "kind": "PersistentVolumeClaim",
        "namespace": meta.get("namespace", ""),
        "name": meta["name"],
        "uid": meta.get("uid", ""),
        "apiVersion": "v1",
        "resourceVersion": meta.get("resourceVersion", ""),
    }


def bind_volume(volume: Object, claim: Object) -> Object:
    """A copy of ``volume`` bound to ``claim`` (kube's GetBindVolumeToClaim): the claimRef, and
    ``bound-by-controller`` unless the volume was pre-bound to the claim."""
    out = deep_copy(volume)
    if not bound_to(volume, claim) or not (volume["spec"].get("claimRef") or {}).get("uid"):
        out["spec"]["claimRef"] = claim_ref(claim)
    if not bound_to(volume, claim):
        out["metadata"].setdefault("annotations", {}).setdefault(BOUND_BY_CONTROLLER, "yes")
    return out


def assumed(found: NodeVolumes, node: str) -> Assumption:
    volumes = tuple(bind_volume(volume, claim) for claim, volume in found.bindings)
    claims = []
    for claim in found.provisions:
        copy = deep_copy(claim)
        copy["metadata"].setdefault("annotations", {})[SELECTED_NODE] = node
        claims.append(copy)
    return Assumption(node=node, volumes=volumes, claims=tuple(claims))


@dataclass(frozen=True)
class Progress:
    """Whether the claims an assumption binds are bound (``done``), or why they never will be."""

    done: bool = False
    error: str = ""


def _older(cached: Object, written: Object) -> bool:
    """The cache has not seen our write yet (resourceVersions are etcd revisions: numbers)."""
    try:
        return int(cached["metadata"].get("resourceVersion") or 0) < int(
            written["metadata"].get("resourceVersion") or 0
        )
    except ValueError:
        return False


def progress(assumption: Assumption, node: NodeInfo, storage: Storage) -> Progress:
    """kube's checkBindings, over the objects as written (``assumption`` holds the API's answers)."""
    for written in assumption.volumes:
        name = written["metadata"]["name"]
        volume = storage.volumes.get(name)
        ref = written["spec"]["claimRef"]
        claim = storage.claims.get(f"{ref['namespace']}/{ref['name']}")
        if volume is None or claim is None:
            return Progress(error=f"failed to check binding: {'pv' if volume is None else 'pvc'} not found")
        if _older(volume, written):
            return Progress()
        if not affinity_matches(volume, node):
            return Progress(error=f'pv "{name}" node affinity doesn\'t match node "{node.name}"')
        if not (volume["spec"].get("claimRef") or {}).get("uid"):
            return Progress(error=f'ClaimRef got reset for pv "{name}"')
        if not fully_bound(claim):
            return Progress()
    for written in assumption.claims:
        meta = written["metadata"]
        claim = storage.claims.get(f"{meta['namespace']}/{meta['name']}")
        if claim is None:
            return Progress(error="failed to check provisioning pvc: not found")
        if _older(claim, written):
            return Progress()
        if (claim["metadata"].get("annotations") or {}).get(SELECTED_NODE) != assumption.node:
            # the provisioner takes the annotation away when it cannot provision there
            return Progress(error=f'provisioning failed for PVC "{meta["name"]}"')
        volume_name = claim["spec"].get("volumeName")
        if volume_name:
            volume = storage.volumes.get(volume_name)
            if volume is None:
                return Progress()  # not seen yet
            if not affinity_matches(volume, node):
                return Progress(error=f'pv "{volume_name}" node affinity doesn\'t match node "{node.name}"')
        if not fully_bound(claim):
            return Progress()
    return Progress(done=True)
