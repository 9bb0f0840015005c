"""The pure parts of the kubelet's containerd layer: ids, containerd's events and tasks as the kubelet
reads them from the API's messages, the OCI runtime spec of a container and the snapshot it grows
from, what a cgroup says of OOM kills, and kube's rule for the process a container runs."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import grpc
import pytest
from google.protobuf import any_pb2

from agents.kubelet import cgroups
from agents.kubelet.containerd import EXIT_EVENT, OOM_EVENT, Containerd, event_of, task_of
from agents.kubelet.containerd_api.events import task_pb2 as task_events
from agents.kubelet.containerd_api.services.events.v1 import events_pb2
from agents.kubelet.containerd_api.types.task import task_pb2
from agents.kubelet.containers import (
    ContainerdError,
    ContainerId,
    ContainerSpec,
    Mount,
    Task,
    TaskExit,
    TaskOOM,
    command_line,
)
from agents.kubelet.ctr import Ctr
from agents.kubelet.oci import DEFAULT_PATH, SpecError, chain_id, merge_env, runtime_spec, user_of
from agents.machinery.imagerefs import full_reference

UID = "0b6f5a2e-8d1c-4c7e-9a57-3f3c2b1d0e9f"
BUSYBOX = "docker.io/library/busybox:latest"


def test_a_container_id_names_pod_container_and_attempt_and_parses_back() -> None:
    cid = ContainerId(UID, "web-server", 3)
    assert str(cid) == f"{UID}_web-server_3"
    assert ContainerId.parse(str(cid)) == cid
    assert ContainerId.parse("foreign-container") is None


def envelope(kind: str, message: task_events.TaskExit | task_events.TaskOOM) -> events_pb2.Envelope:
    event = any_pb2.Any(type_url=kind, value=message.SerializeToString())
    return events_pb2.Envelope(namespace="k8s.io", topic="/tasks/exit", event=event)


def test_task_exits_and_ooms_are_read_from_containerd_s_events() -> None:
    exited = task_events.TaskExit(container_id="c1", id="c1", pid=7, exit_status=137)
    exited.exited_at.FromSeconds(1_795_000_000)
    assert event_of(envelope(EXIT_EVENT, exited)) == TaskExit("c1", 137, "2026-11-18T11:06:40Z")
    assert event_of(envelope(OOM_EVENT, task_events.TaskOOM(container_id="c1"))) == TaskOOM("c1")
    probe = task_events.TaskExit(container_id="c1", id="exec-1a2b", pid=9, exit_status=1)
    assert event_of(envelope(EXIT_EVENT, probe)) is None  # a probe's exec ended, not the container
    assert event_of(envelope("containerd.events.TaskStart", task_events.TaskOOM(container_id="c1"))) is None


def test_a_task_is_read_from_containerd_s_process() -> None:
    process = task_pb2.Process(id="c1", pid=29646, status=task_pb2.STOPPED, exit_status=3)
    assert task_of(process) == Task("c1", 29646, "STOPPED")
    assert task_of(task_pb2.Process(id="c2", status=task_pb2.CREATED)) == Task("c2", 0, "CREATED")


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ([], [], ("/bin/httpd", "-f", "sh")),
        (["sleep"], [], ("sleep",)),  # a command drops the image's Cmd
        ([], ["-p", "80"], ("/bin/httpd", "-f", "-p", "80")),  # args replace the Cmd only
        (["sh", "-c"], ["echo hi"], ("sh", "-c", "echo hi")),
    ],
)
def test_command_replaces_the_entrypoint_and_args_replace_the_cmd(
    command: list[str], args: list[str], expected: tuple[str, ...]
) -> None:
    config = {"Entrypoint": ["/bin/httpd", "-f"], "Cmd": ["sh"]}
    assert command_line(config, command, args) == expected


@pytest.mark.parametrize(
    ("image", "reference"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.35.0", "docker.io/library/busybox:1.35.0"),
        ("team/app:2", "docker.io/team/app:2"),
        ("registry.lab:5000/app:1", "registry.lab:5000/app:1"),
        ("team/app@sha256:ab12", "docker.io/team/app@sha256:ab12"),
    ],
)
def test_short_image_names_mean_docker_hub_as_kube_reads_them(image: str, reference: str) -> None:
    assert full_reference(image) == reference


# --- the OCI runtime spec ----------------------------------------------------------------------------


def test_the_runtime_spec_carries_the_process_namespaces_mounts_limits_and_cgroup() -> None:
    spec = ContainerSpec(
        ContainerId(UID, "main", 0),
        BUSYBOX,
        argv=("sh", "-c", "echo hi"),
        env={"A": "1", "PATH": "/bin"},
        working_dir="/work",
        netns="/var/run/netns/kl-pod",
        uts="/var/lib/kubelab/pods/uts",
        mounts=(Mount("/var/lib/kubelab/vol", "/data", read_only=True), Mount("/h", "/etc/hosts")),
        memory_limit=1024,
        cpu_quota=50_000,
    )
    found = runtime_spec(spec, image_config={"Env": ["PATH=/usr/bin", "HOME=/root"]}, namespace="k8s.io")
    process = found["process"]
    assert process["args"] == ["sh", "-c", "echo hi"] and process["cwd"] == "/work"
    assert process["env"] == ["PATH=/bin", "HOME=/root", "A=1"]  # the pod's replace the image's in place
    assert process["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]} and process["noNewPrivileges"]
    linux = found["linux"]
    assert linux["cgroupsPath"] == f"/k8s.io/{UID}_main_0"
    assert linux["resources"]["memory"] == {"limit": 1024}
    assert linux["resources"]["cpu"] == {"quota": 50_000, "period": 100_000}
    assert {"type": "network", "path": "/var/run/netns/kl-pod"} in linux["namespaces"]
    assert {"type": "uts", "path": "/var/lib/kubelab/pods/uts"} in linux["namespaces"]
    assert found["mounts"][-2:] == [
        {"destination": "/data", "type": "bind", "source": "/var/lib/kubelab/vol", "options": ["rbind", "ro"]},
        {"destination": "/etc/hosts", "type": "bind", "source": "/h", "options": ["rbind", "rw"]},
    ]


def test_without_a_command_or_env_the_image_s_own_and_containerd_s_defaults_apply() -> None:
    spec = ContainerSpec(ContainerId(UID, "main", 0), BUSYBOX)
    found = runtime_spec(spec, image_config={"Entrypoint": ["/bin/httpd"], "Cmd": ["-f"]}, namespace="ns")
    assert found["process"]["args"] == ["/bin/httpd", "-f"]
    assert found["process"]["env"] == [DEFAULT_PATH] and found["process"]["cwd"] == "/"
    assert "memory" not in found["linux"]["resources"] and "cpu" not in found["linux"]["resources"]
    assert {"type": "network"} in found["linux"]["namespaces"]  # a namespace of its own


def test_environment_entries_replace_in_place_or_are_appended() -> None:
    assert merge_env(["A=1", "B=2"], ["B=3", "C=4", "A=5"]) == ["A=5", "B=3", "C=4"]


@pytest.mark.parametrize(
    ("user", "ids"), [("", (0, 0)), ("root", (0, 0)), ("1000", (1000, 0)), ("1000:1000", (1000, 1000))]
)
def test_an_image_s_numeric_user_is_the_process_s(user: str, ids: tuple[int, int]) -> None:
    assert user_of(user) == ids


@pytest.mark.parametrize("user", ["nobody", "1000:staff", "99999999999"])
def test_an_image_user_kubelab_cannot_resolve_is_a_spec_error_that_says_so(user: str) -> None:
    with pytest.raises(SpecError, match="user"):
        user_of(user)


def test_the_chain_id_of_layers_follows_the_oci_image_spec() -> None:
    one, two = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    assert chain_id([one]) == one
    assert chain_id([one, two]) == "sha256:" + hashlib.sha256(f"{one} {two}".encode()).hexdigest()
    with pytest.raises(SpecError):
        chain_id([])


# --- cgroups -----------------------------------------------------------------------------------------


def test_oom_kills_are_counted_on_either_cgroup_hierarchy(tmp_path: Path) -> None:
    v2 = tmp_path / "v2" / "k8s.io" / "c1"
    v2.mkdir(parents=True)
    (v2 / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    v1 = tmp_path / "v1" / "memory" / "k8s.io" / "c1"
    v1.mkdir(parents=True)
    (v1 / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cgroups.oom_kills("/k8s.io/c1", root=tmp_path / "v2") == 1
    assert cgroups.oom_kills("/k8s.io/c1", root=tmp_path / "v1") == 2
    assert cgroups.oom_kills("/k8s.io/gone", root=tmp_path / "v1") == 0
    assert cgroups.oom_kill_count("oom_kill_disable 0\nunder_oom 0\n") == 0  # a kernel that does not count


class _Tasks:
    """containerd's Tasks service as two racing callers see it: the other caller's Delete has shut the
    task's shim down (this one's Delete finds ``ttrpc: closed``); ``gone`` says whether the task is
    then gone too."""

    def __init__(self, *, gone: bool) -> None:
        self.gone = gone

    async def Delete(self, request: object, **_: object) -> object:
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.UNKNOWN, grpc.aio.Metadata(), grpc.aio.Metadata(), "failed to delete task: ttrpc: closed"
        )

    async def Get(self, request: object, **_: object) -> object:
        if self.gone:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(), "task c1 not found"
            )
        return object()


@pytest.mark.parametrize("gone", [True, False])
def test_a_task_another_caller_removed_meanwhile_is_removed_and_anything_else_is_an_error(
    gone: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    socket = "/run/containerd/containerd.sock"
    containerd = Containerd(address=socket, fifo_dir=tmp_path, ctr=Ctr(address=socket))
    monkeypatch.setattr(containerd, "_tasks", lambda: _Tasks(gone=gone))
    if gone:
        assert asyncio.run(containerd.delete_task("c1")) is None
    else:
        with pytest.raises(ContainerdError, match="ttrpc: closed"):
            asyncio.run(containerd.delete_task("c1"))
