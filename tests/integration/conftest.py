"""A local-driver lab for the whole integration session, created and removed through the real CLI."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.system import packages as host
from tests.support.components import free_port, require
from tests.support.kubectl import Kubectl, kubelab, require_kubectl


@dataclass(frozen=True)
class Lab:
    name: str
    home: Path
    api_port: int
    registry_port: int

    @property
    def root(self) -> Path:
        return self.home / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"


@contextmanager
def running_lab(home: Path, name: str, *flags: str) -> Iterator[Lab]:
    """``kubelab up`` on free ports (plus ``flags``), then ``kubelab down`` whatever happens."""
    require(host.ETCD, host.REGISTRY, host.SKOPEO)
    require_kubectl()
    api_port, registry_port = free_port(), free_port()
    ports = [
        *("--api-port", str(api_port), "--etcd-port", str(free_port())),
        *("--etcd-peer-port", str(free_port()), "--registry-port", str(registry_port)),
    ]
    if "--nodes" not in flags:
        flags = ("--nodes", "0", *flags)  # the control plane alone unless a test asks for a real node
    result = kubelab("up", "--driver", "local", "--name", name, *ports, *flags, home=home)
    try:
        assert result.ok, f"kubelab up failed:\n{result.out}\n{result.err}"
        yield Lab(name, home, api_port, registry_port)
    finally:
        down = kubelab("down", "--name", name, home=home)
        assert down.ok, down.err


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The control plane without nodes: the API server's behaviour on its own."""
    with running_lab(tmp_path_factory.mktemp("kubelab-home"), "itest") as running:
        yield running


@pytest.fixture(scope="session")
def kubectl(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(lab.kubeconfig, tmp_path_factory.mktemp("kubectl-cache"))


@pytest.fixture
def namespace(kubectl: Kubectl) -> str:
    """A fresh namespace per test, so tests do not see each other's objects."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    kubectl.ok("apply", "-f", "-", stdin=f'{{"apiVersion":"v1","kind":"Namespace","metadata":{{"name":"{name}"}}}}')
    return name


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the test item, so fixtures can tell a failed test."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
