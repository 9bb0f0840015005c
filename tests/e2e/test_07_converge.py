"""Scenario 7: `kubelab up` again on a running lab converges without changing anything."""

from __future__ import annotations

import json

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab


def test_up_again_changes_nothing(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    before = {p["metadata"]["uid"] for p in kubelab_kubectl.json("get", "pods", "-A")["items"]}
    again = kubelab_lab.cli("up", "--name", kubelab_lab.name)
    assert again.ok, again.out + again.err
    assert "playbooks: changed 0" in again.out, again.out
    phases = json.loads((kubelab_lab.root / "run" / "up-phases.json").read_text())
    assert phases["created"] == [] and phases["image_cached"]
    assert {p["metadata"]["uid"] for p in kubelab_kubectl.json("get", "pods", "-A")["items"]} == before
