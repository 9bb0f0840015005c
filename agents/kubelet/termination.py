"""Stopping a pod's containers as kube's kubelet does: in order, preStop hooks first, one grace period.

The order (:func:`stop_order`, pure): the app containers (and an init container still running) all
at once, then the sidecars one at a time, the last started first, so that what the app containers
lean on (a proxy, a log shipper) outlives them. Each container gets its preStop hook, then SIGTERM,
then SIGKILL when the pod's grace period is over; the time the hooks take counts against that one
period (:func:`stop_containers`), except that a container whose hook used it up still gets kube's
minimum of two seconds between its SIGTERM and its SIGKILL. A pod stopped with no grace (gone from
the API) runs no hooks.

:func:`stop_containers` takes the runtime's steps as functions and a clock, so that tests drive it
with fakes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents.kubelet import podstate

MINIMUM_GRACE = 2.0  # seconds between SIGTERM and SIGKILL after a preStop hook, as kube's kubelet allows


@dataclass(frozen=True)
class Stopping:
    """One running container to stop."""

    name: str
    cid: str
    container: Mapping[str, Any]


def stop_order(pod: Mapping[str, Any], running: Collection[str]) -> list[tuple[str, ...]]:
    """The running containers in stop groups: app and plain init containers together, then each
    sidecar alone, in reverse init order."""
    first = tuple(
        c["name"]
        for c in [*podstate.init_containers_of(pod), *podstate.containers_of(pod)]
        if c["name"] in running and not podstate.is_sidecar(c)
    )
    sidecars = [
        (c["name"],)
        for c in reversed(podstate.init_containers_of(pod))
        if c["name"] in running and podstate.is_sidecar(c)
    ]
    known = set(first) | {name for (name,) in sidecars}
    strays = tuple(sorted(name for name in running if name not in known))  # no longer in the spec
    return [group for group in [first + strays, *sidecars] if group]


PreStop = Callable[[Stopping, float], Awaitable[None]]  # run the hook within the seconds given
Kill = Callable[[str, float], Awaitable[None]]  # SIGTERM, SIGKILL after the seconds given


async def stop_containers(
    groups: Sequence[Sequence[Stopping]],
    *,
    grace: float,
    pre_stop: PreStop,
    kill: Kill,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Stop ``groups`` one after the other (a group's containers at once) within ``grace`` seconds."""
    deadline = clock() + grace

    async def stop(target: Stopping) -> None:
        left = max(0.0, deadline - clock())
        if left > 0 and (target.container.get("lifecycle") or {}).get("preStop"):
            await pre_stop(target, left)
            left = max(MINIMUM_GRACE, deadline - clock())
        await kill(target.cid, left)

    for group in groups:
        await asyncio.gather(*(stop(target) for target in group))
