"""The scheduler's pure filters and scores: which nodes a pod may run on, why not, and which is best."""

from __future__ import annotations

from collections import Counter
from typing import Any

from agents.machinery.objects import Object
from agents.scheduler.framework import (
    DEFAULT_CPU,
    DEFAULT_MEMORY,
    HOSTNAME,
    NOT_READY,
    UNREACHABLE,
    ZONE,
    NodeInfo,
    PodInfo,
    failure_message,
    filter_node,
    node_term_matches,
    requests_of,
    score_nodes,
    tolerates,
    topology_for,
)

Mi = 1024 * 1024
Gi = 1024 * Mi

# --- builders: plain dicts shaped like the API's objects ----------------------------------------


def node(
    name: str,
    *,
    cpu: str = "2",
    memory: str = "4Gi",
    pods: str | None = None,
    ready: str | None = "True",
    labels: dict[str, str] | None = None,
    taints: list[dict[str, Any]] | None = None,
    unschedulable: bool = False,
) -> Object:
    """A Node with allocatable resources, a Ready condition (``ready=None``: no condition at all)."""
    allocatable = {"cpu": cpu, "memory": memory}
    if pods is not None:
        allocatable["pods"] = pods
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {HOSTNAME: name, **(labels or {})}},
        "spec": spec,
        "status": {
            "allocatable": allocatable,
            "conditions": [] if ready is None else [{"type": "Ready", "status": ready}],
        },
    }


def pod(
    name: str,
    *,
    namespace: str = "default",
    cpu: str | None = None,
    memory: str | None = None,
    labels: dict[str, str] | None = None,
    owner: str = "",
    node_selector: dict[str, str] | None = None,
    affinity: dict[str, Any] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
    host_ports: list[int] | None = None,
) -> Object:
    """A Pod with one container; ``owner`` is the uid of its controller."""
    requests: dict[str, str] = {}
    if cpu is not None:
        requests["cpu"] = cpu
    if memory is not None:
        requests["memory"] = memory
    container: dict[str, Any] = {"name": "app", "image": "busybox", "resources": {"requests": requests}}
    if host_ports:
        container["ports"] = [{"containerPort": p, "hostPort": p} for p in host_ports]
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": owner, "controller": True}
        ]
    spec: dict[str, Any] = {"containers": [container]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if affinity:
        spec["affinity"] = affinity
    if tolerations:
        spec["tolerations"] = tolerations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def bound(raw_node: Object, *pods: Object) -> NodeInfo:
    """The NodeInfo of ``raw_node`` with ``pods`` already running on it."""
    info = NodeInfo.of(raw_node)
    for p in pods:
        info.add(PodInfo.of(p))
    return info


def term(key: str, operator: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": operator, "values": list(values)}]}


def pod_term(labels: dict[str, str], topology_key: str) -> dict[str, Any]:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": topology_key}


def reasons(p: Object, *infos: NodeInfo) -> dict[str, list[str]]:
    """filter_node's answer for every node, with the pod-affinity topology computed over all of them."""
    pod_info = PodInfo.of(p)
    topology = topology_for(pod_info, {n.name: n for n in infos})
    return {n.name: filter_node(pod_info, n, topology) for n in infos}


# --- requests ------------------------------------------------------------------------------------


def test_requests_sum_containers_and_take_the_largest_init_container_plus_overhead() -> None:
    spec = {
        "containers": [
            {"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
            {"resources": {"requests": {"cpu": "200m", "memory": "64Mi"}}},
        ],
        "initContainers": [
            {"resources": {"requests": {"cpu": "500m", "memory": "100Mi"}}},
            {"resources": {"requests": {"cpu": "50m"}}},
        ],
        "overhead": {"cpu": "50m"},
    }
    # for scoring, the init container without a memory request counts kube's default (200Mi)
    assert requests_of(spec) == (550, 128 * Mi, 550, DEFAULT_MEMORY)


def test_a_container_without_requests_asks_for_nothing_but_scores_as_kube_defaults() -> None:
    assert requests_of({"containers": [{"name": "app"}]}) == (0, 0, DEFAULT_CPU, DEFAULT_MEMORY)
    assert (100, 200 * Mi) == (DEFAULT_CPU, DEFAULT_MEMORY)


def test_a_container_with_only_a_cpu_request_gets_the_default_memory_for_scoring() -> None:
    spec = {"containers": [{"resources": {"requests": {"cpu": "1500m"}}}, {"resources": {}}]}
    assert requests_of(spec) == (1500, 0, 1600, 2 * DEFAULT_MEMORY)


# --- PodInfo and NodeInfo from plain objects -----------------------------------------------------


def test_pod_info_reads_identity_requests_ports_and_the_controller_owner_only() -> None:
    raw = pod("web-1", namespace="shop", cpu="250m", memory="1Gi", labels={"app": "web"}, host_ports=[8080])
    raw["metadata"]["ownerReferences"] = [
        {"kind": "ConfigMap", "name": "x", "uid": "not-a-controller"},
        {"kind": "ReplicaSet", "name": "web", "uid": "rs-uid", "controller": True},
    ]
    raw["spec"]["containers"][0]["ports"].append({"containerPort": 53, "hostPort": 5353, "protocol": "UDP"})
    raw["spec"]["containers"][0]["ports"].append({"containerPort": 9090})  # no hostPort: not a host port
    raw["spec"]["priority"] = 1000
    info = PodInfo.of(raw)
    assert (info.key, info.namespace, info.name, info.uid) == ("shop/web-1", "shop", "web-1", "uid-web-1")
    assert info.labels == {"app": "web"}
    assert info.owner == "rs-uid"
    assert (info.cpu, info.memory, info.nonzero_cpu, info.nonzero_memory) == (250, Gi, 250, Gi)
    assert info.host_ports == frozenset({("0.0.0.0", "TCP", 8080), ("0.0.0.0", "UDP", 5353)})
    assert info.priority == 1000


def test_pod_info_without_affinity_has_no_required_node_terms() -> None:
    info = PodInfo.of(pod("bare"))
    assert info.owner == ""
    assert info.required_terms is None
    assert info.preferred_terms == ()
    assert (info.affinity, info.anti_affinity, info.preferred_affinity, info.preferred_anti_affinity) == (
        (),
        (),
        (),
        (),
    )
    assert info.tolerations == ()
    assert info.node_selector == {}


def test_pod_info_reads_node_and_pod_affinity_with_weights_and_default_namespace() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term("disk", "In", "ssd")]},
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 7, "preference": term("gpu", "Exists")}],
        },
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "db"}, ZONE)],
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 30, "podAffinityTerm": {**pod_term({"app": "web"}, HOSTNAME), "namespaces": ["a", "b"]}}
            ],
        },
    }
    info = PodInfo.of(pod("p", namespace="shop", affinity=affinity, tolerations=[{"operator": "Exists"}]))
    assert info.required_terms == (term("disk", "In", "ssd"),)
    assert info.preferred_terms == ((7, term("gpu", "Exists")),)
    [db] = info.affinity
    assert (db.topology_key, db.namespaces, db.weight) == (ZONE, frozenset({"shop"}), 0)
    assert db.matches("shop", {"app": "db"}) and not db.matches("other", {"app": "db"})
    [web] = info.preferred_anti_affinity
    assert (web.topology_key, web.namespaces, web.weight) == (HOSTNAME, frozenset({"a", "b"}), 30)
    assert info.tolerations == ({"operator": "Exists"},)


