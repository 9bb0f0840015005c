"""Running a control-plane or node component: settings, logging, the API client, leader election.

Every component's ``__main__`` calls ``run``: it loads the settings (flags, config file, environment),
sets up logging, connects to the API server with the kubeconfig it was given, optionally waits to
lead, and runs the component until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from agents.machinery import health, logs, tracing
from agents.machinery.client import Client, ClientConfig, ConfigError
from agents.machinery.leader import LeaderElector, LostLeadershipError
from agents.machinery.settings import HealthSettings, LeaderSettings, LogSettings, SettingsError, load

log = logging.getLogger(__name__)


class ComponentSettings(Protocol):
    @property
    def kubeconfig(self) -> Path | None: ...

    @property
    def log(self) -> LogSettings: ...


S = TypeVar("S", bound=ComponentSettings)


def identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def run(
    name: str,
    settings_type: type[S],
    argv: Sequence[str],
    main: Callable[[S, Client, asyncio.Event], Awaitable[None]],
    *,
    lease: str = "",
    check: Callable[[S], None] | None = None,
) -> int:
    """Parse settings (and ``check`` them), then run ``main`` (under leader election on ``lease``)."""
    env_prefix = "KUBELAB_" + name.upper().replace("-", "_")
    try:
        settings = load(settings_type, argv, env_prefix=env_prefix, prog=f"kubelab-agent {name}")
        if check is not None:
            check(settings)
    except SettingsError as exc:
        print(f"kubelab-agent {name}: {exc}", file=sys.stderr)
        return 2
    logs.setup(settings.log.level, settings.log.format)
    try:
        # without a kubeconfig, a component in a pod (an add-on) uses its ServiceAccount
        if settings.kubeconfig is None:
            config = ClientConfig.in_cluster()
        else:
            config = ClientConfig.from_kubeconfig(settings.kubeconfig)
    except ConfigError as exc:
        print(f"kubelab-agent {name}: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop  # noqa: PLC0415

        uvloop.install()
    except ImportError:
        pass
    leader: LeaderSettings | None = getattr(settings, "leader", None)
    traced: tracing.TracingSettings | None = getattr(settings, "tracing", None)
    if traced is not None:
        tracing.setup(name, traced)
    try:
        asyncio.run(
            _serve(
                name,
                settings=settings,
                config=config,
                main=main,
                lease=(leader.resource_name or lease) if leader and leader.elect else "",
                leader=leader,
            )
        )
    except LostLeadershipError as exc:
        log.error("%s", exc)
        return 1
    finally:
        tracing.shutdown()
    return 0


async def _serve(
    name: str,
    *,
    settings: Any,
    config: ClientConfig,
    main: Callable[[Any, Client, asyncio.Event], Awaitable[None]],
    lease: str,
    leader: LeaderSettings | None,
) -> None:
    client = Client(config, user_agent=f"kubelab-{name}/{os.getpid()}")
    stop = asyncio.Event()
    ready = asyncio.Event()
    checks: HealthSettings | None = getattr(settings, "healthz", None)
    endpoints = await health.serve(checks.bind_address, checks.port, ready) if checks and checks.port else None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def body() -> None:
        if lease and leader is not None:
            elector = LeaderElector(
                client,
                name=lease,
                identity=identity(),
                lease_duration=leader.lease_duration,
                renew_deadline=leader.renew_deadline,
                retry_period=leader.retry_period,
            )
            await elector.run(lambda: main(settings, client, ready))
        else:
            await main(settings, client, ready)

    task = asyncio.create_task(body())
    stopper = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()
        else:
            log.info("%s shutting down", name)
    finally:
        task.cancel()
        stopper.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        if endpoints is not None:
            await endpoints.cleanup()
