"""DaemonSet controller: one pod on every node that the DaemonSet's pods may run on.

A node is eligible when it matches the template's node selector and required node affinity and its
taints are tolerated (DaemonSet pods also tolerate the node-condition taints, as kube adds them).
Each pod is pinned to its node with node affinity on ``metadata.name`` and placed by the scheduler.
RollingUpdate replaces pods of an older template revision while at most ``maxUnavailable`` of the
DaemonSet's pods are unavailable.

``sync`` makes sure the current template has its ControllerRevision (``history``); ``plan`` then
decides, purely, which nodes get a pod, which pods go, the status and the old revisions to drop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from agents.controllers import claim, history
from agents.controllers.base import (
    Context,
    Controller,
    Event,
    gather_limited,
    ignore_not_found,
    write_status,
)
from agents.controllers.podutil import is_active, is_available, is_ready, is_terminal, pod_from_template
from agents.machinery.events import NORMAL
from agents.machinery.informer import key_of
from agents.machinery.objects import Object, deep_copy
from agents.machinery.resources import CONTROLLER_REVISIONS, DAEMONSETS, NODES, PODS

DEFAULT_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


def _tolerates(tolerations: list[dict[str, Any]], taint: dict[str, Any]) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if not tol.get("key"):
            if tol.get("operator") == "Exists":
                return True
            continue
        if tol.get("key") == taint.get("key") and (
            tol.get("operator") == "Exists" or tol.get("value", "") == taint.get("value", "")
        ):
            return True
    return False


def _term_matches(term: dict[str, Any], node: Object) -> bool:
    labels = node["metadata"].get("labels") or {}
    for expr in term.get("matchExpressions") or []:
        value, op, values = labels.get(expr.get("key", "")), expr.get("operator"), expr.get("values") or []
        ok = (
            (op == "In" and value in values)
            or (op == "NotIn" and value not in values)
            or (op == "Exists" and value is not None)
            or (op == "DoesNotExist" and value is None)
        )
        if not ok:
            return False
    for requirement in term.get("matchFields") or []:
        if requirement.get("key") == "metadata.name":
            name, op = node["metadata"]["name"], requirement.get("operator")
            if (op == "In") != (name in (requirement.get("values") or [])):
                return False
    return bool(term.get("matchExpressions") or term.get("matchFields"))


def eligible(ds: Object, node: Object) -> bool:
    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    labels = node["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
        or {}
    ).get("nodeSelectorTerms")
    if required is not None and not any(_term_matches(t, node) for t in required):
        return False
    tolerations = list(spec.get("tolerations") or []) + DEFAULT_TOLERATIONS
    return all(
        _tolerates(tolerations, t)
        for t in (node.get("spec") or {}).get("taints") or []
        if t.get("effect") in ("NoSchedule", "NoExecute")
    )


def pin(pod: Object, node: str) -> None:
    """Make the pod schedulable only on ``node`` (node affinity on metadata.name)."""
    affinity = pod["spec"].setdefault("affinity", {}).setdefault("nodeAffinity", {})
    affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]
    }
    tolerations = pod["spec"].setdefault("tolerations", [])
    for default in DEFAULT_TOLERATIONS:
        if default not in tolerations:
            tolerations.append(dict(default))


def node_of(pod: Object) -> str:
    if (pod.get("spec") or {}).get("nodeName"):
        return str(pod["spec"]["nodeName"])
    terms = (
        (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms") or []
    for term in terms:
        for requirement in term.get("matchFields") or []:
            if requirement.get("key") == "metadata.name" and requirement.get("values"):
                return str(requirement["values"][0])
    return ""


@dataclass
class Plan:
    create: list[Object] = field(default_factory=list)  # pods, each pinned to its node
    delete: list[Object] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)  # recorded once the creates and deletes are made
    status: dict[str, Any] = field(default_factory=dict)
    trim: list[Object] = field(default_factory=list)  # revisions beyond the history limit


def plan(
    ds: Object, pods: list[Object], *, nodes: list[Object], revisions: list[Object], revision: str, now: datetime
) -> Plan:
    """What to do for ``ds`` given the pods it controls, the nodes, its revisions and ``revision``,
    the name of its current template's revision."""
    by_node: dict[str, list[Object]] = {}
    for pod in pods:
        by_node.setdefault(node_of(pod), []).append(pod)
    wanted = {node["metadata"]["name"] for node in nodes if eligible(ds, node)}
    missing, delete = [], []
    for name in sorted(wanted):
        running = [p for p in by_node.get(name, []) if is_active(p)]
        failed = [p for p in by_node.get(name, []) if is_terminal(p) and not p["metadata"].get("deletionTimestamp")]
        delete += failed
        if not running:
            missing.append(name)
        delete += sorted(running, key=lambda p: p["metadata"].get("creationTimestamp", ""))[1:]
    for name, on_node in by_node.items():
        if name not in wanted:
            delete += [p for p in on_node if not p["metadata"].get("deletionTimestamp")]
    delete += _rolling(ds, pods, wanted, revision, now=now)
    result = Plan(
        status=daemonset_status(ds, pods, wanted, revision, now=now),
        trim=history.beyond_limit(ds, revisions, {revision}),
    )
    template = deep_copy(ds["spec"]["template"])
    for name in missing:
        pod = pod_from_template(template, ds, labels={history.HASH_LABEL: revision})
        pin(pod, name)
        result.create.append(pod)
    if result.create:
        result.events.append(Event(NORMAL, "SuccessfulCreate", f"Created {len(result.create)} pod(s)"))
    result.delete = list({p["metadata"]["uid"]: p for p in delete}.values())
    if result.delete:
        names = ", ".join(sorted(p["metadata"]["name"] for p in result.delete))
        result.events.append(Event(NORMAL, "SuccessfulDelete", f"Deleted pod: {names}"))
    return result