def test_node_info_parses_allocatable_and_defaults_to_110_pods() -> None:
    info = NodeInfo.of(node("n1", cpu="3500m", memory="8Gi", labels={ZONE: "z1"}))
    assert (info.name, info.allocatable_cpu, info.allocatable_memory, info.allocatable_pods) == (
        "n1",
        3500,
        8 * Gi,
        110,
    )
    assert info.labels == {HOSTNAME: "n1", ZONE: "z1"}
    assert info.taints == []
    assert info.unschedulable is False


def test_node_info_adds_a_not_ready_taint_for_a_node_whose_ready_condition_is_false_or_missing() -> None:
    assert NodeInfo.of(node("n", ready="False")).taints == [{"key": NOT_READY, "effect": "NoSchedule"}]
    assert NodeInfo.of(node("n", ready=None)).taints == [{"key": NOT_READY, "effect": "NoSchedule"}]


def test_node_info_adds_an_unreachable_taint_for_a_node_whose_ready_condition_is_unknown() -> None:
    assert NodeInfo.of(node("n", ready="Unknown")).taints == [{"key": UNREACHABLE, "effect": "NoSchedule"}]


def test_node_info_does_not_duplicate_a_condition_taint_the_node_lifecycle_controller_already_set() -> None:
    taint = {"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}
    assert NodeInfo.of(node("n", ready="False", taints=[taint])).taints == [taint]


def test_node_info_add_and_remove_track_requests_ports_and_owners() -> None:
    info = NodeInfo.of(node("n1"))
    first = PodInfo.of(pod("a", cpu="500m", memory="1Gi", owner="rs-1", host_ports=[80]))
    second = PodInfo.of(pod("b", owner="rs-1"))
    info.add(first)
    info.add(second)
    info.add(first)  # adding the same pod twice counts it once
    assert (info.cpu, info.memory) == (500, Gi)
    assert (info.nonzero_cpu, info.nonzero_memory) == (500 + DEFAULT_CPU, Gi + DEFAULT_MEMORY)
    assert info.ports == {("0.0.0.0", "TCP", 80): 1}
    assert info.owners == {"rs-1": 2}
    info.remove("default/a")
    info.remove("default/never-added")
    assert (info.cpu, info.memory, dict(info.ports), info.owners) == (0, 0, {}, {"rs-1": 1})
    info.remove("default/b")
    assert info.owners == {}
    assert info.pods == {}


# --- tolerations and node selector terms ---------------------------------------------------------


def test_equal_toleration_needs_the_same_key_value_and_effect() -> None:
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    assert tolerates([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}], taint)
    assert tolerates([{"key": "dedicated", "value": "gpu"}], taint)  # Equal is the default; no effect: any
    assert not tolerates([{"key": "dedicated", "value": "cpu"}], taint)
    assert not tolerates([{"key": "dedicated", "value": "gpu", "effect": "NoExecute"}], taint)
    assert not tolerates([{"key": "other", "value": "gpu"}], taint)
    assert not tolerates([], taint)


