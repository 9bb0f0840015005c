"""``kubelab-agent kubelet`` / ``python -m agents.kubelet``."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import sys
from collections.abc import Sequence

from agents.kubelet.containerd import Containerd
from agents.kubelet.ctr import Ctr
from agents.kubelet.kubelet import Kubelet
from agents.kubelet.node import parse_labels, parse_taints
from agents.kubelet.settings import KubeletSettings
from agents.machinery import component
from agents.machinery.client import Client
from agents.machinery.events import EventRecorder
from agents.machinery.settings import SettingsError


def check(settings: KubeletSettings) -> None:
    if not settings.node_ip:
        raise SettingsError("node-ip: give this node's InternalIP (the address other nodes reach it at)")
    if not 1 <= settings.max_pods <= 1000:
        raise SettingsError(f"max-pods: {settings.max_pods} is not between 1 and 1000")
    if settings.cloud_provider not in ("", "external"):
        raise SettingsError(
            f"cloud-provider: {settings.cloud_provider!r} is not supported: use external or leave it out"
        )
    try:
        parse_taints(settings.register_with_taints)
    except ValueError as exc:
        raise SettingsError(f"register-with-taints: {exc}") from exc
    try:
        parse_labels(settings.node_labels)
    except ValueError as exc:
        raise SettingsError(f"node-labels: {exc}") from exc


async def main(settings: KubeletSettings, client: Client, ready: asyncio.Event) -> None:
    if not settings.node_name:
        settings = dataclasses.replace(settings, node_name=socket.gethostname().lower())
    recorder = EventRecorder(client, component="kubelet", host=settings.node_name)
    ctr = Ctr(
        address=settings.containerd.address,
        namespace=settings.containerd.namespace,
        hosts_dir=settings.containerd.hosts_dir,
    )
    containerd = Containerd(
        address=settings.containerd.address,
        namespace=settings.containerd.namespace,
        snapshotter=settings.containerd.snapshotter,
        fifo_dir=settings.root_dir / "fifo",
        ctr=ctr,
    )
    try:
        await Kubelet(client, settings, containerd=containerd, recorder=recorder).run(ready)
    finally:
        await containerd.close()


def run(argv: Sequence[str]) -> int:
    return component.run("kubelet", KubeletSettings, argv, main, check=check)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
