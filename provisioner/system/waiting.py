"""Waiting for a condition with a deadline (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    check: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.1,
    abort: Callable[[], str | None] | None = None,
) -> bool:
    """Poll ``check`` until it is true or ``timeout`` passes; return whether it became true.

    ``abort`` may return a reason to stop early (for example: the process exited).
    """
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if abort is not None and abort() is not None:
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
