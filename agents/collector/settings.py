"""The trace collector's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agents.machinery.settings import LogSettings, setting


@dataclass(frozen=True)
class RetentionSettings:
    max_spans: int = setting(100_000, "spans kept in memory at most (the least recently updated traces go first)")
    max_age: float = setting(7200.0, "seconds a trace is kept after its last span arrived")


@dataclass(frozen=True)
class CollectorSettings:
    """kubelab trace collector: keeps the components' spans and answers for whole traces."""

    kubeconfig: Path | None = setting(None, "kubeconfig with the API server's address and the collector's identity")
    port: int = setting(4318, "port of OTLP/HTTP (POST /v1/traces), the query API and /healthz")
    bind_address: str = setting("0.0.0.0", "address the port listens on")  # workers send spans here
    advertise_address: str = setting(
        "127.0.0.1", "address published as the endpoint of the Service kube-system/trace-collector"
    )
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    log: LogSettings = field(default_factory=LogSettings)
