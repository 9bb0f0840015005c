"""The storage contract against a real etcd (Debian's etcd-server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agents.apiserver.storage.etcd import EtcdStore
from provisioner.drivers.local.components import Etcd
from tests.support.store_contract import StoreContract


class TestEtcdStore(StoreContract):
    @pytest.fixture
    async def store(self, etcd: Etcd) -> AsyncIterator[EtcdStore]:
        store = EtcdStore([etcd.endpoint])
        await store.start()
        yield store
        await store.close()
