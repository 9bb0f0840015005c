"""Ephemeral containers on the kubelet's side, as kube's kubelet runs them: started once in a pod
that runs (even before it is initialized), never restarted whatever the restartPolicy, not counted
for the phase or readiness, reported in ephemeralContainerStatuses, stopped when the pod is done; one
with a target joins the target's PID namespace in the OCI spec."""

from __future__ import annotations

from typing import Any

from agents.kubelet.containers import ContainerId, ContainerSpec
from agents.kubelet.oci import runtime_spec
from agents.kubelet.podstate import (
    Attempt,
    Observed,
    PullFailure,
    StartContainer,
    StopContainers,
    phase,
    plan,
    pod_status,
)

NOW = 1_000_000.0
IP = "10.244.0.5"


def pod(*, debug: tuple[str, ...] = ("debugger",), policy: str = "Always", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {
            "containers": [{"name": "main", "image": "busybox"}],
            "ephemeralContainers": [
                {"name": n, "image": "busybox", "targetContainerName": "main", "command": ["sh"]} for n in debug
            ],
            "restartPolicy": policy,
            "terminationGracePeriodSeconds": 30,
            **spec,
        },
        "status": {},
    }


def running(number: int = 0, cid: str = "c") -> Attempt:
    return Attempt(number, "running", started_at=NOW - 5, container_id=f"containerd://{cid}{number}")


def exited(number: int, code: int, cid: str = "e") -> Attempt:
    return Attempt(number, "exited", NOW - 3, NOW - 1, code, f"containerd://{cid}{number}")


def test_an_added_ephemeral_container_is_started_once_in_the_running_pod() -> None:
    observed = Observed(sandbox_ip=IP, attempts={"main": [running()]})
    actions, wake = plan(pod(), observed, NOW)
    assert actions == [StartContainer("debugger", 0)] and wake is None


def test_an_ended_ephemeral_container_is_never_restarted_whatever_the_policy() -> None:
    for code in (0, 1):
        observed = Observed(sandbox_ip=IP, attempts={"main": [running()], "debugger": [exited(0, code)]})
        assert plan(pod(policy="Always"), observed, NOW) == ([], None)


def test_an_ephemeral_container_starts_even_while_init_containers_run() -> None:
    init = [{"name": "init", "image": "busybox"}]
    observed = Observed(sandbox_ip=IP, attempts={"init": [running(cid="i")]})
    actions, _ = plan(pod(initContainers=init), observed, NOW)
    assert actions == [StartContainer("debugger", 0)]


def test_an_ephemeral_container_whose_image_failed_is_tried_again_after_the_back_off() -> None:
    failure = PullFailure("not found", at=NOW - 3, failures=1, not_found=True)
    observed = Observed(sandbox_ip=IP, attempts={"main": [running()]}, pulls={"debugger": failure})
    assert plan(pod(), observed, NOW) == ([], NOW + 7)
    assert plan(pod(), observed, NOW + 7)[0] == [StartContainer("debugger", 0)]


def test_ephemeral_containers_are_reported_apart_and_do_not_count_for_phase_or_readiness() -> None:
    observed = Observed(sandbox_ip=IP, attempts={"main": [running()], "debugger": [exited(0, 1)]})
    status = pod_status(pod(), observed, host_ip="10.0.0.2", started_at=NOW - 10, now=NOW)
    assert status["phase"] == "Running"
    assert [s["name"] for s in status["containerStatuses"]] == ["main"]
    (debugger,) = status["ephemeralContainerStatuses"]
    assert debugger["name"] == "debugger" and debugger["restartCount"] == 0
    assert debugger["state"]["terminated"]["exitCode"] == 1 and debugger["state"]["terminated"]["reason"] == "Error"
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_an_ephemeral_container_not_started_yet_is_creating() -> None:
    observed = Observed(sandbox_ip=IP, attempts={"main": [running()]})
    status = pod_status(pod(), observed, host_ip="10.0.0.2", started_at=NOW - 10, now=NOW)
    assert status["ephemeralContainerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}


def test_a_pod_without_ephemeral_containers_reports_none() -> None:
    observed = Observed(sandbox_ip=IP, attempts={"main": [running()]})
    status = pod_status(pod(debug=()), observed, host_ip="10.0.0.2", started_at=NOW - 10, now=NOW)
    assert "ephemeralContainerStatuses" not in status


def test_a_finished_pod_stops_the_ephemeral_containers_still_running() -> None:
    observed = Observed(sandbox_ip=IP, attempts={"main": [exited(0, 0, cid="m")], "debugger": [running(cid="d")]})
    assert phase(pod(policy="Never"), observed) == "Succeeded"
    actions, _ = plan(pod(policy="Never"), observed, NOW)
    assert actions == [StopContainers(("debugger",), 30)]


def test_a_target_s_pid_namespace_is_joined_in_the_oci_spec() -> None:
    base = ContainerSpec(ContainerId("uid", "debugger", 0), "docker.io/library/busybox:latest", netns="/run/netns/x")
    joined = ContainerSpec(base.id, base.image, netns=base.netns, pidns="/proc/42/ns/pid")
    config: dict[str, Any] = {"Entrypoint": ["sh"]}

    def pid_namespace(spec: ContainerSpec) -> dict[str, str]:
        namespaces = runtime_spec(spec, image_config=config, namespace="k8s.io")["linux"]["namespaces"]
        return next(n for n in namespaces if n["type"] == "pid")

    assert pid_namespace(base) == {"type": "pid"}
    assert pid_namespace(joined) == {"type": "pid", "path": "/proc/42/ns/pid"}
