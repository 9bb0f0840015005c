"""The kubelet's pod planner and status, as kube's kubelet behaves: restart policies, crash back-off,
image pull failures, phases, conditions and container states."""

from __future__ import annotations

from typing import Any

import pytest

from agents.kubelet.podstate import (
    Attempt,
    CreateSandbox,
    Observed,
    Problem,
    PullFailure,
    StartContainer,
    StopPod,
    backing_off,
    backoff,
    phase,
    plan,
    pod_status,
    qos_class,
)

NOW = 1_000_000.0


def pod(*names: str, policy: str = "Always", **meta: Any) -> dict[str, Any]:
    containers = [{"name": n, "image": "busybox"} for n in names or ("main",)]
    return {
        "metadata": {"name": "p", "namespace": "default", **meta},
        "spec": {"containers": containers, "restartPolicy": policy, "terminationGracePeriodSeconds": 30},
        "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]},
    }


def running(number: int = 0) -> Attempt:
    return Attempt(number, "running", started_at=NOW - 5, container_id=f"containerd://c{number}")


def exited(number: int, code: int, *, finished: float = NOW - 1, ran: float = 1.0) -> Attempt:
    return Attempt(number, "exited", finished - ran, finished, code, f"containerd://c{number}")


def test_a_new_pod_gets_a_sandbox_first_then_every_container() -> None:
    assert plan(pod("a", "b"), Observed(), NOW) == ([CreateSandbox()], None)
    actions, wake = plan(pod("a", "b"), Observed(sandbox_ip="10.244.0.5"), NOW)
    assert actions == [StartContainer("a", 0), StartContainer("b", 0)] and wake is None


@pytest.mark.parametrize(
    ("policy", "code", "restarts"),
    [("Always", 0, True), ("Always", 1, True), ("OnFailure", 1, True), ("OnFailure", 0, False), ("Never", 1, False)],
)
def test_the_restart_policy_decides_whether_an_exited_container_runs_again(
    policy: str, code: int, restarts: bool
) -> None:
    observed = Observed(sandbox_ip="10.244.0.5", attempts={"main": [exited(0, code, finished=NOW - 60)]})
    actions, _ = plan(pod(policy=policy), observed, NOW)
    assert actions == ([StartContainer("main", 1)] if restarts else [])


def test_crash_back_off_doubles_from_ten_seconds_to_five_minutes() -> None:
    assert [backoff(n) for n in range(0, 8)] == [0, 10, 20, 40, 80, 160, 300, 300]


def test_a_crashing_container_waits_out_its_back_off_and_the_planner_says_when_to_look_again() -> None:
    attempts = [exited(0, 1, finished=NOW - 30), exited(1, 1, finished=NOW - 5)]  # second crash: 20 s
    observed = Observed(sandbox_ip="10.244.0.5", attempts={"main": attempts})
    assert plan(pod(), observed, NOW) == ([], NOW + 15)
    assert plan(pod(), observed, NOW + 15) == ([StartContainer("main", 2)], None)


def test_only_containers_waiting_out_a_crash_back_off_are_backing_off() -> None:
    attempts = {
        "crashed": [exited(0, 1, finished=NOW - 5)],  # restarts at NOW + 5
        "due": [exited(0, 1, finished=NOW - 20)],
        "done": [exited(0, 0, finished=NOW - 5)],
        "up": [running()],
    }
    observed = Observed(sandbox_ip="10.244.0.5", attempts=attempts)
    assert backing_off(pod(*attempts, policy="OnFailure"), observed, NOW) == ["crashed"]
    assert backing_off(pod(*attempts, policy="Never"), observed, NOW) == []


def test_a_run_of_ten_minutes_resets_the_back_off() -> None:
    attempts = [exited(0, 1, finished=NOW - 900), exited(1, 1, finished=NOW - 2, ran=700)]
    assert plan(pod(), Observed(sandbox_ip="10.244.0.5", attempts={"main": attempts}), NOW + 9)[0] == [
        StartContainer("main", 2)
    ]


def test_a_failed_pull_is_retried_after_its_back_off() -> None:
    observed = Observed(
        sandbox_ip="10.244.0.5", pulls={"main": PullFailure("not found", at=NOW - 3, failures=1, not_found=True)}
    )
    assert plan(pod(), observed, NOW) == ([], NOW + 7)
    assert plan(pod(), observed, NOW + 7)[0] == [StartContainer("main", 0)]


