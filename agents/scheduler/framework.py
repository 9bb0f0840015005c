"""Filtering and scoring, as pure functions over a pod's requirements and a node's state.

The filters run in kube-scheduler's default plugin order and fail with its reason strings, so that
"0/3 nodes are available: 1 node(s) had untolerated taint {...}, 2 Insufficient cpu." reads the
same. Scores are 0-100 per plugin, weighted as kube's defaults weigh them; ties go to the node whose
name sorts first, so a decision can be reproduced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agents.machinery import quantity
from agents.machinery.objects import Object
from agents.machinery.selectors import LabelSelector, SelectorError, from_structured

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
DEFAULT_CPU = 100  # millicores a container without a request counts as, when scoring
DEFAULT_MEMORY = 200 * 1024 * 1024

WEIGHTS = {"resources": 1, "balanced": 1, "node-affinity": 2, "taints": 3, "spread": 2, "pod-affinity": 2}


# --- requirements of a pod ----------------------------------------------------------------------

ANY_ADDRESS = "0.0.0.0"


@dataclass(frozen=True)
class AffinityTerm:
    selector: LabelSelector
    namespaces: frozenset[str]
    topology_key: str
    weight: int = 0

    def matches(self, namespace: str, labels: Mapping[str, str]) -> bool:
        return namespace in self.namespaces and self.selector.matches(labels)


def _terms(raw: Iterable[Mapping[str, Any]], namespace: str, *, weighted: bool = False) -> tuple[AffinityTerm, ...]:
    out = []
    for item in raw:
        term = item.get("podAffinityTerm", item) if weighted else item
        try:
            selector = from_structured(term.get("labelSelector") or {})
        except SelectorError:
            continue
        namespaces = frozenset(term.get("namespaces") or [namespace])
        out.append(AffinityTerm(selector, namespaces, term.get("topologyKey", ""), int(item.get("weight", 0))))
    return tuple(out)


def requests_of(spec: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """(cpu millicores, memory bytes) requested, and the same with kube's non-zero defaults."""
    cpu = mem = nz_cpu = nz_mem = 0
    for c in spec.get("containers") or []:
        req = (c.get("resources") or {}).get("requests") or {}
        c_cpu = quantity.milli(req["cpu"]) if "cpu" in req else 0
        c_mem = quantity.whole(req["memory"]) if "memory" in req else 0
        cpu, mem = cpu + c_cpu, mem + c_mem
        nz_cpu += c_cpu if "cpu" in req else DEFAULT_CPU
        nz_mem += c_mem if "memory" in req else DEFAULT_MEMORY
    for c in spec.get("initContainers") or []:  # init containers run one at a time: the largest counts
        req = (c.get("resources") or {}).get("requests") or {}
        c_cpu = quantity.milli(req["cpu"]) if "cpu" in req else 0
        c_mem = quantity.whole(req["memory"]) if "memory" in req else 0
        cpu, mem = max(cpu, c_cpu), max(mem, c_mem)
        nz_cpu = max(nz_cpu, c_cpu if "cpu" in req else DEFAULT_CPU)
        nz_mem = max(nz_mem, c_mem if "memory" in req else DEFAULT_MEMORY)
    overhead = spec.get("overhead") or {}
    if overhead:
        extra_cpu, extra_mem = quantity.milli(overhead.get("cpu", 0)), quantity.whole(overhead.get("memory", 0))
        cpu, mem, nz_cpu, nz_mem = cpu + extra_cpu, mem + extra_mem, nz_cpu + extra_cpu, nz_mem + extra_mem
    return cpu, mem, nz_cpu, nz_mem


