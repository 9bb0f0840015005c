"""The PLEG: a task list judged against the runs the kubelet thinks are running (only runs whose start
returned before the list was asked for), exit events, the events the pod workers get, and the
adoption of what an earlier kubelet left.

The runtime is a fake, declared openly (``FakeRuntime``: tasks, containers, exit codes and sandboxes
as the test sets them); the slow-start case drives the real runtime over a fake containerd instead,
because the start bookkeeping it checks is the runtime's.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import cast

import pytest

from agents.kubelet.cni import PodRef
from agents.kubelet.containerd import Containerd
from agents.kubelet.containers import ContainerdError, ContainerId, Task, TaskExit
from agents.kubelet.pleg import (
    PLEG,
    ContainerDied,
    Ended,
    PodLifecycleEvent,
    Relisted,
    RuntimeState,
    adopted,
    relist,
)
from agents.kubelet.podcache import PodCache
from agents.kubelet.podstate import Attempt
from agents.kubelet.probes import ContainerProber
from agents.kubelet.runtime import Runtime
from agents.kubelet.sandbox import Sandbox
from agents.kubelet.settings import NetworkSettings
from kubelab_testing.waiting import until

UID = "0f1e2d3c-aaaa-bbbb-cccc-000000000001"
OTHER = "0f1e2d3c-aaaa-bbbb-cccc-000000000002"
NOW = 1_000_000.0


def cid(name: str, attempt: int = 0, uid: str = UID) -> str:
    return str(ContainerId(uid, name, attempt))


def running(name: str, attempt: int = 0, uid: str = UID) -> Attempt:
    return Attempt(attempt, "running", NOW - 30, container_id=f"containerd://{cid(name, attempt, uid)}")


def task(container: str, status: str) -> Task:
    return Task(container, 4242, status)


# --- relist: the judgement -------------------------------------------------------------------------


def test_a_run_whose_task_is_gone_or_stopped_ends_and_a_running_one_does_not() -> None:
    runs = [cid("gone"), cid("stopped"), cid("alive"), cid("paused")]
    tasks = {
        cid("stopped"): task(cid("stopped"), "STOPPED"),
        cid("alive"): task(cid("alive"), "RUNNING"),
        cid("paused"): task(cid("paused"), "PAUSED"),
    }
    found = relist(runs, tasks, starts={}, listed_at=NOW)
    assert found.ended == (Ended(cid("gone"), stopped=False), Ended(cid("stopped"), stopped=True))
    assert found.judged == tuple(runs)


@pytest.mark.parametrize(
    ("start_returned", "judged"),
    [
        (math.inf, False),  # `ctr start` still under way
        (NOW + 0.5, False),  # returned while the list was being made
        (NOW, False),
        (NOW - 0.5, True),  # returned before the list was asked for: the list shows its task
    ],
)
def test_a_run_is_judged_only_by_a_list_asked_for_after_its_start_returned(start_returned: float, judged: bool) -> None:
    found = relist([cid("web")], {}, starts={cid("web"): start_returned}, listed_at=NOW)
    expected = Relisted((Ended(cid("web"), stopped=False),), (cid("web"),)) if judged else Relisted()
    assert found == expected


def test_a_run_with_no_start_remembered_is_judged_at_once() -> None:
    """Adopted runs, and runs whose start an earlier list already judged."""
    assert relist([cid("web")], {}, starts={}, listed_at=NOW).ended == (Ended(cid("web"), stopped=False),)


@pytest.mark.parametrize(
    ("found", "expected"),
    [(None, "gone"), (task("x", "RUNNING"), "running"), (task("x", "STOPPED"), "stopped")]
    + [(task("x", status), "stopped") for status in ("CREATED", "PAUSED", "UNKNOWN")],
)
def test_a_restarted_kubelet_takes_only_a_running_task_for_a_running_container(
    found: Task | None, expected: str
) -> None:
    assert adopted(found) == expected


# --- the PLEG over a fake runtime ------------------------------------------------------------------


class FakeRuntime:
    """What the PLEG reads of the runtime, as the test sets it; records the tasks it removes."""

    def __init__(self) -> None:
        self.task_list: dict[str, Task] = {}
        self.container_list: list[str] = []
        self.exit_codes: dict[str, int] = {}
        self.undeletable: set[str] = set()
        self.deleted: list[str] = []
        self.exit_events: list[TaskExit] = []
        self.starts: dict[str, float] = {}
        self.sandboxes: list[Sandbox] = []
        self.stale_removed = False
        self.oom: set[str] = set()  # containers the OOM killer struck in (until their task is removed)

    async def tasks(self) -> dict[str, Task]:
        return dict(self.task_list)

    async def containers(self) -> list[str]:
        return list(self.container_list)

    async def delete_task(self, container: str) -> int | None:
        if container in self.undeletable:
            raise ContainerdError(f"delete task {container}", "cannot delete")
        self.deleted.append(container)
        self.task_list.pop(container, None)
        self.oom.discard(container)
        return self.exit_codes.get(container)

    def oom_killed(self, container: str) -> bool:
        return container in self.oom

    async def exits(self) -> AsyncIterator[TaskExit]:
        for event in self.exit_events:
            yield event

    def start_returned(self, container: str) -> float:
        return self.starts.get(container, 0.0)

    def forget_start(self, container: str) -> None:
        self.starts.pop(container, None)

    async def remove_stale_sandboxes(self) -> None:
        self.stale_removed = True

    def existing_sandboxes(self) -> list[Sandbox]:
        return list(self.sandboxes)


def _pleg(runtime: RuntimeState, cache: PodCache, events: list[PodLifecycleEvent]) -> PLEG:
    return PLEG(runtime, cache, on_event=events.append)


def _prober(name: str, container_id: str) -> ContainerProber:
    """A probe worker with no probes to run: enough to see that a run's end stops it."""

    async def no_exec(_cid: str, _argv: list[str], _seconds: float) -> tuple[int, str]:
        return 0, ""

    async def no_failure(_kind: str, _message: str) -> None:
        return None

    return ContainerProber(
        container={"name": name},
        container_id=container_id,
        netns=Path("/proc/self/ns/net"),
        pod_ip="10.244.0.5",
        exec_probe=no_exec,
        on_change=lambda: None,
        on_failure=no_failure,
    )


