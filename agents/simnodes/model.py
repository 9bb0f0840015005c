"""What a simulated node and its pods look like: pure builders of objects and status changes.

Annotations steer a simulation: on a Node, ``kubelab.io/heartbeat: paused`` silences it (no Lease
renewal, no status: the node lifecycle controller will find it NotReady); on a pod,
``kubelab.io/simulate-ready: "false"`` keeps it running but not ready,
``kubelab.io/simulate-exit-code`` sets how a run-to-completion pod ends, and
``kubelab.io/simulate-seconds`` how long it runs.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from agents.machinery.nodestatus import node_conditions, node_labels
from agents.machinery.objects import Object, now

HEARTBEAT = "kubelab.io/heartbeat"
SIMULATED = "kubelab.io/simulated"
READY = "kubelab.io/simulate-ready"
EXIT_CODE = "kubelab.io/simulate-exit-code"
SECONDS = "kubelab.io/simulate-seconds"
KUBELET_VERSION = "v1.37.0-kubelab-sim"


def node_object(name: str, *, index: int, cpu: str, memory: str, pods: str, zone: str) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": node_labels(
                name,
                {
                    "topology.kubernetes.io/zone": zone,
                    "node.kubernetes.io/instance-type": "simulated",
                    SIMULATED: "true",
                },
            ),
        },
        "spec": {},
        "status": node_status(index=index, cpu=cpu, memory=memory, pods=pods, ready=True),
    }


def node_status(*, index: int, cpu: str, memory: str, pods: str, ready: bool) -> dict[str, Any]:
    conditions = node_conditions(now(), ready=ready)
    capacity = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi"}
    return {
        "capacity": capacity,
        "allocatable": dict(capacity),
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": f"10.200.{index // 250}.{index % 250 + 2}"},
            {"type": "Hostname", "address": ""},
        ],
        "nodeInfo": {
            "machineID": f"sim{index:08d}",
            "systemUUID": f"sim-{index}",
            "bootID": f"sim-{index}",
            "kernelVersion": "6.1.0-simulated",
            "osImage": "kubelab simulated node",
            "containerRuntimeVersion": "simulated://1.0",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def heartbeat_patch(node: Object) -> dict[str, Any]:
    """Refresh every condition's heartbeat (and make Ready true), keeping transition times."""
    stamp = now()
    conditions = []
    for condition in (node.get("status") or {}).get("conditions") or []:
        updated = dict(condition, lastHeartbeatTime=stamp)
        if condition.get("type") == "Ready" and condition.get("status") != "True":
            updated.update(
                status="True",
                reason="KubeletReady",
                message="kubelet is posting ready status",
                lastTransitionTime=stamp,
            )
        elif condition.get("type") != "Ready" and condition.get("status") != "False":
            updated.update(status="False", lastTransitionTime=stamp)
        conditions.append(updated)
    return {"status": {"conditions": conditions}}


def pod_address(cidr: str, slot: int) -> str:
    network = ipaddress.ip_network(cidr)
    return str(network.network_address + 2 + slot)  # .1 is the node's bridge


def _annotation(pod: Object, name: str) -> str | None:
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(name)
    return str(value) if value is not None else None


def runs_to_completion(pod: Object) -> bool:
    return (pod.get("spec") or {}).get("restartPolicy", "Always") in ("Never", "OnFailure")


def run_seconds(pod: Object, default: float) -> float:
    raw = _annotation(pod, SECONDS)
    try:
        return float(raw) if raw is not None else default
    except ValueError:
        return default


def _conditions(ready: bool, stamp: str) -> list[dict[str, Any]]:
    flag = "True" if ready else "False"
    return [
        {"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": stamp}
        for t, s in (
            ("PodReadyToStartContainers", "True"),
            ("Initialized", "True"),
            ("Ready", flag),
            ("ContainersReady", flag),
            ("PodScheduled", "True"),
        )
    ]


def running_status(pod: Object, *, ip: str, host_ip: str) -> dict[str, Any]:
    stamp = now()
    ready = _annotation(pod, READY) != "false"
    statuses = [
        {
            "name": c["name"],
            "image": c.get("image", ""),
            "imageID": f"sim://{c.get('image', '')}",
            "containerID": f"sim://{pod['metadata'].get('uid', '')}/{c['name']}",
            "ready": ready,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": stamp}},
        }
        for c in (pod.get("spec") or {}).get("containers") or []
    ]
    return {
        "phase": "Running",
        "conditions": _conditions(ready, stamp),
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": stamp,
        "containerStatuses": statuses,
    }


def finished_status(pod: Object) -> dict[str, Any]:
    stamp = now()
    code = int(_annotation(pod, EXIT_CODE) or 0)
    status = dict(pod.get("status") or {})
    reason = "Completed" if code == 0 else "Error"
    status["phase"] = "Succeeded" if code == 0 else "Failed"
    status["conditions"] = [
        dict(c, status="False", lastTransitionTime=stamp, reason="PodCompleted")
        if c.get("type") in ("Ready", "ContainersReady")
        else c
        for c in status.get("conditions") or []
    ]
    status["containerStatuses"] = [
        dict(
            cs,
            ready=False,
            started=False,
            state={
                "terminated": {
                    "exitCode": code,
                    "reason": reason,
                    "startedAt": (cs.get("state") or {}).get("running", {}).get("startedAt", stamp),
                    "finishedAt": stamp,
                    "containerID": cs.get("containerID", ""),
                }
            },
        )
        for cs in status.get("containerStatuses") or []
    ]
    return status


def paused(node: Object | None) -> bool:
    return bool(node) and ((node or {}).get("metadata", {}).get("annotations") or {}).get(HEARTBEAT) == "paused"