def test_exists_toleration_ignores_the_value_and_an_empty_key_tolerates_every_taint() -> None:
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoExecute"}
    assert tolerates([{"key": "dedicated", "operator": "Exists"}], taint)
    assert tolerates([{"operator": "Exists"}], taint)
    assert not tolerates([{"operator": "Exists", "effect": "NoSchedule"}], taint)
    assert not tolerates([{"value": "gpu"}], taint)  # an empty key with Equal matches nothing


def test_node_term_expressions_are_anded_and_support_every_operator() -> None:
    info = NodeInfo.of(node("n1", labels={"disk": "ssd", "cores": "8"}))
    assert node_term_matches(term("disk", "In", "ssd", "nvme"), info)
    assert not node_term_matches(term("disk", "In", "hdd"), info)
    assert node_term_matches(term("disk", "NotIn", "hdd"), info)
    assert node_term_matches(term("missing", "NotIn", "x"), info)  # NotIn matches an absent label
    assert node_term_matches(term("disk", "Exists"), info)
    assert node_term_matches(term("missing", "DoesNotExist"), info)
    assert not node_term_matches(term("disk", "DoesNotExist"), info)
    assert node_term_matches(term("cores", "Gt", "4"), info)
    assert not node_term_matches(term("cores", "Lt", "8"), info)
    assert not node_term_matches(term("disk", "Gt", "4"), info)  # not an integer: no match
    ssd_and_small = {
        "matchExpressions": [
            {"key": "disk", "operator": "In", "values": ["ssd"]},
            {"key": "cores", "operator": "Lt", "values": ["4"]},
        ]
    }
    assert not node_term_matches(ssd_and_small, info)  # expressions in one term must all match


def test_node_term_match_fields_compare_the_node_name() -> None:
    info = NodeInfo.of(node("n1"))
    assert node_term_matches({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}, info)
    assert not node_term_matches({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}, info)


def test_an_empty_node_selector_term_matches_no_node() -> None:
    assert not node_term_matches({}, NodeInfo.of(node("n1")))
    assert not node_term_matches({"matchExpressions": []}, NodeInfo.of(node("n1")))


# --- filters -------------------------------------------------------------------------------------


def test_a_pod_fits_a_ready_node_with_room() -> None:
    assert filter_node(PodInfo.of(pod("p", cpu="1", memory="1Gi")), NodeInfo.of(node("n1")), None) == []


def test_a_not_ready_node_is_refused_by_its_untolerated_not_ready_taint() -> None:
    info = NodeInfo.of(node("n1", ready="False"))
    assert filter_node(PodInfo.of(pod("p")), info, None) == [
        "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
    ]
    tolerant = pod("q", tolerations=[{"key": NOT_READY, "operator": "Exists", "effect": "NoSchedule"}])
    assert filter_node(PodInfo.of(tolerant), info, None) == []


