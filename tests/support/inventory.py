"""The lab variables a VM lab's inventory holds, for tests of the inventory and the roles: the real
``provisioner.drivers.libvirt.inventory.variables`` for a lab on 192.168.150.0/24 with two workers,
under a given state directory, with a code bundle that is only named (nothing is built)."""

from __future__ import annotations

from pathlib import Path

from provisioner.drivers.libvirt.inventory import Bundle, variables
from provisioner.lab.paths import LabPaths
from provisioner.lab.spec import LabSpec

SPEC = LabSpec(name="kubelab", workers=2, network_cidr="192.168.150.0/24")


def lab_variables(state_dir: Path) -> dict[str, object]:
    return variables(
        SPEC,
        paths=LabPaths(state_dir),
        ssh_key=state_dir / "ssh" / "id_ed25519",
        ssh_config=state_dir / "ssh_config",
        bundle=Bundle(state_dir / "code", "0123456789abcdef"),
    )
