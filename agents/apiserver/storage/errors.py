"""The errors of the storage interface, raised at the etcd boundary and by the in-memory store.

Each says whether retrying can help (``StorageUnavailableError`` is a ``TemporaryError``) and, when
it comes from etcd or gRPC, carries the library's error as its cause. The API server turns them
into HTTP Status answers; nothing outside the API server sees them.
"""

from __future__ import annotations

from agents.machinery.errors import KubelabError, TemporaryError


class StorageError(KubelabError):
    """A storage operation failed."""


class StorageUnavailableError(StorageError, TemporaryError):
    """The store could not be reached or timed out."""


class KeyExistsError(StorageError):
    """Create found the key already present."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key} already exists")
        self.key = key


class KeyNotFoundError(StorageError):
    """The key does not exist."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key} not found")
        self.key = key


class RevisionConflictError(StorageError):
    """The key's mod_revision is not the one the caller expected."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"key {key}: expected revision {expected}, found {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual


class CompactedError(StorageError):
    """The requested revision was compacted away."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"revision {requested} is compacted (compacted up to {compacted})")
        self.requested = requested
        self.compacted = compacted


class FutureRevisionError(StorageError):
    """The requested revision is newer than the store's current revision."""

    def __init__(self, requested: int, current: int) -> None:
        super().__init__(f"revision {requested} is newer than the current revision {current}")
        self.requested = requested
        self.current = current
