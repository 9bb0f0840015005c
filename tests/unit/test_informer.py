"""Informers against a real API server on the in-memory store: list then watch, a cache and indexes
that follow the API, handlers told of each change, and watches that resume or relist."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from agents.apiserver.server import ApiServer
from agents.machinery.client import Client, ClientConfig
from agents.machinery.informer import Informer
from agents.machinery.objects import Object, labels_of, name_of
from agents.machinery.resources import CONFIGMAPS, ResourceRef
from kubelab_testing.waiting import until


class RecordingClient(Client):
    """The real client, over plain HTTP without a token, that records the lists and watches it makes.

    Two knobs for the resume tests: ``watch_seconds`` asks the server to end each watch after that
    many seconds (the informer itself always asks for the default), and ``hold_rewatch`` keeps every
    watch after the first from starting until the test sets it.
    """

    def __init__(self, server: str, *, watch_seconds: int = 300) -> None:
        super().__init__(ClientConfig(server=server, token=""), user_agent="informer-test")
        self.list_versions: list[str] = []  # the resourceVersion each list answered with
        self.watch_versions: list[str] = []  # the resourceVersion each watch started from
        self.last_seen: list[str] = []  # per watch, the resourceVersion of the last event it delivered
        self.watch_seconds = watch_seconds
        self.hold_rewatch: asyncio.Event | None = None
        self.rewatch_requested = asyncio.Event()

    async def list(
        self,
        res: ResourceRef,
        namespace: str = "",
        *,
        label_selector: str = "",
        field_selector: str = "",
        page: int = 500,
    ) -> tuple[list[Object], str]:
        items, version = await super().list(
            res, namespace, label_selector=label_selector, field_selector=field_selector, page=page
        )
        self.list_versions.append(version)
        return items, version

    async def watch(
        self,
        res: ResourceRef,
        namespace: str = "",
        *,
        resource_version: str,
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int = 300,
    ) -> AsyncIterator[tuple[str, Object]]:
        self.watch_versions.append(resource_version)
        self.last_seen.append(resource_version)
        if len(self.watch_versions) > 1 and self.hold_rewatch is not None:
            self.rewatch_requested.set()
            await self.hold_rewatch.wait()
        async for kind, obj in super().watch(
            res,
            namespace,
            resource_version=resource_version,
            label_selector=label_selector,
            field_selector=field_selector,
            timeout_seconds=self.watch_seconds,
        ):
            self.last_seen[-1] = (obj.get("metadata") or {}).get("resourceVersion") or self.last_seen[-1]
            yield kind, obj


class Changes:
    """Handlers that write down what an informer told them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Any]] = []  # (change, name, detail)

    def added(self, obj: Object) -> None:
        self.seen.append(("add", name_of(obj), obj))

    def updated(self, old: Object, new: Object) -> None:
        self.seen.append(("update", name_of(new), (old, new)))

    def deleted(self, obj: Object) -> None:
        self.seen.append(("delete", name_of(obj), obj))

    def attach(self, informer: Informer) -> Changes:
        informer.on(add=self.added, update=self.updated, delete=self.deleted)
        return self

    def summary(self) -> list[tuple[str, str]]:
        return [(change, name) for change, name, _ in self.seen]


@pytest.fixture
async def api_url(server: ApiServer) -> AsyncIterator[str]:
    test_server = TestServer(server.application())
    await test_server.start_server()
    yield str(test_server.make_url("")).rstrip("/")
    await test_server.close()


@pytest.fixture
async def client(api_url: str) -> AsyncIterator[RecordingClient]:
    api = RecordingClient(api_url)
    yield api
    await api.close()


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[Informer]:
    task = asyncio.create_task(informer.run())
    try:
        await asyncio.wait_for(informer.synced.wait(), 3.0)
        yield informer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def configmap(name: str, namespace: str = "default", labels: dict[str, str] | None = None, **data: str) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "data": data,
    }


def rv(obj: Object) -> str:
    return str(obj["metadata"]["resourceVersion"])


def names(objs: list[Object]) -> list[str]:
    return sorted(name_of(o) for o in objs)


