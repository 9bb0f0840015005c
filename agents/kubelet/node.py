"""This node as a Node object: capacity from the machine, addresses, nodeInfo, conditions, and the
labels and taints it is registered with (``--node-labels``, ``--register-with-taints``)."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.machinery.nodestatus import node_conditions, node_labels
from agents.machinery.objects import now
from agents.machinery.selectors import label_key_errors, valid_label_value

KUBELET_VERSION = "v1.37.0-kubelab"
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
VALUE_RULE = "at most 63 characters, alphanumerics, '-', '_' or '.', alphanumeric at both ends"


def parse_taints(specs: Sequence[str]) -> list[dict[str, str]]:
    """Taints written as kube's kubelet takes them, ``key=value:Effect`` or ``key:Effect``; a
    ValueError names the first one that is not valid."""
    taints: list[dict[str, str]] = []
    for spec in specs:
        pair, colon, effect = spec.rpartition(":")
        key, equals, value = pair.partition("=")
        if not colon or effect not in TAINT_EFFECTS:
            effects = ", ".join(TAINT_EFFECTS)
            raise ValueError(f"taint {spec!r}: give key=value:Effect or key:Effect, the Effect one of {effects}")
        problems = label_key_errors(key)
        if problems:
            raise ValueError(f"taint {spec!r}: invalid key {key!r}: {problems[0]}")
        if not valid_label_value(value):
            raise ValueError(f"taint {spec!r}: invalid value {value!r}: {VALUE_RULE}")
        taint = {"key": key, "effect": effect}
        if equals:
            taint["value"] = value
        if any(t["key"] == key and t["effect"] == effect for t in taints):
            raise ValueError(f"taint {spec!r}: {key}:{effect} is given twice")
        taints.append(taint)
    return taints


def parse_labels(specs: Sequence[str]) -> dict[str, str]:
    """Labels written ``key=value`` (the value may be empty); a ValueError names the first one that
    is not valid."""
    labels: dict[str, str] = {}
    for spec in specs:
        key, equals, value = spec.partition("=")
        if not equals:
            raise ValueError(f"node label {spec!r}: give key=value (key= for an empty value)")
        problems = label_key_errors(key)
        if problems:
            raise ValueError(f"node label {spec!r}: invalid key {key!r}: {problems[0]}")
        if not valid_label_value(value):
            raise ValueError(f"node label {spec!r}: invalid value {value!r}: {VALUE_RULE}")
        labels[key] = value
    return labels


def memory_kib(meminfo: str) -> int:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def os_image(os_release: str) -> str:
    for line in os_release.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return "Linux"


def machine_facts(root: Path) -> dict[str, str]:
    """What the node offers, read from this machine."""
    stats = os.statvfs(root if root.exists() else Path("/"))
    release = Path("/etc/os-release")
    return {
        "cpu": str(os.cpu_count() or 1),
        "memory": f"{memory_kib(Path('/proc/meminfo').read_text())}Ki",
        "ephemeral-storage": f"{stats.f_blocks * stats.f_frsize // 1024}Ki",
        "kernel": platform.release(),
        "os_image": os_image(release.read_text()) if release.exists() else "Linux",
        "machine_id": Path("/etc/machine-id").read_text().strip() if Path("/etc/machine-id").exists() else "",
        "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
    }


UNINITIALIZED_TAINT = {"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"}
PROVIDED_NODE_IP = "alpha.kubernetes.io/provided-node-ip"  # the address a kubelet under an external cloud was given


def node_object(
    name: str,
    *,
    ip: str,
    facts: Mapping[str, str],
    max_pods: int,
    runtime_version: str,
    port: int = 10250,
    labels: Mapping[str, str] | None = None,
    taints: Sequence[Mapping[str, str]] = (),
    external_cloud: bool = False,
) -> dict[str, Any]:
    """The Node as the kubelet creates it; ``labels`` and ``taints`` only count at creation (the
    heartbeat patches the status alone), as with kube's ``--node-labels`` and ``--register-with-taints``.
    Under an external cloud (``--cloud-provider=external``) it is created with the uninitialized
    taint and its address in the ``alpha.kubernetes.io/provided-node-ip`` annotation, as kube's."""
    if external_cloud and not any(t.get("key") == UNINITIALIZED_TAINT["key"] for t in taints):
        taints = [*taints, UNINITIALIZED_TAINT]
    capacity = {
        "cpu": facts["cpu"],
        "memory": facts["memory"],
        "pods": str(max_pods),
        "ephemeral-storage": facts["ephemeral-storage"],
    }
    conditions = node_conditions(now())
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": node_labels(name, labels),
            **({"annotations": {PROVIDED_NODE_IP: ip}} if external_cloud else {}),
        },
        "spec": {"taints": [dict(t) for t in taints]} if taints else {},
        "status": {
            "capacity": capacity,
            "allocatable": dict(capacity),
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {
                "machineID": facts.get("machine_id", ""),
                "systemUUID": facts.get("machine_id", ""),
                "bootID": facts.get("boot_id", ""),
                "kernelVersion": facts["kernel"],
                "osImage": facts["os_image"],
                "containerRuntimeVersion": runtime_version,
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def heartbeat(node: Mapping[str, Any], fresh: Mapping[str, Any], *, external_cloud: bool = False) -> dict[str, Any]:
    """A status patch: ``fresh`` conditions and facts, keeping each condition's transition time
    while its status holds. Under an external cloud the addresses are the cloud-controller-manager's
    once it has set them, so the patch leaves them out then."""
    old = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}
    conditions = []
    for condition in (fresh.get("status") or {}).get("conditions") or []:
        before = old.get(condition["type"]) or {}
        kept = before.get("status") == condition["status"] and before.get("lastTransitionTime")
        conditions.append(dict(condition, lastTransitionTime=before["lastTransitionTime"]) if kept else condition)
    status = dict(fresh.get("status") or {})
    status["conditions"] = conditions
    if external_cloud and (node.get("spec") or {}).get("providerID"):
        status.pop("addresses", None)
    return {"status": status}
