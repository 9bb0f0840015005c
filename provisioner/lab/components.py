"""The lab's components, once: what each is called, which systemd unit runs it on a VM, where it runs.

``kubelab logs NODE COMPONENT`` (and ``kubelab logs MASTER audit``), ``kubelab status``,
``kubelab fault kill NODE COMPONENT`` and the drills all read this table; the local driver's
processes carry the same names.
"""

from __future__ import annotations

from dataclasses import dataclass

MASTER = "master"  # runs on the master only
EVERY_NODE = "all"  # runs on every machine (the master is a node too)


@dataclass(frozen=True)
class Component:
    name: str
    unit: str  # its systemd unit on a VM
    runs_on: str  # MASTER or EVERY_NODE


# the order `kubelab fault kill` lists them and the drills kill them in
TABLE: tuple[Component, ...] = (
    Component("kubelet", "kubelab-kubelet", EVERY_NODE),
    Component("proxy", "kubelab-proxy", EVERY_NODE),
    Component("containerd", "containerd", EVERY_NODE),
    Component("apiserver", "kubelab-apiserver", MASTER),
    Component("scheduler", "kubelab-scheduler", MASTER),
    Component("controller-manager", "kubelab-controller-manager", MASTER),
    Component("cloud-controller-manager", "kubelab-cloud-controller-manager", MASTER),  # the VM lab's alone
    Component("trace-collector", "kubelab-trace-collector", MASTER),
    Component("etcd", "etcd", MASTER),
    Component("registry", "docker-registry", MASTER),
)
COMPONENTS: dict[str, Component] = {c.name: c for c in TABLE}
NAMES: tuple[str, ...] = tuple(COMPONENTS)

# a log that is no component's own output: the API server's audit log, ``kubelab logs MASTER audit``
AUDIT = "audit"
AUDIT_LOG = "/var/log/kubelab/audit.log"  # on a VM lab's master (the control_plane role's default)
LOG_NAMES: tuple[str, ...] = (*NAMES, AUDIT)


def master_only(component: str) -> bool:
    """Whether ``component`` runs on the master alone (else on every node)."""
    return COMPONENTS[component].runs_on == MASTER


def unit_of(component: str) -> str:
    return COMPONENTS[component].unit


def on_machine(role: str) -> tuple[Component, ...]:
    """The components a machine of ``role`` (master or worker) runs."""
    return tuple(c for c in TABLE if c.runs_on == EVERY_NODE or role == "master")
