"""The kubelet's containerd layer against a real containerd and runc, over containerd's gRPC API:
images pulled from the lab registry through a docker.io mirrored by ``ctr``, containers whose runtime
spec is the one ``ctr`` writes, exits and OOMs heard from containerd's event service, exec, and the
generated stubs pinned to the installed containerd."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from agents.kubelet import cgroups
from agents.kubelet.containerd import Containerd
from agents.kubelet.containerd_api import SOURCE_VERSION
from agents.kubelet.containers import (
    ContainerdError,
    ContainerId,
    ContainerSpec,
    ImageNotFoundError,
    Mount,
    TaskExit,
    TaskOOM,
    command_line,
)
from agents.kubelet.ctr import Ctr
from kubelab_testing.lab import Lab
from tests.support.components import Containerd as Daemon
from tests.support.components import in_ci, network_namespace, running_containerd

BUSYBOX = "docker.io/library/busybox:latest"
ECHO = "docker.io/library/echo:1.0"
ROOT = Path(__file__).resolve().parents[2]
API_PACKAGE = "golang-github-containerd-containerd-dev"
API_PROTOS = Path("/usr/share/gocode/src/github.com/containerd/containerd/api/services/tasks/v1/tasks.proto")


@pytest.fixture(scope="module")
def containerd() -> Iterator[Daemon]:
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
async def client(containerd: Daemon, mirror: Path, tmp_path: Path) -> AsyncIterator[Containerd]:
    ctr = Ctr(address=str(containerd.socket), namespace=containerd.namespace, hosts_dir=str(mirror))
    made = Containerd(
        address=str(containerd.socket), namespace=containerd.namespace, fifo_dir=tmp_path / "fifo", ctr=ctr
    )
    yield made
    await made.close()


@pytest.fixture
def netns() -> Iterator[str]:
    with network_namespace() as name:
        yield f"/var/run/netns/{name}"


def new_id(name: str = "main") -> ContainerId:
    return ContainerId(str(uuid.uuid4()), name, 0)


@asynccontextmanager
async def events(client: Containerd) -> AsyncIterator[asyncio.Queue[TaskExit | TaskOOM]]:
    """Collect task exits and OOMs from the event service while the block runs."""
    queue: asyncio.Queue[TaskExit | TaskOOM] = asyncio.Queue()

    async def follow() -> None:
        async for event in client.events():
            queue.put_nowait(event)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.3)  # let the subscription be made before anything exits
    try:
        yield queue
    finally:
        task.cancel()


async def exit_of(
    queue: asyncio.Queue[TaskExit | TaskOOM], container: ContainerId, *, within: float = 20
) -> tuple[TaskExit, bool]:
    """The container's exit, and whether an OOM of it came before."""
    oom = False
    async with asyncio.timeout(within):
        while True:
            event = await queue.get()
            if event.id == str(container):
                if isinstance(event, TaskOOM):
                    oom = True
                else:
                    return event, oom


def require_api_protos() -> None:
    """containerd's API files, from the Debian package that carries them (installed when missing)."""
    if API_PROTOS.exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        message = f"containerd's API files are missing: apt-get install {API_PACKAGE}"
        pytest.fail(message) if in_ci() else pytest.skip(message)
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", API_PACKAGE]
    if subprocess.run(install, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=True)
        subprocess.run(install, capture_output=True, check=True)


def test_the_stubs_are_what_the_tool_generates_from_the_installed_containerd_s_api(containerd: Daemon) -> None:
    require_api_protos()
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "containerd_api.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    server = re.search(r"Server:\s*\n\s*Version:\s*(\S+)", containerd.ctr("version").stdout)
    assert server is not None and SOURCE_VERSION.startswith(server.group(1))  # 1.6.20~ds1 on Debian 12


async def test_a_short_reference_is_pulled_from_the_lab_registry_through_the_mirror(client: Containerd) -> None:
    await client.pull(BUSYBOX)
    assert await client.has_image(BUSYBOX)
    assert not await client.has_image("docker.io/library/never-pulled:1.0")
    config = await client.image_config(BUSYBOX)
    assert config["Cmd"] == ["sh"]
    assert (await client.version()).startswith("1.")


