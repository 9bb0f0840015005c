"""Leader election on a coordination.k8s.io Lease, so two copies of a component can run.

The holder renews the lease every ``retry_period``; if it cannot renew for ``renew_deadline`` it
stops leading (the caller exits, and its supervisor starts it again as a candidate). A candidate
takes the lease once it is free or its holder has not renewed it for ``lease_duration``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from agents.machinery.client import ApiError, ApiUnavailableError, Client
from agents.machinery.errors import KubelabError
from agents.machinery.objects import Object, now_micro, parse_time
from agents.machinery.resources import LEASES

log = logging.getLogger(__name__)


class LostLeadershipError(KubelabError):
    """The lease could not be renewed in time."""


class LeaderElector:
    def __init__(
        self,
        client: Client,
        *,
        name: str,
        identity: str,
        namespace: str = "kube-system",
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        self.client = client
        self.name = name
        self.identity = identity
        self.namespace = namespace
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period

    def _expired(self, lease: Object) -> bool:
        spec = lease.get("spec") or {}
        renewed = spec.get("renewTime") or spec.get("acquireTime")
        if not renewed:
            return True
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        return (datetime.now(UTC) - parse_time(renewed)).total_seconds() > duration

    async def try_acquire_or_renew(self) -> bool:
        stamp = now_micro()
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except ApiError as exc:
            if not exc.not_found:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": int(self.lease_duration),
                    "acquireTime": stamp,
                    "renewTime": stamp,
                    "leaseTransitions": 0,
                },
            }
            try:
                await self.client.create(LEASES, body)
            except ApiError as create_error:
                if create_error.already_exists:
                    return False
                raise
            return True
        spec = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity")
        if holder and holder != self.identity and not self._expired(lease):
            return False
        if holder != self.identity:
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            spec["acquireTime"] = stamp
        spec.update(holderIdentity=self.identity, renewTime=stamp, leaseDurationSeconds=int(self.lease_duration))
        lease["spec"] = spec
        try:
            await self.client.update(LEASES, lease)
        except ApiError as exc:
            if exc.conflict:
                return False
            raise
        return True

    async def _acquire(self) -> None:
        announced = False
        while True:
            try:
                if await self.try_acquire_or_renew():
                    log.info("%s became the leader (lease %s/%s)", self.identity, self.namespace, self.name)
                    return
            except (ApiError, ApiUnavailableError) as exc:
                log.warning("acquiring lease %s/%s: %s", self.namespace, self.name, exc)
            if not announced:
                log.info("%s waits for lease %s/%s held by another candidate", self.identity, self.namespace, self.name)
                announced = True
            await asyncio.sleep(self.retry_period)

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Wait for the lease, then run ``lead`` while renewing it; raise LostLeadershipError if lost."""
        await self._acquire()
        task = asyncio.ensure_future(lead())
        last_renewal = asyncio.get_running_loop().time()
        try:
            while not task.done():
                done, _ = await asyncio.wait({task}, timeout=self.retry_period)
                if done:
                    break
                try:
                    if await self.try_acquire_or_renew():
                        last_renewal = asyncio.get_running_loop().time()
                        continue
                    raise LostLeadershipError(f"lease {self.namespace}/{self.name} was taken by another candidate")
                except (ApiError, ApiUnavailableError) as exc:
                    log.warning("renewing lease %s/%s: %s", self.namespace, self.name, exc)
                if asyncio.get_running_loop().time() - last_renewal > self.renew_deadline:
                    raise LostLeadershipError(
                        f"could not renew lease {self.namespace}/{self.name} for {self.renew_deadline:.0f}s"
                    )
            task.result()
        finally:
            task.cancel()
            await self.release()

    async def release(self) -> None:
        """Give the lease up (on shutdown), so that another candidate need not wait for it to expire."""
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            lease["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1}
            await asyncio.shield(self.client.update(LEASES, lease))
            log.info("%s released lease %s/%s", self.identity, self.namespace, self.name)
        except (ApiError, ApiUnavailableError, asyncio.CancelledError) as exc:
            log.debug("releasing lease %s/%s: %s", self.namespace, self.name, exc)
