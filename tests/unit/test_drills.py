"""The drills' manifests: the zero-loss rollout drill's pods drain as users make them, and the API
accepts them as written."""

from __future__ import annotations

from typing import Any

import yaml

from agents.apiserver.kinds.podspec import validate_pod_spec
from kubelab_testing import drills


def pod_spec(text: str) -> dict[str, Any]:
    deployment, service = yaml.safe_load_all(text)
    assert service["kind"] == "Service" and service["spec"]["type"] == "NodePort"
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def test_the_drained_drill_s_pods_sleep_in_a_pre_stop_hook_inside_a_longer_grace_period() -> None:
    spec = pod_spec(drills.drill_manifest(drills.DRAINED, pre_stop=True))
    [container] = spec["containers"]
    assert container["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", str(drills.PRE_STOP_SECONDS)]}}}
    assert drills.PRE_STOP_SECONDS < drills.GRACE_SECONDS == spec["terminationGracePeriodSeconds"]
    assert container["readinessProbe"]["httpGet"]["port"] == 8080  # new pods take traffic once they answer
    assert validate_pod_spec("spec", spec) == []


def test_the_fault_drills_pods_have_no_hook() -> None:
    spec = pod_spec(drills.drill_manifest())
    [container] = spec["containers"]
    assert "lifecycle" not in container and "terminationGracePeriodSeconds" not in spec


def test_containers_count_as_kept_unless_one_of_a_live_pod_is_gone_or_a_new_process() -> None:
    before = {"u1_web_0": "101", "u2_web_0": "102"}
    assert drills.containers_kept(before, {"u1_web_0": "101", "u2_web_0": "102", "u3_web_0": "9"}, {"u1", "u2"})
    # u2's pod was deleted by the rollout meanwhile: its container may go
    assert drills.containers_kept(before, {"u1_web_0": "101"}, {"u1", "u3"})
    assert not drills.containers_kept(before, {"u1_web_0": "101"}, {"u1", "u2"})  # lost while its pod lives
    assert not drills.containers_kept(before, {"u1_web_0": "555", "u2_web_0": "102"}, {"u1", "u2"})  # restarted