async def test_an_exit_ends_the_run_once_stops_its_probes_and_tells_the_workers() -> None:
    cache, events = PodCache(), list[PodLifecycleEvent]()
    record = cache.ensure(UID, "default/web")
    record.record("web", running("web"))
    record.probers["web"] = _prober("web", cid("web"))
    pleg = _pleg(FakeRuntime(), cache, events)
    assert pleg.exited(cid("web"), 3)
    assert not pleg.exited(cid("web"), 3)  # the relist finding the same end
    (run,) = record.attempts["web"]
    assert (run.state, run.exit_code) == ("exited", 3) and run.finished_at >= run.started_at
    assert "web" not in record.probers
    assert events == [ContainerDied(UID, "web", 0, 3)]


def test_exits_of_unknown_pods_runs_or_foreign_containers_are_ignored() -> None:
    cache, events = PodCache(), list[PodLifecycleEvent]()
    cache.ensure(UID, "default/web").record("web", running("web", attempt=1))
    pleg = _pleg(FakeRuntime(), cache, events)
    assert not pleg.exited(cid("web", attempt=0), 1)  # an older run
    assert not pleg.exited(cid("web", uid=OTHER), 1)
    assert not pleg.exited("someone-elses-container", 1)
    assert events == []


async def test_an_ended_task_that_cannot_be_removed_does_not_stop_the_exit_stream() -> None:
    cache, events = PodCache(), list[PodLifecycleEvent]()
    record = cache.ensure(UID, "default/web")
    record.record("a", running("a"))
    record.record("b", running("b"))
    runtime = FakeRuntime()
    runtime.exit_events = [TaskExit(cid("a"), 1, ""), TaskExit(cid("b"), 2, "")]
    runtime.undeletable = {cid("a")}
    await _pleg(runtime, cache, events).follow_exits()
    assert [e.exit_code for e in events] == [1, 2]
    assert runtime.deleted == [cid("b")]


async def test_a_relist_ends_runs_containerd_shows_ended_with_their_exit_codes() -> None:
    cache, events = PodCache(), list[PodLifecycleEvent]()
    record = cache.ensure(UID, "default/web")
    for name in ("gone", "stopped", "alive", "starting"):
        record.record(name, running(name))
    record.record("done", Attempt(0, "exited", NOW - 30, NOW - 20, 0, f"containerd://{cid('done')}"))
    runtime = FakeRuntime()
    runtime.task_list = {
        cid("stopped"): task(cid("stopped"), "STOPPED"),
        cid("alive"): task(cid("alive"), "RUNNING"),
    }
    runtime.exit_codes = {cid("stopped"): 137}
    runtime.starts = {cid("alive"): NOW - 10, cid("starting"): math.inf}
    await _pleg(runtime, cache, events).relist_once()
    assert sorted((e.container, e.exit_code) for e in events) == [("gone", 0), ("stopped", 137)]
    assert runtime.deleted == [cid("stopped")]
    assert record.attempts["alive"][-1].state == "running"
    assert record.attempts["starting"][-1].state == "running"
    assert runtime.starts == {cid("starting"): math.inf}  # the judged run's start is forgotten


