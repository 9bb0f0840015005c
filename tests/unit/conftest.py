"""Unit-tier fixtures: the schema definitions, an API server on the in-memory store, and a small HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(0.4)
        self.send_response(500 if self.path == "/fail" else 200)
        self.end_headers()
        self.wfile.write(b"pod echo\n")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def echo_port() -> Iterator[int]:
    """The port of an HTTP server on 127.0.0.1 that answers 200 ``pod echo``, 500 at ``/fail``, and
    200 after 0.4 s at ``/slow``."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()