async def test_the_informer_lists_then_watches_from_the_lists_resource_version(client: RecordingClient) -> None:
    await client.create(CONFIGMAPS, configmap("elsewhere", namespace="kube-system"))
    await client.create(CONFIGMAPS, configmap("a"))
    b = await client.create(CONFIGMAPS, configmap("b"))
    informer = Informer(client, CONFIGMAPS, namespace="default")
    synced_when_added: dict[str, bool] = {}

    def added(obj: Object) -> None:
        synced_when_added[name_of(obj)] = informer.synced.is_set()

    informer.on(add=added)
    async with running(informer):
        assert sorted(informer.store) == ["default/a", "default/b"]
        await until(lambda: len(client.watch_versions) == 1)
        assert client.watch_versions == [rv(b)]  # the list's revision: the last write before it
        await client.create(CONFIGMAPS, configmap("c"))
        await until(lambda: informer.get("default/c") is not None)
    assert len(client.list_versions) == 1
    assert synced_when_added == {"a": False, "b": False, "c": True}  # synced is set once the list is in


async def test_get_items_and_by_index_follow_creates_updates_and_deletes(client: RecordingClient) -> None:
    informer = Informer(client, CONFIGMAPS, namespace="default")
    informer.add_index("by-app", lambda obj: [labels_of(obj)["app"]] if "app" in labels_of(obj) else [])
    async with running(informer):
        assert informer.items() == []
        x = await client.create(CONFIGMAPS, configmap("x", labels={"app": "web"}, v="1"))
        await client.create(CONFIGMAPS, configmap("y", labels={"app": "db"}))
        await until(lambda: len(informer.items()) == 2)
        cached = informer.get("default/x")
        assert cached is not None and rv(cached) == rv(x) and cached["data"] == {"v": "1"}
        assert names(informer.by_index("by-app", "web")) == ["x"]
        assert names(informer.by_index("by-app", "db")) == ["y"]

        moved = await client.patch(CONFIGMAPS, "x", {"metadata": {"labels": {"app": "db"}}}, "default")
        await until(lambda: rv(informer.get("default/x") or x) == rv(moved))
        assert informer.by_index("by-app", "web") == []
        assert names(informer.by_index("by-app", "db")) == ["x", "y"]

        await client.delete(CONFIGMAPS, "y", "default")
        await until(lambda: informer.get("default/y") is None)
        assert names(informer.items()) == ["x"]
        assert names(informer.by_index("by-app", "db")) == ["x"]
        assert informer.by_index("by-app", "nothing") == []


async def test_an_index_added_to_a_filled_informer_covers_what_it_already_holds(client: RecordingClient) -> None:
    await client.create(CONFIGMAPS, configmap("p", labels={"tier": "front"}))
    await client.create(CONFIGMAPS, configmap("q", labels={"tier": "back"}))
    informer = Informer(client, CONFIGMAPS, namespace="default")
    async with running(informer):
        informer.add_index("by-tier", lambda obj: [labels_of(obj).get("tier", "")])
        assert names(informer.by_index("by-tier", "front")) == ["p"]
        assert names(informer.by_index("by-tier", "back")) == ["q"]


async def test_handlers_hear_adds_updates_and_deletes_with_the_right_objects(client: RecordingClient) -> None:
    informer = Informer(client, CONFIGMAPS, namespace="default")
    changes = Changes().attach(informer)
    newest: list[tuple[str, str]] = []
    informer.on_any(lambda obj: newest.append((name_of(obj), obj["data"]["v"])))
    async with running(informer):
        created = await client.create(CONFIGMAPS, configmap("z", v="1"))
        created["data"]["v"] = "2"
        updated = await client.update(CONFIGMAPS, created)
        await client.delete(CONFIGMAPS, "z", "default")
        await until(lambda: len(changes.seen) == 3)

    assert changes.summary() == [("add", "z"), ("update", "z"), ("delete", "z")]
    added = changes.seen[0][2]
    assert (added["apiVersion"], added["kind"]) == ("v1", "ConfigMap")
    assert added["data"] == {"v": "1"} and rv(added) == rv(created)
    old, new = changes.seen[1][2]
    assert (old["data"], rv(old)) == ({"v": "1"}, rv(created))
    assert (new["data"], rv(new)) == ({"v": "2"}, rv(updated))
    deleted = changes.seen[2][2]
    assert deleted["data"] == {"v": "2"}  # the last state the object had
    assert newest == [("z", "1"), ("z", "2"), ("z", "2")]


