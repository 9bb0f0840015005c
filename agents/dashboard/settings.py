"""The dashboard's settings (flags, config-file keys and ``KUBELAB_DASHBOARD_*`` variables alike)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agents.machinery.settings import HealthSettings, LogSettings, setting


@dataclass(frozen=True)
class DashboardSettings:
    """kubelab dashboard: the cluster's architecture, objects and traces in a browser."""

    kubeconfig: Path | None = setting(
        None, "kubeconfig naming the API server and its CA (default: the pod's ServiceAccount, in-cluster)"
    )
    bind_address: str = setting("0.0.0.0", "the address the page is served on")
    port: int = setting(8080, "the port the page is served on (plain HTTP: the API server's proxy reaches it)")
    request_timeout: float = setting(10.0, "seconds one request to the API server may take")
    healthz: HealthSettings = field(default_factory=HealthSettings)
    log: LogSettings = field(default_factory=LogSettings)
