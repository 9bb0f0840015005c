"""The scheduler and the controllers on a lab of three simulated nodes, driven by the real kubectl.

The lab's node grace period is short (6 s) and pods tolerate a lost node for 3 s, so that node
failures play out within a test; everything else runs as ``./kubelab up --simulated-nodes 3`` starts it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kubelab_testing.commands import stop
from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab, free_port
from kubelab_testing.waiting import answers, eventually
from provisioner.project import ROOT
from tests.integration.conftest import running_lab

GRACE = 6  # --node-grace-period of the lab
EVICTION = 3  # --eviction-seconds: how long pods tolerate a not-ready or unreachable node
MONITOR_PERIOD = 5  # the node lifecycle controller's check interval
NODES = ("sim-1", "sim-2", "sim-3")

Event = tuple[str, dict[str, Any]]


@pytest.fixture(scope="module")
def sim_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    flags = ["--simulated-nodes", "3", "--node-grace-period", str(GRACE), "--eviction-seconds", str(EVICTION)]
    with running_lab(tmp_path_factory.mktemp("kubelab-sim"), "simtest", *flags) as running:
        yield running


@pytest.fixture(scope="module")
def kubectl(sim_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    kc = Kubectl(sim_lab.kubeconfig, cache_dir=tmp_path_factory.mktemp("kubectl-sim-cache"))
    eventually(lambda: ready_nodes(kc) == set(NODES), timeout=30, what="three Ready simulated nodes")
    return kc


@pytest.fixture
def ns(kubectl: Kubectl) -> str:
    name = f"c-{uuid.uuid4().hex[:8]}"
    kubectl.ok("create", "namespace", name)
    return name


# --- helpers -------------------------------------------------------------------------------------


def ready_nodes(kubectl: Kubectl) -> set[str]:
    nodes = kubectl.json("get", "nodes")["items"]
    return {n["metadata"]["name"] for n in nodes if condition(n, "Ready") == "True"}


def condition(obj: dict[str, Any], kind: str) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return str(c.get("status"))
    return None


def container(image: str = "busybox:1.36", **resources: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": "main", "image": image, "command": ["sleep", "infinity"]}
    if resources:
        out["resources"] = {"requests": resources}
    return out


def deployment(name: str, replicas: int, *, image: str = "busybox:1.36", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container(image)]}},
            **spec,
        },
    }


def pods(kubectl: Kubectl, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    args = ["get", "pods", "-n", namespace] + (["-l", selector] if selector else [])
    items: list[dict[str, Any]] = kubectl.json(*args)["items"]
    return items


def running(kubectl: Kubectl, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    """The pods that run and are ready, not being deleted."""
    return [
        p
        for p in pods(kubectl, namespace, selector)
        if p["status"].get("phase") == "Running"
        and condition(p, "Ready") == "True"
        and not p["metadata"].get("deletionTimestamp")
    ]


def events_for(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    items = kubectl.json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]
    return list(items)


def live_state(events: list[Event]) -> dict[str, dict[str, Any]]:
    """The objects as the watch has seen them so far, by name."""
    state: dict[str, dict[str, Any]] = {}
    for kind, obj in events:
        if kind == "DELETED":
            state.pop(obj["metadata"]["name"], None)
        else:
            state[obj["metadata"]["name"]] = obj
    return state


# --- deployments ---------------------------------------------------------------------------------


def test_a_rolling_update_respects_surge_and_unavailable_at_every_step_and_rolls_back(
    kubectl: Kubectl, ns: str
) -> None:
    # 25% of 6: at most 2 extra pods (rounded up), at most 1 unavailable (rounded down)
    replicas, surge, unavailable = 6, 2, 1
    kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(deployment("web", replicas)))
    kubectl.ok("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s")
    assert len(running(kubectl, ns, "app=web")) == replicas

    with kubectl.watch("pods", "-n", ns) as watch:
        watch.wait_for(lambda events: len(events) >= replicas, what="the initial list")
        kubectl.ok("set", "image", "deployment/web", "main=busybox:1.37", "-n", ns)
        kubectl.ok("rollout", "status", "deployment/web", "-n", ns, "--timeout=90s")

        def settled(events: list[Event]) -> bool:
            state = live_state(events).values()
            return len(state) == replicas and all(
                p["spec"]["containers"][0]["image"] == "busybox:1.37"
                and condition(p, "Ready") == "True"
                and not p["metadata"].get("deletionTimestamp")
                for p in state
            )

        watch.wait_for(settled, timeout=60, what="six updated pods and no old ones")
        history = list(watch.events)

    steps: list[tuple[int, int]] = []
    for i in range(replicas, len(history) + 1):
        state = live_state(history[:i]).values()
        alive = [p for p in state if not p["metadata"].get("deletionTimestamp")]
        steps.append((len(alive), sum(1 for p in alive if condition(p, "Ready") == "True")))
    assert max(total for total, _ in steps) <= replicas + surge, steps
    assert min(ready for _, ready in steps) >= replicas - unavailable, steps
    assert max(total for total, _ in steps) > replicas, "the rollout never surged"

    revisions = kubectl.ok("rollout", "history", "deployment/web", "-n", ns)
    assert [line.split()[0] for line in revisions.splitlines()[2:] if line.strip()] == ["1", "2"]
    kubectl.ok("rollout", "undo", "deployment/web", "-n", ns)
    kubectl.ok("rollout", "status", "deployment/web", "-n", ns, "--timeout=90s")
    web = kubectl.json("get", "deployment", "web", "-n", ns)
    assert web["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.36"
    assert web["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    eventually(
        lambda: (
            {p["spec"]["containers"][0]["image"] for p in running(kubectl, ns, "app=web")} == {"busybox:1.36"}
            and len(running(kubectl, ns, "app=web")) == replicas
        ),
        timeout=60,
        what="the rolled-back pods",
    )
    story = kubectl.ok("describe", "deployment", "web", "-n", ns)
    assert "ScalingReplicaSet" in story and "deployment-controller" in story


def test_a_paused_deployment_keeps_its_pods_until_resumed_and_scale_works(kubectl: Kubectl, ns: str) -> None:
    kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(deployment("api", 2)))
    kubectl.ok("rollout", "status", "deployment/api", "-n", ns, "--timeout=60s")
    kubectl.ok("rollout", "pause", "deployment/api", "-n", ns)
    kubectl.ok("set", "image", "deployment/api", "main=busybox:1.37", "-n", ns)

    def observed() -> bool:
        d = kubectl.json("get", "deployment", "api", "-n", ns)
        return bool(d["status"].get("observedGeneration") == d["metadata"]["generation"])

    eventually(observed, timeout=15, what="the controller to see the paused change")
    assert len(kubectl.json("get", "rs", "-n", ns, "-l", "app=api")["items"]) == 1
    assert {p["spec"]["containers"][0]["image"] for p in running(kubectl, ns, "app=api")} == {"busybox:1.36"}
    kubectl.ok("rollout", "resume", "deployment/api", "-n", ns)
    kubectl.ok("rollout", "status", "deployment/api", "-n", ns, "--timeout=60s")
    assert len(kubectl.json("get", "rs", "-n", ns, "-l", "app=api")["items"]) == 2

    kubectl.ok("scale", "deployment/api", "--replicas=5", "-n", ns)
    eventually(lambda: len(running(kubectl, ns, "app=api")) == 5, timeout=30, what="five pods")
    kubectl.ok("scale", "deployment/api", "--replicas=1", "-n", ns)
    eventually(lambda: len(pods(kubectl, ns, "app=api")) == 1, timeout=30, what="one pod left")


def test_a_recreate_deployment_stops_every_old_pod_before_starting_new_ones(kubectl: Kubectl, ns: str) -> None:
    kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(deployment("batch", 3, strategy={"type": "Recreate"})))
    kubectl.ok("rollout", "status", "deployment/batch", "-n", ns, "--timeout=60s")
    with kubectl.watch("pods", "-n", ns) as watch:
        watch.wait_for(lambda events: len(events) >= 3, what="the initial list")
        kubectl.ok("set", "image", "deployment/batch", "main=busybox:1.37", "-n", ns)
        kubectl.ok("rollout", "status", "deployment/batch", "-n", ns, "--timeout=60s")
        history = list(watch.events)
    first_new = next(i for i, (kind, p) in enumerate(history) if p["spec"]["containers"][0]["image"] == "busybox:1.37")
    before = live_state(history[:first_new])
    assert all(p["spec"]["containers"][0]["image"] == "busybox:1.36" for p in before.values())
    assert not before, f"old pods still existed when the first new one appeared: {sorted(before)}"


# --- the scheduler -------------------------------------------------------------------------------


def bare_pod(name: str, **spec: Any) -> dict[str, Any]:
    body = {"containers": [container()], **spec}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": body}


def unschedulable(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any] | None:
    pod = kubectl.json("get", "pod", name, "-n", ns)
    for c in pod["status"].get("conditions") or []:
        if c["type"] == "PodScheduled" and c["status"] == "False":
            return dict(c)
    return None


def test_a_pod_that_fits_nowhere_stays_pending_with_the_reason_and_an_event(kubectl: Kubectl, ns: str) -> None:
    big = bare_pod("big")
    big["spec"]["containers"] = [container(cpu="100", memory="1Gi")]
    kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(big))
    found = eventually(lambda: unschedulable(kubectl, ns, "big"), timeout=15, what="PodScheduled=False")
    assert found["reason"] == "Unschedulable"
    assert found["message"] == "0/3 nodes are available: 3 Insufficient cpu."
    assert kubectl.json("get", "pod", "big", "-n", ns)["status"]["phase"] == "Pending"
    failed = eventually(
        lambda: [e for e in events_for(kubectl, ns, "big") if e["reason"] == "FailedScheduling"],
        timeout=15,
        what="the event",
    )
    assert failed[0]["type"] == "Warning" and "Insufficient cpu" in failed[0]["message"]
    assert "FailedScheduling" in kubectl.ok("describe", "pod", "big", "-n", ns)


def test_an_unschedulable_pod_is_placed_once_a_node_changes_to_fit_it(kubectl: Kubectl, ns: str) -> None:
    kubectl.ok("taint", "node", "sim-1", "dedicated=db:NoSchedule")
    try:
        pinned = bare_pod("pinned", nodeSelector={"kubelab.io/disk": "ssd"})
        kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(pinned))
        found = eventually(lambda: unschedulable(kubectl, ns, "pinned"), timeout=15, what="PodScheduled=False")
        assert found["message"] == (
            "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db},"
            " 2 node(s) didn't match Pod's node affinity/selector."
        )
        kubectl.ok("label", "node", "sim-2", "kubelab.io/disk=ssd")
        placed = eventually(
            lambda: kubectl.json("get", "pod", "pinned", "-n", ns)["spec"].get("nodeName"),
            timeout=15,
            what="the binding",
        )
        assert placed == "sim-2"
        eventually(  # the Scheduled event follows the binding
            lambda: f"Successfully assigned {ns}/pinned to sim-2" in kubectl.ok("describe", "pod", "pinned", "-n", ns),
            timeout=15,
            what="the Scheduled event",
        )
    finally:
        kubectl("taint", "node", "sim-1", "dedicated=db:NoSchedule-")
        kubectl("label", "node", "sim-2", "kubelab.io/disk-")


def test_replicas_of_one_deployment_spread_over_the_nodes(kubectl: Kubectl, ns: str) -> None:
    kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(deployment("spread", 6)))
    eventually(lambda: len(running(kubectl, ns, "app=spread")) == 6, timeout=30, what="six pods")
    per_node: dict[str, int] = {}
    for p in running(kubectl, ns, "app=spread"):
        per_node[p["spec"]["nodeName"]] = per_node.get(p["spec"]["nodeName"], 0) + 1
    assert per_node == dict.fromkeys(NODES, 2)


# --- nodes ---------------------------------------------------------------------------------------


def test_a_silent_node_turns_unknown_within_the_grace_period_and_its_pods_move(kubectl: Kubectl, ns: str) -> None:
    kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(deployment("svc", 3)))
    eventually(lambda: len(running(kubectl, ns, "app=svc")) == 3, timeout=30, what="three pods")
    victim = running(kubectl, ns, "app=svc")[0]["spec"]["nodeName"]
    doomed = {p["metadata"]["name"] for p in running(kubectl, ns, "app=svc") if p["spec"]["nodeName"] == victim}
    silenced = time.monotonic()
    kubectl.ok("annotate", "node", victim, "kubelab.io/heartbeat=paused")
    try:
        eventually(
            lambda: condition(kubectl.json("get", "node", victim), "Ready") == "Unknown",
            timeout=GRACE + MONITOR_PERIOD + 10,
            interval=0.25,
            what=f"{victim} to turn Unknown",
        )
        # the last heartbeat came at most GRACE/4 before the silence; the controller looks every 5 s
        assert time.monotonic() - silenced <= GRACE + MONITOR_PERIOD + 4

        def unreachable_taints() -> bool:
            # the condition and the taints are two writes of the same sync, a moment apart
            node = kubectl.json("get", "node", victim)
            taints = {(t["key"], t["effect"]) for t in node["spec"].get("taints") or []}
            return {
                ("node.kubernetes.io/unreachable", "NoExecute"),
                ("node.kubernetes.io/unreachable", "NoSchedule"),
            } <= taints

        eventually(unreachable_taints, timeout=MONITOR_PERIOD + 5, interval=0.25, what="the unreachable taints")

        def replaced() -> bool:
            now = running(kubectl, ns, "app=svc")
            return len(now) == 3 and all(p["spec"]["nodeName"] != victim for p in now)

        eventually(replaced, timeout=EVICTION + 30, what="three pods away from the silent node")
        evicted = [e for name in doomed for e in events_for(kubectl, ns, name) if e["reason"] == "TaintManagerEviction"]
        assert evicted, "no eviction event"
        assert "NodeNotReady" in kubectl.ok("describe", "node", victim)
    finally:
        kubectl("annotate", "node", victim, "kubelab.io/heartbeat-")
    eventually(lambda: victim in ready_nodes(kubectl), timeout=GRACE + MONITOR_PERIOD + 10, what="the node back")
    eventually(lambda: not kubectl.json("get", "node", victim)["spec"].get("taints"), timeout=MONITOR_PERIOD + 10)


def test_every_node_gets_its_own_pod_cidr_and_pods_their_addresses_from_it(kubectl: Kubectl, ns: str) -> None:
    nodes = {n["metadata"]["name"]: n for n in kubectl.json("get", "nodes")["items"]}
    cidrs = {name: ipaddress.ip_network(n["spec"]["podCIDR"]) for name, n in nodes.items()}
    assert len(set(cidrs.values())) == len(NODES)
    pod_network = ipaddress.IPv4Network("10.244.0.0/16")
    assert all(isinstance(c, ipaddress.IPv4Network) and c.subnet_of(pod_network) for c in cidrs.values())
    assert all(c.prefixlen == 24 for c in cidrs.values())
    kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(deployment("ip", 3)))
    eventually(lambda: len(running(kubectl, ns, "app=ip")) == 3, timeout=30, what="three pods")
    for p in running(kubectl, ns, "app=ip"):
        assert ipaddress.ip_address(p["status"]["podIP"]) in cidrs[p["spec"]["nodeName"]]


# --- garbage collection --------------------------------------------------------------------------


def owned(kubectl: Kubectl, ns: str, app: str) -> tuple[int, int]:
    return (
        len(kubectl.json("get", "rs", "-n", ns, "-l", f"app={app}")["items"]),
        len(pods(kubectl, ns, f"app={app}")),
    )


@pytest.mark.parametrize("cascade", ["background", "foreground"])
def test_deleting_a_deployment_deletes_its_replica_sets_and_pods(kubectl: Kubectl, ns: str, cascade: str) -> None:
    kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(deployment("gone", 2)))
    eventually(lambda: len(running(kubectl, ns, "app=gone")) == 2, timeout=30, what="two pods")
    kubectl.ok("delete", "deployment", "gone", "-n", ns, f"--cascade={cascade}", "--timeout=60s")
    if cascade == "foreground":  # the deployment went last: its dependents were gone before
        assert owned(kubectl, ns, "gone") == (0, 0)
    eventually(lambda: owned(kubectl, ns, "gone") == (0, 0), timeout=30, what="replica sets and pods gone")


def test_orphan_deletion_leaves_the_replica_set_and_pods_without_owner(kubectl: Kubectl, ns: str) -> None:
    kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(deployment("kept", 2)))
    eventually(lambda: len(running(kubectl, ns, "app=kept")) == 2, timeout=30, what="two pods")
    kubectl.ok("delete", "deployment", "kept", "-n", ns, "--cascade=orphan", "--timeout=60s")
    [rs] = kubectl.json("get", "rs", "-n", ns, "-l", "app=kept")["items"]
    assert not rs["metadata"].get("ownerReferences")
    assert len(running(kubectl, ns, "app=kept")) == 2


def test_a_replica_set_acts_again_while_the_pods_it_deleted_are_still_terminating(kubectl: Kubectl, ns: str) -> None:
    """Pods it deleted that stay Terminating (here held by a finalizer; on a lost node, until the node
    returns) count as deleted once they are going: the ReplicaSet does not wait for them to be gone."""
    held = deployment("held", 3)["spec"]
    held["template"]["metadata"]["finalizers"] = ["kubelab.test/hold"]
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "held"}, "spec": held}
    kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(rs))
    try:
        eventually(lambda: len(running(kubectl, ns, "app=held")) == 3, timeout=30, what="three pods")
        kubectl.ok("scale", "rs", "held", "-n", ns, "--replicas=1")
        eventually(lambda: len(running(kubectl, ns, "app=held")) == 1, timeout=30, what="two pods deleted")
        assert len(pods(kubectl, ns, "app=held")) == 3  # the two are Terminating, held by the finalizer
        kubectl.ok("scale", "rs", "held", "-n", ns, "--replicas=0")
        eventually(lambda: not running(kubectl, ns, "app=held"), timeout=30, what="the last pod deleted")
        kubectl.ok("scale", "rs", "held", "-n", ns, "--replicas=2")
        eventually(lambda: len(running(kubectl, ns, "app=held")) == 2, timeout=30, what="two new pods")
    finally:
        for pod in pods(kubectl, ns, "app=held"):
            kubectl(
                "patch",
                "pod",
                pod["metadata"]["name"],
                "-n",
                ns,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
            )


# --- other workloads -----------------------------------------------------------------------------


def test_a_stateful_set_starts_pods_in_order_with_stable_names_and_removes_them_in_reverse(
    kubectl: Kubectl, ns: str
) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 5432}]},
    }
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "replicas": 3,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [container()]}},
        },
    }
    with kubectl.watch("pods", "-n", ns) as watch:
        kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(service, sts))
        kubectl.ok("rollout", "status", "statefulset/db", "-n", ns, "--timeout=60s")
        watch.wait_for(lambda events: len(live_state(events)) == 3, what="three pods")
        kubectl.ok("scale", "statefulset/db", "--replicas=1", "-n", ns)
        watch.wait_for(lambda events: list(live_state(events)) == ["db-0"], timeout=30, what="db-0 alone")
        history = list(watch.events)
    added = [p["metadata"]["name"] for kind, p in history if kind == "ADDED"]
    assert added == ["db-0", "db-1", "db-2"]
    for earlier, later in (("db-0", "db-1"), ("db-1", "db-2")):  # the next is created once the previous is ready
        made = next(i for i, (kind, p) in enumerate(history) if kind == "ADDED" and p["metadata"]["name"] == later)
        assert condition(live_state(history[:made])[earlier], "Ready") == "True"
    deleted = [p["metadata"]["name"] for kind, p in history if kind == "DELETED"]
    assert deleted == ["db-2", "db-1"]
    [pod] = pods(kubectl, ns, "app=db")
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-0"


def test_a_daemon_set_runs_one_pod_on_every_node(kubectl: Kubectl, ns: str) -> None:
    ds = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [container()]}},
        },
    }
    kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(ds))
    kubectl.ok("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=60s")
    assert sorted(p["spec"]["nodeName"] for p in running(kubectl, ns, "app=agent")) == list(NODES)
    status = kubectl.json("get", "daemonset", "agent", "-n", ns)["status"]
    assert (status["desiredNumberScheduled"], status["numberReady"]) == (3, 3)


def job(name: str, **spec: Any) -> dict[str, Any]:
    template: dict[str, Any] = {
        "metadata": {"annotations": spec.pop("annotations", {})},
        "spec": {"restartPolicy": "Never", "containers": [container()]},
    }
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": {"template": template, **spec}}


def job_condition(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any] | None:
    status = kubectl.json("get", "job", name, "-n", ns)["status"]
    for c in status.get("conditions") or []:
        if c["type"] in ("Complete", "Failed") and c["status"] == "True":
            return dict(c)
    return None


def test_a_job_runs_its_completions_at_most_parallelism_at_once(kubectl: Kubectl, ns: str) -> None:
    # a pod that is there first: once the watch lists it, the watch sees everything that follows
    kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(bare_pod("marker")))
    with kubectl.watch("pods", "-n", ns) as watch:
        watch.wait_for(bool, what="the marker pod")
        kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(job("work", completions=4, parallelism=2)))
        done = eventually(lambda: job_condition(kubectl, ns, "work"), timeout=60, what="the job to finish")
        history = [(kind, p) for kind, p in watch.events if p["metadata"].get("labels", {}).get("job-name") == "work"]
    assert done["type"] == "Complete"
    status = kubectl.json("get", "job", "work", "-n", ns)["status"]
    assert status["succeeded"] == 4 and not status.get("failed")
    running_at_once = [
        sum(1 for p in live_state(history[:i]).values() if p["status"].get("phase") in ("Pending", "Running"))
        for i in range(1, len(history) + 1)
    ]
    assert max(running_at_once) == 2, running_at_once


def test_an_indexed_job_completes_every_index(kubectl: Kubectl, ns: str) -> None:
    kubectl.ok(
        "apply", "-n", ns, "-f", "-", stdin=manifest(job("idx", completions=3, parallelism=3, completionMode="Indexed"))
    )
    assert eventually(lambda: job_condition(kubectl, ns, "idx"), timeout=60)["type"] == "Complete"
    assert kubectl.json("get", "job", "idx", "-n", ns)["status"]["completedIndexes"] == "0-2"
    indexes = {p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods(kubectl, ns)}
    assert indexes == {"0", "1", "2"}


def test_a_failing_job_stops_after_its_backoff_limit(kubectl: Kubectl, ns: str) -> None:
    failing = job("flaky", backoffLimit=1, annotations={"kubelab.io/simulate-exit-code": "1"})
    kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(failing))
    failed = eventually(lambda: job_condition(kubectl, ns, "flaky"), timeout=60, what="the job to fail")
    assert (failed["type"], failed["reason"]) == ("Failed", "BackoffLimitExceeded")
    assert kubectl.json("get", "job", "flaky", "-n", ns)["status"]["failed"] == 2


def test_a_cron_job_starts_the_run_it_missed(kubectl: Kubectl, ns: str) -> None:
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": job("unused")["spec"]}},
    }
    kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(cron))
    # as if the controller had last run it 12 minutes ago: at least one scheduled time has passed since
    earlier = (datetime.now(UTC) - timedelta(minutes=12)).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = json.dumps({"status": {"lastScheduleTime": earlier}})
    kubectl.ok("patch", "cronjob", "nightly", "-n", ns, "--subresource=status", "--type=merge", "-p", patch)
    jobs = eventually(lambda: kubectl.json("get", "jobs", "-n", ns)["items"], timeout=30, what="a job")
    [made] = jobs
    assert made["metadata"]["ownerReferences"][0]["name"] == "nightly"
    assert made["metadata"]["name"].startswith("nightly-")
    status = kubectl.json("get", "cronjob", "nightly", "-n", ns)["status"]
    assert status["lastScheduleTime"] > earlier
    assert eventually(lambda: job_condition(kubectl, ns, made["metadata"]["name"]), timeout=60)["type"] == "Complete"


# --- services, namespaces, service accounts ------------------------------------------------------


def test_endpoints_and_slices_follow_the_ready_pods_of_a_service(kubectl: Kubectl, ns: str) -> None:
    web = deployment("web", 3)
    web["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 8080}]
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(web, service))

    def addresses() -> set[str]:
        subsets = kubectl.json("get", "endpoints", "web", "-n", ns).get("subsets") or []
        return {a["ip"] for s in subsets for a in s.get("addresses") or []}

    eventually(lambda: len(addresses()) == 3, timeout=30, what="three endpoint addresses")
    assert addresses() == {p["status"]["podIP"] for p in running(kubectl, ns, "app=web")}
    [subset] = kubectl.json("get", "endpoints", "web", "-n", ns)["subsets"]
    assert subset["ports"] == [{"port": 8080, "protocol": "TCP"}]

    def sliced() -> set[str]:  # the slice controller runs beside the endpoints controller, not after it
        pieces = kubectl.json("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=web")["items"]
        return {e["addresses"][0] for piece in pieces for e in piece.get("endpoints") or []}

    eventually(lambda: sliced() == addresses(), timeout=30, what="the slice to list the three addresses")
    assert len(kubectl.json("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=web")["items"]) == 1
    kubectl.ok("scale", "deployment/web", "--replicas=1", "-n", ns)
    eventually(lambda: len(addresses()) == 1, timeout=30, what="one endpoint address")


def test_a_new_namespace_gets_its_default_service_account(kubectl: Kubectl, ns: str) -> None:
    account = eventually(
        lambda: kubectl("get", "serviceaccount", "default", "-n", ns).ok, timeout=15, what="the account"
    )
    assert account


# --- leader election -----------------------------------------------------------------------------


def test_the_lab_components_hold_their_leases(kubectl: Kubectl) -> None:
    for name in ("kube-scheduler", "kube-controller-manager"):
        lease = kubectl.json("get", "lease", name, "-n", "kube-system")
        assert lease["spec"]["holderIdentity"] and lease["spec"]["leaseDurationSeconds"] == 15


def _ready(port: int) -> bool:
    return answers(f"http://127.0.0.1:{port}/readyz", timeout=2)


def test_a_second_scheduler_takes_over_when_the_leader_dies(sim_lab: Lab, kubectl: Kubectl, ns: str) -> None:
    kubeconfig = Path(sim_lab.root) / "config" / "scheduler.kubeconfig"
    # kube's system:kube-scheduler role names the kube-scheduler lease only: another lease needs its grant
    grant = f"ha-{ns}"
    kubectl.ok(
        "create",
        "role",
        grant,
        "--verb=get,update",
        "--resource=leases",
        f"--resource-name={grant}",
        "-n",
        "kube-system",
    )
    kubectl.ok("create", "rolebinding", grant, f"--role={grant}", "--user=system:kube-scheduler", "-n", "kube-system")
    ports = [free_port(), free_port()]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agents.scheduler",
                "--kubeconfig",
                str(kubeconfig),
                "--scheduler-name",
                "ha-scheduler",
                "--leader-resource-name",
                f"ha-{ns}",
                "--leader-lease-duration",
                "3",
                "--leader-renew-deadline",
                "2",
                "--leader-retry-period",
                "0.5",
                "--healthz-port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    try:
        leader = eventually(
            lambda: [i for i, port in enumerate(ports) if _ready(port)], timeout=20, what="a leading scheduler"
        )
        assert len(leader) == 1, "both schedulers lead"
        holder = kubectl.json("get", "lease", f"ha-{ns}", "-n", "kube-system")["spec"]["holderIdentity"]
        kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(bare_pod("first", schedulerName="ha-scheduler")))
        eventually(
            lambda: kubectl.json("get", "pod", "first", "-n", ns)["spec"].get("nodeName"), timeout=15, what="a binding"
        )

        procs[leader[0]].send_signal(signal.SIGKILL)  # no chance to release the lease
        procs[leader[0]].wait()
        standby = 1 - leader[0]
        eventually(lambda: _ready(ports[standby]), timeout=15, what="the standby to lead")
        lease = kubectl.json("get", "lease", f"ha-{ns}", "-n", "kube-system")["spec"]
        assert lease["holderIdentity"] != holder and lease["leaseTransitions"] >= 1
        kubectl.ok("apply", "-n", ns, "-f", "-", stdin=manifest(bare_pod("second", schedulerName="ha-scheduler")))
        eventually(
            lambda: kubectl.json("get", "pod", "second", "-n", ns)["spec"].get("nodeName"), timeout=15, what="a binding"
        )
    finally:
        for proc in procs:
            stop(proc, timeout=15)
        kubectl("delete", "rolebinding,role", grant, "-n", "kube-system")
