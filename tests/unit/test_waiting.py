"""Waiting with a deadline: the pause schedule, what a wait returns, and what a failed one says."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from kubelab_testing import waiting
from kubelab_testing.waiting import NotInTime, answers, eventually, pause, until


def test_pauses_start_fast_and_grow_with_the_wait_to_a_ceiling() -> None:
    assert pause(0.0) == waiting.FIRST == 0.05
    assert all(pause(w) <= 0.1 for w in (0.5, 2, 5, 9.9, 10))  # a short wait polls at least as fast as 10/s
    assert pause(30) == pytest.approx(0.3)
    assert pause(100) == pause(600) == waiting.CEILING == 1.0
    assert pause(0.0, first=waiting.FIRST_IN_PROCESS) == 0.002


def test_a_fixed_interval_is_kept_whatever_the_wait() -> None:
    assert pause(0.0, interval=3) == pause(500, interval=3) == 3


def test_the_first_truthy_value_is_returned() -> None:
    answers_given: Iterator[object] = iter([None, [], 0, "", {"ready": True}])
    assert eventually(lambda: next(answers_given), timeout=5) == {"ready": True}


def test_a_check_that_holds_at_once_is_not_waited_for() -> None:
    began = time.monotonic()
    assert eventually(lambda: 7, timeout=5) == 7
    assert time.monotonic() - began < 0.05


def test_a_condition_that_never_holds_fails_saying_what_was_awaited_and_the_last_value() -> None:
    calls: list[float] = []

    def check() -> list[int]:
        calls.append(time.monotonic())
        return []

    with pytest.raises(NotInTime) as failed:
        eventually(check, timeout=0.3, what="three pods")
    assert isinstance(failed.value, AssertionError)
    assert str(failed.value) == "three pods did not hold within 0.3s (last value: [])"
    assert (failed.value.what, failed.value.last) == ("three pods", [])
    assert calls[-1] - calls[0] >= 0.3  # the last check is at the deadline, not a pause before it
    assert calls[-1] - calls[0] < 0.3 + waiting.FIRST + 0.1  # and no pause runs past it
    assert len(calls) >= 5  # every 50 ms at first


def test_a_named_check_names_the_failure() -> None:
    def replicas_ready() -> bool:
        return False

    with pytest.raises(NotInTime, match=r"^replicas_ready did not hold"):
        eventually(replicas_ready, timeout=0.1)
    with pytest.raises(NotInTime, match=r"^the condition did not hold"):
        eventually(lambda: False, timeout=0.1)


def test_an_error_in_the_check_is_not_taken_for_not_yet() -> None:
    def broken() -> bool:
        raise KeyError("status")

    with pytest.raises(KeyError):
        eventually(broken, timeout=5)


async def test_until_lets_the_loop_run_while_it_waits() -> None:
    seen: list[int] = []

    async def produce() -> None:
        for i in range(3):
            seen.append(i)
            await asyncio.sleep(0)

    task = asyncio.create_task(produce())
    assert await until(lambda: len(seen) == 3, within=5)
    await task
    with pytest.raises(NotInTime, match=r"^more did not hold within 0\.05s"):
        await until(lambda: len(seen) > 3, within=0.05, what="more")


def test_answers_is_a_200_and_nothing_else(echo_port: int) -> None:
    assert answers(f"http://127.0.0.1:{echo_port}/readyz")
    assert not answers(f"http://127.0.0.1:{echo_port}/fail")  # 500
    with socket.socket() as unlistened:
        unlistened.bind(("127.0.0.1", 0))
        assert not answers(f"http://127.0.0.1:{unlistened.getsockname()[1]}/readyz")
