"""``kubelab-agent controller-manager`` / ``python -m agents.controllers``."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import sys
from collections.abc import Sequence

from agents.controllers import base
from agents.controllers.attachdetach import AttachDetachController
from agents.controllers.base import Context, Controller
from agents.controllers.clusterroleaggregation import ClusterRoleAggregationController
from agents.controllers.cronjob import CronJobController
from agents.controllers.csrcleaner import CsrCleanerController
from agents.controllers.csrsigning import CsrSigningController
from agents.controllers.daemonset import DaemonSetController
from agents.controllers.deployment import DeploymentController
from agents.controllers.disruption import DisruptionController
from agents.controllers.endpoints import EndpointsController, EndpointSliceController
from agents.controllers.garbagecollector import GarbageCollector
from agents.controllers.horizontal import HorizontalPodAutoscalerController
from agents.controllers.job import JobController
from agents.controllers.namespace import NamespaceController
from agents.controllers.nodeipam import NodeIpamController
from agents.controllers.nodelifecycle import NodeLifecycleController
from agents.controllers.persistentvolume import PersistentVolumeController
from agents.controllers.podgc import PodGcController
from agents.controllers.pvcprotection import PvcProtectionController
from agents.controllers.pvprotection import PvProtectionController
from agents.controllers.replicaset import ReplicaSetController
from agents.controllers.replicationcontroller import ReplicationControllerController
from agents.controllers.rootcacertpublisher import RootCaCertPublisher
from agents.controllers.serviceaccount import ServiceAccountController
from agents.controllers.settings import ControllerManagerSettings
from agents.controllers.statefulset import StatefulSetController
from agents.machinery import component
from agents.machinery.client import Client
from agents.machinery.events import EventRecorder
from agents.machinery.settings import SettingsError

log = logging.getLogger("agents.controllers")

CONTROLLERS: dict[str, type[Controller]] = {
    "replicaset": ReplicaSetController,
    "replicationcontroller": ReplicationControllerController,
    "deployment": DeploymentController,
    "statefulset": StatefulSetController,
    "daemonset": DaemonSetController,
    "job": JobController,
    "cronjob": CronJobController,
    "nodelifecycle": NodeLifecycleController,
    "nodeipam": NodeIpamController,
    "endpoints": EndpointsController,
    "endpointslice": EndpointSliceController,
    "namespace": NamespaceController,
    "serviceaccount": ServiceAccountController,
    "garbagecollector": GarbageCollector,
    "podgc": PodGcController,
    "clusterrole-aggregation": ClusterRoleAggregationController,
    "root-ca-cert-publisher": RootCaCertPublisher,
    "csrsigning": CsrSigningController,
    "csrcleaner": CsrCleanerController,
    "horizontalpodautoscaling": HorizontalPodAutoscalerController,
    "disruption": DisruptionController,
    "persistentvolume-binder": PersistentVolumeController,
    "pvc-protection": PvcProtectionController,
    "pv-protection": PvProtectionController,
    "attachdetach": AttachDetachController,
}


def enabled(settings: ControllerManagerSettings) -> list[str]:
    return base.enabled(settings.controllers, CONTROLLERS)


def check(settings: ControllerManagerSettings) -> None:
    wrong = base.unknown(settings.controllers, CONTROLLERS)
    if wrong:
        raise SettingsError(f"controllers: unknown {', '.join(wrong)}; known: {', '.join(CONTROLLERS)}")
    try:
        ipaddress.ip_network(settings.cluster_cidr)
    except ValueError as exc:
        raise SettingsError(f"cluster-cidr: {exc}") from exc


async def main(settings: ControllerManagerSettings, client: Client, ready: asyncio.Event) -> None:
    recorder = EventRecorder(client, component="controller-manager")
    ctx = Context(client, recorder, settings)
    controllers = [CONTROLLERS[name](ctx) for name in enabled(settings)]
    informers = list(ctx.informers.values())
    tasks = [asyncio.create_task(i.run()) for i in informers] + [asyncio.create_task(recorder.run())]
    try:
        await asyncio.gather(*(i.synced.wait() for i in informers))
        log.info(
            "controller-manager running %s (%d informers synced)",
            ", ".join(c.name for c in controllers),
            len(informers),
        )
        ready.set()
        await asyncio.gather(*(c.run() for c in controllers))
    finally:
        for task in tasks:
            task.cancel()


def run(argv: Sequence[str]) -> int:
    return component.run(
        "controller-manager", ControllerManagerSettings, argv, main, lease="kube-controller-manager", check=check
    )


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
