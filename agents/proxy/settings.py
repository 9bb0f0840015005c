"""The proxy's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agents.machinery.settings import HealthSettings, LogSettings, setting
from agents.machinery.tracing import TracingSettings


@dataclass(frozen=True)
class ProxySettings:
    """kubelab proxy: Services and their ready endpoints -> one nftables table on this node."""

    kubeconfig: Path | None = setting(None, "kubeconfig with the API server's address and this proxy's token")
    node_name: str = setting("", "this node's name, as its Node object is called (default: the host name)")
    node_ip: str = setting("", "this node's IPv4 address: NodePorts answer on it (empty: on every local address)")
    cluster_cidr: str = setting("10.244.0.0/16", "the pod network: a ClusterIP reached from outside it is masqueraded")
    table: str = setting("kubelab", "the nftables table (family ip) the proxy owns and replaces whole")
    routes: bool = setting(True, "route other nodes' pod CIDRs via their InternalIP (host-gw)")
    min_sync_interval: float = setting(0.05, "seconds at least between two syncs; changes in between are coalesced")
    resync_period: float = setting(60.0, "seconds between rewrites of the table and routes even without changes")
    netns: str = setting("", "apply the rules and routes inside this network namespace (tests and local labs)")
    healthz: HealthSettings = field(default_factory=HealthSettings)
    log: LogSettings = field(default_factory=LogSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
