"""The kubelet's containerd layer against a real containerd and runc, images pulled from the lab
registry through a docker.io mirror, and exits heard from containerd's event stream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from agents.kubelet.containerd import ContainerId, ContainerSpec, Ctr, ImageNotFoundError, TaskExit, command_line
from kubelab_testing.lab import Lab
from tests.support.components import Containerd, network_namespace, running_containerd

BUSYBOX = "docker.io/library/busybox:latest"
ECHO = "docker.io/library/echo:1.0"


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    with running_containerd("kubelab-kubelet-test") as daemon:
        yield daemon


@pytest.fixture(scope="module")
def mirror(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hosts directory that sends docker.io to the lab registry, and nowhere else."""
    hosts = tmp_path_factory.mktemp("hosts")
    (hosts / "docker.io").mkdir()
    (hosts / "docker.io" / "hosts.toml").write_text(
        f'server = "http://{lab.registry}"\n\n[host."http://{lab.registry}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    return hosts


@pytest.fixture
def ctr(containerd: Containerd, mirror: Path) -> Ctr:
    return Ctr(address=str(containerd.socket), namespace=containerd.namespace, hosts_dir=str(mirror))


@pytest.fixture
def netns() -> Iterator[str]:
    with network_namespace() as name:
        yield f"/var/run/netns/{name}"


def new_id(name: str = "main") -> ContainerId:
    return ContainerId(str(uuid.uuid4()), name, 0)


@asynccontextmanager
async def exits(ctr: Ctr) -> AsyncIterator[asyncio.Queue[TaskExit]]:
    """Collect task exits from the event stream while the block runs."""
    queue: asyncio.Queue[TaskExit] = asyncio.Queue()

    async def follow() -> None:
        async for event in ctr.exits():
            queue.put_nowait(event)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.3)  # let ctr events subscribe before anything exits
    try:
        yield queue
    finally:
        task.cancel()


async def exit_of(queue: asyncio.Queue[TaskExit], container: ContainerId, *, within: float = 20) -> TaskExit:
    async with asyncio.timeout(within):
        while True:
            event = await queue.get()
            if event.id == str(container):
                return event


async def test_a_short_reference_is_pulled_from_the_lab_registry_through_the_mirror(ctr: Ctr) -> None:
    await ctr.pull(BUSYBOX)
    assert await ctr.has_image(BUSYBOX)
    config = await ctr.image_config(BUSYBOX)
    assert config["Cmd"] == ["sh"]


async def test_an_image_the_registry_does_not_have_is_image_not_found_with_its_message(ctr: Ctr) -> None:
    with pytest.raises(ImageNotFoundError) as caught:
        await ctr.pull("docker.io/library/no-such-image:1.0")
    assert "not found" in caught.value.message


async def test_a_container_runs_with_its_env_and_workdir_and_its_exit_status_is_heard(ctr: Ctr, tmp_path: Path) -> None:
    await ctr.pull(BUSYBOX)
    cid = new_id()
    argv = command_line(await ctr.image_config(BUSYBOX), ["sh", "-c"], ['echo "$GREETING from $(pwd)"; exit 7'])
    spec = ContainerSpec(cid, BUSYBOX, argv=argv, env={"GREETING": "hello"}, working_dir="/tmp")
    log_file = tmp_path / "main.log"
    async with exits(ctr) as heard:
        await ctr.create(spec)
        await ctr.start(str(cid), log_file=log_file)
        event = await exit_of(heard, cid)
    assert event.exit_status == 7
    assert log_file.read_text() == "hello from /tmp\n"
    assert str(cid) in await ctr.containers()
    assert await ctr.delete_task(str(cid)) == 7
    await ctr.delete(str(cid))
    assert str(cid) not in await ctr.containers()


async def test_two_containers_in_one_network_namespace_talk_over_localhost(
    ctr: Ctr, netns: str, tmp_path: Path
) -> None:
    await ctr.pull(ECHO)
    await ctr.pull(BUSYBOX)
    uid = str(uuid.uuid4())
    server = ContainerSpec(
        ContainerId(uid, "web", 0),
        ECHO,
        argv=command_line(await ctr.image_config(ECHO), [], []),
        env={"POD_NAME": "pair", "POD_IP": "10.244.0.9"},
        netns=netns,
    )
    client = ContainerSpec(
        ContainerId(uid, "client", 0),
        BUSYBOX,
        argv=("sh", "-c", "for i in $(seq 50); do wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.1; done"),
        netns=netns,
    )
    async with exits(ctr) as heard:
        await ctr.create(server)
        await ctr.start(str(server.id), log_file=tmp_path / "web.log")
        await ctr.create(client)
        await ctr.start(str(client.id), log_file=tmp_path / "client.log")
        event = await exit_of(heard, client.id)
    assert event.exit_status == 0
    assert (tmp_path / "client.log").read_text().strip() == "pod pair ip 10.244.0.9 method GET path /"
    await ctr.delete(str(server.id))  # still running: killed, then removed
    await ctr.delete(str(client.id))
    assert not {str(server.id), str(client.id)} & set(await ctr.containers())


def cgroup_limits(namespace: str, container: str) -> tuple[str, str]:
    """The memory limit and CPU quota of a container's cgroup, read on the host (v1 or v2):
    containerd puts a task in ``<namespace>/<container id>``."""
    v2 = Path("/sys/fs/cgroup") / namespace / container
    if (v2 / "memory.max").exists():
        return (v2 / "memory.max").read_text().strip(), (v2 / "cpu.max").read_text().split()[0]
    memory = Path("/sys/fs/cgroup/memory") / namespace / container / "memory.limit_in_bytes"
    cpu = Path("/sys/fs/cgroup/cpu") / namespace / container / "cpu.cfs_quota_us"
    return memory.read_text().strip(), cpu.read_text().strip()


async def test_memory_and_cpu_limits_are_the_containers_cgroup_limits(
    ctr: Ctr, containerd: Containerd, tmp_path: Path
) -> None:
    await ctr.pull(BUSYBOX)
    cid = new_id()
    spec = ContainerSpec(cid, BUSYBOX, argv=("sleep", "30"), memory_limit=64 * 2**20, cpu_quota=50_000)
    await ctr.create(spec)
    await ctr.start(str(cid), log_file=tmp_path / "limit.log")
    try:
        assert cgroup_limits(containerd.namespace, str(cid)) == (str(64 * 2**20), "50000")
    finally:
        await ctr.delete(str(cid))


async def test_containers_the_kubelet_did_not_create_are_not_listed(ctr: Ctr, containerd: Containerd) -> None:
    await ctr.pull(BUSYBOX)
    foreign = f"foreign-{uuid.uuid4().hex[:6]}"
    containerd.ctr("containers", "create", BUSYBOX, foreign)
    try:
        assert foreign not in await ctr.containers()
    finally:
        containerd.ctr("containers", "delete", foreign)
