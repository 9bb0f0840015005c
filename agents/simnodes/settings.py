"""The simulated nodes' settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agents.machinery.settings import HealthSettings, LogSettings, setting


@dataclass(frozen=True)
class SimNodesSettings:
    """kubelab simulated nodes: register nodes that heartbeat and run pods in appearance only."""

    kubeconfig: Path | None = setting(None, "kubeconfig with the API server's address and a node token")
    count: int = setting(3, "how many nodes to simulate")
    prefix: str = setting("sim", "node names are PREFIX-1, PREFIX-2, ...")
    cpu: str = setting("4", "CPU capacity of each node")
    memory: str = setting("8Gi", "memory capacity of each node")
    pods: str = setting("110", "pod capacity of each node")
    zones: tuple[str, ...] = setting(("zone-a", "zone-b", "zone-c"), "topology zones, assigned in turn")
    heartbeat_interval: float = setting(10.0, "seconds between Lease renewals, as a kubelet's")
    status_interval: float = setting(60.0, "seconds between node status reports when nothing changed")
    run_seconds: float = setting(1.0, "how long pods that run to completion (restartPolicy Never/OnFailure) take")
    concurrency: int = setting(32, "pod status updates in flight at once")
    healthz: HealthSettings = field(default_factory=HealthSettings)
    log: LogSettings = field(default_factory=LogSettings)
