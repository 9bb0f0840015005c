"""A kubelet given any pod the API accepts keeps running and says what is wrong with the pod.

Hypothesis writes pod specs over what the kubelet reads (images and pull policies, commands, working
directories, environment from values, fields, ConfigMaps and Secrets that exist or not, volumes of
every kind the API knows, mounts, limits down to one byte, ports, probes of every handler with named
ports that exist or not, restart policies, grace periods) and sends each to the local driver's node
(``spec.nodeName``, past the scheduler). Each pod must come to a reported state within a deadline:
every container running, terminated, or waiting with a reason, and a Warning event on the pod for
every container that waits on a problem (a volume that cannot be set up leaves its container
``ContainerCreating``, as kube's does, with a ``FailedMount`` event). Afterwards the kubelet is the
same process, its log holds no traceback (nothing the kubelet did not expect), every fuzzed pod is
gone once deleted, and a pod that ran beside them all is untouched: same container, no restart, Ready.

Bounded: ``FUZZ_EXAMPLES`` pods, derandomized (the same specs each run, so CI is repeatable; set
``KUBELAB_FUZZ_SEED`` for others), about two minutes on this machine kind.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from provisioner.system import processes
from provisioner.system.processes import ProcessRecord
from tests.integration.conftest import running_lab
from tests.support.podspecs import pod_specs

FUZZ_EXAMPLES = int(os.environ.get("KUBELAB_FUZZ_EXAMPLES", "80"))
SETTLE_SECONDS = 45.0
PROBLEMS = {
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "CrashLoopBackOff",
    "RunContainerError",
}


@pytest.fixture(scope="module")
def node_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("fuzz-home"), "fuzz", "--nodes", "1") as lab:
        yield lab


@pytest.fixture(scope="module")
def k(node_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(node_lab.kubeconfig, cache_dir=tmp_path_factory.mktemp("fuzz-kubectl"))


@pytest.fixture(scope="module")
def node(k: Kubectl) -> str:
    def ready() -> str:
        for found in k.json("get", "nodes")["items"]:
            conditions = found["status"].get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                return str(found["metadata"]["name"])
        return ""

    return str(eventually(ready, timeout=60, what="the lab's node Ready"))


@pytest.fixture(scope="module")
def ns(k: Kubectl) -> str:
    name = f"fz-{uuid.uuid4().hex[:6]}"
    k.ok("create", "namespace", name)
    k.ok("create", "configmap", "present", "-n", name, "--from-literal=color=blue", "--from-literal=size=3")
    k.ok("create", "secret", "generic", "present", "-n", name, "--from-literal=token=s3cret")
    return name


@pytest.fixture(scope="module")
def host_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where hostPath volumes point: an existing directory and file, and names that do not exist."""
    made = tmp_path_factory.mktemp("fuzz-hostpath")
    (made / "dir").mkdir()
    (made / "file").write_text("on the host\n")
    return made


def kubelet_process(lab: Lab) -> ProcessRecord:
    record = ProcessRecord.load(lab.root / "run", "kubelet")
    assert record is not None, "the node lab recorded no kubelet"
    return record


# --- the test ------------------------------------------------------------------------------------


def settled(k: Kubectl, ns: str, name: str, containers: list[str]) -> dict[str, Any] | None:
    """The pod once every container has a reported state, and every problem an event; else None."""
    pod = k.json("get", "pod", name, "-n", ns)
    statuses = {s["name"]: s for s in (pod.get("status") or {}).get("containerStatuses") or []}
    if set(containers) - set(statuses):
        return None
    waiting = [(s.get("state") or {}).get("waiting") for s in statuses.values()]
    reasons = {w.get("reason", "") for w in waiting if w is not None}
    if "" in reasons:
        return None
    if reasons & (PROBLEMS | {"ContainerCreating"}):
        events = k.json("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}")["items"]
        warnings = {e.get("reason") for e in events if e.get("type") == "Warning"}
        if not warnings or (
            "ContainerCreating" in reasons and not warnings & {"FailedMount", "FailedCreatePodSandBox"}
        ):
            return None  # still creating, or a problem not told yet
    return dict(pod)


