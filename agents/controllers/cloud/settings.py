"""The cloud-controller-manager's settings; names follow kube's cloud-controller-manager where they mean the same."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agents.machinery.settings import HealthSettings, LeaderSettings, LogSettings, setting


@dataclass(frozen=True)
class CloudControllerManagerSettings:
    """kubelab cloud-controller-manager: the control loops that ask the lab's cloud about machines."""

    kubeconfig: Path | None = setting(None, "kubeconfig with the API server's address and this component's token")
    cloud_provider: str = setting("libvirt", "the cloud: libvirt (the lab's, through its cloud API)")
    cloud_config: Path | None = setting(None, "YAML with the cloud API's url, token-file and ca-file")
    controllers: tuple[str, ...] = setting(("*",), "controllers to run: * for all, or names (comma separated)")
    node_monitor_period: float = setting(5.0, "seconds between looks at every node's machine")
    node_status_update_frequency: float = setting(300.0, "seconds between refreshes of initialized nodes' addresses")
    configure_cloud_routes: bool = setting(True, "program every node's podCIDR route in the cloud's router")
    allocate_node_cidrs: bool = setting(True, "whether nodes get podCIDRs (the routes need them)")
    cluster_cidr: str = setting("", "the pod network (CIDRs, comma separated); only routes inside it are managed")
    cluster_name: str = setting("kubernetes", "the cluster's name, the prefix of its cloud routes' names")
    route_reconciliation_period: float = setting(10.0, "seconds between reconciliations of the cloud's routes")
    leader: LeaderSettings = field(default_factory=LeaderSettings)
    healthz: HealthSettings = field(default_factory=HealthSettings)
    log: LogSettings = field(default_factory=LogSettings)
