"""The e2e tier: one VM lab (1 master, 2 workers) for the whole session, made with `kubelab up` in a
KUBELAB_HOME of its own and removed with `kubelab down`; the scenarios run in file order against it
through the kubelab pytest plugin's fixtures (kubelab_lab, kubelab_kubectl, ...). `--kubelab-name NAME`
runs them against a lab that is up instead."""

from __future__ import annotations

import pytest

from kubelab_testing.lab import up_flags
from kubelab_testing.plugin import NewLab


@pytest.fixture(scope="session")
def kubelab_new_lab() -> NewLab:
    return NewLab("e2e", up_flags("libvirt", "--workers", "2"))
