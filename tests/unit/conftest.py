"""Unit-tier fixtures: the schema definitions, and an API server on the in-memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agents.apiserver import schemas
from agents.apiserver.resources import Catalog
from agents.apiserver.server import ApiServer
from agents.apiserver.settings import ApiServerSettings, WatchCacheSettings


@pytest.fixture(scope="session")
def schema_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("schemas")


@pytest.fixture(scope="session")
def definitions(schema_cache: Path) -> dict[str, Any]:
    return schemas.load(Catalog().models(), schema_cache)


@pytest.fixture
async def server(schema_cache: Path) -> AsyncIterator[ApiServer]:
    """An API server on the in-memory store (no etcd), with a small watch window."""
    settings = ApiServerSettings(
        storage_backend="memory",
        schema_cache_dir=schema_cache,
        watch=WatchCacheSettings(cache_size=50, bookmark_interval=0.2),
    )
    api = ApiServer(settings)
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def http(server: ApiServer) -> AsyncIterator[TestClient[Any, Any]]:
    client = TestClient(TestServer(server.application()))
    await client.start_server()
    yield client
    await client.close()
