"""The fault drills (`make drills`): the e2e tier's lab (1 master, 2 workers, made with `kubelab up`
for the session and removed after), broken on purpose by ``tests/drills/test_faults.py``."""

from __future__ import annotations

from tests.e2e.conftest import kubelab_lab

__all__ = ["kubelab_lab"]
