"""The lab variables the provisioner puts into a VM lab's inventory, for tests of the inventory and
the roles (the contract in provisioner.drivers.libvirt.playbooks.REQUIRED_VARIABLES), under a given state directory."""

from __future__ import annotations

from pathlib import Path


def lab_variables(state_dir: Path) -> dict[str, object]:
    return {
        "ansible_ssh_private_key_file": state_dir / "ssh" / "id_ed25519",
        "ansible_ssh_common_args": f"-F {state_dir / 'ssh_config'}",
        "kubelab_lab": "kubelab",
        "kubelab_state_dir": state_dir,
        "kubelab_code_dir": state_dir / "code",
        "kubelab_code_digest": "0123456789abcdef",
        "kubelab_gateway_ip": "192.168.150.1",
        "kubelab_api_port": 6443,
        "kubelab_etcd_port": 2379,
        "kubelab_etcd_peer_port": 2380,
        "kubelab_registry_port": 5000,
        "kubelab_service_cidr": "10.96.0.0/12",
        "kubelab_cluster_cidr": "10.244.0.0/16",
        "kubelab_node_port_range": "30000-32767",
        "kubelab_node_grace_period": 40,
        "kubelab_eviction_seconds": 300,
        "kubelab_apiserver_workers": 0,
    }
