"""The pure parts of the kubelet's containerd layer: ids, ctr arguments, event and task parsing, and
kube's rule for the process a container runs."""

from __future__ import annotations

import pytest

from agents.kubelet.containerd import (
    MANAGED,
    ContainerId,
    ContainerSpec,
    Mount,
    Task,
    TaskExit,
    command_line,
    create_args,
    parse_event,
    parse_tasks,
)
from agents.machinery.imagerefs import full_reference

UID = "0b6f5a2e-8d1c-4c7e-9a57-3f3c2b1d0e9f"


def test_a_container_id_names_pod_container_and_attempt_and_parses_back() -> None:
    cid = ContainerId(UID, "web-server", 3)
    assert str(cid) == f"{UID}_web-server_3"
    assert ContainerId.parse(str(cid)) == cid
    assert ContainerId.parse("foreign-container") is None


def test_create_arguments_carry_everything_and_keep_the_containers_own_flags_apart() -> None:
    spec = ContainerSpec(
        ContainerId(UID, "main", 0),
        "docker.io/library/busybox:latest",
        argv=("sh", "-c", "echo hi"),
        env={"A": "1"},
        working_dir="/work",
        netns="/var/run/netns/kl-pod",
        mounts=(Mount("/var/lib/kubelab/vol", "/data", read_only=True),),
        memory_limit=1024,
        cpu_quota=50_000,
        labels={"io.kubelab.pod-name": "web"},
    )
    args = create_args(spec)
    assert args[:4] == ["containers", "create", "--label", f"{MANAGED}=true"]
    assert args[args.index("--with-ns") + 1] == "network:/var/run/netns/kl-pod"
    assert args[args.index("--mount") + 1] == "type=bind,src=/var/lib/kubelab/vol,dst=/data,options=rbind:ro"
    assert args[args.index("--memory-limit") + 1] == "1024"
    assert args[args.index("--cpu-quota") + 1 : args.index("--cpu-quota") + 4] == ["50000", "--cpu-period", "100000"]
    assert args[-6:] == ["docker.io/library/busybox:latest", f"{UID}_main_0", "--", "sh", "-c", "echo hi"]


def test_only_task_exit_events_are_read() -> None:
    line = (
        '2026-11-23 03:09:30.34 +0000 UTC k8s.io /tasks/exit {"container_id":"c1","id":"c1","pid":7,'
        '"exit_status":137,"exited_at":"2026-11-23T03:09:30Z"}\n'
    )
    assert parse_event(line) == TaskExit("c1", 137, "2026-11-23T03:09:30Z")
    assert parse_event('2026-11-23 03:09:30 +0000 UTC k8s.io /tasks/start {"container_id":"c1","pid":7}') is None
    assert parse_event("2026 k8s.io /tasks/exit not-json") is None
    probe = '2026 k8s.io /tasks/exit {"container_id":"c1","id":"exec-1a2b","pid":9,"exit_status":1}'
    assert parse_event(probe) is None  # a probe's exec ended, not the container


def test_the_task_table_is_read_by_columns() -> None:
    text = "TASK    PID      STATUS    \nc1      29646    STOPPED\nc2      0        CREATED\n"
    assert parse_tasks(text) == {"c1": Task("c1", 29646, "STOPPED"), "c2": Task("c2", 0, "CREATED")}


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
