"""The process that keeps the lab's API server and registry reachable at 127.0.0.1 on this host
(``python -m provisioner.drivers.libvirt.tunnel forward``), started and stopped with the lab and
recorded in the lab's run directory."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from provisioner.drivers.libvirt.inventory import GUEST_API_PORT, GUEST_REGISTRY_PORT
from provisioner.drivers.libvirt.tunnel import Forward
from provisioner.errors import HostError
from provisioner.lab.paths import LabPaths
from provisioner.lab.spec import LabSpec
from provisioner.system import ports, processes

NAME = "forward"


def argv(spec: LabSpec, master_ip: str, netns: str) -> list[str]:
    forwards = [
        Forward(spec.api_port, master_ip, GUEST_API_PORT),
        Forward(spec.registry_port, master_ip, GUEST_REGISTRY_PORT),
    ]
    module = "provisioner.drivers.libvirt.tunnel"
    return [sys.executable, "-m", module, "forward", netns or "-", *(f.argument() for f in forwards)]


def ensure(
    spec: LabSpec,
    paths: LabPaths,
    *,
    master_ip: str,
    netns: str,
    tags: Mapping[str, str],
    say: Callable[[str], None],
) -> None:
    """The forwarder for this lab runs with these settings (restarted when they changed); ``tags``
    (the lab's identity) go into its environment."""
    wanted = argv(spec, master_ip, netns)
    record = processes.ProcessRecord.load(paths.run, NAME)
    if record is not None and processes.alive(record):
        if record.argv == tuple(wanted):
            return
        processes.stop(record)
    for port, flag in ((spec.api_port, "--api-port"), (spec.registry_port, "--registry-port")):
        if ports.in_use("127.0.0.1", port):
            raise HostError(f"port {port} is in use on 127.0.0.1; choose another with {flag}")
    processes.spawn(NAME, wanted, log=paths.logs / f"{NAME}.log", tags=tags, record_in=paths.run)
    say(f"  tunnel: 127.0.0.1:{spec.api_port} -> API server, 127.0.0.1:{spec.registry_port} -> registry")


def running(paths: LabPaths) -> bool:
    """Whether this lab's forwarder runs (it holds the lab's ports: they are not someone else's)."""
    return processes.running_record(paths.run, NAME) is not None


def stop(paths: LabPaths) -> bool:
    return processes.stop_recorded(paths.run, NAME)


def record_path(paths: LabPaths) -> Path:
    return paths.run / f"{NAME}.json"
