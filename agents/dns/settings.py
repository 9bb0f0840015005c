"""The DNS add-on's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agents.machinery.settings import HealthSettings, LogSettings, setting


@dataclass(frozen=True)
class DnsSettings:
    """kubelab kube-dns: the cluster's Service and Pod names, answered from the API server's watches."""

    kubeconfig: Path | None = setting(None, "kubeconfig (default: the pod's ServiceAccount, in-cluster)")
    domain: str = setting("cluster.local", "the cluster's DNS domain")
    bind_address: str = setting("0.0.0.0", "the address DNS is served on (UDP and TCP)")
    port: int = setting(53, "the DNS port")
    ttl: int = setting(5, "seconds a client may cache an answer (negative answers too)")
    # in a pod: --healthz-port 8080 --healthz-bind-address 0.0.0.0, for the kubelet's probes
    healthz: HealthSettings = field(default_factory=HealthSettings)
    log: LogSettings = field(default_factory=LogSettings)
