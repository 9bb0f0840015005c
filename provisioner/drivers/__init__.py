"""The drivers that run labs, behind one protocol (``base.Driver``): ``local`` (processes on this host)
and ``libvirt`` (virtual machines). ``for_lab`` hands out the driver a lab's spec names."""

from __future__ import annotations

from collections.abc import Callable

from provisioner.drivers.base import Driver
from provisioner.lab.identity import Identity
from provisioner.lab.paths import LabPaths
from provisioner.lab.spec import LabSpec


def for_lab(
    spec: LabSpec, paths: LabPaths, *, say: Callable[[str], None] = print, identity: Identity | None = None
) -> Driver:
    """The driver of a lab with these settings; ``identity`` is stamped on what it creates."""
    if spec.driver == "local":
        from provisioner.drivers.local.driver import LocalDriver  # noqa: PLC0415 - one driver per run

        return LocalDriver(spec, paths, say=say, identity=identity)
    from provisioner.drivers.libvirt.driver import LibvirtDriver  # noqa: PLC0415

    return LibvirtDriver(spec, paths, say=say, identity=identity)
