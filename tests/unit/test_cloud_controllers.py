"""The cloud-controller-manager's plans: initializing a Node from its machine, and Nodes following
their machines (pure)."""

from __future__ import annotations

from typing import Any

from agents.controllers import base
from agents.controllers.cloud import node as cloudnode
from agents.controllers.cloud import nodelifecycle
from agents.controllers.cloud import service as svc

PROVIDER = "libvirt://0f8b7c1e-3a52-4d0e-9a57-5e0c1b2d3f4a"
INSTANCE: dict[str, Any] = {
    "name": "lab-worker1",
    "providerID": PROVIDER,
    "state": "running",
    "addresses": [{"type": "InternalIP", "address": "10.0.0.11"}, {"type": "Hostname", "address": "lab-worker1"}],
    "region": "kubelab",
    "zone": "host-a",
    "instanceType": "kubelab.1cpu.1gib",
}
UNINITIALIZED = {"key": cloudnode.UNINITIALIZED, "value": "true", "effect": "NoSchedule"}


def node(*, taints: list[dict[str, Any]] | None = None, ready: str = "True", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "lab-worker1",
            "resourceVersion": "7",
            "labels": {"kubernetes.io/hostname": "lab-worker1"},
        },
        "spec": {"taints": taints or [], **spec},
        "status": {
            "conditions": [{"type": "Ready", "status": ready}],
            "addresses": [
                {"type": "InternalIP", "address": "10.0.0.11"},
                {"type": "Hostname", "address": "lab-worker1"},
            ],
        },
    }


def test_an_uninitialized_node_gets_the_clouds_identity_and_loses_the_taint_in_one_guarded_write() -> None:
    other = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
    decided = cloudnode.plan(node(taints=[UNINITIALIZED, other]), INSTANCE)
    assert decided.patch == {
        "metadata": {
            "resourceVersion": "7",
            "labels": {
                "topology.kubernetes.io/region": "kubelab",
                "topology.kubernetes.io/zone": "host-a",
                "node.kubernetes.io/instance-type": "kubelab.1cpu.1gib",
                "failure-domain.beta.kubernetes.io/region": "kubelab",
                "failure-domain.beta.kubernetes.io/zone": "host-a",
                "beta.kubernetes.io/instance-type": "kubelab.1cpu.1gib",
            },
        },
        "spec": {"taints": [other], "providerID": PROVIDER},
    }
    assert decided.addresses is None  # the kubelet's already match the cloud's
    assert decided.event is not None and decided.event.reason == "Synced"
    only = cloudnode.plan(node(taints=[UNINITIALIZED], providerID=PROVIDER), INSTANCE)
    assert only.patch is not None and only.patch["spec"] == {"taints": None}  # the last taint goes: null


def test_an_initialized_node_only_follows_the_clouds_addresses() -> None:
    assert cloudnode.plan(node(providerID=PROVIDER), INSTANCE) == cloudnode.Plan()
    moved = {**INSTANCE, "addresses": [{"type": "InternalIP", "address": "10.0.0.99"}]}
    assert cloudnode.plan(node(providerID=PROVIDER), moved).addresses == [
        {"type": "InternalIP", "address": "10.0.0.99"}
    ]
    assert cloudnode.plan(node(), None) == cloudnode.Plan()  # not ours to initialize


def test_a_node_without_a_machine_stays_tainted_and_is_looked_at_again() -> None:
    decided = cloudnode.plan(node(taints=[UNINITIALIZED]), None)
    assert decided.patch is None and decided.retry
    assert decided.event is not None and decided.event.type == "Warning"


def test_a_not_ready_node_whose_machine_is_gone_is_deleted() -> None:
    decided = nodelifecycle.plan(node(ready="Unknown", providerID=PROVIDER), None, now="2026-12-07T14:00:00Z")
    assert decided.delete and decided.event is not None and decided.event.reason == "DeletingNode"
    assert decided.event.message == "Deleting node lab-worker1 because it does not exist in the cloud provider"
    # a ready node is never deleted, whatever the cloud says
    assert not nodelifecycle.plan(node(providerID=PROVIDER), None, now="t").delete


