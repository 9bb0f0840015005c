"""Background tasks that are not awaited: kept referenced until done, their failures logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)
_running: set[asyncio.Task[Any]] = set()


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s failed", task.get_name(), exc_info=task.exception())


def spawn(coro: Coroutine[Any, Any, Any], *, name: str = "") -> asyncio.Task[Any]:
    task = asyncio.get_running_loop().create_task(coro, name=name or None)
    _running.add(task)
    task.add_done_callback(_finished)
    return task
