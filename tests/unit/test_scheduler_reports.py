"""The scheduler's report of an unschedulable pod against an API server on the in-memory store: it is
pinned to the version of the pod the scheduler decided on, so a pod bound in the meantime keeps its
``PodScheduled=True`` (a report written over it would say a running pod cannot be placed)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from agents.apiserver.server import ApiServer
from agents.machinery.client import Client, ClientConfig
from agents.machinery.events import EventRecorder
from agents.machinery.objects import Object
from agents.machinery.resources import PODS
from agents.scheduler.scheduler import Scheduler

MESSAGE = "0/1 nodes are available: 1 Insufficient cpu."


@pytest.fixture
async def scheduler(server: ApiServer) -> AsyncIterator[Scheduler]:
    front = TestServer(server.application())
    await front.start_server()
    client = Client(ClientConfig(server=str(front.make_url("")).rstrip("/"), token=""), user_agent="scheduler-test")
    yield Scheduler(client, EventRecorder(client, component="default-scheduler"))
    await client.close()
    await front.close()


def pod(name: str) -> Object:
    container = {"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [container]}}


def scheduled(obj: Object) -> tuple[str, str] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition["type"] == "PodScheduled":
            return condition["status"], condition.get("reason", "")
    return None


async def test_a_pod_still_pending_is_reported_unschedulable(scheduler: Scheduler) -> None:
    decided_on = await scheduler.client.create(PODS, pod("waiting"), "default")
    await scheduler._report_unschedulable(decided_on, MESSAGE)
    assert scheduled(await scheduler.client.get(PODS, "waiting", "default")) == ("False", "Unschedulable")


async def test_a_pod_bound_after_the_decision_is_not_reported_unschedulable(scheduler: Scheduler) -> None:
    decided_on = await scheduler.client.create(PODS, pod("bound"), "default")
    await scheduler.client.bind("default", "bound", "node-1")  # another scheduler, or a client, was faster
    await scheduler._report_unschedulable(decided_on, MESSAGE)
    after = await scheduler.client.get(PODS, "bound", "default")
    assert after["spec"]["nodeName"] == "node-1"
    assert scheduled(after) == ("True", "")