@dataclass(frozen=True)
class PodInfo:
    key: str
    namespace: str
    name: str
    uid: str
    labels: Mapping[str, str]
    owner: str  # the controller's uid, "" for a bare pod
    cpu: int
    memory: int
    nonzero_cpu: int
    nonzero_memory: int
    host_ports: frozenset[tuple[str, str, int]]  # (host IP, protocol, port); "0.0.0.0" is every address
    node_selector: Mapping[str, str]
    required_terms: tuple[Mapping[str, Any], ...] | None  # node affinity, None when absent
    preferred_terms: tuple[tuple[int, Mapping[str, Any]], ...]
    tolerations: tuple[Mapping[str, Any], ...]
    affinity: tuple[AffinityTerm, ...]
    anti_affinity: tuple[AffinityTerm, ...]
    preferred_affinity: tuple[AffinityTerm, ...]
    preferred_anti_affinity: tuple[AffinityTerm, ...]
    priority: int = 0
    claims: tuple[str, ...] = ()  # the PersistentVolumeClaims its volumes name

    @classmethod
    def of(cls, pod: Object) -> PodInfo:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        namespace = meta.get("namespace", "")
        owner = next((r.get("uid", "") for r in meta.get("ownerReferences") or [] if r.get("controller")), "")
        cpu, mem, nz_cpu, nz_mem = requests_of(spec)
        ports = frozenset(
            (p.get("hostIP") or ANY_ADDRESS, p.get("protocol", "TCP"), int(p["hostPort"]))
            for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
            for p in c.get("ports") or []
            if p.get("hostPort")
        )
        affinity = spec.get("affinity") or {}
        node_aff = affinity.get("nodeAffinity") or {}
        required = (node_aff.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms")
        preferred = tuple(
            (int(p.get("weight", 0)), p.get("preference") or {})
            for p in node_aff.get("preferredDuringSchedulingIgnoredDuringExecution") or []
        )
        pod_aff, anti = affinity.get("podAffinity") or {}, affinity.get("podAntiAffinity") or {}
        return cls(
            key=f"{namespace}/{meta.get('name', '')}",
            namespace=namespace,
            name=meta.get("name", ""),
            uid=meta.get("uid", ""),
            labels=meta.get("labels") or {},
            owner=owner,
            cpu=cpu,
            memory=mem,
            nonzero_cpu=nz_cpu,
            nonzero_memory=nz_mem,
            host_ports=ports,
            node_selector=spec.get("nodeSelector") or {},
            required_terms=tuple(required) if required is not None else None,
            preferred_terms=preferred,
            tolerations=tuple(spec.get("tolerations") or ()),
            affinity=_terms(pod_aff.get("requiredDuringSchedulingIgnoredDuringExecution") or [], namespace),
            anti_affinity=_terms(anti.get("requiredDuringSchedulingIgnoredDuringExecution") or [], namespace),
            preferred_affinity=_terms(
                pod_aff.get("preferredDuringSchedulingIgnoredDuringExecution") or [], namespace, weighted=True
            ),
            preferred_anti_affinity=_terms(
                anti.get("preferredDuringSchedulingIgnoredDuringExecution") or [], namespace, weighted=True
            ),
            priority=int(spec.get("priority") or 0),
            claims=tuple(
                dict.fromkeys(
                    v["persistentVolumeClaim"].get("claimName", "")
                    for v in spec.get("volumes") or []
                    if v.get("persistentVolumeClaim")
                )
            ),
        )


# --- the state of a node -------------------------------------------------------------------------


def _taints_of(node: Object) -> list[Mapping[str, Any]]:
    taints = list((node.get("spec") or {}).get("taints") or [])
    ready = next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    if (ready is None or ready.get("status") != "True") and not any(
        t.get("key") in (NOT_READY, UNREACHABLE) for t in taints
    ):
        key = UNREACHABLE if ready is not None and ready.get("status") == "Unknown" else NOT_READY
        taints.append({"key": key, "effect": "NoSchedule"})
    return taints


@dataclass
class NodeInfo:
    name: str
    node: Object
    labels: Mapping[str, str]
    taints: list[Mapping[str, Any]]
    unschedulable: bool
    allocatable_cpu: int
    allocatable_memory: int
    allocatable_pods: int
    cpu: int = 0
    memory: int = 0
    nonzero_cpu: int = 0
    nonzero_memory: int = 0
    ports: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # host ports in use, by how many pods
    pods: dict[str, PodInfo] = field(default_factory=dict)
    owners: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, node: Object) -> NodeInfo:
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        return cls(
            name=(node.get("metadata") or {}).get("name", ""),
            node=node,
            labels=(node.get("metadata") or {}).get("labels") or {},
            taints=_taints_of(node),
            unschedulable=bool((node.get("spec") or {}).get("unschedulable")),
            allocatable_cpu=quantity.milli(allocatable.get("cpu", "0")),
            allocatable_memory=quantity.whole(allocatable.get("memory", "0")),
            allocatable_pods=quantity.whole(allocatable.get("pods", "110")),
        )

    def update_node(self, node: Object) -> None:
        fresh = NodeInfo.of(node)
        self.node, self.labels, self.taints = fresh.node, fresh.labels, fresh.taints
        self.unschedulable = fresh.unschedulable
        self.allocatable_cpu, self.allocatable_memory = fresh.allocatable_cpu, fresh.allocatable_memory
        self.allocatable_pods = fresh.allocatable_pods

    def add(self, pod: PodInfo) -> None:
        if pod.key in self.pods:
            self.remove(pod.key)
        self.pods[pod.key] = pod
        self.cpu += pod.cpu
        self.memory += pod.memory
        self.nonzero_cpu += pod.nonzero_cpu
        self.nonzero_memory += pod.nonzero_memory
        self.ports.update(pod.host_ports)
        if pod.owner:
            self.owners[pod.owner] = self.owners.get(pod.owner, 0) + 1

    def remove(self, key: str) -> None:
        pod = self.pods.pop(key, None)
        if pod is None:
            return
        self.cpu -= pod.cpu
        self.memory -= pod.memory
        self.nonzero_cpu -= pod.nonzero_cpu
        self.nonzero_memory -= pod.nonzero_memory
        self.ports.subtract(pod.host_ports)
        self.ports = +self.ports  # drop the ports no pod uses any more
        if pod.owner:
            self.owners[pod.owner] -= 1
            if not self.owners[pod.owner]:
                del self.owners[pod.owner]


