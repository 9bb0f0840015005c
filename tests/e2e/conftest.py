"""The e2e tier: one VM lab (1 master, 2 workers) for the whole session, made with `kubelab up` and
removed with `kubelab down`; the scenarios run in file order against it through the kubelab pytest
plugin's fixtures (kubelab_lab, kubectl, node_ssh)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kubelab_testing.plugin import Lab, created_lab
from tests.support.components import free_port

LAB = "e2e"


@pytest.fixture(scope="session")
def kubelab_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    if request.config.getoption("--kubelab-name"):  # pointed at an existing lab: use it as it is
        home = request.config.getoption("--kubelab-home")
        yield Lab(request.config.getoption("--kubelab-name"), Path(home) if home else Path.home() / ".kubelab")
        return
    flags = ["--workers", "2", "--api-port", str(free_port()), "--registry-port", str(free_port())]
    with created_lab(LAB, flags) as lab:  # in a KUBELAB_HOME of its own, removed afterwards
        yield lab
