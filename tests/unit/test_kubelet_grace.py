"""A deleted pod's grace period, as kube's kubelet counts it: the deletion's own period (not the
spec's), started when the kubelet begins to stop the pod, with the preStop hook's time counted in it
and what is left between the SIGTERM and the SIGKILL.

Fakes, declared openly: a clock that only moves when the fake sleep of a ``sleep`` hook (or an exec
hook's fake run) moves it, and a kill that records the seconds it was given.
"""

from __future__ import annotations

from typing import Any

from agents.kubelet import hooks
from agents.kubelet.podstate import Attempt, Observed, StopPod, plan
from agents.kubelet.termination import MINIMUM_GRACE, Stopping, stop_containers

NOW = 1_000_000.0


def deleted_pod(*, deletion_grace: int, spec_grace: int = 30, pre_stop: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web-1",
            "namespace": "default",
            "uid": "u1",
            "deletionTimestamp": "2026-01-01T00:00:00Z",
            "deletionGracePeriodSeconds": deletion_grace,
        },
        "spec": {
            "nodeName": "n1",
            "terminationGracePeriodSeconds": spec_grace,
            "containers": [{"name": "app", "image": "echo:1.0", "lifecycle": {"preStop": pre_stop}}],
        },
        "status": {},
    }


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def stop(pod: dict[str, Any], *, hook_takes: float | None = None) -> list[tuple[str, float]]:
    """Stop the pod as the kubelet does (its plan, then its containers), running the real hook code;
    the steps taken, each with the seconds it was given."""
    observed = Observed(sandbox_ip="10.244.1.5", attempts={"app": [Attempt(0, "running", NOW - 60)]})
    [action], _ = plan(pod, observed, NOW)
    assert isinstance(action, StopPod)
    clock = Clock()
    steps: list[tuple[str, float]] = []
    container = pod["spec"]["containers"][0]
    target = hooks.HookTarget(container=container, cid="c-app", pod_ref="web-1_default(u1)", netns=None, pod_ip="")

    async def sleep(seconds: float) -> None:
        clock.now += seconds

    async def exec_in(cid: str, argv: list[str], seconds: float) -> tuple[int, str]:
        assert hook_takes is not None
        clock.now += min(hook_takes, seconds)  # the runtime ends an exec at its deadline
        return 0, ""

    async def pre_stop(stopping: Stopping, seconds: float) -> None:
        steps.append(("preStop", seconds))
        handler = hooks.handler_of(stopping.container, "preStop")
        assert handler is not None
        await hooks.run_hook(handler, target, exec_in=exec_in, seconds=seconds, sleep=sleep)

    async def kill(cid: str, seconds: float) -> None:
        steps.append(("SIGTERM, then SIGKILL after", seconds))

    await stop_containers(
        [[Stopping("app", "c-app", container)]], grace=action.grace_seconds, pre_stop=pre_stop, kill=kill, clock=clock
    )
    return steps


async def test_the_grace_period_is_the_deletion_s_and_the_pre_stop_sleep_counts_in_it() -> None:
    pod = deleted_pod(deletion_grace=20, spec_grace=30, pre_stop={"sleep": {"seconds": 5}})
    assert await stop(pod) == [("preStop", 20.0), ("SIGTERM, then SIGKILL after", 15.0)]


async def test_a_deletion_that_shortens_the_grace_shortens_the_hook_s_time_too() -> None:
    pod = deleted_pod(deletion_grace=3, spec_grace=30, pre_stop={"sleep": {"seconds": 5}})
    # the hook is cut at the 3 s the deletion gave; the container still gets kube's minimum after SIGTERM
    assert await stop(pod) == [("preStop", 3.0), ("SIGTERM, then SIGKILL after", MINIMUM_GRACE)]


async def test_an_exec_pre_stop_hook_s_run_time_is_taken_from_the_grace_period() -> None:
    pod = deleted_pod(deletion_grace=10, pre_stop={"exec": {"command": ["sleep", "5"]}})
    assert await stop(pod, hook_takes=5) == [("preStop", 10.0), ("SIGTERM, then SIGKILL after", 5.0)]
    assert await stop(pod, hook_takes=60) == [("preStop", 10.0), ("SIGTERM, then SIGKILL after", MINIMUM_GRACE)]


async def test_a_pod_deleted_with_no_grace_gets_no_hook_and_an_immediate_kill() -> None:
    pod = deleted_pod(deletion_grace=0, pre_stop={"sleep": {"seconds": 5}})
    assert await stop(pod) == [("SIGTERM, then SIGKILL after", 0.0)]