def _rolling(ds: Object, pods: list[Object], wanted: set[str], current: str, *, now: datetime) -> list[Object]:
    """Pods of an older revision to replace now: the unavailable ones, and available ones while
    ``maxUnavailable`` allows."""
    strategy = ds["spec"].get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return []
    raw = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1)
    allowed = raw if isinstance(raw, int) else max(1, int(str(raw).rstrip("%")) * len(wanted) // 100)
    min_ready = int(ds["spec"].get("minReadySeconds") or 0)
    live = [p for p in pods if is_active(p) and node_of(p) in wanted]
    unavailable = len(wanted) - sum(1 for p in live if is_available(p, min_ready, now))
    old = [p for p in live if (p["metadata"].get("labels") or {}).get(history.HASH_LABEL) != current]
    budget = allowed - unavailable
    # unavailable old pods first: replacing them costs nothing
    old.sort(key=lambda p: is_available(p, min_ready, now))
    out = []
    for pod in old:
        if not is_available(pod, min_ready, now):
            out.append(pod)
        elif budget > 0:
            out.append(pod)
            budget -= 1
    return out


def daemonset_status(
    ds: Object, pods: list[Object], wanted: set[str], current: str, *, now: datetime
) -> dict[str, Any]:
    min_ready = int(ds["spec"].get("minReadySeconds") or 0)
    live = [p for p in pods if is_active(p)]
    placed = {node_of(p) for p in live}
    on_wanted = [p for p in live if node_of(p) in wanted]
    status = {
        "desiredNumberScheduled": len(wanted),
        "currentNumberScheduled": len(placed & wanted),
        "numberMisscheduled": len(placed - wanted),
        "numberReady": sum(1 for p in on_wanted if is_ready(p)),
        "updatedNumberScheduled": sum(
            1 for p in on_wanted if (p["metadata"].get("labels") or {}).get(history.HASH_LABEL) == current
        ),
        "numberAvailable": sum(1 for p in on_wanted if is_available(p, min_ready, now)),
        "numberUnavailable": max(len(wanted) - sum(1 for p in on_wanted if is_available(p, min_ready, now)), 0),
        "observedGeneration": ds["metadata"].get("generation", 1),
    }
    return {
        k: v
        for k, v in status.items()
        if v
        or k
        in (
            "desiredNumberScheduled",
            "currentNumberScheduled",
            "numberMisscheduled",
            "numberReady",
            "observedGeneration",
        )
    }


class DaemonSetController(Controller):
    name = "daemonset"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.sets = ctx.informer(DAEMONSETS)
        self.pods = ctx.informer(PODS)
        self.nodes = ctx.informer(NODES)
        self.revisions = ctx.informer(CONTROLLER_REVISIONS)
        self.sets.on_any(self.enqueue)
        self.pods.on_any(lambda pod: self.enqueue_owner(pod, "DaemonSet", self.sets))
        self.nodes.on(add=self._all, update=self._node_updated, delete=self._all)

    def _all(self, _node: Object) -> None:
        for ds in self.sets.items():
            self.enqueue(ds)

    def _node_updated(self, old: Object, new: Object) -> None:
        if old["metadata"].get("labels") != new["metadata"].get("labels") or old.get("spec") != new.get("spec"):
            self._all(new)

    async def sync(self, key: str) -> None:
        ds = self.sets.get(key)
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return
        namespace = ds["metadata"]["namespace"]
        step = history.revision_step(ds, self.revisions.by_index("namespace", namespace))
        revision = await history.ensure(self.client, step)
        decided = plan(
            ds,
            claim.controlled(ds, self.pods.by_index("namespace", namespace)),
            nodes=self.nodes.items(),
            revisions=self.revisions.by_index("namespace", namespace),
            revision=revision["metadata"]["name"],
            now=self.now(),
        )
        # errors come back as results, not raised: what failed is still missing (or there) at the next sync
        await gather_limited([partial(self.client.create, PODS, body) for body in decided.create])
        await gather_limited(
            [
                partial(ignore_not_found, partial(self.client.delete, PODS, p["metadata"]["name"], namespace))
                for p in decided.delete
            ]
        )
        self.record(ds, *decided.events)
        await write_status(self.client, DAEMONSETS, ds, decided.status, latest=self.sets.get(key_of(ds)))
        await history.trim(self.client, decided.trim)
