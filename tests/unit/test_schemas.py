"""The API schema table: derived where the kubernetes package is (the host), and where it is not (a
node, whose venv holds only the agents' locked packages) read from the table the host shipped.

The node's side is played here by making ``kubernetes`` unimportable in this process, and the host's
shipping by copying the directory the session's table was derived into, as the playbooks copy the
code bundle's ``schemas/`` into the API server's cache directory.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from agents.apiserver import schemas
from agents.apiserver.resources import Catalog
from agents.apiserver.server import ApiServer
from agents.apiserver.settings import ApiServerSettings

CM = "/api/v1/namespaces/default/configmaps"


@pytest.fixture
def without_kubernetes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kubernetes package is absent, as on a node: it cannot be imported, and its metadata (the
    version) cannot be read either."""
    loaded = [name for name in sys.modules if name == "kubernetes" or name.startswith("kubernetes.")]
    for name in {"kubernetes", "kubernetes.client", *loaded}:
        monkeypatch.setitem(sys.modules, name, None)
    real_version = importlib.metadata.version

    def version(name: str) -> str:
        if name == "kubernetes":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    with pytest.raises(ImportError):
        importlib.import_module("kubernetes.client")
    assert importlib.util.find_spec("kubernetes") is None


@pytest.fixture
def shipped(definitions: dict[str, Any], schema_cache: Path, tmp_path: Path) -> Path:
    """The API server's cache directory on a node, holding what the host derived (table and stamp)."""
    node_cache = tmp_path / "var-cache-kubelab-apiserver"
    shutil.copytree(schema_cache, node_cache)
    return node_cache


@pytest.fixture
async def node_server(shipped: Path, without_kubernetes: None) -> AsyncIterator[ApiServer]:
    api = ApiServer(ApiServerSettings(storage_backend="memory", schema_cache_dir=shipped))
    await api.start()
    yield api
    await api.stop()


def test_deriving_a_table_stamps_the_kubernetes_version_it_came_from(
    definitions: dict[str, Any], schema_cache: Path
) -> None:
    version = importlib.metadata.version("kubernetes")
    assert schemas.models_version() == version
    assert (schema_cache / schemas.STAMP).read_text() == f"{version}\n"
    tables = sorted(p.name for p in schema_cache.glob("schemas-*.json"))
    assert len(tables) == 1 and tables[0].startswith(f"schemas-k8s{version}-f{schemas.FORMAT_VERSION}-")


async def test_the_api_server_serves_the_shipped_table_without_the_kubernetes_package(
    node_server: ApiServer, definitions: dict[str, Any]
) -> None:
    assert node_server.definitions == definitions
    client = TestClient(TestServer(node_server.application()))
    await client.start_server()
    try:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "n"}, "colour": "red"}
        strict = await client.post(f"{CM}?fieldValidation=Strict", json=body)
        assert strict.status == 400 and 'unknown field "colour"' in (await strict.json())["message"]
        document = await (await client.get("/openapi/v3/api/v1")).json()
        assert "v1.PodSpec" in document["components"]["schemas"]
    finally:
        await client.close()


def test_without_the_package_and_without_a_stamp_the_error_says_where_the_table_comes_from(
    tmp_path: Path, without_kubernetes: None
) -> None:
    advice = r"cannot be imported here.*the host ships one.*no readable kubernetes-version stamp"
    with pytest.raises(schemas.SchemaTableError, match=advice):
        schemas.load(Catalog().models(), tmp_path)
    with pytest.raises(schemas.SchemaTableError, match="no schema cache directory"):
        schemas.load(Catalog().models(), None)


def test_a_stamp_naming_a_version_without_its_table_is_an_error_naming_the_file(
    shipped: Path, without_kubernetes: None
) -> None:
    (shipped / schemas.STAMP).write_text("36.1.0\n")
    named = rf"kubernetes 36\.1\.0 .*schemas-k8s36\.1\.0-f{schemas.FORMAT_VERSION}-"
    with pytest.raises(schemas.SchemaTableError, match=named):
        schemas.load(Catalog().models(), shipped)


def test_a_shipped_table_for_other_models_is_not_served(shipped: Path, without_kubernetes: None) -> None:
    with pytest.raises(schemas.SchemaTableError, match="no readable table of these models"):
        schemas.load(["V1ConfigMap"], shipped)
