"""Fixtures shared by every tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.drivers.local import components
from tests.support.components import running_etcd


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[components.Etcd]:
    """A real etcd (Debian's etcd-server) on free ports, for the whole session."""
    root: Path = tmp_path_factory.mktemp("etcd")
    with running_etcd(root) as server:
        yield server