def test_an_unreachable_node_is_refused_by_its_unreachable_taint() -> None:
    assert filter_node(PodInfo.of(pod("p")), NodeInfo.of(node("n1", ready="Unknown")), None) == [
        "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"
    ]


def test_an_unschedulable_node_is_refused_unless_the_pod_tolerates_unschedulable() -> None:
    info = NodeInfo.of(node("n1", unschedulable=True))
    assert filter_node(PodInfo.of(pod("p")), info, None) == ["node(s) were unschedulable"]
    tolerant = pod("q", tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}])
    assert filter_node(PodInfo.of(tolerant), info, None) == []


def test_unschedulable_is_reported_before_taints() -> None:
    info = NodeInfo.of(node("n1", unschedulable=True, ready="False"))
    assert filter_node(PodInfo.of(pod("p")), info, None) == ["node(s) were unschedulable"]


def test_no_schedule_and_no_execute_taints_refuse_pods_that_do_not_tolerate_them() -> None:
    for effect in ("NoSchedule", "NoExecute"):
        info = NodeInfo.of(node("n1", taints=[{"key": "dedicated", "value": "gpu", "effect": effect}]))
        assert filter_node(PodInfo.of(pod("p")), info, None) == ["node(s) had untolerated taint {dedicated: gpu}"]
        tolerant = pod("q", tolerations=[{"key": "dedicated", "value": "gpu", "effect": effect}])
        assert filter_node(PodInfo.of(tolerant), info, None) == []


def test_a_prefer_no_schedule_taint_does_not_filter() -> None:
    info = NodeInfo.of(node("n1", taints=[{"key": "spot", "value": "yes", "effect": "PreferNoSchedule"}]))
    assert filter_node(PodInfo.of(pod("p")), info, None) == []


def test_insufficient_cpu_counts_pods_already_bound() -> None:
    info = bound(node("n1", cpu="2"), pod("a", cpu="1"), pod("b", cpu="500m"))
    assert filter_node(PodInfo.of(pod("p", cpu="600m")), info, None) == ["Insufficient cpu"]
    assert filter_node(PodInfo.of(pod("p", cpu="500m")), info, None) == []  # exactly full still fits


def test_insufficient_memory_counts_pods_already_bound() -> None:
    info = bound(node("n1", memory="4Gi"), pod("a", memory="3Gi"))
    assert filter_node(PodInfo.of(pod("p", memory="1025Mi")), info, None) == ["Insufficient memory"]
    assert filter_node(PodInfo.of(pod("p", memory="1Gi")), info, None) == []


def test_a_pod_without_requests_fits_a_node_whose_cpu_and_memory_are_fully_requested() -> None:
    info = bound(node("n1", cpu="1", memory="1Gi"), pod("a", cpu="1", memory="1Gi"))
    assert filter_node(PodInfo.of(pod("p")), info, None) == []


def test_a_node_at_its_pod_limit_is_refused_with_too_many_pods() -> None:
    info = bound(node("n1", pods="2"), pod("a"), pod("b"))
    assert filter_node(PodInfo.of(pod("p")), info, None) == ["Too many pods"]


def test_every_resource_shortfall_is_reported_together_in_kube_order() -> None:
    info = bound(node("n1", cpu="1", memory="1Gi", pods="1"), pod("a", cpu="1", memory="1Gi"))
    assert filter_node(PodInfo.of(pod("p", cpu="1m", memory="1Mi")), info, None) == [
        "Too many pods",
        "Insufficient cpu",
        "Insufficient memory",
    ]


def test_node_selector_must_match_every_label() -> None:
    info = NodeInfo.of(node("n1", labels={"disk": "ssd", "zone": "a"}))
    message = ["node(s) didn't match Pod's node affinity/selector"]
    assert filter_node(PodInfo.of(pod("p", node_selector={"disk": "ssd"})), info, None) == []
    assert filter_node(PodInfo.of(pod("p", node_selector={"disk": "ssd", "zone": "b"})), info, None) == message
    assert filter_node(PodInfo.of(pod("p", node_selector={"gpu": "yes"})), info, None) == message


def test_required_node_affinity_terms_are_ored() -> None:
    required = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [term("disk", "In", "nvme"), term("disk", "In", "ssd")]
            }
        }
    }
    p = PodInfo.of(pod("p", affinity=required))
    assert filter_node(p, NodeInfo.of(node("ssd", labels={"disk": "ssd"})), None) == []
    assert filter_node(p, NodeInfo.of(node("hdd", labels={"disk": "hdd"})), None) == [
        "node(s) didn't match Pod's node affinity/selector"
    ]


