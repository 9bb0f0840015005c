"""The store on a real etcd (v3 API) through aetcd, over TLS with a client certificate (https://
endpoints, as the labs run etcd) or plaintext (http://).

aetcd's high-level helpers do not expose read revisions, limits or transaction results in the
form needed here, so reads and transactions go through its gRPC stubs; watches use its watcher.
Every gRPC and aetcd failure is turned into one of our storage errors, with the original chained.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aetcd
import grpc
from aetcd import exceptions as aetcd_errors
from aetcd import rpc
from aetcd import watcher as aetcd_watcher

from agents.apiserver.storage.base import KeyValue, RangeResult, WatchEvent, prefix_end
from agents.apiserver.storage.errors import (
    CompactedError,
    FutureRevisionError,
    KeyExistsError,
    KeyNotFoundError,
    RevisionConflictError,
    StorageError,
    StorageUnavailableError,
)

log = logging.getLogger(__name__)

_UNAVAILABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


def _translate(exc: BaseException, *, revision: int = 0) -> StorageError:
    if isinstance(exc, grpc.aio.AioRpcError):
        details = exc.details() or ""
        if exc.code() in _UNAVAILABLE:
            return StorageUnavailableError(f"etcd unavailable: {details}")
        if "compacted" in details:
            return CompactedError(revision, 0)
        if "future revision" in details:
            return FutureRevisionError(revision, 0)
        return StorageError(f"etcd: {exc.code().name}: {details}")
    if isinstance(exc, aetcd_errors.RevisionCompactedError):
        return CompactedError(revision, int(exc.compacted_revision))
    if isinstance(exc, aetcd_errors.ConnectionFailedError | aetcd_errors.ConnectionTimeoutError):
        return StorageUnavailableError(f"etcd unavailable: {exc}")
    return StorageError(f"etcd: {exc}")


def _kv(raw: Any) -> KeyValue:
    return KeyValue(raw.key.decode(), raw.value, raw.create_revision, raw.mod_revision)


@dataclass(frozen=True, slots=True)
class Write:
    """A put of ``value`` at ``key`` if the key's mod_revision is ``expected`` (0: if it is absent)."""

    key: str
    value: bytes
    expected: int


class GroupCommit:
    """Hands writes that arrive while others are in flight to ``commit`` together.

    Nothing waits to fill a batch: a write goes out at once when fewer than ``in_flight`` batches
    are outstanding; otherwise it joins the next batch. Under load this turns many etcd round trips
    (and raft entries) into few; alone, a write travels as it would without it. A batch never holds
    two writes to one key: the second waits for the next batch, so its compare sees the first.
    """

    def __init__(
        self,
        commit: Callable[[list[Write]], Awaitable[list[int | BaseException]]],
        *,
        in_flight: int = 2,
        max_batch: int = 64,
        max_bytes: int = 1 << 20,
    ) -> None:
        self._commit = commit
        self._waiting: list[tuple[Write, asyncio.Future[int]]] = []
        self._outstanding = 0
        self._in_flight = in_flight
        self._max_batch = max_batch
        self._max_bytes = max_bytes

    async def submit(self, write: Write) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.append((write, future))
        self._pump()
        return await future

    def _pump(self) -> None:
        while self._waiting and self._outstanding < self._in_flight:
            batch: list[tuple[Write, asyncio.Future[int]]] = []
            later: list[tuple[Write, asyncio.Future[int]]] = []
            keys: set[str] = set()
            size = 0
            while self._waiting and len(batch) < self._max_batch:
                item = self._waiting[0]
                if batch and size + len(item[0].value) > self._max_bytes:
                    break
                self._waiting.pop(0)
                if item[0].key in keys:
                    later.append(item)
                    continue
                keys.add(item[0].key)
                batch.append(item)
                size += len(item[0].value)
            self._waiting[:0] = later
            self._outstanding += 1
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[Write, asyncio.Future[int]]]) -> None:
        try:
            results = await self._commit([write for write, _ in batch])
        except BaseException as exc:  # the batch as a whole failed: every write in it did
            results = [exc] * len(batch)
        finally:
            self._outstanding -= 1
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        self._pump()