def test_a_stopped_machine_taints_its_node_until_it_is_ready_again() -> None:
    stopped = {**INSTANCE, "state": "stopped"}
    decided = nodelifecycle.plan(node(ready="False", providerID=PROVIDER), stopped, now="2026-12-07T14:00:00Z")
    taint = {"key": nodelifecycle.SHUTDOWN, "effect": "NoSchedule", "timeAdded": "2026-12-07T14:00:00Z"}
    assert decided.taints == [taint] and not decided.delete
    assert nodelifecycle.plan(node(ready="False", taints=[taint]), stopped, now="t") == nodelifecycle.Plan()
    back = nodelifecycle.plan(node(taints=[taint]), INSTANCE, now="t")
    assert back.taints == []
    running = nodelifecycle.plan(node(ready="False", providerID=PROVIDER), INSTANCE, now="t")
    assert running == nodelifecycle.Plan()


# --- the service controller --------------------------------------------------------------------------


def lb_service(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "default",
            "uid": "6b1c2f4e-1d2a-4f7b-9c3e-0a1b2c3d4e5f",
            "resourceVersion": "9",
            "finalizers": [svc.CLEANUP_FINALIZER],
        },
        "spec": {
            "type": "LoadBalancer",
            "ports": [
                {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 31080},
                {"name": "https", "protocol": "TCP", "port": 443, "targetPort": 8443, "nodePort": 31443},
            ],
            **spec,
        },
        "status": {"loadBalancer": {}},
    }


def named_node(name: str, address: str, *, ready: str = "True", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "status": {
            "conditions": [{"type": "Ready", "status": ready}],
            "addresses": [{"type": "InternalIP", "address": address}],
        },
    }


NODES = [
    named_node("w2", "10.0.0.12"),
    named_node("w1", "10.0.0.11"),
    named_node("down", "10.0.0.13", ready="False"),
    named_node("out", "10.0.0.14", labels={svc.EXCLUDE_LABEL: ""}),
]


def test_the_load_balancer_is_named_as_kube_names_it_and_sends_to_eligible_nodes() -> None:
    assert svc.load_balancer_name(lb_service()) == "a6b1c2f4e1d2a4f7b9c3e0a1b2c3d4e5"
    decided = svc.plan(lb_service(), NODES, known_nodes=None)
    assert decided.ensure == {
        "ports": [
            {"name": "http", "protocol": "TCP", "port": 80, "nodePort": 31080},
            {"name": "https", "protocol": "TCP", "port": 443, "nodePort": 31443},
        ],
        "nodes": [{"name": "w1", "address": "10.0.0.11"}, {"name": "w2", "address": "10.0.0.12"}],
    }
    assert [e.reason for e in decided.events] == ["EnsuringLoadBalancer"]
    local = svc.plan(lb_service(externalTrafficPolicy="Local", healthCheckNodePort=32000), NODES, known_nodes=None)
    assert local.ensure is not None and local.ensure["healthCheckNodePort"] == 32000


def test_the_finalizer_comes_first_and_a_node_change_is_an_update() -> None:
    bare = lb_service()
    bare["metadata"]["finalizers"] = []
    assert svc.plan(bare, NODES, known_nodes=None) == svc.Plan(add_finalizer=True)
    served = lb_service()
    served["status"] = {"loadBalancer": {"ingress": [{"ip": "192.168.123.128", "ipMode": "VIP"}]}}
    given = svc.eligible_nodes(NODES)
    again = svc.plan(served, NODES, known_nodes=given)
    assert again.ensure is not None and again.events == ()
    fewer = svc.plan(served, NODES[:1], known_nodes=given)
    assert [(e.reason, e.message) for e in fewer.events] == [
        ("UpdatedLoadBalancer", "Updated load balancer with new hosts")
    ]
    assert fewer.ensure is not None and fewer.ensure["nodes"] == [{"name": "w2", "address": "10.0.0.12"}]


def test_a_service_that_goes_or_changes_type_takes_its_load_balancer_away() -> None:
    going = lb_service()
    going["metadata"]["deletionTimestamp"] = "2026-12-07T14:00:00Z"
    decided = svc.plan(going, NODES, known_nodes=None)
    assert decided.delete and [e.reason for e in decided.events] == ["DeletingLoadBalancer"]
    assert svc.plan(lb_service(type="ClusterIP"), NODES, known_nodes=None).delete
    plain = lb_service(type="ClusterIP")
    plain["metadata"]["finalizers"] = []
    assert svc.plan(plain, NODES, known_nodes=None) == svc.Plan()


def test_the_controllers_flag_follows_kube_s_rule() -> None:
    known = ["cloud-node", "cloud-node-lifecycle", "service"]
    assert base.enabled(["*"], known) == known
    assert base.enabled(["*", "-service"], known) == ["cloud-node", "cloud-node-lifecycle"]
    assert base.enabled(["service", "route"], known) == ["service"]
    assert base.unknown(["*", "-route", "service", "nodes"], known) == ["route", "nodes"]
