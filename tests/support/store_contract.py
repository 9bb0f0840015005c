"""The storage contract: one suite, run against the in-memory store and against real etcd."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from agents.apiserver.storage import Store, WatchEvent, prefix_end
from agents.apiserver.storage.errors import (
    CompactedError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    RevisionConflictError,
)


class StoreContract:
    """Subclasses provide a ``store`` fixture; every test works under its own key prefix."""

    @pytest.fixture
    def prefix(self) -> str:
        return f"/contract/{uuid.uuid4().hex[:8]}/"

    async def test_create_then_get_returns_value_and_revision(self, store: Store, prefix: str) -> None:
        rev = await store.create(prefix + "a", b"one")
        kv, current = await store.get(prefix + "a")
        assert kv is not None
        assert (kv.value, kv.mod_revision, kv.create_revision) == (b"one", rev, rev)
        assert current >= rev

    async def test_create_refuses_an_existing_key(self, store: Store, prefix: str) -> None:
        await store.create(prefix + "a", b"one")
        with pytest.raises(KeyExistsError):
            await store.create(prefix + "a", b"two")

    async def test_concurrent_creates_each_get_their_own_answer(self, store: Store, prefix: str) -> None:
        await store.create(prefix + "taken", b"first")
        names = [f"k{i}" for i in range(20)] + ["taken"]
        results = await asyncio.gather(*(store.create(prefix + n, n.encode()) for n in names), return_exceptions=True)
        assert isinstance(results[-1], KeyExistsError)
        assert all(isinstance(r, int) for r in results[:-1])
        listed = await store.range(prefix, prefix_end(prefix))
        assert {kv.key[len(prefix) :]: kv.value for kv in listed.kvs} == {
            **{n: n.encode() for n in names[:-1]},
            "taken": b"first",
        }

    async def test_update_succeeds_only_at_the_read_revision(self, store: Store, prefix: str) -> None:
        first = await store.create(prefix + "a", b"one")
        second = await store.update(prefix + "a", b"two", expected_revision=first)
        assert second > first
        with pytest.raises(RevisionConflictError) as caught:
            await store.update(prefix + "a", b"three", expected_revision=first)
        assert caught.value.actual == second
        kv, _ = await store.get(prefix + "a")
        assert kv is not None and kv.value == b"two" and kv.create_revision == first

    async def test_update_of_a_missing_key_is_not_found(self, store: Store, prefix: str) -> None:
        with pytest.raises(KeyNotFoundError):
            await store.update(prefix + "missing", b"x", expected_revision=5)

    async def test_delete_returns_the_last_value(self, store: Store, prefix: str) -> None:
        rev = await store.create(prefix + "a", b"one")
        with pytest.raises(RevisionConflictError):
            await store.delete(prefix + "a", expected_revision=rev + 1000)
        prev, deleted_at = await store.delete(prefix + "a", expected_revision=rev)
        assert prev.value == b"one" and deleted_at > rev
        assert (await store.get(prefix + "a"))[0] is None
        with pytest.raises(KeyNotFoundError):
            await store.delete(prefix + "a")

    async def test_range_pages_in_key_order_and_reads_old_revisions(self, store: Store, prefix: str) -> None:
        for name in ("c", "a", "b"):
            await store.create(prefix + name, name.encode())
        page = await store.range(prefix, prefix_end(prefix), limit=2)
        assert [kv.key for kv in page.kvs] == [prefix + "a", prefix + "b"]
        assert page.more and page.count == 3
        rest = await store.range(prefix + "b\0", prefix_end(prefix), revision=page.revision)
        assert [kv.key for kv in rest.kvs] == [prefix + "c"] and not rest.more
        await store.delete(prefix + "a")
        then = await store.range(prefix, prefix_end(prefix), revision=page.revision)
        now = await store.range(prefix, prefix_end(prefix))
        assert len(then.kvs) == 3 and len(now.kvs) == 2

    async def test_range_at_a_future_revision_fails(self, store: Store, prefix: str) -> None:
        current = await store.current_revision()
        with pytest.raises(FutureRevisionError):
            await store.range(prefix, prefix_end(prefix), revision=current + 1000)

    async def test_watch_replays_from_a_revision_then_streams_live(self, store: Store, prefix: str) -> None:
        start = await store.create(prefix + "a", b"one")
        await store.update(prefix + "a", b"two", expected_revision=start)
        seen: list[WatchEvent] = []

        async def collect() -> None:
            async for event in store.watch(prefix, start_revision=start):
                seen.append(event)
                if len(seen) == 4:
                    return

        task = asyncio.create_task(collect())
        await asyncio.sleep(0)  # let the watch register before the live writes
        await store.create(prefix + "b", b"bee")
        await store.delete(prefix + "a")
        await asyncio.wait_for(task, timeout=10)
        assert [(e.type, e.kv.key[len(prefix) :]) for e in seen] == [
            ("PUT", "a"),
            ("PUT", "a"),
            ("PUT", "b"),
            ("DELETE", "a"),
        ]
        assert seen[0].prev is None and seen[2].prev is None  # creations have no previous value
        assert seen[1].prev is not None and seen[1].prev.value == b"one"
        assert seen[3].prev is not None and seen[3].prev.value == b"two"
        assert [e.revision for e in seen] == sorted(e.revision for e in seen)

    async def test_compacted_revisions_cannot_be_read_or_watched(self, store: Store, prefix: str) -> None:
        old = await store.create(prefix + "a", b"one")
        newer = await store.update(prefix + "a", b"two", expected_revision=old)
        await store.compact(newer)
        with pytest.raises(CompactedError):
            await store.range(prefix, prefix_end(prefix), revision=old)
        with pytest.raises(CompactedError):
            async for _ in store.watch(prefix, start_revision=old):
                break
        kv, _ = await store.get(prefix + "a")
        assert kv is not None and kv.value == b"two"
