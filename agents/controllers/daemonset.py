"""DaemonSet controller: one pod on every node that the DaemonSet's pods may run on.

A node is eligible when it matches the template's node selector and required node affinity and its
taints are tolerated (DaemonSet pods also tolerate the node-condition taints, as kube adds them).
Each pod is pinned to its node with node affinity on ``metadata.name`` and placed by the scheduler.
RollingUpdate replaces pods of an older template revision while at most ``maxUnavailable`` of the
DaemonSet's pods are unavailable.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from agents.controllers import history
from agents.controllers.base import Context, Controller, gather_limited, ignore_not_found, owner_uid
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
    for field in term.get("matchFields") or []:
        if field.get("key") == "metadata.name":
            name, op = node["metadata"]["name"], field.get("operator")
            if (op == "In") != (name in (field.get("values") or [])):
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
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("values"):
                return str(field["values"][0])
    return ""


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
        namespace, uid = ds["metadata"]["namespace"], ds["metadata"]["uid"]
        revision = await history.ensure_revision(self.client, self.revisions, ds)
        current = revision["metadata"]["name"]
        pods = [p for p in self.pods.by_index("namespace", namespace) if owner_uid(p) == uid]
        by_node: dict[str, list[Object]] = {}
        for pod in pods:
            by_node.setdefault(node_of(pod), []).append(pod)
        nodes = {n["metadata"]["name"]: n for n in self.nodes.items()}
        wanted = {name for name, node in nodes.items() if eligible(ds, node)}
        create, delete = [], []
        for name in sorted(wanted):
            running = [p for p in by_node.get(name, []) if is_active(p)]
            failed = [p for p in by_node.get(name, []) if is_terminal(p) and not p["metadata"].get("deletionTimestamp")]
            delete += failed
            if not running:
                create.append(name)
            delete += sorted(running, key=lambda p: p["metadata"].get("creationTimestamp", ""))[1:]
        for name, on_node in by_node.items():
            if name not in wanted:
                delete += [p for p in on_node if not p["metadata"].get("deletionTimestamp")]
        delete += self._rolling(ds, pods, wanted, current)
        template = deep_copy(ds["spec"]["template"])
        bodies = []
        for name in create:
            pod = pod_from_template(template, ds, labels={history.HASH_LABEL: current})
            pin(pod, name)
            bodies.append(pod)
        if bodies:
            await gather_limited([partial(self.client.create, PODS, b) for b in bodies])
            self.recorder.record(ds, NORMAL, "SuccessfulCreate", f"Created {len(bodies)} pod(s)")
        unique = {p["metadata"]["uid"]: p for p in delete}
        if unique:
            await gather_limited(
                [
                    partial(ignore_not_found, partial(self.client.delete, PODS, p["metadata"]["name"], namespace))
                    for p in unique.values()
                ]
            )
            self.recorder.record(
                ds,
                NORMAL,
                "SuccessfulDelete",
                "Deleted pod: " + ", ".join(sorted(p["metadata"]["name"] for p in unique.values())),
            )
        await self._write_status(ds, pods, wanted, current)
        await history.trim(self.client, self.revisions, ds, {current})

    def _rolling(self, ds: Object, pods: list[Object], wanted: set[str], current: str) -> list[Object]:
        strategy = ds["spec"].get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            return []
        raw = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1)
        allowed = raw if isinstance(raw, int) else max(1, int(str(raw).rstrip("%")) * len(wanted) // 100)
        min_ready = int(ds["spec"].get("minReadySeconds") or 0)
        live = [p for p in pods if is_active(p) and node_of(p) in wanted]
        unavailable = len(wanted) - sum(1 for p in live if is_available(p, min_ready))
        old = [p for p in live if (p["metadata"].get("labels") or {}).get(history.HASH_LABEL) != current]
        budget = allowed - unavailable
        # unavailable old pods first: replacing them costs nothing
        old.sort(key=lambda p: is_available(p, min_ready))
        out = []
        for pod in old:
            if not is_available(pod, min_ready):
                out.append(pod)
            elif budget > 0:
                out.append(pod)
                budget -= 1
        return out

    async def _write_status(self, ds: Object, pods: list[Object], wanted: set[str], current: str) -> None:
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
            "numberAvailable": sum(1 for p in on_wanted if is_available(p, min_ready)),
            "numberUnavailable": max(len(wanted) - sum(1 for p in on_wanted if is_available(p, min_ready)), 0),
            "observedGeneration": ds["metadata"].get("generation", 1),
        }
        status = {
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
        if status != (ds.get("status") or {}):
            body = deep_copy(self.sets.get(key_of(ds)) or ds)
            body["status"] = status
            await ignore_not_found(partial(self.client.update_status, DAEMONSETS, body))
