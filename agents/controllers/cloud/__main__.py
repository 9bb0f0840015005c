"""``kubelab-agent cloud-controller-manager`` / ``python -m agents.controllers.cloud``."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from agents.controllers import base
from agents.controllers.base import Context, Controller
from agents.controllers.cloud.csiattacher import CsiAttacher
from agents.controllers.cloud.csiprovisioner import CsiProvisioner
from agents.controllers.cloud.csiresizer import CsiResizer
from agents.controllers.cloud.node import CloudNodeController
from agents.controllers.cloud.nodelifecycle import CloudNodeLifecycleController
from agents.controllers.cloud.provider import CloudError, CloudProvider, read_config
from agents.controllers.cloud.route import RouteController, cluster_networks, not_started
from agents.controllers.cloud.service import ServiceController
from agents.controllers.cloud.settings import CloudControllerManagerSettings
from agents.machinery import component
from agents.machinery.client import Client
from agents.machinery.events import EventRecorder
from agents.machinery.settings import SettingsError

log = logging.getLogger("agents.controllers.cloud")

CONTROLLERS: dict[str, Callable[[Context, CloudProvider], Controller]] = {
    "cloud-node": CloudNodeController,
    "cloud-node-lifecycle": CloudNodeLifecycleController,
    "service": ServiceController,
    "route": RouteController,
    "csi-provisioner": CsiProvisioner,
    "csi-attacher": CsiAttacher,
    "csi-resizer": CsiResizer,
}


def enabled(settings: CloudControllerManagerSettings) -> list[str]:
    """The controllers to run: those ``--controllers`` selects, but ``route`` only when the settings let
    it (kube's rule: routes need allocated node CIDRs and the cluster's CIDR)."""
    names = base.enabled(settings.controllers, CONTROLLERS)
    return [n for n in names if n != "route" or not not_started(settings)]


def check(settings: CloudControllerManagerSettings) -> None:
    if settings.cloud_provider != "libvirt":
        raise SettingsError(f"cloud-provider: {settings.cloud_provider!r} is not supported: use libvirt")
    if settings.cloud_config is None:
        raise SettingsError("cloud-config: give the cloud API's config file (url, token-file, ca-file)")
    wrong = base.unknown(settings.controllers, CONTROLLERS)
    if wrong:
        raise SettingsError(f"controllers: unknown {', '.join(wrong)}; known: {', '.join(CONTROLLERS)}")
    try:
        cluster_networks(settings.cluster_cidr)
    except ValueError as exc:
        raise SettingsError(f"cluster-cidr: {exc}") from exc
    try:
        read_config(settings.cloud_config)
    except CloudError as exc:
        raise SettingsError(f"cloud-config: {exc}") from exc


async def main(settings: CloudControllerManagerSettings, client: Client, ready: asyncio.Event) -> None:
    assert settings.cloud_config is not None
    recorder = EventRecorder(client, component="cloud-controller-manager")
    ctx = Context(client, recorder, settings)
    route_off = not_started(settings)
    if route_off and "route" in base.enabled(settings.controllers, CONTROLLERS):
        log.info("will not configure cloud provider routes: %s", route_off)
    async with CloudProvider(read_config(settings.cloud_config)) as cloud:
        controllers = [CONTROLLERS[name](ctx, cloud) for name in enabled(settings)]
        informers = list(ctx.informers.values())
        tasks = [asyncio.create_task(i.run()) for i in informers] + [asyncio.create_task(recorder.run())]
        try:
            await asyncio.gather(*(i.synced.wait() for i in informers))
            log.info("cloud-controller-manager running %s", ", ".join(c.name for c in controllers))
            ready.set()
            await asyncio.gather(*(c.run() for c in controllers))
        finally:
            for task in tasks:
                task.cancel()


def run(argv: Sequence[str]) -> int:
    return component.run(
        "cloud-controller-manager",
        CloudControllerManagerSettings,
        argv,
        main,
        lease="cloud-controller-manager",
        check=check,
    )


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
