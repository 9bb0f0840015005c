"""The controller-manager's settings; names follow kube-controller-manager's where the meaning is the same."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agents.machinery.settings import HealthSettings, LeaderSettings, LogSettings, setting
from agents.machinery.tracing import TracingSettings


@dataclass(frozen=True)
class ControllerManagerSettings:
    """kubelab controller-manager: the control loops of the cluster."""

    kubeconfig: Path | None = setting(None, "kubeconfig with the API server's address and this component's token")
    controllers: tuple[str, ...] = setting(("*",), "controllers to run: * for all, or names (comma separated)")
    node_monitor_period: float = setting(5.0, "seconds between checks of every node's heartbeat")
    node_monitor_grace_period: float = setting(40.0, "seconds without a heartbeat before a node is NotReady/Unknown")
    job_backoff_seconds: float = setting(
        10.0, "a failed Job pod is replaced after this long, doubled for every earlier failure (at most 6 min)"
    )
    cluster_cidr: str = setting("10.244.0.0/16", "the pod network; each node gets a subnet of it")
    node_cidr_mask_size: int = setting(24, "prefix length of each node's pod subnet")
    root_ca_file: Path | None = setting(
        None, "the cluster's CA (PEM), published in every namespace as kube-root-ca.crt"
    )
    cluster_signing_cert_file: Path | None = setting(
        None, "CA certificate (PEM) the CSR signer issues kube-apiserver-client certificates with"
    )
    cluster_signing_key_file: Path | None = setting(None, "that CA's private key (PEM)")
    cluster_signing_duration: float = setting(
        365 * 24 * 3600.0, "longest validity, in seconds, of a certificate the CSR signer issues"
    )
    terminated_pod_gc_threshold: int = setting(
        12500, "terminated pods kept before the pod garbage collector deletes the oldest (0: never)"
    )
    horizontal_pod_autoscaler_sync_period: float = setting(15.0, "seconds between two looks at each autoscaler")
    horizontal_pod_autoscaler_downscale_stabilization: float = setting(
        300.0, "seconds of recommendations an autoscaler scales down no lower than"
    )
    horizontal_pod_autoscaler_tolerance: float = setting(
        0.1, "how far from 1.0 the usage ratio must be before an autoscaler scales"
    )
    horizontal_pod_autoscaler_cpu_initialization_period: float = setting(
        300.0, "seconds after a pod starts during which its CPU sample is used only once it is ready"
    )
    horizontal_pod_autoscaler_initial_readiness_delay: float = setting(
        30.0, "seconds after a pod starts during which a not-ready pod counts as never ready yet"
    )
    pvclaimbinder_sync_period: float = setting(
        15.0, "seconds between two looks at every persistent volume and claim (binding, provisioning, reclaim)"
    )
    attach_detach_reconcile_sync_period: float = setting(
        60.0, "seconds between two full looks of the attach/detach controller at every node"
    )
    max_wait_for_unmount_duration: float = setting(
        360.0, "seconds a volume no pod needs waits for its unmount on a not-ready node before it is force detached"
    )
    disable_force_detach_on_timeout: bool = setting(
        False, "never force detach a volume that its not-ready node did not unmount"
    )
    leader: LeaderSettings = field(default_factory=LeaderSettings)
    healthz: HealthSettings = field(default_factory=HealthSettings)
    log: LogSettings = field(default_factory=LogSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