async def test_a_run_the_oom_killer_struck_in_ends_oom_killed_however_its_end_is_noticed() -> None:
    cache, events = PodCache(), list[PodLifecycleEvent]()
    record = cache.ensure(UID, "default/web")
    for name in ("evented", "relisted", "plain"):
        record.record(name, running(name))
    runtime = FakeRuntime()
    runtime.oom = {cid("evented"), cid("relisted")}
    runtime.exit_events = [TaskExit(cid("evented"), 137, ""), TaskExit(cid("plain"), 137, "")]
    runtime.task_list = {cid("relisted"): task(cid("relisted"), "STOPPED")}
    runtime.exit_codes = {cid("relisted"): 137}
    pleg = _pleg(runtime, cache, events)
    await pleg.follow_exits()
    await pleg.relist_once()
    reasons = {name: (runs[-1].exit_code, runs[-1].reason) for name, runs in record.attempts.items()}
    assert reasons == {"evented": (137, "OOMKilled"), "relisted": (137, "OOMKilled"), "plain": (137, "")}
    assert runtime.oom == set()  # asked before the removal of each task, which forgets it


async def test_a_relist_with_no_run_to_judge_asks_containerd_nothing() -> None:
    class Untouchable(FakeRuntime):
        async def tasks(self) -> dict[str, Task]:
            raise AssertionError("an idle node's relist listed containerd's tasks")

    cache, events = PodCache(), list[PodLifecycleEvent]()
    cache.ensure(UID, "default/web").record("done", Attempt(0, "exited", NOW - 30, NOW - 20, 0, "containerd://x"))
    await _pleg(Untouchable(), cache, events).relist_once()
    assert events == []


async def test_adoption_rebuilds_the_records_of_the_sandboxes_and_containers_left_behind() -> None:
    runtime = FakeRuntime()
    pod = PodRef("default", "web", UID)
    runtime.sandboxes = [Sandbox(pod, f"kl-n-{UID}", IPv4Address("10.244.0.7"), (), {})]
    runtime.container_list = [cid("main"), cid("side", 2), cid("init"), cid("x", uid=OTHER), "foreign"]
    runtime.task_list = {cid("main"): task(cid("main"), "RUNNING"), cid("side", 2): task(cid("side", 2), "STOPPED")}
    runtime.exit_codes = {cid("side", 2): 3}
    cache, events = PodCache(), list[PodLifecycleEvent]()
    await _pleg(runtime, cache, events).adopt()
    assert runtime.stale_removed
    record = cache.get(UID)
    assert record is not None and record.key == "default/web" and record.sandbox_ip == "10.244.0.7"
    assert [(a.number, a.state) for a in record.attempts["main"]] == [(0, "running")]
    assert [(a.number, a.state, a.exit_code) for a in record.attempts["side"]] == [(2, "exited", 3)]
    assert [(a.state, a.exit_code) for a in record.attempts["init"]] == [("exited", 0)]
    assert cache.get(OTHER) is None  # no sandbox: not this kubelet's pod any more
    assert runtime.deleted == [cid("side", 2)]
    assert events == []  # the kubelet queues every pod after adopting


# --- the relist over the real runtime ---------------------------------------------------------------


class SlowStartCtr:
    """containerd on a loaded node: a start returns only while the first task list is being made, and
    that list does not show the new task yet; later lists do."""

    def __init__(self, container: str) -> None:
        self.container = container
        self.lists = 0
        self.listing = asyncio.Event()
        self.third = asyncio.Event()

    async def start(self, container: str, *, log_file: Path) -> None:
        await self.listing.wait()

    async def tasks(self) -> dict[str, Task]:
        self.lists += 1
        if self.lists == 3:
            self.third.set()
        if self.lists == 1:
            self.listing.set()
            await asyncio.sleep(0.05)  # the start returns meanwhile
            return {}
        return {self.container: task(self.container, "RUNNING")}

    async def delete_task(self, container: str) -> int | None:
        raise AssertionError(f"the running task {container} was deleted")


async def test_the_relist_does_not_end_a_run_whose_start_finished_after_the_list_was_asked_for(tmp_path: Path) -> None:
    container = ContainerId(UID, "echo", 0)
    slow = SlowStartCtr(str(container))
    runtime = Runtime(cast(Containerd, slow), root=tmp_path, network=NetworkSettings(), node_name="n")
    cache, events = PodCache(), list[PodLifecycleEvent]()
    record = cache.ensure(UID, "default/echo")
    record.record("echo", Attempt(0, "running", time.time() - 30, container_id=f"containerd://{container}"))
    starting = asyncio.create_task(runtime.start(container))
    await until(lambda: runtime.start_returned(str(container)) == math.inf)
    relisting = asyncio.create_task(_pleg(runtime, cache, events).run_relist(period=0.01))
    try:
        await asyncio.wait_for(slow.third.wait(), 5)
    finally:
        relisting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relisting
    await starting
    assert record.attempts["echo"][-1].state == "running"
    assert events == []
