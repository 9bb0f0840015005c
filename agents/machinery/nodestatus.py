"""The labels and conditions a node agent reports, as kube's kubelet words them (shared by the
kubelet and the simulated nodes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PRESSURE = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)


def node_labels(name: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The well-known labels a kubelet puts on its node, plus ``extra``."""
    return {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", **(extra or {})}


def node_conditions(stamp: str, *, ready: bool = True) -> list[dict[str, Any]]:
    """No pressure, and Ready (or not yet), all heartbeating and transitioning at ``stamp``."""
    conditions: list[dict[str, Any]] = [
        {
            "type": kind,
            "status": "False",
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
        for kind, reason, message in PRESSURE
    ]
    conditions.append(
        {
            "type": "Ready",
            "status": "True" if ready else "False",
            "reason": "KubeletReady" if ready else "KubeletNotReady",
            "message": "kubelet is posting ready status" if ready else "kubelet is starting",
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
    )
    return conditions