def test_a_deleted_pod_is_stopped_with_its_grace_period() -> None:
    deleted = pod(deletionTimestamp="2026-11-23T00:00:00Z", deletionGracePeriodSeconds=5)
    assert plan(deleted, Observed(sandbox_ip="10.244.0.5", attempts={"main": [running()]}), NOW) == (
        [StopPod(5.0)],
        None,
    )


@pytest.mark.parametrize(
    ("policy", "lasts", "expected"),
    [
        ("Always", {}, "Pending"),
        ("Always", {"a": running(), "b": exited(0, 0)}, "Running"),
        ("Never", {"a": exited(0, 0), "b": exited(0, 0)}, "Succeeded"),
        ("Never", {"a": exited(0, 0), "b": exited(0, 2)}, "Failed"),
        ("OnFailure", {"a": exited(0, 0), "b": exited(0, 2)}, "Running"),  # b runs again
        ("Always", {"a": exited(0, 0), "b": exited(0, 0)}, "Running"),
    ],
)
def test_the_phase_follows_the_containers(policy: str, lasts: dict[str, Attempt], expected: str) -> None:
    observed = Observed(sandbox_ip="10.244.0.5", attempts={k: [v] for k, v in lasts.items()})
    assert phase(pod("a", "b", policy=policy), observed) == expected


def status_of(p: dict[str, Any], observed: Observed, now: float = NOW) -> dict[str, Any]:
    return pod_status(p, observed, host_ip="10.0.0.2", started_at=NOW - 10, now=now)


