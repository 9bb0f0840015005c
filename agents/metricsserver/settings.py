"""The metrics-server add-on's settings: metrics-server's own flag names (``--secure-port``,
``--metric-resolution``, ``--kubelet-preferred-address-types``, ...), also config-file keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agents.machinery.settings import HealthSettings, LogSettings, setting


@dataclass(frozen=True)
class KubeletSettings:
    preferred_address_types: tuple[str, ...] = setting(
        ("Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP"),
        "the node address types to reach a kubelet at, the first one a node has wins",
    )
    port: int = setting(10250, "the kubelets' HTTPS port")
    use_node_status_port: bool = setting(False, "use the port each node publishes in status.daemonEndpoints")
    insecure_tls: bool = setting(False, "do not check the kubelets' serving certificates")
    certificate_authority: Path | None = setting(
        None, "CA file for the kubelets' serving certificates (default: the cluster CA of the ServiceAccount)"
    )
    request_timeout: str = setting("10s", "how long one scrape of a kubelet may take (a Go duration)")


@dataclass(frozen=True)
class MetricsServerSettings:
    """kubelab metrics-server: the metrics.k8s.io API (kubectl top, autoscaling) from the kubelets."""

    kubeconfig: Path | None = setting(None, "kubeconfig (default: the pod's ServiceAccount, in-cluster)")
    bind_address: str = setting("0.0.0.0", "the address the HTTPS API is served on")
    secure_port: int = setting(10250, "the port of the HTTPS API (metrics.k8s.io, /healthz, /livez, /readyz)")
    cert_dir: Path = setting(Path("apiserver.local.config/certificates"), "where a self-signed certificate is kept")
    tls_cert_file: Path | None = setting(None, "the serving certificate (default: self-signed, in cert-dir)")
    tls_private_key_file: Path | None = setting(None, "the serving certificate's key")
    metric_resolution: str = setting("15s", "how often the kubelets are scraped (a Go duration, at least 10s)")
    kubelet: KubeletSettings = field(default_factory=KubeletSettings)
    # in a pod: --healthz-port 8080 --healthz-bind-address 0.0.0.0, for the kubelet's plain-HTTP probes
    healthz: HealthSettings = field(default_factory=HealthSettings)
    log: LogSettings = field(default_factory=LogSettings)
