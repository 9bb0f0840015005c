"""The API server's settings; flag names follow kube-apiserver's where the meaning is the same."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from agents.machinery.settings import LogSettings, setting
from agents.machinery.tracing import TracingSettings


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kubelab"


@dataclass(frozen=True)
class EtcdSettings:
    servers: tuple[str, ...] = setting(("http://127.0.0.1:2379",), "etcd endpoints (comma separated)")
    request_timeout: float = setting(10.0, "seconds before an etcd request fails")
    compaction_interval: float = setting(300.0, "seconds between compactions of etcd history (0 disables)")
    cafile: Path | None = setting(None, "CA that signed etcd's serving certificate (PEM), for https:// servers")
    certfile: Path | None = setting(None, "client certificate presented to etcd (PEM)")
    keyfile: Path | None = setting(None, "the client certificate's private key (PEM)")


@dataclass(frozen=True)
class TlsSettings:
    cert_file: Path | None = setting(None, "serving certificate (PEM)")
    private_key_file: Path | None = setting(None, "serving certificate's private key (PEM)")


@dataclass(frozen=True)
class ServiceSettings:
    cluster_ip_range: str = setting("10.96.0.0/12", "CIDR from which Service ClusterIPs are allocated")
    node_port_range: str = setting("30000-32767", "port range from which NodePorts are allocated")


@dataclass(frozen=True)
class WatchCacheSettings:
    cache_size: int = setting(20000, "events kept for watches to resume from")
    bookmark_interval: float = setting(30.0, "seconds between bookmarks on idle watches that asked for them")


@dataclass(frozen=True)
class KubeletClientSettings:
    certificate_authority: Path | None = setting(None, "CA that signed the kubelets' serving certificates (PEM)")
    token_file: Path | None = setting(None, "file with the bearer token the API server presents to kubelets")
    address_override: str = setting("", "reach every kubelet at this address (local labs: the host's loopback)")
    preferred_address_types: tuple[str, ...] = setting(
        ("InternalIP", "Hostname", "ExternalIP"), "which of a node's addresses to reach its kubelet at, in order"
    )


@dataclass(frozen=True)
class ServiceAccountSettings:
    key_file: Path | None = setting(None, "public key ServiceAccount tokens are checked with (PEM)")
    signing_key_file: Path | None = setting(None, "private key ServiceAccount tokens are signed with (PEM)")
    issuer: str = setting("https://kubernetes.default.svc.cluster.local", "the iss claim of the tokens issued")
    max_token_expiration: int = setting(86400, "the longest a requested token may live, in seconds")


@dataclass(frozen=True)
class AuditSettings:
    policy_file: Path | None = setting(None, "audit.k8s.io/v1 Policy: which requests are recorded, at what level")
    log_path: Path | None = setting(None, "file the audit events are written to, one JSON object a line")
    log_maxsize: int = setting(100, "megabytes of audit log before it is rotated (0: never)")
    log_maxbackup: int = setting(1, "rotated audit log files kept")


@dataclass(frozen=True)
class ProxyClientSettings:
    cert_file: Path | None = setting(None, "client certificate presented to aggregated API servers (PEM)")
    key_file: Path | None = setting(None, "the proxy client certificate's private key (PEM)")


@dataclass(frozen=True)
class RequestHeaderSettings:
    """What aggregated API servers are told (ConfigMap kube-system/extension-apiserver-authentication)
    to trust: the CA of the proxy client certificate, the names it may have, the headers carrying the user."""

    client_ca_file: Path | None = setting(None, "CA that signed the proxy client certificate (PEM)")
    allowed_names: tuple[str, ...] = setting(("front-proxy-client",), "common names the proxy certificate may have")
    username_headers: tuple[str, ...] = setting(("X-Remote-User",), "request headers carrying the user name")
    group_headers: tuple[str, ...] = setting(("X-Remote-Group",), "request headers carrying the groups")
    extra_headers_prefix: tuple[str, ...] = setting(("X-Remote-Extra-",), "prefixes of the user's extra headers")


@dataclass(frozen=True)
class ApiServerSettings:
    """kubelab API server: the Kubernetes REST API over etcd."""

    bind_address: str = setting("0.0.0.0", "address to listen on")
    workers: int = setting(0, "processes serving the API on the same port (0: half the CPUs, at least 1, at most 4)")
    secure_port: int = setting(6443, "HTTPS port")
    advertise_address: str = setting("127.0.0.1", "address published in the kubernetes Service endpoints")
    token_auth_file: Path | None = setting(None, 'CSV file of bearer tokens: token,user,uid,"groups"')
    encryption_provider_config: Path | None = setting(
        None, "an apiserver.config.k8s.io/v1 EncryptionConfiguration: how each resource is encrypted in etcd"
    )
    client_ca_file: Path | None = setting(
        None, "CA whose client certificates authenticate: the subject's CN is the user, each O a group"
    )
    authorization_mode: tuple[str, ...] = setting(
        ("AlwaysAllow",), "authorizers asked in order (comma separated): AlwaysAllow, AlwaysDeny, RBAC"
    )
    storage_backend: str = setting("etcd", "etcd, or memory (for tests; nothing is persisted)")
    default_not_ready_toleration_seconds: int = setting(
        300, "tolerationSeconds of the not-ready/unreachable tolerations added to every pod"
    )
    event_ttl: float = setting(3600.0, "seconds events are kept")
    min_request_timeout: int = setting(1800, "a watch lasts between this and twice this many seconds")
    schema_cache_dir: Path = setting(_default_cache(), "where the derived API schemas are cached")
    etcd: EtcdSettings = field(default_factory=EtcdSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    watch: WatchCacheSettings = field(default_factory=WatchCacheSettings)
    kubelet: KubeletClientSettings = field(default_factory=KubeletClientSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    service_account: ServiceAccountSettings = field(default_factory=ServiceAccountSettings)
    api_audiences: tuple[str, ...] = setting((), "audiences a token must name (default: the service account issuer)")
    proxy_client: ProxyClientSettings = field(default_factory=ProxyClientSettings)
    requestheader: RequestHeaderSettings = field(default_factory=RequestHeaderSettings)
    egress_network_namespace: Path | None = setting(
        None, "network namespace (e.g. /run/netns/NAME) connections to aggregated API servers' pods start from"
    )
    log: LogSettings = field(default_factory=LogSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)

    def worker_count(self) -> int:
        # The rest of the control plane (etcd, scheduler, controllers) shares the machine, and every
        # worker follows etcd's watch on its own: beyond half the CPUs a worker costs more than it adds.
        return self.workers if self.workers > 0 else max(1, min((os.cpu_count() or 1) // 2, 4))

    def node_ports(self) -> tuple[int, int]:
        low, _, high = self.service.node_port_range.partition("-")
        return int(low), int(high)
