"""Everything labs have on this host, whichever driver made it and whether or not a lab's state
directory is still there: the processes that carry a lab's identity in their environment, and what
each driver finds of its own (``local.resources``, ``libvirt.resources``). ``remove`` hands each
resource back to whoever can remove it."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from provisioner.drivers.libvirt import resources as vm_resources
from provisioner.drivers.local import resources as local_resources
from provisioner.lab.identity import ENV_LAB, ENV_UID
from provisioner.lab.resources import Resource
from provisioner.system import processes


def _processes(lab: str | None) -> list[Resource]:
    out = []
    for found in processes.tagged(ENV_LAB):
        if lab is None or found.value == lab:
            program = found.argv[0].rsplit("/", 1)[-1] if found.argv else "?"
            if program.startswith("python") and "-m" in found.argv:
                program = found.argv[found.argv.index("-m") + 1]  # the module, e.g. agents.apiserver
            name = f"{program} (pid {found.pid})"
            out.append(Resource("process", name, found.value, found.environment.get(ENV_UID, ""), "host"))
    return out


def find(lab: str | None, homes: Iterable[Path]) -> list[Resource]:
    """The resources of ``lab`` (of every lab: None), processes first (they hold the rest)."""
    return [*_processes(lab), *local_resources.find(lab, list(homes)), *vm_resources.find(lab)]


def remove(resource: Resource) -> None:
    if resource.kind == "process":
        pid = int(resource.name.rsplit("pid ", 1)[1].rstrip(")"))
        for found in processes.tagged(ENV_LAB):
            if found.pid == pid:
                processes.stop(found.record)
    elif resource.driver == "local":
        local_resources.remove(resource)
    else:
        vm_resources.remove(resource)


def unused_daemon(*, labs_left: bool) -> list[Resource]:
    """kubelab's own libvirtd when it runs for no lab."""
    return vm_resources.unused_daemon(labs_left)
