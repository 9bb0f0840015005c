"""Pod workers: the pure decisions they take (pull policies, runs that need probe workers), and that
they work by pod UID: a pod deleted and created again under the same name is two pods, and the old
one's sync stops the old one's containers alone.

The API client and containerd are fakes, declared openly: the client lists the pods it is given and
then watches nothing; containerd keeps containers and tasks in dictionaries and records kills and
deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from agents.kubelet.containerd import Containerd
from agents.kubelet.containers import ContainerId, Task
from agents.kubelet.podcache import PodCache, PodRecord
from agents.kubelet.podstate import Attempt
from agents.kubelet.podworkers import PodWorkers, image_step, pull_policy, unprobed
from agents.kubelet.probes import ContainerProber
from agents.kubelet.runtime import Runtime
from agents.kubelet.settings import NetworkSettings
from agents.kubelet.statusmanager import StatusManager
from agents.machinery.client import Client
from agents.machinery.events import EventRecorder
from agents.machinery.informer import Informer
from agents.machinery.resources import PODS

OLD = "0f1e2d3c-aaaa-bbbb-cccc-000000000001"
NEW = "0f1e2d3c-aaaa-bbbb-cccc-000000000002"


def pod(uid: str, *names: str, name: str = "web") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": uid, "resourceVersion": "1"},
        "spec": {"nodeName": "n1", "containers": [{"name": n, "image": "busybox"} for n in names]},
    }


def running(uid: str, name: str, attempt: int = 0) -> Attempt:
    return Attempt(attempt, "running", 1.0, container_id=f"containerd://{ContainerId(uid, name, attempt)}")


# --- pure decisions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("container", "policy"),
    [
        ({"image": "busybox"}, "Always"),
        ({"image": "busybox:latest"}, "Always"),
        ({"image": "busybox:1.35.0"}, "IfNotPresent"),
        ({"image": "busybox:1.35.0", "imagePullPolicy": "Never"}, "Never"),
    ],
)
def test_the_pull_policy_defaults_as_kube_defaults_it(container: dict[str, str], policy: str) -> None:
    assert pull_policy(container) == policy


@pytest.mark.parametrize(
    ("policy", "present", "step"),
    [
        ("Always", True, "pull"),
        ("Always", False, "pull"),
        ("IfNotPresent", True, "use"),
        ("IfNotPresent", False, "pull"),
        ("Never", True, "use"),
        ("Never", False, "refuse"),
    ],
)
def test_the_pull_policy_and_the_image_s_presence_decide_the_pull(policy: str, present: bool, step: str) -> None:
    assert image_step(policy, present=present) == step


async def test_runs_without_probe_workers_are_the_ones_to_probe() -> None:
    record = PodRecord(OLD, "default/web")
    record.record("adopted", running(OLD, "adopted", 2))
    record.record("probed", running(OLD, "probed"))
    record.record("ended", Attempt(0, "exited", 1.0, 2.0, 0, f"containerd://{ContainerId(OLD, 'ended', 0)}"))

    async def no_exec(_cid: str, _argv: list[str], _seconds: float) -> tuple[int, str]:
        return 0, ""

    async def no_failure(_kind: str, _message: str) -> None:
        return None

    record.probers["probed"] = ContainerProber(
        container={"name": "probed"},
        container_id=str(ContainerId(OLD, "probed", 0)),
        netns=Path("/proc/self/ns/net"),
        pod_ip="10.244.0.5",
        exec_probe=no_exec,
        on_change=lambda: None,
        on_failure=no_failure,
    )
    found = unprobed(pod(OLD, "adopted", "probed", "ended", "waiting"), record)
    assert [(container["name"], cid) for container, cid in found] == [("adopted", str(ContainerId(OLD, "adopted", 2)))]


# --- keyed by UID ----------------------------------------------------------------------------------


class FakeClient:
    """Lists ``pods``; its watch stays open without news."""

    def __init__(self, *pods: dict[str, Any]) -> None:
        self.pods = list(pods)

    async def list(self, resource: object, namespace: str = "", **_selectors: str) -> tuple[list[Any], str]:
        return list(self.pods), "1"

    async def watch(self, resource: object, namespace: str = "", **_options: str) -> AsyncIterator[tuple[str, Any]]:
        await asyncio.Event().wait()
        yield "BOOKMARK", {}


class FakeContainerd:
    def __init__(self, *containers: str) -> None:
        self.containers_made = list(containers)
        self.task_list = {cid: Task(cid, 1, "RUNNING") for cid in containers}
        self.kills: list[tuple[str, str]] = []
        self.deleted: list[str] = []

    async def kill(self, container: str, signal: str = "SIGTERM") -> None:
        self.kills.append((container, signal))
        self.task_list[container] = Task(container, 1, "STOPPED")

    async def tasks(self) -> dict[str, Task]:
        return dict(self.task_list)

    async def containers(self) -> list[str]:
        return list(self.containers_made)

    async def delete(self, container: str) -> None:
        self.deleted.append(container)
        self.containers_made.remove(container)
        self.task_list.pop(container, None)


def _workers(client: FakeClient, ctr: FakeContainerd, cache: PodCache, tmp_path: Path) -> PodWorkers:
    fake = cast(Client, client)
    runtime = Runtime(cast(Containerd, ctr), root=tmp_path, network=NetworkSettings(), node_name="n1")
    return PodWorkers(
        fake,
        pods=Informer(fake, PODS, field_selector="spec.nodeName=n1"),
        cache=cache,
        runtime=runtime,
        status=StatusManager(fake, host_ip="192.168.150.10"),
        recorder=EventRecorder(fake, component="kubelet"),
        node_ip="192.168.150.10",
        name="n1",
    )


async def test_a_pod_gone_under_a_name_another_pod_now_has_is_stopped_alone(tmp_path: Path) -> None:
    old_run, new_run = str(ContainerId(OLD, "main", 0)), str(ContainerId(NEW, "main", 0))
    cache = PodCache()
    cache.ensure(OLD, "default/web").record("main", running(OLD, "main"))
    cache.ensure(NEW, "default/web").record("main", running(NEW, "main"))
    ctr = FakeContainerd(old_run, new_run)
    workers = _workers(FakeClient(pod(NEW, "main")), ctr, cache, tmp_path)
    informing = asyncio.create_task(workers.pods.run())
    try:
        await asyncio.wait_for(workers.pods.synced.wait(), 5)
        assert workers.pod(NEW) is not None and workers.pod(OLD) is None
        await workers.sync(OLD)
    finally:
        informing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await informing
    assert ctr.kills == [(old_run, "SIGKILL")]  # gone from the API: no grace to wait out
    assert ctr.deleted == [old_run]
    assert cache.get(OLD) is None
    assert cache.get(NEW) is not None and ctr.task_list[new_run].status == "RUNNING"


async def test_a_name_taken_over_by_another_pod_queues_both_pods(tmp_path: Path) -> None:
    workers = _workers(FakeClient(), FakeContainerd(), PodCache(), tmp_path)
    workers.pod_updated(pod(OLD, "main"), pod(NEW, "main"))
    assert sorted([await workers.queue.get(), await workers.queue.get()]) == [OLD, NEW]
    workers.pod_updated(pod(NEW, "main"), pod(NEW, "main", "side"))
    assert len(workers.queue) == 0  # NEW is being worked on: it comes back once done
    workers.queue.done(NEW)
    assert await workers.queue.get() == NEW
