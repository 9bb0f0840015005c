"""This node as a Node object: capacity from the machine, addresses, nodeInfo, conditions."""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.machinery.nodestatus import node_conditions, node_labels
from agents.machinery.objects import now

KUBELET_VERSION = "v1.32.0-kubelab"


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


def node_object(
    name: str, *, ip: str, facts: Mapping[str, str], max_pods: int, runtime_version: str, port: int = 10250
) -> dict[str, Any]:
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
            "labels": node_labels(name),
        },
        "spec": {},
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


def heartbeat(node: Mapping[str, Any], fresh: Mapping[str, Any]) -> dict[str, Any]:
    """A status patch: ``fresh`` conditions and facts, keeping each condition's transition time
    while its status holds."""
    old = {c.get("type"): c for c in (node.get("status") or {}).get("conditions") or []}
    conditions = []
    for condition in (fresh.get("status") or {}).get("conditions") or []:
        before = old.get(condition["type"]) or {}
        kept = before.get("status") == condition["status"] and before.get("lastTransitionTime")
        conditions.append(dict(condition, lastTransitionTime=before["lastTransitionTime"]) if kept else condition)
    status = dict(fresh.get("status") or {})
    status["conditions"] = conditions
    return {"status": status}
