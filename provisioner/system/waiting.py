"""Waiting for a condition with a deadline (never a bare sleep), and never without a word.

A wait that a user sits through says, at least every ``EVERY`` seconds, what it waits for, how long it
has waited, and the last thing it saw (``wait_for`` with ``what``, ``say`` and ``last``); when its
deadline passes, the caller's error names that last thing (``timed_out``). A step that blocks without
polling anything (a package install, a phase of an image build, a playbook task) gets the same from a
:class:`Heartbeat`, which speaks only when the step itself has been silent that long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

EVERY = 10.0  # the longest a wait or a step goes without saying anything


def progress_line(what: str, waited: float, timeout: float | None, last: str) -> str:
    """``waiting for WHAT: 20s of 300s; last: WHAT WAS SEEN`` (the line a wait says as it goes)."""
    budget = f" of {timeout:.0f}s" if timeout is not None else ""
    seen = f"; last: {last}" if last else ""
    return f"waiting for {what}: {waited:.0f}s{budget}{seen}"


def indented(say: Callable[[str], None], prefix: str = "  ") -> Callable[[str], None]:
    """``say`` with every line indented (a wait inside a step of ``up``)."""
    return lambda line: say(prefix + line)


def timed_out(what: str, timeout: float, last: str) -> str:
    """The error of a wait that ran out: what it waited for, how long, and the last thing it saw."""
    return f"{what}: not within {timeout:.0f}s; last: {last or 'nothing seen'}"


def wait_for(
    check: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.1,
    abort: Callable[[], str | None] | None = None,
    what: str = "",
    say: Callable[[str], None] | None = None,
    last: Callable[[], str] | None = None,
    slowest: float = 0.0,
    every: float = EVERY,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Poll ``check`` until it is true or ``timeout`` passes; return whether it became true.

    ``abort`` may return a reason to stop early (for example: the process exited). With ``say``, the
    wait says a :func:`progress_line` about ``what``, with ``last()`` (the last thing seen), so that
    no more than ``every`` seconds pass without one: a line is due as soon as one more poll (a pause
    and a check: the longest seen so far, or ``slowest``, the check's own bound, plus ``interval``)
    could reach ``every``. A check that may block longer than a few seconds belongs in a thread of
    its own, with this waiting for the thread (as ``ssh.wait_all`` does).
    """
    began = clock()
    deadline = began + timeout
    said_at = began
    margin = slowest + interval
    while True:
        step = clock()
        if check():
            return True
        if abort is not None and abort() is not None:
            return False
        now = clock()
        if now >= deadline:
            return False
        pause = min(interval, deadline - now)
        margin = max(margin, now - step + pause)
        if say is not None and now - said_at + margin >= every:
            say(progress_line(what or "a condition", now - began, timeout, last() if last is not None else ""))
            said_at = now
        sleep(pause)


class Heartbeat:
    """Says a progress line about ``what`` whenever the step it wraps has said nothing for ``every``
    seconds (``with Heartbeat(...) as beat:`` and the step says through ``beat.say``).

    It runs a thread of its own, so a step that blocks (a subprocess, a library call) is covered;
    ``last`` gives the last thing the step saw (its last line of output, its current task).
    """

    def __init__(
        self,
        what: str,
        say: Callable[[str], None],
        *,
        last: Callable[[], str] | None = None,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self._say = say
        self._last = last
        self.every = every
        self._clock = clock
        self.began = clock()
        self._said_at = self.began
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat: {what}", daemon=True)

    def say(self, line: str) -> None:
        """Say ``line`` for the step (which counts as a word: the heartbeat stays quiet for a while)."""
        with self._lock:
            self._said_at = self._clock()
            self._say(line)

    def due(self) -> str | None:
        """The line to say now, if the step has been silent for ``every`` seconds (and note it said)."""
        with self._lock:
            now = self._clock()
            if now - self._said_at < self.every - 0.5:  # the thread wakes a little before the limit
                return None
            self._said_at = now
            last = self._last() if self._last is not None else ""
            return progress_line(self.what, now - self.began, None, last)

    def _run(self) -> None:
        while not self._done.wait(max(0.1, self.every - 0.5 - (self._clock() - self._said_at))):
            line = self.due()
            if line is not None:
                self._say(line)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._done.set()
        self._thread.join()