def test_a_running_pod_reports_ip_ready_conditions_and_running_state() -> None:
    status = status_of(pod(), Observed(sandbox_ip="10.244.0.5", attempts={"main": [running()]}))
    assert (status["phase"], status["podIP"], status["hostIP"]) == ("Running", "10.244.0.5", "10.0.0.2")
    kinds = {c["type"]: c["status"] for c in status["conditions"]}
    assert kinds == {
        "PodScheduled": "True",  # kept: the scheduler's
        "PodReadyToStartContainers": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    [main] = status["containerStatuses"]
    assert main["ready"] and main["started"] and "running" in main["state"] and main["restartCount"] == 0
    assert status["qosClass"] == "BestEffort"


def test_a_crash_looping_container_shows_back_off_and_its_last_termination() -> None:
    attempts = [exited(0, 1, finished=NOW - 30), exited(1, 2, finished=NOW - 5)]
    status = status_of(pod(), Observed(sandbox_ip="10.244.0.5", attempts={"main": attempts}))
    [main] = status["containerStatuses"]
    assert main["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert main["state"]["waiting"]["message"] == "back-off 15s restarting failed container=main"
    assert main["lastState"]["terminated"]["exitCode"] == 2 and main["lastState"]["terminated"]["reason"] == "Error"
    assert main["restartCount"] == 1 and not main["ready"]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "ContainersNotReady")


def test_a_completed_container_under_never_is_terminated_completed() -> None:
    status = status_of(pod(policy="Never"), Observed(sandbox_ip="10.244.0.5", attempts={"main": [exited(0, 0)]}))
    [main] = status["containerStatuses"]
    assert main["state"]["terminated"]["reason"] == "Completed" and status["phase"] == "Succeeded"
    assert {c["type"]: c.get("reason") for c in status["conditions"]}["Ready"] == "PodCompleted"


def test_runs_end_with_kube_s_reasons_and_the_last_one_is_carried_across_the_restart() -> None:
    oom = Attempt(0, "exited", NOW - 40, NOW - 30, 137, "containerd://c0", "OOMKilled")
    message = 'failed to create containerd task: exec: "nope": executable file not found in $PATH'
    start_error = Attempt(1, "exited", NOW - 5, NOW - 5, 128, "containerd://c1", "StartError", message)
    status = status_of(pod(), Observed(sandbox_ip="10.244.0.5", attempts={"main": [oom, start_error]}))
    [main] = status["containerStatuses"]
    assert main["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    last = main["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"], last["message"]) == ("StartError", 128, message)
    running_again = Observed(sandbox_ip="10.244.0.5", attempts={"main": [oom, running(1)]})
    [main] = status_of(pod(), running_again)["containerStatuses"]
    assert main["lastState"]["terminated"]["reason"] == "OOMKilled" and "message" not in main["lastState"]["terminated"]
    assert "running" in main["state"] and main["restartCount"] == 1


@pytest.mark.parametrize(
    ("run", "reason"),
    [
        (exited(0, 0), "Completed"),
        (exited(0, 1), "Error"),
        (exited(0, 137), "Error"),  # killed, but not by the OOM killer
        (Attempt(0, "exited", NOW - 9, NOW - 1, 137, "containerd://c0", "OOMKilled"), "OOMKilled"),
        (Attempt(0, "exited", NOW - 1, NOW - 1, 0, "containerd://c0", "OOMKilled"), "OOMKilled"),  # a child was
    ],
)
def test_a_terminated_container_says_how_it_ended(run: Attempt, reason: str) -> None:
    status = status_of(pod(policy="Never"), Observed(sandbox_ip="10.244.0.5", attempts={"main": [run]}))
    assert status["containerStatuses"][0]["state"]["terminated"]["reason"] == reason


def test_a_container_that_cannot_be_created_waits_with_the_reason_and_is_tried_again_after_a_back_off() -> None:
    problem = Problem("CreateContainerError", 'the image\'s user "nobody" is a name', at=NOW - 3, failures=1)
    observed = Observed(sandbox_ip="10.244.0.5", problems={"main": problem})
    waiting = status_of(pod(), observed)["containerStatuses"][0]["state"]["waiting"]
    assert waiting == {"reason": "CreateContainerError", "message": problem.message}
    assert plan(pod(), observed, NOW) == ([], NOW + 7)
    assert plan(pod(), observed, NOW + 7)[0] == [StartContainer("main", 0)]
    restarted = Observed(
        sandbox_ip="10.244.0.5", attempts={"main": [exited(0, 1, finished=NOW - 60)]}, problems={"main": problem}
    )
    [main] = status_of(pod(), restarted)["containerStatuses"]
    assert main["state"]["waiting"]["reason"] == "CreateContainerError"
    assert main["lastState"]["terminated"]["reason"] == "Error"


def test_a_volume_that_cannot_be_set_up_leaves_the_container_creating_as_kube_s_does() -> None:
    problem = Problem("FailedMount", 'configmap "missing" not found', at=NOW - 3, failures=4)
    observed = Observed(sandbox_ip="10.244.0.5", problems={"main": problem})
    assert status_of(pod(), observed)["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert plan(pod(), observed, NOW) == ([], NOW + 1)  # the fourth try waits 4 s (0.5 s doubling)


def test_pull_failures_read_err_image_pull_then_image_pull_back_off() -> None:
    first = Observed(sandbox_ip="10.244.0.5", pulls={"main": PullFailure("manifest unknown", NOW, 1, True)})
    waiting = status_of(pod(), first)["containerStatuses"][0]["state"]["waiting"]
    assert waiting == {"reason": "ErrImagePull", "message": "manifest unknown"}
    again = Observed(sandbox_ip="10.244.0.5", pulls={"main": PullFailure("manifest unknown", NOW, 2, True)})
    waiting = status_of(pod(), again)["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "ImagePullBackOff" and waiting["message"].startswith('Back-off pulling image "busybox"')


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    p = pod()
    first = status_of(p, Observed(sandbox_ip="10.244.0.5", attempts={"main": [running()]}))
    p["status"] = first
    later = status_of(p, Observed(sandbox_ip="10.244.0.5", attempts={"main": [running()]}), now=NOW + 100)
    times = {c["type"]: c.get("lastTransitionTime") for c in later["conditions"]}
    assert times["Ready"] == {c["type"]: c.get("lastTransitionTime") for c in first["conditions"]}["Ready"]


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ([{}], "BestEffort"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
        ([{"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
        ([{"requests": {"cpu": "100m"}}], "Burstable"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
    ],
)
def test_the_qos_class_follows_requests_and_limits(resources: list[dict[str, Any]], expected: str) -> None:
    p = pod(*[f"c{i}" for i in range(len(resources))])
    for container, r in zip(p["spec"]["containers"], resources, strict=True):
        container["resources"] = r
    assert qos_class(p) == expected
