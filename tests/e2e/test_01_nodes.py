"""Scenario 1: every machine is a Ready node, initialized and routed by the cloud; the master is tainted
like a kubeadm control plane."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from kubelab_testing.commands import run
from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually


def test_all_nodes_are_ready(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    nodes = {n["metadata"]["name"]: n for n in kubelab_kubectl.json("get", "nodes")["items"]}
    assert sorted(nodes) == sorted(n.name for n in kubelab_lab.nodes)
    for name, node in nodes.items():
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", f"{name}: {ready}"
        addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
        assert addresses["InternalIP"] == next(n.ip for n in kubelab_lab.nodes if n.name == name)
        assert node["spec"]["podCIDR"]


def test_every_node_was_initialized_by_the_cloud_controller_manager(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    """The kubelets register under an external cloud; the cloud-controller-manager asks the lab's cloud
    (libvirt) and gives each node its provider ID, zone and instance type, then lets pods in."""
    for node in kubelab_kubectl.json("get", "nodes")["items"]:
        name, labels = node["metadata"]["name"], node["metadata"]["labels"]
        assert node["spec"].get("providerID", "").startswith("libvirt://"), name
        assert labels.get("topology.kubernetes.io/region") == "kubelab" and labels.get("topology.kubernetes.io/zone")
        assert labels.get("node.kubernetes.io/instance-type", "").startswith("kubelab."), labels
        taints = [t["key"] for t in node["spec"].get("taints") or []]
        assert "node.cloudprovider.kubernetes.io/uninitialized" not in taints, (name, taints)


def test_the_master_takes_no_ordinary_pods(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    master = kubelab_kubectl.json("get", "node", kubelab_lab.master.name)
    assert {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"} in master["spec"]["taints"]
    assert "node-role.kubernetes.io/control-plane" in master["metadata"]["labels"]
    for worker in kubelab_lab.workers:
        assert not kubelab_kubectl.json("get", "node", worker.name)["spec"].get("taints")


def test_status_reports_machines_nodes_and_components(kubelab_lab: Lab) -> None:
    status = kubelab_lab.cli("status", "--name", kubelab_lab.name, timeout=300)
    assert status.ok, status.out + status.err
    for node in kubelab_lab.nodes:
        row = next(line for line in status.out.splitlines() if line.startswith(node.name + " "))
        assert node.ip in row and " running " in row and " Ready " in row and "kubelet=active" in row
    master_row = next(line for line in status.out.splitlines() if line.startswith(kubelab_lab.master.name + " "))
    assert "apiserver=active" in master_row and "etcd=active" in master_row
    assert "cloud-controller-manager=active" in master_row


def test_the_cloud_routes_each_nodes_pod_network(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    """The cloud-controller-manager's route controller puts every node's podCIDR in the cloud's router
    (the lab network's gateway) and says so in the node's NetworkUnavailable condition; the nodes carry
    no host-gw routes of their own (pod traffic to another node leaves by their default route)."""

    def routed() -> list[dict[str, Any]]:
        nodes: list[dict[str, Any]] = kubelab_kubectl.json("get", "nodes")["items"]
        conditions = [_condition(n, "NetworkUnavailable") for n in nodes]
        return nodes if all(c.get("status") == "False" for c in conditions) else []

    nodes = eventually(routed, timeout=60, what="NetworkUnavailable=False on every node")
    for node in nodes:
        assert _condition(node, "NetworkUnavailable")["reason"] == "RouteCreated", node["status"]["conditions"]
    gateway = cloud_routes(kubelab_lab)
    for node in nodes:
        ip = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
        assert gateway.get(node["spec"]["podCIDR"]) == ip, (node["metadata"]["name"], gateway)
    for machine in kubelab_lab.nodes:
        own = kubelab_lab.ssh(machine.name, "ip -4 route show proto 75")
        assert own.ok and own.out.strip() == "", (machine.name, own.out, own.err)


def cloud_routes(lab: Lab) -> dict[str, str]:
    """The cloud router's routes for ``lab``'s pod networks: destination -> next hop, read with ``ip`` on
    the lab network's side of this host (the table the lab's bridge looks up)."""
    shown = run(lab.on_lab_network(["ip", "-json", "route", "show", "table", "all", "proto", "75"]), timeout=30)
    assert shown.ok, shown.err
    network = ipaddress.ip_network(lab.spec["network_cidr"])
    return {
        r["dst"]: r["gateway"]
        for r in json.loads(shown.out or "[]")
        if "gateway" in r and ipaddress.ip_address(r["gateway"]) in network
    }


def _condition(node: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in node["status"].get("conditions") or [] if c["type"] == kind), {})
