"""Init containers, sidecars and lifecycle hooks, as kube's kubelet runs them: the pure plan (order,
failures per restartPolicy, sidecars not awaited, the pod's status), the stop order with preStop hooks
inside one grace period, the hooks themselves, and the API's validation of these fields.

Fakes, declared openly: a clock that only moves when a fake hook or a fake kill moves it, an exec
that answers from a table, a kill that records what it was asked, and, for the pod workers, an API
client that lists the pods it is given and a containerd that writes every exec and kill in one list.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from agents.apiserver.kinds.podspec import validate_pod_spec
from agents.kubelet import hooks
from agents.kubelet.containerd import Containerd
from agents.kubelet.containers import ContainerId, Task
from agents.kubelet.podcache import PodCache
from agents.kubelet.podstate import (
    Attempt,
    CreateSandbox,
    Observed,
    StartContainer,
    StopContainers,
    backing_off,
    init_progress,
    phase,
    plan,
    pod_status,
)
from agents.kubelet.podworkers import PodWorkers
from agents.kubelet.runtime import Runtime
from agents.kubelet.settings import NetworkSettings
from agents.kubelet.statusmanager import StatusManager
from agents.kubelet.termination import MINIMUM_GRACE, Stopping, stop_containers, stop_order
from agents.machinery.client import Client
from agents.machinery.events import EventRecorder
from agents.machinery.informer import Informer
from agents.machinery.resources import PODS

NOW = 1_000_000.0
IP = "10.244.0.5"


def pod(*inits: dict[str, Any], apps: tuple[str, ...] = ("main",), policy: str = "Always") -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
        "spec": {
            "initContainers": list(inits),
            "containers": [{"name": n, "image": "busybox"} for n in apps],
            "restartPolicy": policy,
            "terminationGracePeriodSeconds": 30,
        },
        "status": {},
    }


def init(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", **extra}


def sidecar(name: str, **extra: Any) -> dict[str, Any]:
    return init(name, restartPolicy="Always", **extra)


def running(number: int = 0) -> Attempt:
    return Attempt(number, "running", NOW - 5, container_id=f"containerd://r{number}")


def exited(number: int, code: int, *, finished: float = NOW - 1) -> Attempt:
    return Attempt(number, "exited", finished - 1, finished, code, f"containerd://e{number}")


def seen(**attempts: list[Attempt]) -> Observed:
    return Observed(sandbox_ip=IP, attempts=attempts)


# --- order -----------------------------------------------------------------------------------------


def test_init_containers_run_one_at_a_time_in_order_before_the_app_containers() -> None:
    spec = pod(init("a"), init("b"), apps=("x", "y"))
    assert plan(spec, Observed(), NOW) == ([CreateSandbox()], None)
    assert plan(spec, seen(), NOW) == ([StartContainer("a", 0)], None)
    assert plan(spec, seen(a=[running()]), NOW) == ([], None)
    assert plan(spec, seen(a=[exited(0, 0)]), NOW) == ([StartContainer("b", 0)], None)
    assert plan(spec, seen(a=[exited(0, 0)], b=[running()]), NOW) == ([], None)
    done = seen(a=[exited(0, 0)], b=[exited(0, 0)])
    assert plan(spec, done, NOW) == ([StartContainer("x", 0), StartContainer("y", 0)], None)


def test_once_an_app_container_ran_the_init_containers_are_not_run_again() -> None:
    spec = pod(init("a"), apps=("x",))
    observed = seen(x=[exited(0, 1, finished=NOW - 100)])  # the init runs are no longer known
    actions, _ = plan(spec, observed, NOW)
    assert actions == [StartContainer("x", 1)]
    assert init_progress(spec, observed).done


# --- failures --------------------------------------------------------------------------------------


def test_a_failed_init_container_fails_the_pod_when_its_policy_is_never() -> None:
    spec = pod(init("a"), init("b"), policy="Never")
    observed = seen(a=[exited(0, 3)])
    assert plan(spec, observed, NOW) == ([], None)
    assert phase(spec, observed) == "Failed"
    status = pod_status(spec, observed, host_ip="10.0.0.1", started_at=NOW - 10, now=NOW)
    initialized = next(c for c in status["conditions"] if c["type"] == "Initialized")
    assert initialized["status"] == "False" and initialized["reason"] == "ContainersNotInitialized"
    assert initialized["message"] == "containers with incomplete status: [a b]"
    first = status["initContainerStatuses"][0]
    assert first["state"]["terminated"]["exitCode"] == 3 and first["state"]["terminated"]["reason"] == "Error"
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}


@pytest.mark.parametrize("policy", ["OnFailure", "Always"])
def test_a_failed_init_container_runs_again_after_the_crash_back_off(policy: str) -> None:
    spec = pod(init("a"), init("b"), policy=policy)
    observed = seen(a=[exited(0, 1, finished=NOW - 4)])
    assert plan(spec, observed, NOW) == ([], NOW + 6)  # back-off 10 s after the first crash
    assert backing_off(spec, observed, NOW) == ["a"]
    assert plan(spec, observed, NOW + 6) == ([StartContainer("a", 1)], None)
    assert phase(spec, observed) == "Pending"
    status = pod_status(spec, observed, host_ip="10.0.0.1", started_at=NOW - 10, now=NOW)
    waiting = status["initContainerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "CrashLoopBackOff"  # kubectl: Init:CrashLoopBackOff
    assert status["initContainerStatuses"][1]["state"] == {"waiting": {"reason": "PodInitializing"}}


# --- status ----------------------------------------------------------------------------------------


def test_status_counts_init_containers_done_and_reports_initialized_when_all_are() -> None:
    spec = pod(init("a"), init("b"))
    halfway = seen(a=[exited(0, 0)], b=[running()])
    status = pod_status(spec, halfway, host_ip="10.0.0.1", started_at=NOW - 10, now=NOW)
    a, b = status["initContainerStatuses"]
    assert a["ready"] is True and a["state"]["terminated"]["reason"] == "Completed"
    assert b["ready"] is False and "running" in b["state"] and b["containerID"] == "containerd://r0"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Initialized"]["message"] == "containers with incomplete status: [b]"
    assert status["phase"] == "Pending"
    done = seen(a=[exited(0, 0)], b=[exited(0, 0)], main=[running()])
    status = pod_status(spec, done, host_ip="10.0.0.1", started_at=NOW - 10, now=NOW)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Initialized"]["status"] == "True" and "message" not in conditions["Initialized"]
    assert status["phase"] == "Running" and conditions["Ready"]["status"] == "True"


def test_a_pod_without_init_containers_has_no_init_statuses() -> None:
    status = pod_status(pod(), seen(main=[running()]), host_ip="10.0.0.1", started_at=NOW, now=NOW)
    assert "initContainerStatuses" not in status
    assert next(c for c in status["conditions"] if c["type"] == "Initialized")["status"] == "True"


# --- sidecars --------------------------------------------------------------------------------------


def test_a_started_sidecar_lets_the_next_init_container_start_without_waiting_for_its_end() -> None:
    spec = pod(sidecar("proxy"), init("setup"))
    assert plan(spec, seen(), NOW) == ([StartContainer("proxy", 0)], None)
    assert plan(spec, seen(proxy=[running()]), NOW) == ([StartContainer("setup", 0)], None)
    observed = seen(proxy=[running()], setup=[exited(0, 0)])
    assert plan(spec, observed, NOW) == ([StartContainer("main", 0)], None)
    assert init_progress(spec, observed).done


def test_a_sidecar_with_a_startup_probe_holds_the_next_init_container_until_it_passes() -> None:
    spec = pod(sidecar("proxy", startupProbe={"exec": {"command": ["true"]}}), init("setup"))
    waiting = Observed(sandbox_ip=IP, attempts={"proxy": [running()]}, probes={"proxy": (False, False)})
    assert plan(spec, waiting, NOW) == ([], None)
    assert init_progress(spec, waiting).incomplete == ("proxy", "setup")
    passed = Observed(sandbox_ip=IP, attempts={"proxy": [running()]}, probes={"proxy": (False, True)})
    assert plan(spec, passed, NOW) == ([StartContainer("setup", 0)], None)


def test_a_sidecar_that_exits_is_restarted_beside_the_app_containers() -> None:
    spec = pod(sidecar("proxy"), policy="Never")
    observed = seen(proxy=[exited(0, 0, finished=NOW - 20)], main=[running()])
    assert plan(spec, observed, NOW) == ([StartContainer("proxy", 1)], None)
    assert phase(spec, observed) == "Running"


def test_sidecar_readiness_counts_toward_the_pod_s_readiness() -> None:
    spec = pod(sidecar("proxy", readinessProbe={"exec": {"command": ["true"]}}))
    attempts = {"proxy": [running()], "main": [running()]}
    unready = Observed(sandbox_ip=IP, attempts=attempts, probes={"proxy": (False, True)})
    status = pod_status(spec, unready, host_ip="10.0.0.1", started_at=NOW, now=NOW)
    assert status["initContainerStatuses"][0]["started"] is True
    assert status["initContainerStatuses"][0]["ready"] is False
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "False"
    ready = Observed(sandbox_ip=IP, attempts=attempts, probes={"proxy": (True, True)})
    status = pod_status(spec, ready, host_ip="10.0.0.1", started_at=NOW, now=NOW)
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["status"] == "True"


def test_the_sidecars_of_a_finished_pod_are_stopped_last_started_first() -> None:
    spec = pod(sidecar("logs"), sidecar("proxy"), policy="Never")
    observed = seen(logs=[running()], proxy=[running()], main=[exited(0, 0)])
    assert phase(spec, observed) == "Succeeded"
    assert plan(spec, observed, NOW) == ([StopContainers(("proxy", "logs"), 30.0)], None)


# --- stopping --------------------------------------------------------------------------------------


def test_app_containers_stop_together_then_sidecars_one_by_one_in_reverse_order() -> None:
    spec = pod(sidecar("logs"), init("setup"), sidecar("proxy"), apps=("x", "y"))
    assert stop_order(spec, {"logs", "proxy", "x", "y"}) == [("x", "y"), ("proxy",), ("logs",)]
    assert stop_order(spec, {"logs", "setup"}) == [("setup",), ("logs",)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_pre_stop_hooks_run_before_the_kill_and_their_time_counts_against_the_grace_period() -> None:
    clock = FakeClock()
    steps: list[tuple[str, str, float]] = []
    pre_stop_hook = {"preStop": {"sleep": {"seconds": 5}}}
    app = Stopping("app", "c-app", {"name": "app", "lifecycle": pre_stop_hook})
    plain = Stopping("plain", "c-plain", {"name": "plain"})
    side = Stopping("side", "c-side", {"name": "side", "lifecycle": pre_stop_hook})

    async def pre_stop(target: Stopping, seconds: float) -> None:
        steps.append(("preStop", target.name, seconds))
        await asyncio.sleep(0)  # others of its group go on meanwhile
        clock.now += 5  # the hook takes 5 s

    async def kill(cid: str, seconds: float) -> None:
        steps.append(("kill", cid, seconds))
        clock.now += 3 if cid == "c-app" else 0  # the app takes 3 s to end after its SIGTERM

    await stop_containers([[app, plain], [side]], grace=10, pre_stop=pre_stop, kill=kill, clock=clock)
    assert steps == [
        ("preStop", "app", 10),
        ("kill", "c-plain", 10),  # no hook: its SIGTERM at once
        ("kill", "c-app", 5),  # 10 s minus the hook's 5 s
        ("preStop", "side", 2),  # the sidecar after the app containers, with what is left
        ("kill", "c-side", MINIMUM_GRACE),  # its hook used the rest: kube's minimum between SIGTERM and SIGKILL
    ]


async def test_a_pod_stopped_without_grace_runs_no_hooks() -> None:
    steps: list[str] = []

    async def pre_stop(target: Stopping, seconds: float) -> None:
        steps.append("preStop")

    async def kill(cid: str, seconds: float) -> None:
        steps.append(f"kill {cid} {seconds}")

    target = Stopping("app", "c", {"name": "app", "lifecycle": {"preStop": {"exec": {"command": ["true"]}}}})
    await stop_containers([[target]], grace=0, pre_stop=pre_stop, kill=kill, clock=FakeClock())
    assert steps == ["kill c 0.0"]


# --- hooks -----------------------------------------------------------------------------------------


TARGET = hooks.HookTarget(container={"name": "app"}, cid="c1", pod_ref="p_default(u1)", netns=None, pod_ip=IP)


async def test_an_exec_hook_runs_in_the_container_and_fails_with_kube_s_words() -> None:
    asked: list[tuple[str, list[str], float]] = []

    async def exec_in(cid: str, argv: list[str], seconds: float) -> tuple[int, str]:
        asked.append((cid, argv, seconds))
        return (0, "") if argv == ["true"] else (2, "no such file\n")

    ok = await hooks.run_hook({"exec": {"command": ["true"]}}, TARGET, exec_in=exec_in, seconds=7)
    assert ok == hooks.HookResult(True) and asked == [("c1", ["true"], 7)]
    failed = await hooks.run_hook({"exec": {"command": ["cat", "/x"]}}, TARGET, exec_in=exec_in, seconds=7)
    assert not failed.success
    assert failed.message == (
        "Exec lifecycle hook (['cat', '/x']) for Container \"app\" in Pod \"p_default(u1)\" failed"
        " - error: command 'cat /x' exited with 2: no such file"
    )


async def test_a_sleep_hook_sleeps_its_seconds_but_never_past_the_time_it_has() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def exec_in(cid: str, argv: list[str], seconds: float) -> tuple[int, str]:
        raise AssertionError("a sleep hook runs nothing in the container")

    for budget in (30.0, 2.0):
        result = await hooks.run_hook({"sleep": {"seconds": 5}}, TARGET, exec_in=exec_in, seconds=budget, sleep=sleep)
        assert result.success
    assert slept == [5, 2]


# --- validation ------------------------------------------------------------------------------------


def spec_with(*, inits: list[dict[str, Any]] | None = None, app: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "containers": [app or {"name": "main", "image": "busybox"}],
        "initContainers": inits or [],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
    }


def messages(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e.field, e.detail) for e in validate_pod_spec("spec", spec)]


def test_the_api_accepts_init_containers_sidecars_and_hooks_as_kube_does() -> None:
    good = spec_with(
        inits=[init("a"), sidecar("s", readinessProbe={"exec": {"command": ["true"]}}, lifecycle={})],
        app={
            "name": "main",
            "image": "busybox",
            "lifecycle": {"postStart": {"httpGet": {"port": 80}}, "preStop": {"sleep": {"seconds": 30}}},
        },
    )
    assert messages(good) == []


def test_the_api_refuses_what_kube_refuses_in_init_containers_and_hooks() -> None:
    errors = messages(
        spec_with(
            inits=[init("a", restartPolicy="Never"), init("b", readinessProbe={"exec": {"command": ["true"]}})],
            app={
                "name": "main",
                "image": "busybox",
                "restartPolicy": "Always",
                "lifecycle": {
                    "postStart": {"exec": {"command": ["true"]}, "sleep": {"seconds": 1}},
                    "preStop": {"sleep": {"seconds": 31}},
                },
            },
        )
    )
    fields = [field for field, _ in errors]
    assert "spec.initContainers[0].restartPolicy" in fields
    assert (
        "spec.initContainers[1].readinessProbe",
        "may not be set for init containers without restartPolicy=Always",
    ) in errors
    assert ("spec.containers[0].restartPolicy", "may not be set for non-init containers") in errors
    assert ("spec.containers[0].lifecycle.postStart.sleep", "may not specify more than 1 handler type") in errors
    assert (
        "spec.containers[0].lifecycle.preStop.sleep",
        "must be greater than 0 and less than terminationGracePeriodSeconds (30)",
    ) in errors
    assert messages(spec_with(app={"name": "m", "image": "b", "lifecycle": {"preStop": {}}})) == [
        ("spec.containers[0].lifecycle.preStop", "must specify a handler type")
    ]


def test_a_finished_pod_s_sidecars_end_for_good_without_back_off() -> None:
    spec = pod(sidecar("proxy"), policy="Never")
    observed = seen(proxy=[exited(0, 143)], main=[exited(0, 0)])
    assert plan(spec, observed, NOW) == ([], None)
    assert backing_off(spec, observed, NOW) == []
    status = pod_status(spec, observed, host_ip="10.0.0.1", started_at=NOW - 10, now=NOW)
    assert status["phase"] == "Succeeded"
    assert status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 143


# --- the pod workers stopping a pod ----------------------------------------------------------------


class StopClient:
    """Lists the pods it is given, watches nothing, and takes the deletion the kubelet confirms."""

    def __init__(self, *pods: dict[str, Any]) -> None:
        self.pods = list(pods)
        self.deleted: list[str] = []

    async def list(self, resource: object, namespace: str = "", **_selectors: str) -> tuple[list[Any], str]:
        return list(self.pods), "1"

    async def watch(self, resource: object, namespace: str = "", **_options: str) -> AsyncIterator[tuple[str, Any]]:
        await asyncio.Event().wait()
        yield "BOOKMARK", {}

    async def delete(self, resource: object, name: str, namespace: str = "", **_options: Any) -> None:
        self.deleted.append(name)


class StepContainerd:
    """Containers and tasks in dictionaries; every exec and kill is written to one list of steps."""

    def __init__(self, *containers: str) -> None:
        self.made = list(containers)
        self.task_list = {cid: Task(cid, 1, "RUNNING") for cid in containers}
        self.steps: list[tuple[str, ...]] = []

    async def exec(self, container: str, argv: list[str], *, seconds: float) -> tuple[int, str]:
        self.steps.append(("exec", container.split("_")[-2], *argv))
        return 0, ""

    async def kill(self, container: str, signal: str = "SIGTERM") -> None:
        self.steps.append((signal, container.split("_")[-2]))
        self.task_list[container] = Task(container, 1, "STOPPED")

    async def tasks(self) -> dict[str, Task]:
        return dict(self.task_list)

    async def containers(self) -> list[str]:
        return list(self.made)

    async def delete(self, container: str) -> None:
        self.made.remove(container)
        self.task_list.pop(container, None)


async def test_a_deleted_pod_runs_its_pre_stop_hook_then_stops_apps_then_sidecars(tmp_path: Path) -> None:
    uid = "0f1e2d3c-aaaa-bbbb-cccc-000000000009"
    spec = pod(sidecar("logs"), sidecar("proxy"), apps=("main",))
    spec["spec"]["containers"][0]["lifecycle"] = {"preStop": {"exec": {"command": ["flush"]}}}
    spec["metadata"].update(uid=uid, resourceVersion="1", deletionTimestamp="2026-01-01T00:00:00Z")
    spec["metadata"]["deletionGracePeriodSeconds"] = 5
    spec["spec"]["nodeName"] = "n1"
    cache = PodCache()
    record = cache.ensure(uid, "default/p")
    record.sandbox_ip = IP
    for name in ("logs", "proxy", "main"):
        record.record(name, Attempt(0, "running", NOW, container_id=f"containerd://{ContainerId(uid, name, 0)}"))
    ctr = StepContainerd(*(str(ContainerId(uid, name, 0)) for name in ("logs", "proxy", "main")))
    client = StopClient(spec)
    fake = cast(Client, client)
    runtime = Runtime(cast(Containerd, ctr), root=tmp_path, network=NetworkSettings(), node_name="n1")
    workers = PodWorkers(
        fake,
        pods=Informer(fake, PODS, field_selector="spec.nodeName=n1"),
        cache=cache,
        runtime=runtime,
        status=StatusManager(fake, host_ip="192.168.150.10"),
        recorder=EventRecorder(fake, component="kubelet"),
        node_ip="192.168.150.10",
        name="n1",
    )
    informing = asyncio.create_task(workers.pods.run())
    try:
        await asyncio.wait_for(workers.pods.synced.wait(), 5)
        await workers.sync(uid)
    finally:
        informing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await informing
    assert ctr.steps == [("exec", "main", "flush"), ("SIGTERM", "main"), ("SIGTERM", "proxy"), ("SIGTERM", "logs")]
    assert client.deleted == ["p"] and cache.get(uid) is None
