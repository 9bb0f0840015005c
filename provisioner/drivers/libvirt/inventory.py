"""The Ansible inventory of a VM lab, decided from the lab alone (pure).

``variables`` says what the roles need to know about the lab (the contract between the provisioner and
``playbooks/`` is ``REQUIRED_VARIABLES``; playbooks/README.md gives their meaning); ``inventory`` writes
the YAML from the nodes and those variables, refusing a lab the playbooks could not install.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from provisioner.drivers.base import Machine
from provisioner.drivers.libvirt import cloudservice, plan
from provisioner.errors import ProvisionError
from provisioner.lab.paths import LabPaths
from provisioner.lab.render import HEADER
from provisioner.lab.spec import LabSpec, cluster_dns_ip

# the guests' own ports (the host reaches the API server and the registry through the tunnel)
GUEST_API_PORT = 6443
GUEST_REGISTRY_PORT = 5000
GUEST_ETCD_PORT = 2379
GUEST_ETCD_PEER_PORT = 2380

GROUPS = {"master": "masters", "worker": "workers"}
# What the inventory's all.vars must hold for the roles (playbooks/README.md lists their meaning).
REQUIRED_VARIABLES = (
    "ansible_ssh_private_key_file",
    "kubelab_lab",
    "kubelab_state_dir",
    "kubelab_code_dir",
    "kubelab_code_digest",
    "kubelab_master_ip",
    "kubelab_gateway_ip",
    "kubelab_cloud_url",
    "kubelab_api_port",
    "kubelab_etcd_port",
    "kubelab_etcd_peer_port",
    "kubelab_registry_port",
    "kubelab_service_cidr",
    "kubelab_cluster_dns",
    "kubelab_cluster_cidr",
    "kubelab_pod_routes",
    "kubelab_node_port_range",
    "kubelab_node_grace_period",
    "kubelab_eviction_seconds",
    "kubelab_apiserver_workers",
)
# The guests: root over ssh with a key, Debian's own Python for Ansible's modules.
CONNECTION_DEFAULTS: Mapping[str, object] = {"ansible_user": "root", "ansible_python_interpreter": "/usr/bin/python3"}
_HOST_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class InventoryError(ProvisionError):
    """The nodes or variables given for the inventory do not make a lab the playbooks can install."""


@dataclass(frozen=True)
class Bundle:
    """kubelab's own code as the playbooks install it on the machines (``provisioner.drivers.libvirt.bundle``)."""

    directory: Path
    digest: str


def variables(spec: LabSpec, *, paths: LabPaths, ssh_key: Path, ssh_config: Path, bundle: Bundle) -> dict[str, object]:
    """What the roles need to know about the lab, as inventory variables."""
    network = plan.network(spec)
    return {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(ssh_key),
        "ansible_ssh_common_args": f"-F {ssh_config}",
        "ansible_python_interpreter": "/usr/bin/python3",
        "kubelab_lab": spec.name,
        "kubelab_state_dir": str(paths.root),
        "kubelab_code_dir": str(bundle.directory),
        "kubelab_code_digest": bundle.digest,
        "kubelab_master_ip": plan.master(spec).ip,
        "kubelab_gateway_ip": network.gateway,
        "kubelab_cloud_url": f"https://{network.gateway}:{cloudservice.PORT}",
        "kubelab_api_port": GUEST_API_PORT,
        "kubelab_etcd_port": GUEST_ETCD_PORT,
        "kubelab_etcd_peer_port": GUEST_ETCD_PEER_PORT,
        "kubelab_registry_port": GUEST_REGISTRY_PORT,
        "kubelab_service_cidr": spec.service_cidr,
        "kubelab_cluster_dns": cluster_dns_ip(spec),
        "kubelab_cluster_cidr": spec.cluster_cidr,
        "kubelab_pod_routes": spec.pod_routes,
        "kubelab_node_port_range": spec.node_port_range,
        "kubelab_node_grace_period": spec.node_grace_period,
        "kubelab_eviction_seconds": spec.eviction_seconds,
        "kubelab_apiserver_workers": spec.apiserver_workers,
    }


def nodes_of(machines: Sequence[Machine]) -> list[InventoryNode]:
    return [InventoryNode(m.name, m.ip, m.role) for m in machines]


@dataclass(frozen=True)
class InventoryNode:
    name: str  # the node's name: inventory host name, hostname and Node object name
    ip: str
    role: str  # "master" or "worker"


def _plain(value: object, where: str) -> object:
    """``value`` as YAML's plain types (paths become strings)."""
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, where) for v in value]
    raise TypeError(f"inventory variable {where}: {type(value).__name__} is not a YAML value")


def inventory(nodes: Sequence[InventoryNode], variables: Mapping[str, object]) -> str:
    """The inventory YAML: group ``masters`` (one host) and ``workers`` (any number), each host with
    ``ansible_host`` and ``kubelab_node_ip``, and ``variables`` as ``all.vars`` (with the connection
    defaults and ``kubelab_master_ip`` filled in when not given)."""
    masters = [n for n in nodes if n.role == "master"]
    for node in nodes:
        if node.role not in GROUPS:
            raise InventoryError(f"node {node.name}: role {node.role!r} is neither 'master' nor 'worker'")
        if not _HOST_NAME.match(node.name):
            raise InventoryError(f"node name {node.name!r}: use lowercase letters, digits and '-' (a host name)")
        try:
            ipaddress.IPv4Address(node.ip)
        except ValueError as exc:
            raise InventoryError(f"node {node.name}: {node.ip!r} is not an IPv4 address") from exc
    names = [n.name for n in nodes]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InventoryError(f"node names must differ: {', '.join(twice)} given more than once")
    if len(masters) != 1:
        raise InventoryError(f"a lab has exactly one master node, not {len(masters)}")
    master = masters[0]
    merged: dict[str, object] = {**CONNECTION_DEFAULTS, "kubelab_master_ip": master.ip}
    merged.update({str(k): _plain(v, str(k)) for k, v in variables.items()})
    if merged["kubelab_master_ip"] != master.ip:
        raise InventoryError(f"kubelab_master_ip {merged['kubelab_master_ip']} is not the master's address {master.ip}")
    missing = [name for name in REQUIRED_VARIABLES if name not in merged]
    if missing:
        raise InventoryError(f"inventory variables missing: {', '.join(missing)}")
    groups: dict[str, object] = {}
    for role, group in GROUPS.items():
        hosts = {n.name: {"ansible_host": n.ip, "kubelab_node_ip": n.ip} for n in nodes if n.role == role}
        groups[group] = {"hosts": hosts}
    document = {"all": {"vars": merged, "children": groups}}
    return f"# {HEADER}\n" + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def hosts_of(text: str) -> list[str]:
    """The host names of an inventory written by ``inventory``."""
    document = yaml.safe_load(text) or {}
    top = document.get("all") or {}
    names = list((top.get("hosts") or {}).keys())
    for group in (top.get("children") or {}).values():
        names += [name for name in ((group or {}).get("hosts") or {}) if name not in names]
    return names
