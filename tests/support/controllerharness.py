"""Real controllers, run in-process against an API server on the in-memory store (the unit tier).

``running(server, ReplicaSetController, ...)`` serves the ``ApiServer`` over a local HTTP port and
starts what the controller-manager starts (``agents/controllers/__main__.py``): one ``Context`` with
the real ``agents.machinery.client.Client``, the informers the controllers ask for, the event
recorder, then the controllers' work loops. Nothing else runs: no scheduler, no kubelet, so a test
plays those parts openly (``set_pod``: a pod's phase, readiness and IP, as a kubelet would report
them; ``kubelet`` does it for every new pod). Tests wait for what the controllers write with
``eventually`` (a deadline, never a fixed sleep). What the components log as an error (a sync that
raised anything but an API error, a failed informer handler or background task) is a bug: the
harness collects it and fails the test when the block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp.test_utils import TestServer

from agents.apiserver.server import ApiServer
from agents.controllers.base import Context, Controller
from agents.controllers.settings import ControllerManagerSettings
from agents.machinery.client import ApiError, Client, ClientConfig
from agents.machinery.events import EventRecorder
from agents.machinery.informer import Informer
from agents.machinery.objects import Object, deep_copy, now
from agents.machinery.resources import EVENTS, PODS, ResourceRef

T = TypeVar("T")

PATIENCE = 5.0  # seconds a test waits for a controller to act


@dataclass
class Harness:
    """What a test holds while its controllers run: the client they use, and helpers on it."""

    client: Client
    ctx: Context
    controllers: list[Controller]
    failures: list[str] = field(default_factory=list)  # errors the components logged

    # --- reads and writes through the API, as any client -----------------------------------------

    async def create(self, resource: ResourceRef, obj: Object, namespace: str = "default") -> Object:
        body = deep_copy(obj)
        if resource.namespaced:
            body.setdefault("metadata", {}).setdefault("namespace", namespace)
        return await self.client.create(resource, body)

    async def get(self, resource: ResourceRef, name: str, namespace: str = "default") -> Object | None:
        try:
            return await self.client.get(resource, name, namespace if resource.namespaced else "")
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    async def items(self, resource: ResourceRef, namespace: str = "default", *, labels: str = "") -> list[Object]:
        items, _ = await self.client.list(resource, namespace if resource.namespaced else "", label_selector=labels)
        return items

    async def events(self, about: str, namespace: str = "default") -> list[tuple[str, str]]:
        """(reason, message) of the events recorded about the object named ``about``."""
        items, _ = await self.client.list(EVENTS, namespace, field_selector=f"involvedObject.name={about}")
        return [(e["reason"], e["message"]) for e in items]

    async def set_pod(
        self,
        pod: Object,
        *,
        phase: str = "Running",
        ready: bool = True,
        ip: str = "",
    ) -> Object:
        """Report a pod's state as its kubelet would: phase, Ready condition, pod IP."""
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now()}],
        }
        if ip:
            status["podIP"] = ip
        meta = pod["metadata"]
        return await self.client.patch(PODS, meta["name"], {"status": status}, meta["namespace"], subresource="status")

    @contextlib.asynccontextmanager
    async def kubelet(self, *, phase: str = "Running", ready: bool = True) -> AsyncIterator[None]:
        """A stand-in for the kubelets while the block runs: every pod that appears is reported once
        with ``phase``, ready or not, and an IP of 10.0.x.y."""
        informer = Informer(self.client, PODS)
        fresh: asyncio.Queue[Object] = asyncio.Queue()
        informer.on(add=fresh.put_nowait)

        async def report() -> None:
            count = 0
            while True:
                pod = await fresh.get()
                count += 1
                with contextlib.suppress(ApiError):  # a pod deleted meanwhile
                    await self.set_pod(pod, phase=phase, ready=ready, ip=f"10.0.{count // 250}.{count % 250 + 1}")

        tasks = [asyncio.create_task(informer.run()), asyncio.create_task(report())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def history(self, resource: ResourceRef) -> AsyncIterator[list[tuple[str, Object]]]:
        """Every change to ``resource`` while the block runs, in the API server's order: ("ADDED" |
        "MODIFIED" | "DELETED", the object then), for tests about the order things happened in."""
        seen: list[tuple[str, Object]] = []
        informer = Informer(self.client, resource)
        informer.on(
            add=lambda obj: seen.append(("ADDED", obj)),
            update=lambda _old, new: seen.append(("MODIFIED", new)),
            delete=lambda obj: seen.append(("DELETED", obj)),
        )
        task = asyncio.create_task(informer.run())
        try:
            async with asyncio.timeout(PATIENCE):
                await informer.synced.wait()
            yield seen
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # --- waiting ---------------------------------------------------------------------------------

    async def eventually(
        self, probe: Callable[[], Awaitable[T | None]], *, within: float = PATIENCE, what: str = ""
    ) -> T:
        """The first truthy answer of ``probe``, asked every few milliseconds until ``within``."""
        answer: T | None = None
        try:
            async with asyncio.timeout(within):
                while not (answer := await probe()):  # noqa: ASYNC110 - what the controllers wrote is read back
                    await asyncio.sleep(0.005)
        except TimeoutError:
            raise AssertionError(
                f"{what or 'condition'} not reached within {within}s; last answer {answer!r};"
                f" errors logged: {self.failures!r}"
            ) from None
        return answer


class _Errors(logging.Handler):
    """Collects what the components log as errors: a sync that raised anything but an API error, an
    informer handler or a background task that failed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


@contextlib.asynccontextmanager
async def running(
    server: ApiServer,
    *kinds: type[Controller],
    settings: ControllerManagerSettings | None = None,
) -> AsyncIterator[Harness]:
    """``kinds`` running against ``server`` until the block ends; informers synced before it starts."""
    front = TestServer(server.application())
    await front.start_server()
    client = Client(ClientConfig(server=str(front.make_url("")).rstrip("/"), token=""), user_agent="controller-test")
    recorder = EventRecorder(client, component="controller-manager")
    ctx = Context(client, recorder, settings or ControllerManagerSettings())
    errors = _Errors()
    harness = Harness(client, ctx, [kind(ctx) for kind in kinds], failures=errors.records)
    logging.getLogger("agents").addHandler(errors)
    tasks = [asyncio.create_task(i.run()) for i in ctx.informers.values()]
    tasks.append(asyncio.create_task(recorder.run()))
    try:
        async with asyncio.timeout(PATIENCE):
            await asyncio.gather(*(i.synced.wait() for i in ctx.informers.values()))
        tasks += [asyncio.create_task(c.run()) for c in harness.controllers]
        yield harness
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
        await front.close()
        logging.getLogger("agents").removeHandler(errors)
    assert not harness.failures, "the components logged errors:\n" + "\n".join(harness.failures)