def parse_endpoint(endpoint: str) -> tuple[str, str, int]:
    """``https://10.0.0.1:2379``, ``http://127.0.0.1:2379`` or ``127.0.0.1:2379`` -> (scheme, host, port)."""
    parts = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"unsupported etcd endpoint {endpoint!r}: expected https://HOST:PORT or http://HOST:PORT")
    return parts.scheme, parts.hostname, parts.port or 2379


@dataclass(frozen=True)
class EtcdTls:
    """What an https:// endpoint needs: the CA that signed etcd's certificate, and the client
    certificate etcd asks for (etcd with ``client-cert-auth`` refuses a client without one)."""

    ca: bytes
    cert: bytes | None = None
    key: bytes | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


class _TlsClient(aetcd.Client):  # type: ignore[misc]
    """aetcd's client on a TLS channel: aetcd 1.0 opens only plaintext channels, so this ``connect``
    opens a secure one and sets up the same stubs and watcher on it (the store never authenticates
    with a user name, the part of aetcd's ``connect`` left out). Nothing in it awaits, so concurrent
    callers cannot interleave."""

    def __init__(self, *, tls: EtcdTls, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tls = tls

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        target = f"{self._host}:{self._port}"
        self.channel = rpc.secure_channel(target, self._tls.credentials(), options=self._options.items())
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = aetcd_watcher.Watcher(
            rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
        )
        self._connected.set()


class EtcdStore:
    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        timeout: float = 10.0,
        batch_writes: bool = True,
        tls: EtcdTls | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        scheme, self._host, self._port = parse_endpoint(endpoints[0])
        if scheme == "https" and tls is None:
            raise ValueError(f"etcd endpoint {endpoints[0]}: https:// needs etcd's CA (etcd-cafile)")
        self._tls = tls if scheme == "https" else None
        self._timeout = timeout
        self._client: aetcd.Client | None = None
        self._batching = batch_writes
        self._writes = GroupCommit(self._commit_many)

    @property
    def _kv_stub(self) -> Any:
        if self._client is None or self._client.kvstub is None:
            raise StorageUnavailableError("etcd store is not started")
        return self._client.kvstub

    async def start(self) -> None:
        if self._tls is not None:
            self._client = _TlsClient(host=self._host, port=self._port, timeout=int(self._timeout), tls=self._tls)
        else:
            self._client = aetcd.Client(host=self._host, port=self._port, timeout=int(self._timeout))
        try:
            await self._client.connect()
        except Exception as exc:
            raise _translate(exc) from exc
        await self.current_revision()

    async def close(self) -> None:
        if self._client is not None:
            try:
                await self._client.close()
            except Exception as exc:  # closing must not raise over the caller's own error
                log.debug("closing etcd client: %s", exc)
            self._client = None

    async def _call(self, method: str, request: Any, *, revision: int = 0) -> Any:
        try:
            return await getattr(self._kv_stub, method)(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, revision=revision) from exc

    # --- reads -----------------------------------------------------------------------------------

    async def get(self, key: str) -> tuple[KeyValue | None, int]:
        response = await self._call("Range", rpc.RangeRequest(key=key.encode()))
        kv = _kv(response.kvs[0]) if response.kvs else None
        return kv, int(response.header.revision)

    async def range(self, start: str, end: str, *, revision: int = 0, limit: int = 0) -> RangeResult:
        request = rpc.RangeRequest(key=start.encode(), range_end=end.encode(), revision=revision, limit=limit)
        response = await self._call("Range", request, revision=revision)
        return RangeResult(
            kvs=[_kv(raw) for raw in response.kvs],
            revision=revision or int(response.header.revision),
            more=bool(response.more),
            count=int(response.count),
        )

    async def current_revision(self) -> int:
        response = await self._call("Range", rpc.RangeRequest(key=b"\0", limit=1, keys_only=True))
        return int(response.header.revision)

    # --- writes ----------------------------------------------------------------------------------

    @staticmethod
    def _mod_equals(key: bytes, revision: int) -> Any:
        return rpc.Compare(key=key, target=rpc.Compare.MOD, result=rpc.Compare.EQUAL, mod_revision=revision)

    @staticmethod
    def _read_op(key: bytes) -> Any:
        return rpc.RequestOp(request_range=rpc.RangeRequest(key=key))

    async def create(self, key: str, value: bytes) -> int:
        write = Write(key, value, 0)
        return await (self._writes.submit(write) if self._batching else self._commit_one(write))

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        write = Write(key, value, expected_revision)
        return await (self._writes.submit(write) if self._batching else self._commit_one(write))

    @staticmethod
    def _put(write: Write) -> Any:
        return rpc.RequestOp(request_put=rpc.PutRequest(key=write.key.encode(), value=write.value))

    async def _commit_one(self, write: Write) -> int:
        raw = write.key.encode()
        request = rpc.TxnRequest(
            compare=[self._mod_equals(raw, write.expected)],
            success=[self._put(write)],
            failure=[self._read_op(raw)] if write.expected else [],
        )
        response = await self._call("Txn", request)
        if not response.succeeded:
            if not write.expected:
                raise KeyExistsError(write.key)
            raise self._conflict(write.key, write.expected, response)
        return int(response.header.revision)

    async def _commit_many(self, writes: list[Write]) -> list[int | BaseException]:
        """One transaction for several writes, each still guarded by its own compare. If any compare
        fails nothing is written, and each write is retried on its own to learn which one lost."""
        if len(writes) == 1:
            try:
                return [await self._commit_one(writes[0])]
            except StorageError as exc:
                return [exc]
        request = rpc.TxnRequest(
            compare=[self._mod_equals(w.key.encode(), w.expected) for w in writes],
            success=[self._put(w) for w in writes],
        )
        try:
            response = await self._call("Txn", request)
        except StorageError as exc:
            return [exc] * len(writes)
        if response.succeeded:
            return [int(response.header.revision)] * len(writes)
        return list(await asyncio.gather(*(self._commit_one(w) for w in writes), return_exceptions=True))

    def _conflict(self, key: str, expected: int, response: Any) -> StorageError:
        found = response.responses[0].response_range.kvs if response.responses else []
        if not found:
            return KeyNotFoundError(key)
        return RevisionConflictError(key, expected, int(found[0].mod_revision))

    async def delete(self, key: str, *, expected_revision: int = 0) -> tuple[KeyValue, int]:
        raw = key.encode()
        op = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=raw, prev_kv=True))
        if expected_revision:
            request = rpc.TxnRequest(
                compare=[self._mod_equals(raw, expected_revision)], success=[op], failure=[self._read_op(raw)]
            )
        else:
            request = rpc.TxnRequest(compare=[], success=[op])
        response = await self._call("Txn", request)
        if not response.succeeded:
            raise self._conflict(key, expected_revision, response)
        deleted = response.responses[0].response_delete_range
        if not deleted.prev_kvs:
            raise KeyNotFoundError(key)
        return _kv(deleted.prev_kvs[0]), int(response.header.revision)

    async def compact(self, revision: int) -> None:
        try:
            await self._kv_stub.Compact(rpc.CompactionRequest(revision=revision), timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            if "compacted" in (exc.details() or ""):
                return  # already compacted at or past this revision
            raise _translate(exc, revision=revision) from exc

    # --- watch -----------------------------------------------------------------------------------

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncIterator[WatchEvent]:
        if self._client is None:
            raise StorageUnavailableError("etcd store is not started")
        raw = prefix.encode()
        try:
            stream = await self._client.watch(
                raw,
                range_end=prefix_end(prefix).encode(),
                start_revision=start_revision or None,
                prev_kv=True,
            )
        except Exception as exc:
            raise _translate(exc, revision=start_revision) from exc
        try:
            async for event in stream:
                kv = event.kv
                # aetcd hands over an empty KeyValue, not None, when there was no previous value
                raw_prev = event.prev_kv
                prev = (
                    KeyValue(raw_prev.key.decode(), raw_prev.value, raw_prev.create_revision, raw_prev.mod_revision)
                    if raw_prev is not None and raw_prev.mod_revision > 0
                    else None
                )
                current = KeyValue(kv.key.decode(), kv.value, kv.create_revision, kv.mod_revision)
                yield WatchEvent("DELETE" if event.kind == "DELETE" else "PUT", current, prev)
        except StorageError:
            raise
        except Exception as exc:
            raise _translate(exc, revision=start_revision) from exc
        finally:
            try:
                await stream.cancel()
            except Exception as exc:  # the stream may already be gone with the connection
                log.debug("cancelling etcd watch: %s", exc)
        raise StorageUnavailableError("etcd watch stream ended")