async def test_an_image_the_registry_does_not_have_is_image_not_found_with_its_message(client: Containerd) -> None:
    with pytest.raises(ImageNotFoundError) as caught:
        await client.pull("docker.io/library/no-such-image:1.0")
    assert "not found" in caught.value.message


async def test_a_container_runs_with_its_env_and_workdir_and_its_exit_status_is_heard(
    client: Containerd, tmp_path: Path
) -> None:
    await client.pull(BUSYBOX)
    cid = new_id()
    argv = command_line(await client.image_config(BUSYBOX), ["sh", "-c"], ['echo "$GREETING from $(pwd)"; exit 7'])
    spec = ContainerSpec(cid, BUSYBOX, argv=argv, env={"GREETING": "hello"}, working_dir="/tmp")
    log_file = tmp_path / "main.log"
    async with events(client) as heard:
        await client.create(spec)
        await client.start(str(cid), log_file=log_file)
        event, oom = await exit_of(heard, cid)
    assert (event.exit_status, oom) == (7, False)
    assert log_file.read_text() == "hello from /tmp\n"
    assert str(cid) in await client.containers()
    assert (await client.tasks())[str(cid)].status == "STOPPED"
    assert await client.delete_task(str(cid)) == 7
    await client.delete(str(cid))
    assert str(cid) not in await client.containers()


async def test_the_runtime_spec_is_the_one_ctr_writes_for_the_same_container(
    client: Containerd, containerd: Daemon, netns: str, tmp_path: Path
) -> None:
    await client.pull(BUSYBOX)
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    ours, theirs = new_id(), new_id()
    await client.create(
        ContainerSpec(
            ours,
            BUSYBOX,
            argv=("sh", "-c", "echo hi"),
            env={"A": "1"},
            working_dir="/tmp",
            netns=netns,
            mounts=(Mount(str(hosts), "/etc/hosts"), Mount(str(tmp_path), "/data", read_only=True)),
            memory_limit=64 * 2**20,
            cpu_quota=50_000,
        )
    )
    containerd.ctr(
        *("containers", "create", "--env", "A=1", "--cwd", "/tmp", "--with-ns", f"network:{netns}"),
        *("--mount", f"type=bind,src={hosts},dst=/etc/hosts,options=rbind:rw"),
        *("--mount", f"type=bind,src={tmp_path},dst=/data,options=rbind:ro"),
        *("--memory-limit", str(64 * 2**20), "--cpu-quota", "50000", "--cpu-period", "100000"),
        *(BUSYBOX, str(theirs), "--", "sh", "-c", "echo hi"),
    )
    try:
        written = {
            cid: json.loads(containerd.ctr("containers", "info", str(cid)).stdout)["Spec"] for cid in (ours, theirs)
        }
        written[theirs]["linux"]["cgroupsPath"] = written[theirs]["linux"]["cgroupsPath"].replace(
            str(theirs), str(ours)
        )
        written[theirs].pop("annotations", None)  # ctr copies its labels there
        assert written[ours] == written[theirs]
    finally:
        await client.delete(str(ours))
        containerd.ctr("containers", "delete", str(theirs))


async def test_two_containers_in_one_network_namespace_talk_over_localhost(
    client: Containerd, netns: str, tmp_path: Path
) -> None:
    await client.pull(ECHO)
    await client.pull(BUSYBOX)
    uid = str(uuid.uuid4())
    server = ContainerSpec(
        ContainerId(uid, "web", 0),
        ECHO,
        argv=command_line(await client.image_config(ECHO), [], []),
        env={"POD_NAME": "pair", "POD_IP": "10.244.0.9"},
        netns=netns,
    )
    fetch = ContainerSpec(
        ContainerId(uid, "client", 0),
        BUSYBOX,
        argv=("sh", "-c", "for i in $(seq 50); do wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.1; done"),
        netns=netns,
    )
    async with events(client) as heard:
        await client.create(server)
        await client.start(str(server.id), log_file=tmp_path / "web.log")
        await client.create(fetch)
        await client.start(str(fetch.id), log_file=tmp_path / "client.log")
        event, _ = await exit_of(heard, fetch.id)
    assert event.exit_status == 0
    assert (tmp_path / "client.log").read_text().strip() == "pod pair ip 10.244.0.9 method GET path /"
    await client.delete(str(server.id))  # still running: killed, then removed
    await client.delete(str(fetch.id))
    assert not {str(server.id), str(fetch.id)} & set(await client.containers())


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
    client: Containerd, containerd: Daemon, tmp_path: Path
) -> None:
    await client.pull(BUSYBOX)
    cid = new_id()
    spec = ContainerSpec(cid, BUSYBOX, argv=("sleep", "30"), memory_limit=64 * 2**20, cpu_quota=50_000)
    await client.create(spec)
    await client.start(str(cid), log_file=tmp_path / "limit.log")
    try:
        assert cgroup_limits(containerd.namespace, str(cid)) == (str(64 * 2**20), "50000")
    finally:
        await client.delete(str(cid))


