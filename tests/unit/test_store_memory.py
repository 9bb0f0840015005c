"""The storage contract against the in-memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agents.apiserver.storage.memory import MemoryStore
from tests.support.store_contract import StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[MemoryStore]:
        store = MemoryStore()
        await store.start()
        yield store
        await store.close()
