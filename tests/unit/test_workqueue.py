"""The controllers' work queue: one wait per key, never two workers on one key, per-key backoff."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from agents.machinery.client import ApiError, ApiUnavailableError
from agents.machinery.workqueue import WorkQueue, run_workers
from kubelab_testing.waiting import until


@contextlib.asynccontextmanager
async def running_workers(
    queue: WorkQueue, sync: Callable[[str], Awaitable[None]], *, workers: int
) -> AsyncIterator[None]:
    task = asyncio.create_task(run_workers(queue, sync, workers=workers))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class DelayRecordingQueue(WorkQueue):
    """A fake: a WorkQueue that records the delays ``add_after`` is asked for instead of waiting them."""

    def __init__(self, *, base_delay: float, max_delay: float) -> None:
        super().__init__("recording", base_delay=base_delay, max_delay=max_delay)
        self.delays: list[tuple[str, float]] = []

    def add_after(self, key: str, delay: float) -> None:
        self.delays.append((key, delay))


# --- the queue ------------------------------------------------------------------------------------


async def test_a_key_added_twice_while_waiting_is_handed_out_once() -> None:
    queue = WorkQueue("test")
    queue.add("a")
    queue.add("b")
    queue.add("a")
    assert len(queue) == 2
    assert await queue.get() == "a"
    assert await queue.get() == "b"
    assert len(queue) == 0


async def test_keys_are_handed_out_in_the_order_they_were_first_added() -> None:
    queue = WorkQueue("test")
    for key in ("c", "a", "b", "a", "c"):
        queue.add(key)
    assert [await queue.get() for _ in range(3)] == ["c", "a", "b"]


async def test_a_key_added_while_being_worked_on_comes_back_only_after_done() -> None:
    queue = WorkQueue("test")
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0  # held back while a worker has it
    queue.done("a")
    assert len(queue) == 1  # once, however often it was added
    assert await queue.get() == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_done_without_a_new_add_does_not_requeue_the_key() -> None:
    queue = WorkQueue("test")
    queue.add("a")
    await queue.get()
    queue.done("a")
    assert len(queue) == 0


async def test_get_waits_for_a_key_added_later() -> None:
    queue = WorkQueue("test")
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    queue.add("late")
    assert await asyncio.wait_for(waiter, 1.0) == "late"


async def test_add_after_delivers_the_key_once_the_delay_has_passed() -> None:
    queue = WorkQueue("test")
    loop = asyncio.get_running_loop()
    started = loop.time()
    queue.add_after("a", 0.05)
    assert len(queue) == 0
    assert await asyncio.wait_for(queue.get(), 1.0) == "a"
    assert loop.time() - started >= 0.045  # call_later may fire up to one clock tick early


async def test_add_after_without_a_delay_adds_at_once() -> None:
    queue = WorkQueue("test")
    queue.add_after("a", 0)
    queue.add_after("b", -1)
    assert len(queue) == 2


def test_add_rate_limited_doubles_the_delay_per_failure_up_to_the_cap() -> None:
    queue = DelayRecordingQueue(base_delay=0.005, max_delay=0.04)
    for _ in range(5):
        queue.add_rate_limited("a")
    assert [delay for _, delay in queue.delays] == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.04])
    assert queue.retries("a") == 5


def test_backoff_is_counted_per_key() -> None:
    queue = DelayRecordingQueue(base_delay=0.005, max_delay=300.0)
    queue.add_rate_limited("a")
    queue.add_rate_limited("a")
    queue.add_rate_limited("b")
    assert [key for key, _ in queue.delays] == ["a", "a", "b"]
    assert [delay for _, delay in queue.delays] == pytest.approx([0.005, 0.01, 0.005])
    assert (queue.retries("a"), queue.retries("b"), queue.retries("never")) == (2, 1, 0)


def test_forget_resets_a_keys_backoff() -> None:
    queue = DelayRecordingQueue(base_delay=0.005, max_delay=300.0)
    for _ in range(3):
        queue.add_rate_limited("a")
    queue.add_rate_limited("b")
    queue.forget("a")
    assert queue.retries("a") == 0
    queue.add_rate_limited("a")
    assert queue.delays[-1][0] == "a"
    assert queue.delays[-1][1] == pytest.approx(0.005)
    assert queue.retries("b") == 1  # forgetting one key leaves the others' backoff alone


async def test_a_rate_limited_key_arrives_after_its_backoff() -> None:
    queue = WorkQueue("test", base_delay=0.03)
    loop = asyncio.get_running_loop()
    started = loop.time()
    queue.add_rate_limited("a")
    assert len(queue) == 0
    assert await asyncio.wait_for(queue.get(), 1.0) == "a"
    assert loop.time() - started >= 0.025


# --- the workers ----------------------------------------------------------------------------------


async def test_workers_never_sync_one_key_on_two_workers_at_once() -> None:
    queue = WorkQueue("test")
    active: set[str] = set()
    overlaps: list[str] = []
    synced: list[str] = []
    first_started = asyncio.Event()
    release = asyncio.Event()

    async def sync(key: str) -> None:
        if key in active:
            overlaps.append(key)
        active.add(key)
        synced.append(key)
        try:
            first_started.set()
            await release.wait()
        finally:
            active.discard(key)

    queue.add("a")
    async with running_workers(queue, sync, workers=3):
        await asyncio.wait_for(first_started.wait(), 1.0)
        for _ in range(3):
            queue.add("a")
        for _ in range(5):
            await asyncio.sleep(0)  # every idle worker gets a turn: none may take "a"
        assert synced == ["a"]
        release.set()
        await until(lambda: len(synced) == 2 and not active)
        assert len(queue) == 0
    assert overlaps == []
    assert synced == ["a", "a"]  # the three adds during the first sync came back as one


async def test_workers_sync_different_keys_in_parallel() -> None:
    queue = WorkQueue("test")
    active: set[str] = set()
    both_running = asyncio.Event()

    async def sync(key: str) -> None:
        active.add(key)
        if active == {"a", "b"}:
            both_running.set()
        await both_running.wait()

    queue.add("a")
    queue.add("b")
    async with running_workers(queue, sync, workers=2):
        await asyncio.wait_for(both_running.wait(), 1.0)
    assert active == {"a", "b"}


@pytest.mark.parametrize(
    "failure",
    [
        RuntimeError("boom"),
        ApiError({"reason": "Conflict", "message": "modified"}, 409),
        ApiUnavailableError("connection refused"),
    ],
    ids=["unexpected-exception", "api-conflict", "api-unavailable"],
)
async def test_a_failing_sync_is_retried_with_growing_backoff_then_forgotten(failure: Exception) -> None:
    queue = WorkQueue("test", base_delay=0.01)
    loop = asyncio.get_running_loop()
    attempts: list[tuple[float, int]] = []  # (when, retries counted at that attempt)

    async def sync(key: str) -> None:
        attempts.append((loop.time(), queue.retries(key)))
        if len(attempts) <= 2:
            raise failure

    queue.add("a")
    async with running_workers(queue, sync, workers=1):
        await until(lambda: len(attempts) == 3)
        await until(lambda: queue.retries("a") == 0)
    assert [retries for _, retries in attempts] == [0, 1, 2]
    times = [when for when, _ in attempts]
    assert times[1] - times[0] >= 0.009  # first retry after base_delay
    assert times[2] - times[1] >= 0.019  # second after twice that
    assert len(queue) == 0  # success does not requeue


async def test_a_failing_key_does_not_hold_up_other_keys() -> None:
    queue = WorkQueue("test", base_delay=10.0)
    synced: list[str] = []

    async def sync(key: str) -> None:
        synced.append(key)
        if key == "bad":
            raise RuntimeError("always fails")

    queue.add("bad")
    queue.add("good")
    async with running_workers(queue, sync, workers=1):
        await until(lambda: synced == ["bad", "good"])
    assert queue.retries("bad") == 1
    assert queue.retries("good") == 0