def test_node_selector_and_required_node_affinity_must_both_match() -> None:
    required = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term("disk", "In", "ssd")]}
        }
    }
    p = PodInfo.of(pod("p", node_selector={"zone": "a"}, affinity=required))
    assert filter_node(p, NodeInfo.of(node("n1", labels={"disk": "ssd", "zone": "a"})), None) == []
    assert filter_node(p, NodeInfo.of(node("n2", labels={"disk": "ssd", "zone": "b"})), None) == [
        "node(s) didn't match Pod's node affinity/selector"
    ]


def test_a_host_port_in_use_on_the_node_refuses_the_pod() -> None:
    info = bound(node("n1"), pod("a", host_ports=[8080]))
    assert filter_node(PodInfo.of(pod("p", host_ports=[8080])), info, None) == [
        "node(s) didn't have free ports for the requested pod ports"
    ]
    assert filter_node(PodInfo.of(pod("p", host_ports=[8081])), info, None) == []


def test_the_same_host_port_number_with_another_protocol_does_not_conflict() -> None:
    info = bound(node("n1"), pod("a", host_ports=[53]))
    udp = pod("p")
    udp["spec"]["containers"][0]["ports"] = [{"containerPort": 53, "hostPort": 53, "protocol": "UDP"}]
    assert filter_node(PodInfo.of(udp), info, None) == []


def _cluster_with_db_on_a() -> tuple[NodeInfo, NodeInfo, NodeInfo]:
    """Nodes a and b in zone z1, c in z2; a pod labelled app=db runs on a."""
    a = bound(node("a", labels={ZONE: "z1"}), pod("db-0", labels={"app": "db"}))
    b = NodeInfo.of(node("b", labels={ZONE: "z1"}))
    c = NodeInfo.of(node("c", labels={ZONE: "z2"}))
    return a, b, c


def test_required_pod_affinity_by_zone_admits_every_node_of_the_zone_where_a_matching_pod_runs() -> None:
    affinity = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "db"}, ZONE)]}}
    assert reasons(pod("web", affinity=affinity), *_cluster_with_db_on_a()) == {
        "a": [],
        "b": [],
        "c": ["node(s) didn't match pod affinity rules"],
    }


def test_required_pod_affinity_by_hostname_admits_only_the_node_where_a_matching_pod_runs() -> None:
    affinity = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "db"}, HOSTNAME)]}}
    assert reasons(pod("web", affinity=affinity), *_cluster_with_db_on_a()) == {
        "a": [],
        "b": ["node(s) didn't match pod affinity rules"],
        "c": ["node(s) didn't match pod affinity rules"],
    }


def test_pod_affinity_only_counts_pods_in_the_terms_namespaces() -> None:
    affinity = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "db"}, HOSTNAME)]}}
    elsewhere = pod("web", namespace="other", affinity=affinity)
    assert reasons(elsewhere, *_cluster_with_db_on_a()) == {
        "a": ["node(s) didn't match pod affinity rules"],
        "b": ["node(s) didn't match pod affinity rules"],
        "c": ["node(s) didn't match pod affinity rules"],
    }


def test_the_first_pod_of_a_group_with_affinity_to_itself_may_run_anywhere() -> None:
    affinity = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "cache"}, ZONE)]}}
    first = pod("cache-0", labels={"app": "cache"}, affinity=affinity)
    assert reasons(first, *_cluster_with_db_on_a()) == {"a": [], "b": [], "c": []}


def test_required_pod_anti_affinity_by_hostname_keeps_the_pod_off_the_node_with_a_matching_pod() -> None:
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "db"}, HOSTNAME)]}}
    assert reasons(pod("db-1", labels={"app": "db"}, affinity=anti), *_cluster_with_db_on_a()) == {
        "a": ["node(s) didn't match pod anti-affinity rules"],
        "b": [],
        "c": [],
    }


def test_required_pod_anti_affinity_by_zone_keeps_the_pod_out_of_the_whole_zone() -> None:
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "db"}, ZONE)]}}
    assert reasons(pod("db-1", labels={"app": "db"}, affinity=anti), *_cluster_with_db_on_a()) == {
        "a": ["node(s) didn't match pod anti-affinity rules"],
        "b": ["node(s) didn't match pod anti-affinity rules"],
        "c": [],
    }


