"""Group commit of etcd writes: batches form only under load, never mix two writes to one key, stay
bounded, and hand each submitter its own result."""

from __future__ import annotations

import asyncio

import pytest

from agents.apiserver.storage.errors import KeyExistsError, RevisionConflictError, StorageUnavailableError
from agents.apiserver.storage.etcd import GroupCommit, Write
from kubelab_testing.waiting import until

Results = list[int | BaseException]


class FakeEtcd:
    """A fake of etcd's transaction call: records every batch it is handed and holds it open until
    the test answers it (with per-write results, or by raising for the whole batch)."""

    def __init__(self, *, answer_at_once: bool = False) -> None:
        self.batches: list[list[Write]] = []
        self._answers: list[asyncio.Future[Results]] = []
        self.revision = 100
        self._at_once = answer_at_once

    async def commit(self, writes: list[Write]) -> Results:
        self.batches.append(list(writes))
        if self._at_once:
            await asyncio.sleep(0)  # a round trip: other submitters get to queue meanwhile
            self.revision += 1
            return [self.revision] * len(writes)
        answer: asyncio.Future[Results] = asyncio.get_running_loop().create_future()
        self._answers.append(answer)
        return await answer

    def batch_keys(self) -> list[list[str]]:
        return [[w.key for w in batch] for batch in self.batches]

    def succeed(self, index: int) -> int:
        """Commit batch ``index`` as one transaction: every write gets the same new revision."""
        self.revision += 1
        self._answers[index].set_result([self.revision] * len(self.batches[index]))
        return self.revision

    def answer(self, index: int, results: Results) -> None:
        self._answers[index].set_result(results)

    def fail(self, index: int, error: BaseException) -> None:
        self._answers[index].set_exception(error)


async def next_batch(etcd: FakeEtcd, index: int) -> list[str]:
    """Wait until the ``index``-th batch (from 0) has reached etcd; the keys it holds."""
    await until(lambda: len(etcd.batches) > index)
    return etcd.batch_keys()[index]


def write(key: str, value: bytes = b"v", expected: int = 0) -> Write:
    return Write(key, value, expected)


def submit_all(group: GroupCommit, *writes: Write) -> list[asyncio.Task[int]]:
    return [asyncio.create_task(group.submit(w)) for w in writes]


async def test_a_lone_write_goes_out_at_once_as_a_batch_of_one() -> None:
    etcd = FakeEtcd()
    group = GroupCommit(etcd.commit)
    (task,) = submit_all(group, write("/k/a", b"1", 7))
    await until(lambda: len(etcd.batches) == 1)
    assert etcd.batches == [[Write("/k/a", b"1", 7)]]
    revision = etcd.succeed(0)
    assert await task == revision == 101


async def test_writes_go_out_alone_while_fewer_than_in_flight_batches_are_outstanding() -> None:
    etcd = FakeEtcd()
    group = GroupCommit(etcd.commit, in_flight=2)
    tasks = submit_all(group, write("/k/a"))
    await until(lambda: len(etcd.batches) == 1)
    tasks += submit_all(group, write("/k/b"))
    await until(lambda: len(etcd.batches) == 2)
    assert etcd.batch_keys() == [["/k/a"], ["/k/b"]]
    etcd.succeed(0)
    etcd.succeed(1)
    assert await asyncio.gather(*tasks) == [101, 102]


