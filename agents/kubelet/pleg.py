"""The pod lifecycle event generator (PLEG): containerd's state turned into events for the pod workers.

Two sources, as kube's evented PLEG with its relist behind it: containerd's exit events (one
long-lived subscription to its event service) tell at once that a run ended; a relist of containerd's
tasks every two seconds, while any run is thought to be running, catches what the stream missed (an
event lost while the subscription was made again, a task gone without one). Either way the run is
marked ended in the pod cache (``OOMKilled`` when the kernel's OOM killer struck in it, as the runtime
tells before the task's removal takes its cgroup), its probes stop, and a :class:`ContainerDied`
event goes to the pod workers, which decide what comes next.

A relist judges a run only by a task list asked for after the run's start returned: on a
loaded node a start takes seconds, and a list asked for meanwhile does not show the task yet, which
would end a run that is only starting (and restart it, in a loop). :func:`relist` is that judgement,
pure.

After a restart the PLEG's first look (:meth:`PLEG.adopt`) rebuilds the cache from the sandboxes and
containers an earlier kubelet left, so nothing that still runs is started again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from agents.kubelet import podstate
from agents.kubelet.containers import ContainerdError, ContainerId, Task, TaskExit
from agents.kubelet.podcache import PodCache, containerd_id
from agents.kubelet.runtime import CONTAINERD
from agents.kubelet.sandbox import Sandbox

log = logging.getLogger(__name__)

RELIST_PERIOD = 2.0


@dataclass(frozen=True)
class ContainerDied:
    """A run of a pod's container ended (kube's PLEG event of the same name)."""

    pod_uid: str
    container: str
    attempt: int
    exit_code: int


PodLifecycleEvent = ContainerDied


@dataclass(frozen=True)
class Ended:
    """A run that a task list shows ended."""

    cid: str
    stopped: bool  # its task is there, STOPPED (removing it tells the exit code); False: no task any more


@dataclass(frozen=True)
class Relisted:
    """What one task list says of the runs the kubelet thinks are running."""

    ended: tuple[Ended, ...] = ()
    judged: tuple[str, ...] = ()  # every run this list could judge: its start need not be remembered


def relist(
    running: Iterable[str], tasks: Mapping[str, Task], *, starts: Mapping[str, float], listed_at: float
) -> Relisted:
    """Judge the ``running`` runs (container ids) by ``tasks``, a list asked for at ``listed_at``;
    ``starts`` says when each run's start returned (inf while it runs; absent: long done, or
    started by an earlier kubelet). A run whose start returned at or after ``listed_at`` is left for
    a later list; any other run ends when its task is gone or STOPPED."""
    ended: list[Ended] = []
    judged: list[str] = []
    for cid in running:
        if starts.get(cid, 0.0) >= listed_at:
            continue
        judged.append(cid)
        task = tasks.get(cid)
        if task is None or task.status == "STOPPED":
            ended.append(Ended(cid, stopped=task is not None))
    return Relisted(tuple(ended), tuple(judged))


def adopted(task: Task | None) -> Literal["running", "stopped", "gone"]:
    """What a restarted kubelet makes of a container it finds: a RUNNING task runs on; any other task
    has ended (removing it tells the exit code); no task, ended with its code unknown."""
    if task is None:
        return "gone"
    return "running" if task.status == "RUNNING" else "stopped"


class RuntimeState(Protocol):
    """What the PLEG reads of the runtime (:class:`agents.kubelet.runtime.Runtime` is one)."""

    async def tasks(self) -> dict[str, Task]: ...
    async def containers(self) -> list[str]: ...
    async def delete_task(self, cid: str) -> int | None: ...
    def exits(self) -> AsyncIterator[TaskExit]: ...
    def oom_killed(self, cid: str) -> bool: ...
    def start_returned(self, cid: str) -> float: ...
    def forget_start(self, cid: str) -> None: ...
    async def remove_stale_sandboxes(self) -> None: ...
    def existing_sandboxes(self) -> list[Sandbox]: ...


class PLEG:
    def __init__(
        self, runtime: RuntimeState, cache: PodCache, *, on_event: Callable[[PodLifecycleEvent], None]
    ) -> None:
        self.runtime = runtime
        self.cache = cache
        self.on_event = on_event

    def exited(self, cid: str, exit_code: int, *, reason: str = "") -> bool:
        """Mark a run ended (``reason``: kube's word for how, when the exit code does not say it) and
        tell the workers; False when it is not one the kubelet thinks is running."""
        parsed = ContainerId.parse(cid)
        record = self.cache.get(parsed.pod_uid) if parsed is not None else None
        if parsed is None or record is None:
            return False
        current = record.run(parsed.name, parsed.attempt)
        if current is None or current.state == "exited":
            return False
        ended = replace(current, state="exited", finished_at=time.time(), exit_code=exit_code, reason=reason)
        record.record(parsed.name, ended)
        record.stop_prober(parsed.name)
        self.on_event(ContainerDied(parsed.pod_uid, parsed.name, parsed.attempt, exit_code))
        return True

    async def follow_exits(self) -> None:
        """containerd's exit events: how a container's end is noticed at once."""
        async for event in self.runtime.exits():
            if self.exited(event.id, event.exit_status, reason=self._reason(event.id)):
                try:
                    await self.runtime.delete_task(event.id)
                except ContainerdError as exc:  # the relist retries what is left
                    log.warning("could not remove the ended task %s: %s", event.id, exc)

    async def relist_once(self) -> None:
        """One relist: the runs the kubelet thinks are running that containerd shows stopped or gone end here."""
        running = [containerd_id(a) for record in self.cache.records() for a in record.running().values()]
        if not running:
            return  # nothing to judge: an idle node asks containerd nothing
        listed_at = time.time()
        tasks = await self.runtime.tasks()
        found = relist(
            running, tasks, starts={cid: self.runtime.start_returned(cid) for cid in running}, listed_at=listed_at
        )
        for cid in found.judged:
            self.runtime.forget_start(cid)
        for run in found.ended:
            reason = self._reason(run.cid)
            code = await self.runtime.delete_task(run.cid) if run.stopped else None
            if self.exited(run.cid, code if code is not None else 0, reason=reason):
                log.info("container %s ended without an event (exit %s)", run.cid, code)

    def _reason(self, cid: str) -> str:
        return podstate.OOM_KILLED if self.runtime.oom_killed(cid) else ""

    async def run_relist(self, period: float = RELIST_PERIOD) -> None:
        """Relist every ``period`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(period)
            try:
                await self.relist_once()
            except ContainerdError as exc:
                log.warning("relist failed: %s", exc)

    async def adopt(self) -> None:
        """After a restart: take over the sandboxes and containers an earlier run left, without
        restarting anything that still runs."""
        await self.runtime.remove_stale_sandboxes()
        for sandbox in self.runtime.existing_sandboxes():
            pod = sandbox.pod
            self.cache.ensure(pod.uid, f"{pod.namespace}/{pod.name}").sandbox_ip = str(sandbox.ip)
        tasks = await self.runtime.tasks()
        for cid in await self.runtime.containers():
            parsed = ContainerId.parse(cid)
            record = self.cache.get(parsed.pod_uid) if parsed is not None else None
            if parsed is None or record is None:
                continue
            now = time.time()
            found = adopted(tasks.get(cid))
            if found == "running":
                attempt = podstate.Attempt(parsed.attempt, "running", now, container_id=f"{CONTAINERD}{cid}")
            else:
                reason = self._reason(cid) if found == "stopped" else ""
                code = await self.runtime.delete_task(cid) if found == "stopped" else None
                attempt = podstate.Attempt(
                    parsed.attempt, "exited", now, now, code if code is not None else 0, f"{CONTAINERD}{cid}", reason
                )
            record.record(parsed.name, attempt)
        log.info("adopted %d pods from an earlier run", len(self.cache))