# --- filters -------------------------------------------------------------------------------------


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        operator = tol.get("operator", "Equal")
        if not tol.get("key"):
            if operator == "Exists":
                return True
            continue
        if tol.get("key") != taint.get("key"):
            continue
        if operator == "Exists" or tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def _expression_matches(expr: Mapping[str, Any], value: str | None) -> bool:
    op, values = expr.get("operator"), expr.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and values:
        try:
            left, right = int(value), int(values[0])
        except ValueError:
            return False
        return left > right if op == "Gt" else left < right
    return False


def node_term_matches(term: Mapping[str, Any], node: NodeInfo) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False  # an empty term matches nothing
    return all(_expression_matches(e, node.labels.get(e.get("key", ""))) for e in expressions) and all(
        _expression_matches(f, node.name if f.get("key") == "metadata.name" else None) for f in fields
    )


def _taint_text(taint: Mapping[str, Any]) -> str:
    return f"{{{taint.get('key', '')}: {taint.get('value', '')}}}"


@dataclass(frozen=True)
class Topology:
    """Where the pods that inter-pod affinity cares about run, precomputed for one scheduling attempt."""

    affinity_domains: tuple[frozenset[str], ...]  # per required affinity term: topology values with a match
    first_of_group: bool  # no pod matches any required affinity term, and the pod matches all of them
    anti_domains: tuple[frozenset[str], ...]  # per required anti-affinity term
    existing_anti: tuple[tuple[str, str], ...]  # (topology key, value) forbidden by existing pods' anti-affinity


def topology_for(pod: PodInfo, nodes: Mapping[str, NodeInfo]) -> Topology:
    affinity = [
        frozenset(
            n.labels[term.topology_key]
            for n in nodes.values()
            if term.topology_key in n.labels and any(term.matches(p.namespace, p.labels) for p in n.pods.values())
        )
        for term in pod.affinity
    ]
    # a pod with affinity to its own kind may start the group: no pod matches any term, it matches all
    first = all(not values for values in affinity) and all(t.matches(pod.namespace, pod.labels) for t in pod.affinity)
    anti = tuple(
        frozenset(
            n.labels[t.topology_key]
            for n in nodes.values()
            if t.topology_key in n.labels and any(t.matches(p.namespace, p.labels) for p in n.pods.values())
        )
        for t in pod.anti_affinity
    )
    forbidden = []
    for node in nodes.values():
        for other in node.pods.values():
            for term in other.anti_affinity:
                if term.matches(pod.namespace, pod.labels) and term.topology_key in node.labels:
                    forbidden.append((term.topology_key, node.labels[term.topology_key]))
    return Topology(tuple(affinity), first, anti, tuple(forbidden))