async def test_writes_arriving_while_batches_are_in_flight_are_grouped_into_the_next_batch() -> None:
    etcd = FakeEtcd()
    group = GroupCommit(etcd.commit, in_flight=2)
    first = submit_all(group, write("/k/a"), write("/k/b"))
    await until(lambda: len(etcd.batches) == 2)
    waiting = submit_all(group, write("/k/c"), write("/k/d"), write("/k/e"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(etcd.batches) == 2  # nothing more leaves while both slots are taken
    etcd.succeed(0)
    await until(lambda: len(etcd.batches) == 3)
    assert etcd.batch_keys()[2] == ["/k/c", "/k/d", "/k/e"]
    grouped = etcd.succeed(2)
    etcd.succeed(1)
    assert await asyncio.gather(*waiting) == [grouped] * 3
    assert await asyncio.gather(*first) == [101, 103]


async def test_two_writes_to_one_key_never_share_a_batch_and_keep_their_order() -> None:
    etcd = FakeEtcd()
    group = GroupCommit(etcd.commit, in_flight=1)
    blocker = submit_all(group, write("/k/x"))
    await until(lambda: len(etcd.batches) == 1)
    queued = submit_all(
        group,
        write("/k/a", b"a1", 5),
        write("/k/b", b"b1", 5),
        write("/k/a", b"a2", 6),
        write("/k/c", b"c1", 5),
        write("/k/a", b"a3", 7),
    )
    await asyncio.sleep(0)
    etcd.succeed(0)
    await until(lambda: len(etcd.batches) == 2)
    assert [(w.key, w.value) for w in etcd.batches[1]] == [("/k/a", b"a1"), ("/k/b", b"b1"), ("/k/c", b"c1")]
    etcd.succeed(1)
    await until(lambda: len(etcd.batches) == 3)
    assert [(w.key, w.value) for w in etcd.batches[2]] == [("/k/a", b"a2")]
    etcd.succeed(2)
    await until(lambda: len(etcd.batches) == 4)
    assert [(w.key, w.value) for w in etcd.batches[3]] == [("/k/a", b"a3")]
    etcd.succeed(3)
    assert await asyncio.gather(*blocker, *queued) == [101, 102, 102, 103, 102, 104]


async def test_no_batch_holds_two_writes_to_one_key_under_load() -> None:
    etcd = FakeEtcd(answer_at_once=True)
    group = GroupCommit(etcd.commit, in_flight=2)
    keys = [f"/k/{i % 3}" for i in range(30)]
    tasks = submit_all(group, *(write(k, str(i).encode()) for i, k in enumerate(keys)))
    await asyncio.wait_for(asyncio.gather(*tasks), 2.0)
    assert len(etcd.batches) < 30  # batching did happen
    assert all(len(set(batch)) == len(batch) for batch in etcd.batch_keys())
    committed = [w.value for batch in etcd.batches for w in batch if w.key == "/k/0"]
    assert committed == [str(i).encode() for i in range(0, 30, 3)]  # one key's writes keep their order
    assert sum(len(b) for b in etcd.batches) == 30


async def test_max_batch_bounds_the_number_of_writes_in_a_batch() -> None:
    etcd = FakeEtcd()
    group = GroupCommit(etcd.commit, in_flight=1, max_batch=2)
    tasks = submit_all(group, *(write(f"/k/{i}") for i in range(6)))
    for index, expected in enumerate([["/k/0"], ["/k/1", "/k/2"], ["/k/3", "/k/4"], ["/k/5"]]):
        assert await next_batch(etcd, index) == expected
        etcd.succeed(index)
    assert await asyncio.gather(*tasks) == [101, 102, 102, 103, 103, 104]


async def test_max_bytes_bounds_the_size_of_a_batch_but_never_strands_a_large_write() -> None:
    etcd = FakeEtcd()
    group = GroupCommit(etcd.commit, in_flight=1, max_bytes=10)
    tasks = submit_all(
        group,
        write("/k/first", b"x"),
        write("/k/a", b"4444"),
        write("/k/b", b"4444"),
        write("/k/c", b"4444"),
        write("/k/huge", b"x" * 25),
        write("/k/d", b"1"),
    )
    expected = [["/k/first"], ["/k/a", "/k/b"], ["/k/c"], ["/k/huge"], ["/k/d"]]
    for index, keys in enumerate(expected):
        assert await next_batch(etcd, index) == keys
        assert sum(len(w.value) for w in etcd.batches[index]) <= 10 or len(etcd.batches[index]) == 1
        etcd.succeed(index)
    assert await asyncio.gather(*tasks) == [101, 102, 102, 103, 104, 105]


async def test_an_exception_raised_by_commit_fails_every_write_of_that_batch_only() -> None:
    etcd = FakeEtcd()
    group = GroupCommit(etcd.commit, in_flight=1)
    blocker = submit_all(group, write("/k/x"))
    await until(lambda: len(etcd.batches) == 1)
    doomed = submit_all(group, write("/k/a"), write("/k/b"), write("/k/c"))
    await asyncio.sleep(0)
    etcd.succeed(0)
    await until(lambda: len(etcd.batches) == 2)
    later = submit_all(group, write("/k/d"))
    await asyncio.sleep(0)
    error = StorageUnavailableError("etcd unavailable: connection reset")
    etcd.fail(1, error)
    outcomes = await asyncio.gather(*doomed, return_exceptions=True)
    assert outcomes == [error, error, error]
    await until(lambda: len(etcd.batches) == 3)  # the group goes on after a failed batch
    assert etcd.batch_keys()[2] == ["/k/d"]
    etcd.succeed(2)
    assert await asyncio.gather(*blocker, *later) == [101, 102]


async def test_per_write_exceptions_reach_only_their_own_submitter() -> None:
    etcd = FakeEtcd()
    group = GroupCommit(etcd.commit, in_flight=1)
    blocker = submit_all(group, write("/k/x"))
    await until(lambda: len(etcd.batches) == 1)
    tasks = submit_all(group, write("/k/a"), write("/k/b"), write("/k/c", expected=3))
    await asyncio.sleep(0)
    etcd.succeed(0)
    await until(lambda: len(etcd.batches) == 2)
    exists = KeyExistsError("/k/b")
    stale = RevisionConflictError("/k/c", 3, 9)
    etcd.answer(1, [42, exists, stale])
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert outcomes == [42, exists, stale]
    assert await blocker[0] == 101


async def test_a_submitter_that_gave_up_does_not_disturb_the_rest_of_its_batch() -> None:
    etcd = FakeEtcd()
    group = GroupCommit(etcd.commit, in_flight=1)
    blocker = submit_all(group, write("/k/x"))
    await until(lambda: len(etcd.batches) == 1)
    impatient, patient = submit_all(group, write("/k/a"), write("/k/b"))
    await asyncio.sleep(0)
    impatient.cancel()
    etcd.succeed(0)
    await until(lambda: len(etcd.batches) == 2)
    assert etcd.batch_keys()[1] == ["/k/a", "/k/b"]  # a write handed over cannot be taken back
    etcd.succeed(1)
    assert await patient == 102
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert await blocker[0] == 101