async def test_a_failing_handler_does_not_keep_the_others_from_hearing(client: RecordingClient) -> None:
    informer = Informer(client, CONFIGMAPS, namespace="default")

    def broken(obj: Object) -> None:
        raise RuntimeError("handler bug")

    informer.on(add=broken)
    changes = Changes().attach(informer)
    async with running(informer):
        await client.create(CONFIGMAPS, configmap("h"))
        await until(lambda: changes.summary() == [("add", "h")])
        assert informer.get("default/h") is not None


async def test_an_object_leaving_a_label_selection_is_deleted_from_the_informer(client: RecordingClient) -> None:
    informer = Informer(client, CONFIGMAPS, namespace="default", label_selector="app=web")
    changes = Changes().attach(informer)
    async with running(informer):
        await client.create(CONFIGMAPS, configmap("other", labels={"app": "db"}))
        await client.create(CONFIGMAPS, configmap("w", labels={"app": "web"}))
        await until(lambda: informer.get("default/w") is not None)
        await client.patch(CONFIGMAPS, "w", {"metadata": {"labels": {"app": "db"}}}, "default")
        await until(lambda: informer.get("default/w") is None)
    assert changes.summary() == [("add", "w"), ("delete", "w")]
    assert labels_of(changes.seen[1][2]) == {"app": "web"}  # the last state that matched


async def test_a_watch_the_server_ends_is_resumed_from_the_last_resource_version(api_url: str) -> None:
    client = RecordingClient(api_url, watch_seconds=1)
    try:
        informer = Informer(client, CONFIGMAPS, namespace="default")
        changes = Changes().attach(informer)
        async with running(informer):
            await client.create(CONFIGMAPS, configmap("before"))
            await until(lambda: informer.get("default/before") is not None)
            await until(lambda: len(client.watch_versions) == 2)  # the server ended the first watch
            await client.create(CONFIGMAPS, configmap("after"))
            await until(lambda: informer.get("default/after") is not None)
    finally:
        await client.close()
    assert len(client.list_versions) == 1  # resumed, not relisted
    assert client.watch_versions[1] == client.last_seen[0]
    assert changes.summary() == [("add", "before"), ("add", "after")]


async def test_a_resume_too_old_for_the_watch_cache_relists_and_reports_the_difference(
    server: ApiServer, api_url: str
) -> None:
    client = RecordingClient(api_url, watch_seconds=1)
    client.hold_rewatch = asyncio.Event()
    try:
        await client.create(CONFIGMAPS, configmap("keep", v="1"))
        changed = await client.create(CONFIGMAPS, configmap("change", v="1"))
        await client.create(CONFIGMAPS, configmap("gone", v="1"))
        informer = Informer(client, CONFIGMAPS, namespace="default")
        changes = Changes().attach(informer)
        async with running(informer):
            baseline = len(changes.seen)
            await asyncio.wait_for(client.rewatch_requested.wait(), 3.0)  # the first watch ended
            changed["data"]["v"] = "2"
            await client.update(CONFIGMAPS, changed)
            await client.delete(CONFIGMAPS, "gone", "default")
            await client.create(CONFIGMAPS, configmap("new", v="1"))
            for i in range(60):  # push the informer's revision out of the cache's 50-event window
                await client.create(CONFIGMAPS, configmap(f"filler-{i}", namespace="kube-system"))
            await until(lambda: server.cache.window_start > int(client.watch_versions[-1]) + 1)
            client.hold_rewatch.set()
            await until(lambda: len(client.list_versions) == 2 and informer.get("default/new") is not None)
            await until(lambda: len(client.watch_versions) == 3)
    finally:
        await client.close()
    assert baseline == 3
    assert sorted(informer.store) == ["default/change", "default/keep", "default/new"]
    assert sorted(changes.summary()[baseline:]) == [("add", "new"), ("delete", "gone"), ("update", "change")]
    update = next(detail for change, _, detail in changes.seen[baseline:] if change == "update")
    assert (update[0]["data"], update[1]["data"]) == ({"v": "1"}, {"v": "2"})
    assert client.watch_versions[2] == client.list_versions[1]  # after the relist, watch from its revision
