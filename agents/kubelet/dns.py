"""Each pod's ``/etc/resolv.conf``, as kube's kubelet writes it (its network/dns configurer).

What a pod's resolver is told follows from its ``dnsPolicy``:

- ``ClusterFirst`` (the default): the cluster's DNS (the kubelet's ``cluster-dns``, the ``kube-dns``
  Service), searching ``<namespace>.svc.<domain> svc.<domain> <domain>`` and then the node's own
  search domains, with ``ndots:5`` so that a short name such as ``web`` or ``web.other`` is first
  tried inside the cluster. A pod on the host's network gets the node's resolver instead (it shares
  the node's view), and so does every pod when the kubelet knows no cluster DNS.
- ``ClusterFirstWithHostNet``: the cluster's DNS for host-network pods too.
- ``Default``: the node's resolver, read from the kubelet's ``resolv-conf`` (``/etc/resolv.conf``).
- ``None``: nothing but the pod's ``dnsConfig``.

``dnsConfig`` then adds nameservers and search domains (duplicates dropped) and options (the pod's
value of an option wins). The C library reads at most 3 nameservers and kube keeps at most 32
search domains: the rest is dropped, and said so (:attr:`Resolver.dropped`).

Pure: the caller reads the node's file and writes the result into the pod's directory, from where it
is bind-mounted into every container at ``/etc/resolv.conf``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_NAMESERVERS = 3
MAX_SEARCHES = 32
CLUSTER_NDOTS = "5"


@dataclass(frozen=True)
class DnsSettings:
    """What the kubelet knows of names: the cluster DNS's addresses, the cluster domain, the node's file."""

    cluster_dns: tuple[str, ...] = ()
    cluster_domain: str = "cluster.local"
    resolv_conf: Path = Path("/etc/resolv.conf")


@dataclass(frozen=True)
class Resolver:
    """A resolv.conf's content: nameservers, search domains and options (``name`` or ``name:value``)."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    dropped: tuple[str, ...] = field(default=(), compare=False)  # what the limits left out, for an event

    def render(self) -> str:
        lines = [f"search {' '.join(self.searches)}"] if self.searches else []
        lines += [f"nameserver {server}" for server in self.nameservers]
        if self.options:
            lines.append(f"options {' '.join(self.options)}")
        return "\n".join(lines) + "\n" if lines else ""


def parse_resolv_conf(text: str) -> Resolver:
    """The node's resolver from its resolv.conf (the last ``search`` line wins, as in the C library)."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            nameservers.append(words[1])
        elif words[0] in ("search", "domain"):
            searches = words[1:]
        elif words[0] == "options":
            options += words[1:]
    return Resolver(tuple(nameservers), tuple(searches), tuple(options))


def cluster_searches(namespace: str, domain: str) -> list[str]:
    return [f"{namespace}.svc.{domain}", f"svc.{domain}", domain]


def _unique(items: Sequence[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item and item not in out:
            out.append(item)
    return out


def _merge_options(base: Sequence[str], extra: Sequence[Mapping[str, Any]]) -> list[str]:
    """Options by name, in first-seen order; the pod's dnsConfig options override the base's value."""
    merged: dict[str, str | None] = {}
    for text in base:
        name, _, value = text.partition(":")
        merged[name] = value if value else None
    for option in extra:
        name = str(option.get("name") or "")
        if name:
            given = option.get("value")
            merged[name] = str(given) if given not in (None, "") else None
    return [name if value is None else f"{name}:{value}" for name, value in merged.items()]


def uses_cluster_dns(spec: Mapping[str, Any], cluster_dns: Sequence[str]) -> bool:
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if not cluster_dns:
        return False
    if policy == "ClusterFirstWithHostNet":
        return True
    return policy == "ClusterFirst" and not spec.get("hostNetwork")


def pod_resolver(
    pod: Mapping[str, Any], *, cluster_dns: Sequence[str], cluster_domain: str, node: Resolver
) -> Resolver:
    """The pod's resolver (kube's GetPodDNS): its policy's base, then its dnsConfig, then the limits."""
    spec = pod.get("spec") or {}
    namespace = str((pod.get("metadata") or {}).get("namespace") or "default")
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy == "None":
        nameservers: list[str] = []
        searches: list[str] = []
        options: list[str] = []
    elif uses_cluster_dns(spec, cluster_dns):
        nameservers = list(cluster_dns)
        searches = [*cluster_searches(namespace, cluster_domain), *node.searches]
        options = [f"ndots:{CLUSTER_NDOTS}"]
    else:
        nameservers, searches, options = list(node.nameservers), list(node.searches), list(node.options)
    config = spec.get("dnsConfig") or {}
    nameservers = _unique([*nameservers, *(str(s) for s in config.get("nameservers") or [])])
    searches = _unique([*searches, *(str(s) for s in config.get("searches") or [])])
    merged = _merge_options(options, config.get("options") or [])
    dropped = [f"nameserver {s}" for s in nameservers[MAX_NAMESERVERS:]]
    dropped += [f"search {s}" for s in searches[MAX_SEARCHES:]]
    return Resolver(tuple(nameservers[:MAX_NAMESERVERS]), tuple(searches[:MAX_SEARCHES]), tuple(merged), tuple(dropped))


def missing_cluster_dns(spec: Mapping[str, Any], cluster_dns: Sequence[str]) -> bool:
    """A pod that asks for the cluster's DNS on a kubelet that knows none (kube's MissingClusterDNS
    event: the pod falls back to the node's resolver)."""
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    wants = policy == "ClusterFirstWithHostNet" or (policy == "ClusterFirst" and not spec.get("hostNetwork"))
    return wants and not cluster_dns
