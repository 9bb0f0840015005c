"""The kubelet's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agents.machinery.settings import HealthSettings, LogSettings, setting
from agents.machinery.tracing import TracingSettings


@dataclass(frozen=True)
class ContainerdSettings:
    address: str = setting("/run/containerd/containerd.sock", "containerd's socket")
    namespace: str = setting("k8s.io", "containerd namespace the kubelet's containers live in")
    hosts_dir: str = setting("", "registry hosts directory (docker.io mirrored to the lab registry)")
    snapshotter: str = setting("overlayfs", "the snapshotter containers' root file systems are prepared with")


@dataclass(frozen=True)
class NetworkSettings:
    node_netns: str = setting("", "network namespace the node's networking lives in ('': the kubelet's own)")
    bridge: str = setting("kubelab0", "the pods' bridge on the node")
    cni_bin_dir: Path = setting(Path("/usr/lib/cni"), "where the CNI plugins are")


@dataclass(frozen=True)
class ServerSettings:
    address: str = setting("0.0.0.0", "address of the kubelet's HTTPS port (logs for the API server)")
    port: int = setting(10250, "the kubelet's HTTPS port (0: not served)")
    cert_file: Path | None = setting(None, "its serving certificate (PEM); without one the port is not served")
    key_file: Path | None = setting(None, "the certificate's private key (PEM)")
    token_file: Path | None = setting(None, "bearer tokens allowed in, one per line (the API server's)")


@dataclass(frozen=True)
class KubeletSettings:
    """kubelab kubelet: runs the pods bound to this node in containerd and reports their status."""

    kubeconfig: Path | None = setting(None, "kubeconfig with the API server's address and this node's token")
    node_name: str = setting("", "this node's name (default: the host name)")
    node_ip: str = setting("", "this node's InternalIP")
    root_dir: Path = setting(Path("/var/lib/kubelab/kubelet"), "pod volumes, logs and sandbox records")
    max_pods: int = setting(110, "pods this node accepts")
    lease_interval: float = setting(10.0, "seconds between renewals of the node's Lease")
    status_interval: float = setting(40.0, "seconds between node status reports when nothing changed")
    pod_workers: int = setting(8, "pods synced at once")
    register_with_taints: tuple[str, ...] = setting(
        (), "taints the node is created with: key=value:Effect or key:Effect (comma separated)"
    )
    cloud_provider: str = setting(
        "",
        "external: a cloud-controller-manager initializes the node (it is registered with the"
        " node.cloudprovider.kubernetes.io/uninitialized taint, and the cloud's addresses are kept)",
    )
    node_labels: tuple[str, ...] = setting(
        (), "labels the node is created with: key=value (comma separated; a mapping in the config file)"
    )
    cni_conf_dir: Path | None = setting(
        None, "where the node's CNI network list is written as 10-kubelab.conflist once its podCIDR is known"
    )
    cluster_dns: tuple[str, ...] = setting(
        (), "the cluster DNS server's addresses (the kube-dns Service's IP) for pods with dnsPolicy ClusterFirst"
    )
    cluster_domain: str = setting("cluster.local", "the cluster's DNS domain, searched by pods after their namespace")
    resolv_conf: Path = setting(Path("/etc/resolv.conf"), "the node's resolver, what dnsPolicy Default gives a pod")
    disk_by_id_dir: Path = setting(
        Path("/dev/disk/by-id"), "where the node's disks appear by serial (virtio-<volume id>), for persistent volumes"
    )
    volume_attach_limit: int = setting(
        16, "disks of persistent volumes this node takes at once (its CSINode's allocatable count)"
    )
    containerd: ContainerdSettings = field(default_factory=ContainerdSettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    healthz: HealthSettings = field(default_factory=HealthSettings)
    log: LogSettings = field(default_factory=LogSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
