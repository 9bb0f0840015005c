"""Starting real components for tests: free ports, etcd in a temporary directory."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from provisioner import components, host, procs
from provisioner.errors import HostError
from provisioner.labpaths import LabPaths


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require(*requirements: host.Requirement) -> None:
    """Install what is missing; outside CI a host that cannot install it skips the test."""
    try:
        host.ensure(requirements, say=lambda _msg: None)
    except HostError as exc:
        if in_ci():
            pytest.fail(f"CI=true and a component is missing: {exc}")
        pytest.skip(str(exc))


@contextmanager
def running_etcd(root: Path) -> Iterator[components.Etcd]:
    require(host.ETCD)
    paths = LabPaths(root)
    etcd = components.Etcd(paths, "test", client_port=free_port(), peer_port=free_port())
    etcd.configure()
    record = components.start(etcd, paths, timeout=30)
    try:
        yield etcd
    finally:
        procs.stop(record)