class VolumeFilter(Protocol):
    """The volume plugins' per-node check for one pod (``volumebinding.PodVolumes``)."""

    def filter(self, node: NodeInfo) -> list[str]: ...


def filter_node(
    pod: PodInfo, node: NodeInfo, topology: Topology | None, volumes: VolumeFilter | None = None
) -> list[str]:
    """Why ``pod`` cannot run on ``node`` (empty when it can)."""
    if node.unschedulable and not tolerates(
        pod.tolerations, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
    ):
        return ["node(s) were unschedulable"]
    for taint in node.taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(pod.tolerations, taint):
            return [f"node(s) had untolerated taint {_taint_text(taint)}"]
    if any(node.labels.get(k) != v for k, v in pod.node_selector.items()) or (
        pod.required_terms is not None and not any(node_term_matches(t, node) for t in pod.required_terms)
    ):
        return ["node(s) didn't match Pod's node affinity/selector"]
    if pod.host_ports and node.ports and any(_port_taken(port, node.ports) for port in pod.host_ports):
        return ["node(s) didn't have free ports for the requested pod ports"]
    reasons = []
    if len(node.pods) + 1 > node.allocatable_pods:
        reasons.append("Too many pods")
    if pod.cpu and node.cpu + pod.cpu > node.allocatable_cpu:
        reasons.append("Insufficient cpu")
    if pod.memory and node.memory + pod.memory > node.allocatable_memory:
        reasons.append("Insufficient memory")
    if reasons:
        return reasons
    if volumes is not None:
        why = volumes.filter(node)
        if why:
            return why
    if topology is not None:
        if pod.affinity:
            values = [node.labels.get(term.topology_key) for term in pod.affinity]
            if None in values or not (
                topology.first_of_group
                or all(v in domains for v, domains in zip(values, topology.affinity_domains, strict=True))
            ):
                return ["node(s) didn't match pod affinity rules"]
        for term, domains in zip(pod.anti_affinity, topology.anti_domains, strict=True):
            if node.labels.get(term.topology_key) in domains:
                return ["node(s) didn't match pod anti-affinity rules"]
        if any(node.labels.get(key) == value for key, value in topology.existing_anti):
            return ["node(s) didn't satisfy existing pods anti-affinity rules"]
    return []


def _port_taken(port: tuple[str, str, int], used: Mapping[tuple[str, str, int], int]) -> bool:
    """A host port conflicts with one in use on the same protocol and port when either binds every
    address or both bind the same one (kube's NodePorts filter)."""
    address, protocol, number = port
    if address == ANY_ADDRESS:
        return any(p == protocol and n == number for _, p, n in used)
    return (address, protocol, number) in used or (ANY_ADDRESS, protocol, number) in used


def prefilter_message(total: int, reason: str) -> str:
    """kube-scheduler's message for a pod a PreFilter plugin turned away before any node was looked at."""
    if total == 0:
        return "no nodes available to schedule pods"
    return f"0/{total} nodes are available: {reason}."


def failure_message(total: int, reasons: Mapping[str, int]) -> str:
    """kube-scheduler's message for a pod that fits nowhere."""
    if total == 0:
        return "no nodes available to schedule pods"
    listed = sorted(f"{count} {reason}" for reason, count in reasons.items())
    return f"0/{total} nodes are available: {', '.join(listed)}." if listed else f"0/{total} nodes are available:"


# --- scores --------------------------------------------------------------------------------------


def _normalized(raw: list[float], *, reverse: bool = False) -> list[float]:
    top = max(raw, default=0)
    if top <= 0:
        return [100.0 if reverse else 0.0] * len(raw)
    return [100 * (top - v) / top for v in raw] if reverse else [100 * v / top for v in raw]


