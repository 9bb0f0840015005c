"""``kubelab-agent scheduler`` / ``python -m agents.scheduler``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from agents.machinery import component
from agents.machinery.client import Client
from agents.machinery.events import EventRecorder
from agents.machinery.settings import SettingsError
from agents.scheduler.scheduler import Scheduler
from agents.scheduler.settings import SchedulerSettings


def check(settings: SchedulerSettings) -> None:
    if settings.scoring not in ("least-allocated", "most-allocated"):
        raise SettingsError(f"scoring: {settings.scoring!r} is not least-allocated or most-allocated")
    if settings.bind_timeout <= 0:
        raise SettingsError(f"bind-timeout: {settings.bind_timeout} is not a positive number of seconds")


async def main(settings: SchedulerSettings, client: Client, ready: asyncio.Event) -> None:
    recorder = EventRecorder(client, component=settings.scheduler_name)
    scheduler = Scheduler(
        client,
        recorder,
        name=settings.scheduler_name,
        most_allocated=settings.scoring == "most-allocated",
        bind_concurrency=settings.bind_concurrency,
        bind_timeout=settings.bind_timeout,
    )
    await scheduler.run(ready)


def run(argv: Sequence[str]) -> int:
    return component.run("scheduler", SchedulerSettings, argv, main, lease="kube-scheduler", check=check)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