def test_an_existing_pods_anti_affinity_keeps_matching_pods_out_of_its_zone() -> None:
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "web"}, ZONE)]}}
    a = bound(node("a", labels={ZONE: "z1"}), pod("loner", labels={"app": "loner"}, affinity=anti))
    b = NodeInfo.of(node("b", labels={ZONE: "z1"}))
    c = NodeInfo.of(node("c", labels={ZONE: "z2"}))
    assert reasons(pod("web", labels={"app": "web"}), a, b, c) == {
        "a": ["node(s) didn't satisfy existing pods anti-affinity rules"],
        "b": ["node(s) didn't satisfy existing pods anti-affinity rules"],
        "c": [],
    }
    assert reasons(pod("api", labels={"app": "api"}), a, b, c) == {"a": [], "b": [], "c": []}


def test_topology_for_records_the_domains_of_matching_pods() -> None:
    a, b, c = _cluster_with_db_on_a()
    affinity = {
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "db"}, ZONE)]},
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "db"}, HOSTNAME)]},
    }
    topology = topology_for(PodInfo.of(pod("p", affinity=affinity)), {"a": a, "b": b, "c": c})
    assert topology.affinity_domains == (frozenset({"z1"}),)
    assert topology.anti_domains == (frozenset({"a"}),)
    assert topology.existing_anti == ()


# --- the failure message -------------------------------------------------------------------------


def test_failure_message_counts_reasons_across_nodes_in_kubes_form() -> None:
    tainted = NodeInfo.of(node("n1", taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]))
    full = [bound(node(name, cpu="1"), pod(f"{name}-x", cpu="1")) for name in ("n2", "n3")]
    p = PodInfo.of(pod("p", cpu="500m"))
    counted = Counter(reason for n in (tainted, *full) for reason in filter_node(p, n, None))
    assert failure_message(3, counted) == (
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu."
    )


def test_failure_message_sorts_its_entries_as_strings_like_kube() -> None:
    assert failure_message(12, {"node(s) were unschedulable": 2, "Insufficient memory": 10}) == (
        "0/12 nodes are available: 10 Insufficient memory, 2 node(s) were unschedulable."
    )


# --- scores --------------------------------------------------------------------------------------


def names(scores: list[tuple[float, str]]) -> list[str]:
    return [name for _, name in scores]


def test_a_perfectly_balanced_half_full_node_scores_every_plugin_at_its_default_weight() -> None:
    scores = score_nodes(
        PodInfo.of(pod("p", cpu="500m", memory="512Mi")), [NodeInfo.of(node("n", cpu="1", memory="1Gi"))]
    )
    # resources 50, balance 100, spread 2 x 100, taints 3 x 100
    assert scores == [(650.0, "n")]


def test_least_allocated_prefers_the_emptier_node() -> None:
    fuller = bound(node("a", cpu="4", memory="8Gi"), pod("x", cpu="2", memory="4Gi"))
    emptier = NodeInfo.of(node("b", cpu="4", memory="8Gi"))
    scores = score_nodes(PodInfo.of(pod("p", cpu="1", memory="1Gi")), [fuller, emptier])
    assert names(scores) == ["b", "a"]
    assert scores[0][0] - scores[1][0] == 50.0


def test_bare_pods_without_requests_alternate_between_small_nodes_once_their_memory_counts_full() -> None:
    # a lab's 1-vCPU, 1 GiB workers: five pods' default 200 MiB fill a node's memory for scoring;
    # the balance of what pods request (nothing) must not then draw every pod to the fuller node
    nodes = [NodeInfo.of(node(name, cpu="1", memory="996608Ki")) for name in ("a", "b")]
    placed: Counter[str] = Counter()
    for i in range(20):
        info = PodInfo.of(pod(f"p{i}"))
        best = score_nodes(info, nodes)[0][1]
        next(n for n in nodes if n.name == best).add(info)
        placed[best] += 1
    # both nodes count full after ten pods each: from there ties go by name
    assert abs(placed["a"] - placed["b"]) <= 2, placed


def test_balanced_allocation_weighs_requests_prefering_the_node_they_leave_even() -> None:
    cpu_heavy = bound(node("a", cpu="4", memory="8Gi"), pod("x", cpu="3", memory="1Gi"))
    even = bound(node("b", cpu="4", memory="8Gi"), pod("y", cpu="1", memory="2Gi"))
    scores = score_nodes(PodInfo.of(pod("p", cpu="500m", memory="1Gi")), [cpu_heavy, even])
    assert names(scores) == ["b", "a"]


