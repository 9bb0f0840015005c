"""Waiting in a test for what a lab does on its own time, with a deadline instead of a fixed sleep.

One rule serves a check against a local lab that holds within a second and one against a VM lab that
takes minutes: check at once, then pause a hundredth of the time waited so far, at least ``FIRST`` and at
most ``CEILING`` seconds. A condition is then seen at most about 1% of the wait late, a short wait
polls fast (every 50 ms for its first 5 s, never slower than every 0.1 s for its first 10 s), and a long
one settles at one check a second, which keeps checks that cost something (kubectl, ssh into a VM) from
loading the lab they watch. A caller that knows better gives a fixed ``interval``.

:func:`eventually` polls a blocking check; :func:`until` is the same wait inside a running asyncio loop,
for a check that reads in-process state (so it starts at ``FIRST_IN_PROCESS``). Both fail with
:class:`NotInTime`, an ``AssertionError`` that says what was awaited and the last value seen.
:func:`answers` is the check most often awaited: a component's health endpoint saying 200.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

FIRST = 0.05  # a check is usually a program (kubectl, ssh, curl): faster polling only burns CPU
FIRST_IN_PROCESS = 0.002  # a check that reads this process's own state costs next to nothing
SHARE = 0.01  # of the time waited so far: how late a condition may be seen
CEILING = 1.0


class NotInTime(AssertionError):
    """A condition did not hold before its deadline."""

    def __init__(self, what: str, timeout: float, last: Any) -> None:
        super().__init__(f"{what} did not hold within {timeout:g}s (last value: {last!r})")
        self.what = what
        self.timeout = timeout
        self.last = last


def pause(waited: float, *, first: float = FIRST, interval: float | None = None) -> float:
    """How long to pause before the next check, ``waited`` seconds into a wait (``interval``: fixed)."""
    if interval is not None:
        return interval
    return min(CEILING, max(first, waited * SHARE))


class _Wait:
    """The clock of one wait: the pause before each next check, never past the deadline, and the end."""

    def __init__(self, check: Callable[[], Any], *, what: str, timeout: float, first: float, interval: float | None):
        self.what = what or _name(check)
        self.timeout = timeout
        self.first = first
        self.interval = interval
        self.began = time.monotonic()

    def after(self, last: Any) -> float:
        """The pause after a check that gave ``last``; :class:`NotInTime` once the deadline has passed."""
        waited = time.monotonic() - self.began
        if waited >= self.timeout:
            raise NotInTime(self.what, self.timeout, last)
        return min(pause(waited, first=self.first, interval=self.interval), self.timeout - waited)


def _name(check: Callable[[], Any]) -> str:
    name = getattr(check, "__name__", "")
    return name if name and name != "<lambda>" else "the condition"


def eventually(
    check: Callable[[], Any], *, timeout: float = 60.0, interval: float | None = None, what: str = ""
) -> Any:
    """``check()``'s first truthy value, checked at once and then as the module says until ``timeout``
    seconds have passed (the last check at the deadline); :class:`NotInTime` otherwise. Exceptions from
    ``check`` are not caught."""
    wait = _Wait(check, what=what, timeout=timeout, first=FIRST, interval=interval)
    while not (last := check()):
        time.sleep(wait.after(last))
    return last


async def until(check: Callable[[], Any], *, within: float = 5.0, interval: float | None = None, what: str = "") -> Any:
    """:func:`eventually` inside a running asyncio loop, for ``within`` seconds: the tasks under test run
    during the pauses. Polling is deliberate: the code under test exposes no event for these conditions,
    and adding one only for tests would change what is being tested."""
    wait = _Wait(check, what=what, timeout=within, first=FIRST_IN_PROCESS, interval=interval)
    while not (last := check()):  # noqa: ASYNC110 - see the docstring
        await asyncio.sleep(wait.after(last))
    return last


def answers(url: str, *, timeout: float = 1.0) -> bool:
    """Whether ``url`` answers 200 within ``timeout`` seconds (e.g. a component's ``/readyz``)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