def _pod_affinity_raw(pod: PodInfo, node: NodeInfo) -> float:
    score = 0.0
    for term in pod.preferred_affinity:
        if term.topology_key in node.labels and any(term.matches(p.namespace, p.labels) for p in node.pods.values()):
            score += term.weight
    for term in pod.preferred_anti_affinity:
        if term.topology_key in node.labels and any(term.matches(p.namespace, p.labels) for p in node.pods.values()):
            score -= term.weight
    return score


def score_nodes(
    pod: PodInfo, nodes: list[NodeInfo], *, most_allocated: bool = False, zones: bool = False
) -> list[tuple[float, str]]:
    """(score, node name) for every node, best first; ties by name.

    One pass over the nodes computes every plugin's raw value; plugins that cannot tell nodes apart
    for this pod (no preferences, no PreferNoSchedule taints, no owner) are skipped.
    """
    count = len(nodes)
    base = [0.0] * count
    owner = pod.owner
    zone_counts: dict[str, int] = {}
    if zones and owner:
        for n in nodes:
            zone = n.labels.get(ZONE)
            if zone:
                zone_counts[zone] = zone_counts.get(zone, 0) + n.owners.get(owner, 0)
    same_owner = [0.0] * count
    for i, n in enumerate(nodes):
        cpu = min((n.nonzero_cpu + pod.nonzero_cpu) / n.allocatable_cpu, 1.0) if n.allocatable_cpu else 1.0
        mem = min((n.nonzero_memory + pod.nonzero_memory) / n.allocatable_memory, 1.0) if n.allocatable_memory else 1.0
        fit = 50 * (cpu + mem) if most_allocated else 50 * (2 - cpu - mem)
        # balanced allocation weighs what pods request, not the defaults a pod without requests
        # counts as: with those, nodes whose memory is full would draw every further pod to the
        # node holding the most (kube's NodeResourcesBalancedAllocation does the same)
        used_cpu = min((n.cpu + pod.cpu) / n.allocatable_cpu, 1.0) if n.allocatable_cpu else 1.0
        used_mem = min((n.memory + pod.memory) / n.allocatable_memory, 1.0) if n.allocatable_memory else 1.0
        base[i] = WEIGHTS["resources"] * fit + WEIGHTS["balanced"] * 100 * (1 - abs(used_cpu - used_mem))
        if owner:
            zone = n.labels.get(ZONE)
            same_owner[i] = n.owners.get(owner, 0) + (2 * zone_counts.get(zone, 0) if zone else 0)
    parts: list[tuple[int, list[float]]] = []
    if owner:
        parts.append((WEIGHTS["spread"], _normalized(same_owner, reverse=True)))
    else:
        parts.append((WEIGHTS["spread"], [100.0] * count))
    if pod.preferred_terms:
        raw = [float(sum(w for w, term in pod.preferred_terms if node_term_matches(term, n))) for n in nodes]
        parts.append((WEIGHTS["node-affinity"], _normalized(raw)))
    if any(t.get("effect") == "PreferNoSchedule" for n in nodes for t in n.taints):
        raw = [
            float(
                sum(1 for t in n.taints if t.get("effect") == "PreferNoSchedule" and not tolerates(pod.tolerations, t))
            )
            for n in nodes
        ]
        parts.append((WEIGHTS["taints"], _normalized(raw, reverse=True)))
    else:
        parts.append((WEIGHTS["taints"], [100.0] * count))
    if pod.preferred_affinity or pod.preferred_anti_affinity:
        raw = [_pod_affinity_raw(pod, n) for n in nodes]
        low = min(raw, default=0.0)
        parts.append((WEIGHTS["pod-affinity"], _normalized([v - low for v in raw] if low < 0 else raw)))
    for weight, values in parts:
        for i, value in enumerate(values):
            base[i] += weight * value
    totals = [(base[i], n.name) for i, n in enumerate(nodes)]
    totals.sort(key=lambda item: (-item[0], item[1]))
    return totals