def test_the_most_allocated_profile_prefers_the_fuller_node() -> None:
    fuller = bound(node("b", cpu="4", memory="8Gi"), pod("x", cpu="2", memory="4Gi"))
    emptier = NodeInfo.of(node("a", cpu="4", memory="8Gi"))
    scores = score_nodes(PodInfo.of(pod("p", cpu="1", memory="1Gi")), [emptier, fuller], most_allocated=True)
    assert names(scores) == ["b", "a"]


def test_replicas_of_one_owner_spread_to_the_node_without_one() -> None:
    with_replica = bound(node("a"), pod("web-0", cpu="1", memory="1Gi", owner="rs-web"))
    with_stranger = bound(node("b"), pod("db-0", cpu="1", memory="1Gi", owner="rs-db"))
    scores = score_nodes(PodInfo.of(pod("web-1", owner="rs-web")), [with_replica, with_stranger])
    assert names(scores) == ["b", "a"]
    assert scores[0][0] - scores[1][0] == 200.0  # the spread plugin's full weight


def test_a_bare_pod_is_not_spread_and_ties_go_to_the_first_name() -> None:
    with_replica = bound(node("a"), pod("web-0", cpu="1", memory="1Gi", owner="rs-web"))
    with_stranger = bound(node("b"), pod("db-0", cpu="1", memory="1Gi", owner="rs-db"))
    scores = score_nodes(PodInfo.of(pod("bare")), [with_stranger, with_replica])
    assert names(scores) == ["a", "b"]
    assert scores[0][0] == scores[1][0]


def test_zone_spreading_prefers_a_node_in_a_zone_without_replicas() -> None:
    a = bound(node("a", labels={ZONE: "z1"}), pod("web-0", cpu="1", memory="1Gi", owner="rs-web"))
    b = bound(node("b", labels={ZONE: "z1"}), pod("x", cpu="1", memory="1Gi", owner="rs-other"))
    c = bound(node("c", labels={ZONE: "z2"}), pod("y", cpu="1", memory="1Gi", owner="rs-other"))
    incoming = PodInfo.of(pod("web-1", owner="rs-web"))
    assert names(score_nodes(incoming, [a, b, c], zones=True)) == ["c", "b", "a"]
    assert names(score_nodes(incoming, [a, b, c], zones=False)) == ["b", "c", "a"]


def test_preferred_node_affinity_pulls_the_pod_to_the_matching_node() -> None:
    affinity = {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "preference": term("disk", "In", "ssd")}]
        }
    }
    plain = NodeInfo.of(node("a"))
    ssd = NodeInfo.of(node("b", labels={"disk": "ssd"}))
    scores = score_nodes(PodInfo.of(pod("p", affinity=affinity)), [plain, ssd])
    assert names(scores) == ["b", "a"]
    assert scores[0][0] - scores[1][0] == 200.0  # node affinity: 100 x weight 2


def test_a_prefer_no_schedule_taint_is_avoided_unless_tolerated() -> None:
    spot = NodeInfo.of(node("a", taints=[{"key": "spot", "value": "yes", "effect": "PreferNoSchedule"}]))
    plain = NodeInfo.of(node("b"))
    scores = score_nodes(PodInfo.of(pod("p")), [spot, plain])
    assert names(scores) == ["b", "a"]
    assert scores[0][0] - scores[1][0] == 300.0  # taint toleration: 100 x weight 3
    tolerant = pod("q", tolerations=[{"key": "spot", "operator": "Exists", "effect": "PreferNoSchedule"}])
    assert names(score_nodes(PodInfo.of(tolerant), [spot, plain])) == ["a", "b"]


def test_preferred_pod_anti_affinity_steers_away_from_a_matching_pod() -> None:
    anti = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "podAffinityTerm": pod_term({"app": "web"}, HOSTNAME)}
            ]
        }
    }
    a = bound(node("a"), pod("web-0", cpu="1", memory="1Gi", labels={"app": "web"}))
    b = bound(node("b"), pod("db-0", cpu="1", memory="1Gi", labels={"app": "db"}))
    assert names(score_nodes(PodInfo.of(pod("web-1", labels={"app": "web"}, affinity=anti)), [a, b])) == ["b", "a"]


def test_preferred_pod_affinity_steers_toward_a_matching_pod() -> None:
    affinity = {
        "podAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 50, "podAffinityTerm": pod_term({"app": "db"}, HOSTNAME)}
            ]
        }
    }
    a = bound(node("a"), pod("web-0", cpu="1", memory="1Gi", labels={"app": "web"}))
    b = bound(node("b"), pod("db-0", cpu="1", memory="1Gi", labels={"app": "db"}))
    assert names(score_nodes(PodInfo.of(pod("web-1", affinity=affinity)), [a, b])) == ["b", "a"]


