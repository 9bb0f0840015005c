"""The ingress controller's settings: ingress-nginx's flag names where it has them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agents.ingress.classes import CONTROLLER
from agents.machinery.settings import HealthSettings, LogSettings, setting


@dataclass(frozen=True)
class IngressSettings:
    """kubelab ingress-nginx: Debian's nginx routing the Ingresses of its class to Services' endpoints."""

    kubeconfig: Path | None = setting(None, "kubeconfig (default: the pod's ServiceAccount, in-cluster)")
    controller_class: str = setting(CONTROLLER, "the spec.controller of the IngressClasses served")
    ingress_class: str = setting("nginx", "the kubernetes.io/ingress.class annotation value also served")
    publish_service: str = setting(
        "", "NAMESPACE/NAME of the controller's Service whose load balancer address the Ingresses report"
    )
    election_id: str = setting("ingress-nginx-leader", "the Lease (in the pod's namespace) of the status writer")
    update_status: bool = setting(True, "write the address into the served Ingresses' status (leader only)")
    status_update_interval: float = setting(60.0, "seconds between status checks, besides those after each sync")
    pod_name: str = setting("", "this pod's name (the downward API), for events and the node fallback")
    pod_namespace: str = setting("", "this pod's namespace (the downward API)")
    config_dir: Path = setting(Path("/etc/ingress-controller"), "where nginx.conf and the TLS files are written")
    nginx_binary: str = setting("/usr/sbin/nginx", "the nginx program")
    nginx_user: str = setting("www-data", "the user nginx's workers run as ('' keeps nginx's default)")
    worker_processes: str = setting("auto", "nginx's worker_processes")
    http_port: int = setting(80, "the port nginx serves HTTP on")
    https_port: int = setting(443, "the port nginx serves HTTPS on")
    sync_interval: float = setting(1.0, "the least seconds between two configuration syncs (bursts coalesce)")
    # in a pod: --healthz-port 10254 --healthz-bind-address 0.0.0.0, for the kubelet's probes
    healthz: HealthSettings = field(default_factory=HealthSettings)
    log: LogSettings = field(default_factory=LogSettings)
