"""Waiting inside asyncio tests for state that a component changes as a side effect."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], *, within: float = 5.0, every: float = 0.002) -> None:
    """Wait for ``condition`` to hold, checking every ``every`` seconds; TimeoutError after ``within``.

    Polling is deliberate: the code under test exposes no event for these conditions, and adding
    one only for tests would change what is being tested.
    """
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - see the docstring
            await asyncio.sleep(every)