def test_equal_scores_are_ordered_by_node_name_whatever_the_input_order() -> None:
    nodes = [NodeInfo.of(node(name)) for name in ("c", "a", "b")]
    scores = score_nodes(PodInfo.of(pod("p", cpu="100m")), nodes)
    assert names(scores) == ["a", "b", "c"]
    assert len({score for score, _ in scores}) == 1
    assert score_nodes(PodInfo.of(pod("p", cpu="100m")), list(reversed(nodes))) == scores


# --- fixes measured against kube-scheduler's plugins ---------------------------------------------


def test_the_first_pod_of_a_self_affine_group_still_needs_the_topology_label_on_the_node() -> None:
    affinity = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "db"}, ZONE)]}}
    first = pod("db-0", labels={"app": "db"}, affinity=affinity)
    zoned = NodeInfo.of(node("zoned", labels={ZONE: "a"}))
    bare = NodeInfo.of(node("bare"))
    assert reasons(first, zoned, bare) == {"zoned": [], "bare": ["node(s) didn't match pod affinity rules"]}


def test_the_first_pod_exception_needs_no_match_for_any_term_and_the_pod_matching_all_of_them() -> None:
    terms = [pod_term({"app": "db"}, ZONE), pod_term({"tier": "cache"}, HOSTNAME)]
    affinity = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": terms}}
    cache = pod("cache", labels={"tier": "cache"})
    here = bound(node("here", labels={ZONE: "a"}), cache)
    there = NodeInfo.of(node("there", labels={ZONE: "b"}))
    # the pod matches only the first term, and a pod matches the second: no exception
    half = pod("p", labels={"app": "db"}, affinity=affinity)
    assert reasons(half, here, there)["there"] == ["node(s) didn't match pod affinity rules"]
    # matching both terms itself does not help once another pod matches one of them
    both = pod("q", labels={"app": "db", "tier": "cache"}, affinity=affinity)
    assert reasons(both, here, there)["there"] == ["node(s) didn't match pod affinity rules"]


def test_overhead_counts_in_the_scoring_requests_too() -> None:
    spec = {"containers": [{"name": "app"}], "overhead": {"cpu": "250m", "memory": "64Mi"}}
    assert requests_of(spec) == (250, 64 * Mi, DEFAULT_CPU + 250, DEFAULT_MEMORY + 64 * Mi)


def host_port(p: Object, port: int, address: str = "", protocol: str = "TCP") -> Object:
    entry: dict[str, Any] = {"containerPort": port, "hostPort": port, "protocol": protocol}
    if address:
        entry["hostIP"] = address
    p["spec"]["containers"][0]["ports"] = [entry]
    return p


def test_one_host_port_on_different_host_addresses_fits_on_one_node() -> None:
    taken = bound(node("n"), host_port(pod("a"), 80, "10.0.0.1"))
    assert filter_node(PodInfo.of(host_port(pod("b"), 80, "10.0.0.2")), taken, None) == []
    assert filter_node(PodInfo.of(host_port(pod("c"), 80, "10.0.0.1")), taken, None) == [
        "node(s) didn't have free ports for the requested pod ports"
    ]


def test_a_host_port_on_every_address_conflicts_with_any_address_but_not_another_protocol() -> None:
    taken = bound(node("n"), host_port(pod("a"), 53, "10.0.0.1"))
    full = ["node(s) didn't have free ports for the requested pod ports"]
    assert filter_node(PodInfo.of(host_port(pod("b"), 53)), taken, None) == full
    assert filter_node(PodInfo.of(host_port(pod("c"), 53, protocol="UDP")), taken, None) == []
    wildcard = bound(node("m"), host_port(pod("d"), 53))
    assert filter_node(PodInfo.of(host_port(pod("e"), 53, "10.0.0.9")), wildcard, None) == full


def test_removing_one_of_two_pods_on_a_port_keeps_the_port_taken() -> None:
    info = bound(node("n"), host_port(pod("a"), 80, "10.0.0.1"), host_port(pod("b"), 80, "10.0.0.2"))
    info.remove("default/a")
    assert dict(info.ports) == {("10.0.0.2", "TCP", 80): 1}


def test_a_cluster_without_nodes_says_so_as_kube_scheduler_does() -> None:
    assert failure_message(0, {}) == "no nodes available to schedule pods"