async def test_a_container_beyond_its_memory_limit_is_oom_killed_and_both_witnesses_say_so(
    client: Containerd, tmp_path: Path
) -> None:
    """A shell doubling a variable until the kernel's OOM killer stops it: containerd's OOM event,
    and the cgroup's count until the task is removed (v1 on this host, v2 in the VM guests)."""
    await client.pull(BUSYBOX)
    cid = new_id("hungry")
    grow = ("sh", "-c", "x=0123456789abcdef; while true; do x=$x$x; done")
    async with events(client) as heard:
        await client.create(ContainerSpec(cid, BUSYBOX, argv=grow, memory_limit=16 * 2**20))
        await client.start(str(cid), log_file=tmp_path / "hungry.log")
        event, oom = await exit_of(heard, cid, within=60)
    try:
        assert event.exit_status == 137 and oom
        assert cgroups.oom_kills(client.cgroup(str(cid))) >= 1
    finally:
        await client.delete(str(cid))


async def test_a_command_that_does_not_exist_cannot_start_and_the_runtime_says_why(
    client: Containerd, tmp_path: Path
) -> None:
    await client.pull(BUSYBOX)
    cid = new_id("missing")
    await client.create(ContainerSpec(cid, BUSYBOX, argv=("no-such-command",)))
    try:
        with pytest.raises(ContainerdError) as caught:
            await client.start(str(cid), log_file=tmp_path / "missing.log")
        assert caught.value.message.startswith("failed to create containerd task: ")
        assert 'exec: "no-such-command": executable file not found in $PATH' in caught.value.message
        assert str(cid) not in await client.tasks()
    finally:
        await client.delete(str(cid))


async def test_exec_runs_a_command_in_the_container_with_its_output_code_and_deadline(
    client: Containerd, tmp_path: Path
) -> None:
    await client.pull(BUSYBOX)
    cid = new_id()
    await client.create(ContainerSpec(cid, BUSYBOX, argv=("sleep", "60"), env={"WHO": "probe"}))
    await client.start(str(cid), log_file=tmp_path / "exec.log")
    try:
        code, output = await client.exec(str(cid), ["sh", "-c", "echo $WHO; echo oops >&2; exit 3"], seconds=10)
        # the shim copies stdout and stderr each on its own, so their lines may arrive in either order
        assert (code, sorted(output.splitlines(keepends=True))) == (3, ["oops\n", "probe\n"])
        big = await client.exec(str(cid), ["sh", "-c", "yes | head -c 300000"], seconds=10)
        assert big[0] == 0 and len(big[1]) == 10 * 1024  # the first 10 KiB, as kube keeps of a probe's output
        assert await client.exec(str(cid), ["sleep", "30"], seconds=0.5) == (124, "command timed out after 0.5s")
        code, message = await client.exec(str(cid), ["no-such-probe"], seconds=5)
        assert code == 126 and "executable file not found" in message
        assert not list((tmp_path / "fifo").iterdir())  # every exec's pipe is gone
    finally:
        await client.delete(str(cid))


async def test_containers_the_kubelet_did_not_create_are_not_listed(client: Containerd, containerd: Daemon) -> None:
    await client.pull(BUSYBOX)
    foreign = f"foreign-{uuid.uuid4().hex[:6]}"
    containerd.ctr("containers", "create", BUSYBOX, foreign)
    try:
        assert foreign not in await client.containers()
    finally:
        containerd.ctr("containers", "delete", foreign)
