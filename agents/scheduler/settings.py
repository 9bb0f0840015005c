"""The scheduler's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agents.machinery.settings import HealthSettings, LeaderSettings, LogSettings, setting
from agents.machinery.tracing import TracingSettings


@dataclass(frozen=True)
class SchedulerSettings:
    """kubelab scheduler: binds pending pods to the nodes that fit them best."""

    kubeconfig: Path | None = setting(None, "kubeconfig with the API server's address and this scheduler's token")
    scheduler_name: str = setting("default-scheduler", "pods whose spec.schedulerName is this are scheduled")
    scoring: str = setting("least-allocated", "least-allocated (spread load) or most-allocated (bin packing)")
    bind_concurrency: int = setting(64, "bindings in flight at once")
    bind_timeout: float = setting(
        600.0, "seconds a binding waits for the pod's volume claims to be bound on the chosen node"
    )
    leader: LeaderSettings = field(default_factory=LeaderSettings)
    healthz: HealthSettings = field(default_factory=HealthSettings)
    log: LogSettings = field(default_factory=LogSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
