"""``kubectl debug`` with ephemeral containers on a real node: the container kubectl adds runs in the
pod (its network, and with ``--target`` the target's processes), its status is reported in
ephemeralContainerStatuses and its log read with ``kubectl logs -c``; an invalid one is refused 422."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from kubelab_testing.kubectl import Kubectl, running_pod
from kubelab_testing.waiting import eventually


@pytest.fixture(scope="module")
def target(node_kubectl: Kubectl) -> Iterator[tuple[str, str]]:
    with running_pod(
        node_kubectl, "app", {"name": "main", "image": "busybox", "command": ["sleep", "3600"]}, prefix="debug"
    ) as ns:
        yield ns, "app"


def ephemeral_status(k: Kubectl, ns: str, name: str, container: str) -> dict[str, Any]:
    statuses = k.json("get", "pod", name, "-n", ns)["status"].get("ephemeralContainerStatuses") or []
    return next((s for s in statuses if s["name"] == container), {})


def test_kubectl_debug_runs_a_container_beside_the_target(node_kubectl: Kubectl, target: tuple[str, str]) -> None:
    k = node_kubectl
    ns, name = target
    script = "echo debugging $(hostname); ps; exit 3"
    out = k.ok("debug", "-n", ns, name, "--image=busybox", "--target=main", "--container=dbg", "--", "sh", "-c", script)
    assert 'Targeting container "main"' in out
    eventually(
        lambda: "terminated" in ephemeral_status(k, ns, name, "dbg").get("state", {}),
        timeout=180,
        what="the ephemeral container to run and end",
    )
    ended = ephemeral_status(k, ns, name, "dbg")["state"]["terminated"]
    assert ended["exitCode"] == 3 and ended["reason"] == "Error"
    log = k.ok("logs", "-n", ns, name, "-c", "dbg")
    assert f"debugging {name}" in log  # the pod's own hostname
    assert "sleep 3600" in log  # the target's process, seen through its PID namespace
    pod = k.json("get", "pod", name, "-n", ns)
    assert pod["status"]["phase"] == "Running" and pod["status"]["containerStatuses"][0]["restartCount"] == 0
    spec = pod["spec"]["ephemeralContainers"][0]
    assert spec["name"] == "dbg" and spec["targetContainerName"] == "main"


def test_an_invalid_ephemeral_container_is_refused(node_kubectl: Kubectl, target: tuple[str, str]) -> None:
    ns, name = target
    patch = {
        "spec": {
            "ephemeralContainers": [
                {"name": "bad", "image": "busybox", "ports": [{"containerPort": 80}], "targetContainerName": "nope"}
            ]
        }
    }
    refused = node_kubectl("patch", "pod", name, "-n", ns, "--subresource=ephemeralcontainers", "-p", json.dumps(patch))
    assert not refused.ok and f'The Pod "{name}" is invalid' in refused.err  # kube's 422 as kubectl prints it
    index = len(node_kubectl.json("get", "pod", name, "-n", ns)["spec"].get("ephemeralContainers") or [])
    here = f"spec.ephemeralContainers[{index}]"  # the new one comes after those the pod has
    assert f"{here}.ports: Forbidden: cannot be set for an Ephemeral Container" in refused.err
    assert f'{here}.targetContainerName: Not found: "nope"' in refused.err
    raw = node_kubectl("get", "--raw", f"/api/v1/namespaces/{ns}/pods/{name}/ephemeralcontainers")
    assert raw.ok and "bad" not in json.dumps(json.loads(raw.out)["spec"].get("ephemeralContainers") or [])
