"""The storage interface: a revisioned key-value store with transactions and watches.

Every write returns the store's new revision, which is also the key's ``mod_revision``; the API
server uses it as the object's resourceVersion. Create succeeds only if the key is absent, update
and delete only if the key's ``mod_revision`` is the one the caller read (optimistic concurrency).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    # read with another encryption key or provider than the one that writes now (storage/encryption.py):
    # an update writes it again even when the object did not change
    stale: bool = False


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One change. For a DELETE, ``kv.mod_revision`` is the deletion's revision and ``prev`` the
    last value the key had."""

    type: Literal["PUT", "DELETE"]
    kv: KeyValue
    prev: KeyValue | None

    @property
    def revision(self) -> int:
        return self.kv.mod_revision


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int  # the store revision the read was served at
    more: bool  # more keys in range after the last one returned
    count: int  # keys in the whole range at that revision


def prefix_end(prefix: str) -> str:
    """The smallest key greater than every key with ``prefix`` (prefixes are ASCII)."""
    raw = prefix.encode()
    for i in range(len(raw) - 1, -1, -1):
        if raw[i] < 0xFF:
            return (raw[:i] + bytes([raw[i] + 1])).decode()
    return "\0"


class Store(Protocol):
    async def start(self) -> None:
        """Connect; raise StorageUnavailableError when the store cannot be reached."""

    async def close(self) -> None: ...

    async def get(self, key: str) -> tuple[KeyValue | None, int]:
        """The key's current value (or None) and the store revision the read saw."""

    async def range(
        self,
        start: str,
        end: str,
        *,
        revision: int = 0,
        limit: int = 0,
    ) -> RangeResult:
        """Keys in [start, end) in key order, at ``revision`` (0 = current).

        Raises CompactedError or FutureRevisionError for a revision the store cannot serve.
        """

    async def create(self, key: str, value: bytes) -> int:
        """Write a new key; KeyExistsError if it exists. Returns the new revision."""

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        """Replace the key if its mod_revision is ``expected_revision``.

        Raises KeyNotFoundError, or RevisionConflictError carrying the revision found.
        """

    async def delete(self, key: str, *, expected_revision: int = 0) -> tuple[KeyValue, int]:
        """Delete the key (only at ``expected_revision`` when non-zero).

        Returns the deleted value and the deletion's revision.
        """

    def watch(self, prefix: str, *, start_revision: int) -> AsyncIterator[WatchEvent]:
        """Every change under ``prefix`` from ``start_revision`` on, in revision order.

        Raises CompactedError if ``start_revision`` is compacted, StorageUnavailableError when the
        stream breaks.
        """

    async def current_revision(self) -> int: ...

    async def compact(self, revision: int) -> None:
        """Discard history before ``revision``."""
