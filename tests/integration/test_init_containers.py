"""Init containers, sidecars and lifecycle hooks on a local lab's real node, seen through the real
kubectl: init containers run in order before the app container (``Init:0/2`` and on, then Running),
a failing one fails a pod whose restartPolicy is Never, a sidecar runs beside the app container, a
postStart hook runs before the container counts as started, and a preStop hook delays the stop."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.waiting import eventually

SCRATCH = {"name": "work", "emptyDir": {}}
MOUNT = [{"name": "work", "mountPath": "/work"}]


@pytest.fixture
def ns(node_kubectl: Kubectl) -> Iterator[str]:
    name = f"init-{uuid.uuid4().hex[:6]}"
    node_kubectl.ok("create", "namespace", name)
    yield name
    node_kubectl("delete", "namespace", name, "--wait=false")


def shell(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], "volumeMounts": MOUNT, **extra}


def create(k: Kubectl, ns: str, name: str, spec: dict[str, Any]) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": spec}
    k.ok("apply", "-f", "-", stdin=manifest(pod))


def column(k: Kubectl, ns: str, name: str) -> str:
    """kubectl's STATUS column for the pod (kubectl computes it from the statuses)."""
    return k.ok("get", "pod", name, "-n", ns, "--no-headers").split()[2]


def condition(pod: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in pod["status"]["conditions"] if c["type"] == kind)


def test_init_containers_run_in_order_before_the_app_container(node_kubectl: Kubectl, ns: str) -> None:
    k = node_kubectl
    spec = {
        "volumes": [SCRATCH],
        "initContainers": [
            shell("first", "echo first >> /work/log; sleep 2"),
            shell("second", "echo second >> /work/log; sleep 2"),
        ],
        "containers": [shell("main", "cat /work/log; sleep 3600")],
    }
    create(k, ns, "ordered", spec)
    seen: list[str] = []

    def running() -> bool:
        status = column(k, ns, "ordered")
        if not seen or seen[-1] != status:
            seen.append(status)
        return status == "Running"

    eventually(running, timeout=120, interval=0.3, what="the pod Running after its init containers")
    assert seen[-1] == "Running" and any(s.startswith("Init:") for s in seen), seen
    assert set(seen) <= {"Pending", "Init:0/2", "Init:1/2", "PodInitializing", "ContainerCreating", "Running"}, seen
    assert k.ok("logs", "ordered", "-n", ns, "-c", "main").split() == ["first", "second"]
    pod = k.json("get", "pod", "ordered", "-n", ns)
    assert condition(pod, "Initialized")["status"] == "True"
    inits = pod["status"]["initContainerStatuses"]
    assert [s["name"] for s in inits] == ["first", "second"]
    assert all(s["state"]["terminated"]["reason"] == "Completed" and s["ready"] for s in inits)


def test_a_failing_init_container_fails_a_pod_that_never_restarts(node_kubectl: Kubectl, ns: str) -> None:
    k = node_kubectl
    spec = {
        "restartPolicy": "Never",
        "volumes": [SCRATCH],
        "initContainers": [shell("broken", "exit 3"), shell("later", "true")],
        "containers": [shell("main", "sleep 3600")],
    }
    create(k, ns, "doomed", spec)
    pod = eventually(
        lambda: (p := k.json("get", "pod", "doomed", "-n", ns))["status"].get("phase") == "Failed" and p,
        timeout=120,
        what="the pod Failed",
    )
    initialized = condition(pod, "Initialized")
    assert (initialized["status"], initialized["reason"]) == ("False", "ContainersNotInitialized")
    assert initialized["message"] == "containers with incomplete status: [broken later]"
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
    assert pod["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert column(k, ns, "doomed") == "Init:Error"


def test_a_sidecar_runs_beside_the_app_container(node_kubectl: Kubectl, ns: str) -> None:
    k = node_kubectl
    beat = "while true; do date >> /work/beat; sleep 1; done"
    watch = (
        "sleep 1; a=$(wc -l < /work/beat); sleep 3; b=$(wc -l < /work/beat); [ $b -gt $a ] && echo growing; sleep 3600"
    )
    spec = {
        "volumes": [SCRATCH],
        "initContainers": [shell("beat", beat, restartPolicy="Always")],
        "containers": [shell("main", watch)],
    }
    create(k, ns, "sidecar", spec)
    eventually(lambda: "growing" in k("logs", "sidecar", "-n", ns, "-c", "main").out, timeout=120, what="the beat seen")
    pod = eventually(
        lambda: condition(p := k.json("get", "pod", "sidecar", "-n", ns), "Ready")["status"] == "True" and p,
        timeout=60,
        what="the pod Ready",
    )
    assert pod["status"]["phase"] == "Running" and condition(pod, "Initialized")["status"] == "True"
    [side] = pod["status"]["initContainerStatuses"]
    assert "running" in side["state"] and side["started"] and side["ready"]


def test_hooks_run_after_the_start_and_before_the_stop(node_kubectl: Kubectl, ns: str) -> None:
    k = node_kubectl
    script = "trap 'exit 0' TERM; while [ ! -f /tmp/started ]; do sleep 1; done; echo saw-post-start; sleep 3600 & wait"
    main = shell(
        "main",
        script,
        lifecycle={
            "postStart": {"exec": {"command": ["sh", "-c", "touch /tmp/started"]}},
            "preStop": {"sleep": {"seconds": 3}},
        },
    )
    create(k, ns, "hooked", {"terminationGracePeriodSeconds": 20, "volumes": [SCRATCH], "containers": [main]})
    eventually(lambda: "saw-post-start" in k("logs", "hooked", "-n", ns).out, timeout=120, what="postStart seen")
    began = time.monotonic()
    k.ok("delete", "pod", "hooked", "-n", ns, timeout=60)
    took = time.monotonic() - began
    assert 3 <= took < 15, took  # the preStop sleep, then a SIGTERM the shell obeys at once
