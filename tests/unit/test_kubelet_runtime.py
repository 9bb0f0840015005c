"""The runtime seam: the container spec a pod's container becomes (pure), the pod's hosts file and
hostname, and what the runtime does over containerd: images and configs asked for once, a leftover of
an interrupted start replaced, when each start returned, graceful kills, OOM kills told by containerd's
events, and what is removed.

containerd is a fake, declared openly (``FakeContainerd``): containers and tasks in dictionaries,
every call recorded; it fails the calls it is told to fail.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from agents.kubelet.containerd import Containerd
from agents.kubelet.containers import (
    ContainerdError,
    ContainerdUnavailableError,
    ContainerId,
    ContainerSpec,
    Mount,
    Task,
    TaskExit,
    TaskOOM,
)
from agents.kubelet.runtime import Runtime, container_spec, cpu_quota, hostname_of, hosts_file
from agents.kubelet.settings import NetworkSettings
from agents.kubelet.volumes import VolumeFiles

UID = "0f1e2d3c-aaaa-bbbb-cccc-000000000001"
OTHER = "0f1e2d3c-aaaa-bbbb-cccc-000000000002"


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web-1", "namespace": "app", "uid": UID}, "spec": spec}


# --- pure parts ------------------------------------------------------------------------------------


def test_a_container_becomes_a_spec_in_the_pod_s_namespaces_with_its_limits_and_mounts(tmp_path: Path) -> None:
    container = {
        "name": "web",
        "args": ["-p", "80"],
        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
        "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}},
    }
    volumes = [VolumeFiles("data", tmp_path / "data", {}, 0o777, True)]
    spec = container_spec(
        pod(),
        container,
        cid=ContainerId(UID, "web", 2),
        image="docker.io/library/echo:1.0",
        config={"Entrypoint": ["/bin/httpd"], "Cmd": ["-f"], "WorkingDir": "/srv"},
        env={"A": "1"},
        volumes=volumes,
        netns=f"/run/netns/kl-n-{UID}",
        uts=str(tmp_path / "uts"),
        hosts=tmp_path / "etc-hosts",
    )
    assert spec == ContainerSpec(
        ContainerId(UID, "web", 2),
        "docker.io/library/echo:1.0",
        argv=("/bin/httpd", "-p", "80"),
        env={"A": "1"},
        working_dir="/srv",
        netns=f"/run/netns/kl-n-{UID}",
        uts=str(tmp_path / "uts"),
        mounts=(Mount(str(tmp_path / "etc-hosts"), "/etc/hosts"), Mount(str(tmp_path / "data"), "/data", True)),
        memory_limit=64 * 1024 * 1024,
        cpu_quota=25_000,
        labels={"io.kubernetes.pod.name": "web-1", "io.kubernetes.pod.namespace": "app"},
    )


def test_the_container_s_working_dir_wins_over_the_image_s() -> None:
    spec = container_spec(
        pod(),
        {"name": "web", "workingDir": "/work"},
        cid=ContainerId(UID, "web", 0),
        image="docker.io/library/busybox:latest",
        config={"WorkingDir": "/srv"},
        env={},
        volumes=[],
        netns="",
        uts="",
        hosts=Path("/h"),
    )
    assert spec.working_dir == "/work" and spec.argv == () and spec.memory_limit == 0 and spec.cpu_quota == 0


def test_var_references_in_the_command_and_args_are_expanded_from_the_environment() -> None:
    spec = container_spec(
        pod(),
        {"name": "web", "command": ["/bin/run", "--pod=$(POD_NAME)"], "args": ["$(MISSING)", "$$(POD_NAME)"]},
        cid=ContainerId(UID, "web", 0),
        image="docker.io/library/busybox:latest",
        config={"Entrypoint": ["/bin/sh"], "Env": ["IMAGE_ONLY=x"]},
        env={"POD_NAME": "web-1"},
        volumes=[],
        netns="",
        uts="",
        hosts=Path("/h"),
    )
    assert spec.argv == ("/bin/run", "--pod=web-1", "$(MISSING)", "$(POD_NAME)")


def test_the_cpu_limit_becomes_a_quota_of_the_period() -> None:
    assert cpu_quota({"cpu": "500m"}) == 50_000
    assert cpu_quota({"cpu": "2"}) == 200_000
    assert cpu_quota({}) == 0


def test_the_pod_s_hostname_and_hosts_file() -> None:
    assert hostname_of(pod()) == "web-1"
    assert hostname_of(pod(hostname="db")) == "db"
    assert hostname_of({"metadata": {"name": "x" * 80}}) == "x" * 63
    lines = hosts_file("10.244.0.5", "web-1").splitlines()
    assert lines[0] == "# Kubernetes-managed hosts file."
    assert "127.0.0.1\tlocalhost" in lines
    assert lines[-1] == "10.244.0.5\tweb-1"


# --- over a fake containerd ----------------------------------------------------------------------------


class FakeContainerd:
    def __init__(self) -> None:
        self.images: set[str] = set()
        self.containers_made: dict[str, ContainerSpec] = {}
        self.task_list: dict[str, Task] = {}
        self.calls: list[tuple[str, ...]] = []
        self.fail_start = False
        self.stops_on_sigterm = True
        self.started_during: float | None = None
        self.runtime: Runtime | None = None
        self.event_list: list[TaskExit | TaskOOM] = []
        self.unanswered_versions = 0

    async def version(self) -> str:
        self.calls.append(("version",))
        if self.unanswered_versions:
            self.unanswered_versions -= 1
            raise ContainerdUnavailableError("version", "connection refused")
        return "1.6.20~ds1"

    async def has_image(self, reference: str) -> bool:
        self.calls.append(("has_image", reference))
        return reference in self.images

    async def pull(self, reference: str) -> None:
        self.calls.append(("pull", reference))
        self.images.add(reference)

    async def image_config(self, reference: str) -> dict[str, Any]:
        self.calls.append(("image_config", reference))
        return {"Cmd": ["sh"]}

    async def create(self, spec: ContainerSpec) -> None:
        self.calls.append(("create", str(spec.id)))
        if str(spec.id) in self.containers_made:
            raise ContainerdError(f"create {spec.id}", f'container "{spec.id}": already exists')
        self.containers_made[str(spec.id)] = spec

    async def start(self, container: str, *, log_file: Path) -> None:
        self.calls.append(("start", container, str(log_file)))
        assert self.runtime is not None
        self.started_during = self.runtime.start_returned(container)
        if self.fail_start:
            raise ContainerdError(f"start {container}", "failed to create shim")
        self.task_list[container] = Task(container, 4242, "RUNNING")

    async def kill(self, container: str, signal: str = "SIGTERM") -> None:
        self.calls.append(("kill", container, signal))
        if container in self.task_list and (signal == "SIGKILL" or self.stops_on_sigterm):
            self.task_list[container] = Task(container, 4242, "STOPPED")

    async def tasks(self) -> dict[str, Task]:
        return dict(self.task_list)

    async def containers(self) -> list[str]:
        return list(self.containers_made)

    async def delete(self, container: str) -> None:
        self.calls.append(("delete", container))
        self.containers_made.pop(container, None)
        self.task_list.pop(container, None)

    async def delete_task(self, container: str) -> int | None:
        self.calls.append(("delete_task", container))
        return 137 if self.task_list.pop(container, None) is not None else None

    async def events(self) -> AsyncIterator[TaskExit | TaskOOM]:
        for event in self.event_list:
            yield event

    def cgroup(self, container: str) -> str:
        return f"/kubelab-unit-test-no-such-cgroup/{container}"


@pytest.fixture
def ctr() -> FakeContainerd:
    return FakeContainerd()


@pytest.fixture
def runtime(ctr: FakeContainerd, tmp_path: Path) -> Runtime:
    made = Runtime(cast(Containerd, ctr), root=tmp_path / "root", network=NetworkSettings(), node_name="n1")
    ctr.runtime = made
    return made


def spec_of(cid: ContainerId) -> ContainerSpec:
    return ContainerSpec(cid, "docker.io/library/busybox:latest")


async def test_the_version_is_asked_until_containerd_answers(runtime: Runtime, ctr: FakeContainerd) -> None:
    # a containerd restarted with the kubelet may not listen yet
    ctr.unanswered_versions = 3
    await runtime.read_version(period=0.001)
    assert runtime.version == "containerd://1.6.20~ds1"
    assert ctr.calls == [("version",)] * 4


async def test_an_image_seen_once_is_not_asked_for_again_and_a_pull_renews_its_config(
    runtime: Runtime, ctr: FakeContainerd
) -> None:
    reference = "docker.io/library/busybox:latest"
    assert not await runtime.has_image(reference)
    await runtime.pull(reference)
    assert await runtime.has_image(reference) and await runtime.has_image(reference)
    await runtime.image_config(reference)
    await runtime.image_config(reference)
    await runtime.pull(reference)  # the tag may name another image now
    await runtime.image_config(reference)
    asked = [call[0] for call in ctr.calls]
    assert asked == ["has_image", "pull", "image_config", "pull", "image_config"]


async def test_a_leftover_of_an_interrupted_start_is_replaced(runtime: Runtime, ctr: FakeContainerd) -> None:
    cid = ContainerId(UID, "web", 0)
    await runtime.create(spec_of(cid))
    await runtime.create(spec_of(cid))
    assert ctr.calls == [("create", str(cid)), ("create", str(cid)), ("delete", str(cid)), ("create", str(cid))]


async def test_the_runtime_remembers_when_each_start_returned_even_a_failed_one(
    runtime: Runtime, ctr: FakeContainerd, tmp_path: Path
) -> None:
    cid = ContainerId(UID, "web", 3)
    assert runtime.start_returned(str(cid)) == 0.0
    before = time.time()
    await runtime.start(cid)
    assert ctr.started_during == math.inf
    assert before <= runtime.start_returned(str(cid)) <= time.time()
    assert ctr.calls[-1] == ("start", str(cid), str(tmp_path / "root" / "pods" / UID / "logs" / "web" / "3.log"))
    runtime.forget_start(str(cid))
    assert runtime.start_returned(str(cid)) == 0.0
    ctr.fail_start = True
    with pytest.raises(ContainerdError):
        await runtime.start(cid)
    assert before <= runtime.start_returned(str(cid)) < math.inf


async def test_a_kill_is_sigterm_then_sigkill_only_for_what_outlives_the_grace_period(
    runtime: Runtime, ctr: FakeContainerd
) -> None:
    polite, stubborn = str(ContainerId(UID, "polite", 0)), str(ContainerId(UID, "stubborn", 0))
    ctr.task_list = {polite: Task(polite, 1, "RUNNING")}
    await runtime.kill(polite, grace=5)
    ctr.stops_on_sigterm = False
    ctr.task_list[stubborn] = Task(stubborn, 2, "RUNNING")
    await runtime.kill(stubborn, grace=0)
    kills = [call[1:] for call in ctr.calls if call[0] == "kill"]
    assert kills == [(polite, "SIGTERM"), (stubborn, "SIGTERM"), (stubborn, "SIGKILL")]


async def test_stopping_with_no_grace_is_sigkill_at_once(runtime: Runtime, ctr: FakeContainerd) -> None:
    ids = [str(ContainerId(UID, name, 0)) for name in ("a", "b")]
    ctr.task_list = {cid: Task(cid, 1, "RUNNING") for cid in ids}
    await runtime.stop(ids, grace=0)
    assert [call[1:] for call in ctr.calls if call[0] == "kill"] == [(ids[0], "SIGKILL"), (ids[1], "SIGKILL")]


async def test_a_pod_s_removal_takes_its_containers_and_volumes_and_nothing_else(
    runtime: Runtime, ctr: FakeContainerd
) -> None:
    mine, theirs = ContainerId(UID, "web", 0), ContainerId(OTHER, "web", 0)
    for cid in (mine, theirs):
        await runtime.create(spec_of(cid))
    volumes = runtime.pod_dir(UID) / "volumes" / "empty-dir" / "scratch"
    volumes.mkdir(parents=True)
    await runtime.remove_pod(UID)
    assert list(ctr.containers_made) == [str(theirs)]
    assert not (runtime.pod_dir(UID) / "volumes").exists()


async def test_runs_before_the_previous_one_are_removed_with_their_logs(runtime: Runtime, ctr: FakeContainerd) -> None:
    runs = [ContainerId(UID, "web", n) for n in range(4)] + [ContainerId(UID, "side", 0)]
    for cid in runs:
        await runtime.create(spec_of(cid))
        log = runtime.log_file(UID, cid.name, cid.attempt)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("hi\n")
    await runtime.remove_old_runs(UID, "web", keep_from=2)
    assert sorted(ctr.containers_made) == sorted(str(c) for c in runs[2:])
    assert sorted(p.name for p in (runtime.pod_dir(UID) / "logs" / "web").iterdir()) == ["2.log", "3.log"]


async def test_an_oom_event_marks_the_container_until_its_task_is_removed(
    runtime: Runtime, ctr: FakeContainerd
) -> None:
    hit, spared = str(ContainerId(UID, "hungry", 0)), str(ContainerId(UID, "modest", 0))
    ctr.event_list = [TaskOOM(hit), TaskExit(hit, 137, ""), TaskExit(spared, 0, "")]
    ctr.task_list = {hit: Task(hit, 1, "STOPPED")}
    exits = [event async for event in runtime.exits()]
    assert exits == [TaskExit(hit, 137, ""), TaskExit(spared, 0, "")]  # OOMs are not exits
    assert runtime.oom_killed(hit) and not runtime.oom_killed(spared)
    assert await runtime.delete_task(hit) == 137
    assert not runtime.oom_killed(hit)
