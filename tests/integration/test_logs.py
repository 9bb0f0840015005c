"""kubectl logs through the API server to the kubelet of a lab's real node: whole logs, --tail, -f
to the end, -c, --previous, and kube's messages when a log cannot be had."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from provisioner import host
from tests.integration.conftest import running_lab
from tests.support.components import require
from tests.support.kubectl import Kubectl, eventually, manifest


@pytest.fixture(scope="module")
def k(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    require(host.CONTAINERD, host.RUNC, host.CNI_BRIDGE, host.NFT)
    with running_lab(tmp_path_factory.mktemp("logs-home"), "logs", "--nodes", "1") as lab:
        yield Kubectl(lab.kubeconfig, tmp_path_factory.mktemp("logs-kubectl"))


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": list(containers), **spec},
    }


def counting(name: str, lines: int, pause: float = 0) -> dict[str, Any]:
    script = f"for i in $(seq {lines}); do echo {name} $i; sleep {pause}; done"
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script]}


def phase(k: Kubectl, name: str) -> str:
    return str(k.json("get", "pod", name)["status"].get("phase", ""))


def test_logs_of_a_finished_pod_whole_and_tailed(k: Kubectl) -> None:
    k.ok("apply", "-f", "-", stdin=manifest(pod("count", counting("count", 5), restartPolicy="Never")))
    eventually(lambda: phase(k, "count") == "Succeeded", timeout=60, what="the pod to finish")
    assert k.ok("logs", "count").splitlines() == [f"count {i}" for i in range(1, 6)]
    assert k.ok("logs", "count", "--tail=2").splitlines() == ["count 4", "count 5"]


def test_follow_streams_until_the_container_ends(k: Kubectl) -> None:
    k.ok("apply", "-f", "-", stdin=manifest(pod("slow", counting("slow", 4, pause=0.5), restartPolicy="Never")))
    eventually(lambda: phase(k, "slow") in ("Running", "Succeeded"), timeout=60, what="the pod to run")
    followed = subprocess.run(
        ["kubectl", f"--kubeconfig={k.kubeconfig}", "logs", "-f", "slow"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.splitlines() == [f"slow {i}" for i in range(1, 5)]


def test_a_pod_of_two_containers_is_asked_for_one_of_them(k: Kubectl) -> None:
    two = pod("two", counting("a", 1), counting("b", 1), restartPolicy="Never")
    k.ok("apply", "-f", "-", stdin=manifest(two))
    eventually(lambda: phase(k, "two") == "Succeeded", timeout=60, what="the pod to finish")
    defaulted = k("logs", "two")  # kubectl itself picks the first container and says so
    assert defaulted.ok and defaulted.out.strip() == "a 1" and 'Defaulted container "a"' in defaulted.err
    assert k.ok("logs", "two", "-c", "b").strip() == "b 1"
    refused = k("get", "--raw", "/api/v1/namespaces/default/pods/two/log")  # the API asked without a container
    assert not refused.ok and "a container name must be specified for pod two, choose one of: [a b]" in refused.err


def test_previous_shows_the_run_before_a_restart(k: Kubectl) -> None:
    crash = {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo run $(cat /proc/uptime); exit 1"]}
    k.ok("apply", "-f", "-", stdin=manifest(pod("again", crash)))
    eventually(
        lambda: k.json("get", "pod", "again")["status"].get("containerStatuses", [{}])[0].get("restartCount", 0) >= 1,
        timeout=60,
        what="a restart",
    )
    previous, current = k.ok("logs", "again", "--previous"), k.ok("logs", "again")
    assert previous.startswith("run ") and current.startswith("run ") and previous != current


def test_a_pod_without_a_node_has_no_logs_yet(k: Kubectl) -> None:
    stuck = pod("stuck", counting("main", 1), nodeSelector={"no-such": "label"})
    k.ok("apply", "-f", "-", stdin=manifest(stuck))
    refused = k("logs", "stuck")
    assert not refused.ok and "pod stuck does not have a host assigned" in refused.err