def test_any_pod_the_api_accepts_is_reported_and_leaves_the_kubelet_and_its_other_pods_alone(
    node_lab: Lab, k: Kubectl, node: str, ns: str, host_dir: Path
) -> None:
    canary = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "canary"},
        "spec": {"nodeName": node, "containers": [{"name": "web", "image": "echo:1.0"}]},
    }
    k.ok("apply", "-n", ns, "-f", "-", stdin=manifest(canary))
    eventually(
        lambda: (k.json("get", "pod", "canary", "-n", ns).get("status") or {}).get("phase") == "Running",
        timeout=90,
        what="the canary Running",
    )
    before = k.json("get", "pod", "canary", "-n", ns)["status"]["containerStatuses"][0]
    kubelet = kubelet_process(node_lab)
    log = node_lab.root / "logs" / "kubelet.log"
    log_start = log.stat().st_size
    fuzzed: list[str] = []
    accepted: list[str] = []
    refusals: dict[str, int] = {}
    outcomes: dict[str, int] = {}

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        derandomize="KUBELAB_FUZZ_SEED" not in os.environ,
        suppress_health_check=list(HealthCheck),
    )
    @seed(int(os.environ.get("KUBELAB_FUZZ_SEED", "0")))
    @given(spec=pod_specs(host_dir))
    def one_pod(spec: dict[str, Any]) -> None:
        name = f"p{len(fuzzed)}"
        fuzzed.append(name)
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "fuzz"}}}
        body["spec"] = {"nodeName": node, **spec}
        created = k("create", "-n", ns, "-f", "-", stdin=json.dumps(body))
        if not created.ok:  # the API refused it: not a pod the kubelet is given
            why = created.err.strip().splitlines()[-1:] or ["?"]
            refusals[why[0][:100]] = refusals.get(why[0][:100], 0) + 1
            return
        accepted.append(name)
        containers = [c["name"] for c in spec["containers"]]
        try:
            reported = eventually(
                lambda: settled(k, ns, name, containers),
                timeout=SETTLE_SECONDS,
                what=f"pod {name} reported ({json.dumps(spec)[:2000]})",
            )
        finally:
            k("delete", "pod", name, "-n", ns, "--wait=false")
        for status in reported["status"]["containerStatuses"]:
            state: dict[str, Any] = next(iter(status["state"].values()), {})
            reason = f"{next(iter(status['state']), '?')}:{state.get('reason', '')}"
            outcomes[reason] = outcomes.get(reason, 0) + 1
        assert processes.alive(kubelet), f"the kubelet died on pod {name}: {json.dumps(spec)}"

    began = time.monotonic()
    one_pod()
    print(f"{len(accepted)} of {len(fuzzed)} fuzzed pods accepted by the API, {time.monotonic() - began:.0f} s")
    print(f"container states reported: {json.dumps(outcomes, sort_keys=True)}")
    print(f"refused by the API: {json.dumps(refusals, sort_keys=True)[:3000]}")
    assert accepted, "the API accepted none of the fuzzed pods"
    eventually(
        lambda: not [p for p in k.json("get", "pods", "-n", ns, "-l", "app=fuzz")["items"]],
        timeout=120,
        what="every fuzzed pod gone once deleted",
    )
    assert processes.alive(kubelet)
    after = k.json("get", "pod", "canary", "-n", ns)["status"]["containerStatuses"][0]
    assert (after["containerID"], after["restartCount"], after["ready"]) == (before["containerID"], 0, True)
    with log.open("rb") as handle:
        handle.seek(log_start)
        tail = handle.read().decode(errors="replace")
    assert "Traceback" not in tail, tail[tail.index("Traceback") - 500 :][:4000]
