"""A VM lab's machines as the fault executor breaks them: libvirt powers a domain off and on and
freezes and thaws its virtual CPUs (``virDomainDestroy``, ``virDomainCreate``, ``virDomainSuspend``,
``virDomainResume``); a partition is one nftables table on the lab's bridge (``partitions``); a command
runs over ssh."""

from __future__ import annotations

import subprocess
from collections.abc import Collection, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from provisioner.drivers.base import Machine
from provisioner.drivers.libvirt import daemon, partitions
from provisioner.drivers.libvirt.hypervisor import PAUSED, Hypervisor
from provisioner.drivers.libvirt.ssh import Access


class VmMachines:
    def __init__(self, *, lab: str, uid: str, machines: Sequence[Machine], access: Access, ruleset: Path) -> None:
        self.lab = lab
        self.uid = uid
        self._machines = tuple(machines)
        self.access = access
        self.ruleset = ruleset

    @property
    def machines(self) -> Sequence[Machine]:
        return self._machines

    def reachable(self) -> bool:
        return daemon.current() is not None

    def _hypervisor(self) -> AbstractContextManager[Hypervisor]:
        found = daemon.current()
        uri = found.uri if found is not None else daemon.URI
        return Hypervisor.open(uri, self.lab)

    def states(self) -> dict[str, str]:
        if not self.reachable():
            return {}
        with self._hypervisor() as hv:
            return hv.states()

    def power_off(self, name: str) -> None:
        with self._hypervisor() as hv:
            hv.domain(name).destroy()

    def power_on(self, name: str) -> None:
        with self._hypervisor() as hv:
            domain = hv.domain(name)
            if not domain.isActive():
                domain.create()

    def pause(self, name: str) -> None:
        with self._hypervisor() as hv:
            hv.domain(name).suspend()

    def resume(self, name: str) -> None:
        with self._hypervisor() as hv:
            domain = hv.domain(name)
            if hv.states().get(name) == PAUSED:
                domain.resume()

    def cut_off(self, names: Collection[str]) -> None:
        found = daemon.current()
        if found is None:
            return
        if not names and not self.ruleset.exists():
            return  # nothing was ever cut off
        text = partitions.ruleset(self.lab, self._machines, names, uid=self.uid)
        partitions.apply(text, self.ruleset, found.wrap)

    def run(self, name: str, script: str, *, timeout: float) -> subprocess.CompletedProcess[str]:
        return self.access.run(name, script, timeout=timeout)
