"""The long e2e tier (`make e2e-long`): scenarios too long for `make test`'s budget, on a VM lab of
their own (1 master, 2 workers) made with `kubelab up` and removed with `kubelab down`, as the e2e
tier does. `--kubelab-name NAME` runs them against a lab that is up instead."""

from __future__ import annotations

import pytest

from kubelab_testing.lab import up_flags
from kubelab_testing.plugin import NewLab


@pytest.fixture(scope="session")
def kubelab_new_lab() -> NewLab:
    return NewLab("e2e-long", up_flags("libvirt", "--workers", "2"))
