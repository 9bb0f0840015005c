"""A local-driver lab for the whole integration session, created and removed through the real CLI."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab, created_lab, up_flags
from provisioner.drivers.libvirt import daemon
from provisioner.drivers.libvirt.driver import HOST_NEEDS
from provisioner.system import packages
from tests.support.components import require, require_kubectl

CLI_TIMEOUT = 180.0  # one kubelab command on a local lab


@pytest.fixture(scope="module")
def libvirt_uri() -> Iterator[str]:
    """A libvirt to define domains in: the one labs use, started (in kubelab's namespace) if none runs,
    and stopped again afterwards only if this module started it."""
    require(*HOST_NEEDS)
    before = daemon.current()
    running = daemon.ensure(say=lambda _m: None)
    yield running.uri
    if before is None:
        daemon.release(still_used=False, say=lambda _m: None)


@contextmanager
def running_lab(home: Path, name: str, *flags: str) -> Iterator[Lab]:
    """``kubelab up`` on free ports (plus ``flags``; the control plane alone unless they give ``--nodes``),
    then ``kubelab down`` whatever happens."""
    require(packages.ETCD, packages.REGISTRY, packages.SKOPEO)
    require_kubectl()
    with created_lab(name, up_flags("local", *flags), home=home, timeout=CLI_TIMEOUT) as lab:
        yield lab


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The control plane without nodes: the API server's behaviour on its own."""
    with running_lab(tmp_path_factory.mktemp("kubelab-home"), "itest") as running:
        yield running


@pytest.fixture(scope="session")
def kubectl(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(lab.kubeconfig, cache_dir=tmp_path_factory.mktemp("kubectl-cache"))


@pytest.fixture(scope="session")
def node_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab with one real node (containerd, CNI, nftables) and the default add-ons, for the modules that
    run pods and leave the lab as they found it (each works in namespaces of its own)."""
    require(packages.CONTAINERD, packages.RUNC, packages.CNI_BRIDGE, packages.NFT)
    with running_lab(tmp_path_factory.mktemp("node-home"), "inode", "--nodes", "1") as running:
        yield running


@pytest.fixture(scope="session")
def node_kubectl(node_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(node_lab.kubeconfig, cache_dir=tmp_path_factory.mktemp("node-kubectl"))


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
