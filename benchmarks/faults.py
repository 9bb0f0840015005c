"""Fault report on a VM lab (1 master, 2 workers): for each fault, the time to notice it (the node
NotReady), the time to recover (every replica of the rolled Deployment Running and Ready again), and the
requests that failed meanwhile.

Each fault hits while a 6-replica Deployment behind a NodePort Service is rolled to a new version and a
load probe sends 5 requests a second (1 s deadline each) to the NodePort on another node
(``kubelab_testing.drills``). Faults: crash, pause and partition of a worker (healed once its pods are
replaced), the crash again with the load sent through the cloud's load balancer (``lb``: a
LoadBalancer Service of the same pods; its DETECT is when haproxy's health checks take the node out),
SIGKILL of every component in turn, and the master powered off and on. ``volume`` has no load: it powers
off the worker holding a StatefulSet pod's disk, taints it out-of-service once the pod is evicted (kube's
non-graceful node shutdown) and follows the pod and its disk to the other worker
(``drill.lose_volume_worker``; its row's REPLACE is the new pod Running there, the details follow it).
Before the faults, ``drain`` rolls with no fault at all: the same Deployment (no preStop hook), then
one whose pods sleep 10 s in a preStop hook within a 20 s grace period (``drill.DRAINED``): the
zero-loss rollout drill. Its requests have a 10 s deadline (``drill.ROLLOUT_DEADLINE``: a slow answer is
not a lost one) and the figures add how many answers took longer than 1 s and the slowest.

Timing settings: the lab's defaults (node grace period 40 s, node monitor period 5 s, kubelet heartbeat
10 s) and pods tolerating a NotReady or unreachable node for ``drill.TOLERATION`` seconds.
``--lab NAME`` measures an existing lab (its KUBELAB_HOME) instead of creating one.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from benchmarks.common import emit
from kubelab_testing import drills as drill
from kubelab_testing.faults import Faults
from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab, created_lab, up_flags
from kubelab_testing.loadprobe import ServiceLoad
from kubelab_testing.waiting import NotInTime, eventually
from provisioner.lab import components
from provisioner.lab.paths import default_home

LAB = "bench-faults"


@contextmanager
def _lab(name: str | None) -> Iterator[Lab]:
    if name:
        yield Lab(name, default_home())
        return
    with created_lab(LAB, up_flags("libvirt", "--workers", "2"), show=True) as lab:  # in a home of its own
        yield lab


def _row(figures: dict[str, Any]) -> str:
    def seconds(key: str) -> str:
        value = figures.get(key)
        return "-" if value is None else f"{value:.1f}"

    failed = f"{figures['failed']}/{figures['requests']} ({100 * figures['failed_share']:.1f}%)"
    until = "-" if figures["failures_until_s"] is None else f"+{figures['failures_until_s']:.1f}"
    return (
        f"{figures['fault']:<33} {seconds('detect_s'):>8} {seconds('replaced_s'):>9} {seconds('recover_s'):>9}"
        f" {failed:>16} {until:>9}"
    )


def _figures(fault: str, detect: float | None, replaced: float | None, recover: float, load: Any) -> dict[str, Any]:
    return {
        "fault": fault,
        "detect_s": detect,
        "replaced_s": replaced,
        "recover_s": recover,
        "requests": load.requests,
        "failed": load.failed,
        "failed_share": round(load.failed_share, 4),
        "failures_until_s": None if load.back_to_zero is None else round(load.back_to_zero, 1),
    }


GROUPS = ("drain", "volume", "crash", "lb", "partition", "pause", "kills", "master")


def _rollouts(lab: Lab, kubectl: Kubectl, rolled: drill.Rolled) -> list[dict[str, Any]]:
    """The rollout with no fault, without and with a preStop sleep: a RECOVER of the rollout's seconds."""
    rows = []
    drained = drill.Rolled.create(kubectl, name=drill.DRAINED, pre_stop=True)
    try:
        for what, target in (("rollout, no preStop", rolled), (f"rollout, preStop {drill.PRE_STOP_SECONDS}s", drained)):
            # the NodePort on the master (the first node that is not a worker): no pod of the drill there
            load = ServiceLoad(lab, target.entry(lab, avoid=lab.workers[0].name), deadline=drill.ROLLOUT_DEADLINE)
            try:
                drill.warm(load)
                got = drill.drained_rollout(target, load=load)
            finally:
                load.stop()
            rows.append(
                {
                    **_figures(what, None, None, got.seconds, got.requests),
                    "deadline_s": drill.ROLLOUT_DEADLINE,
                    "answered_after_1s": got.requests.over_1s,
                    "slowest_s": round(got.requests.slowest_ms / 1000, 2),
                }
            )
            print(
                _row(rows[-1]),
                f"({got.requests.over_1s} answered after 1 s, slowest {rows[-1]['slowest_s']} s)",
                flush=True,
            )
    finally:
        drained.delete()
    return rows


def _behind_load_balancer(
    lab: Lab, kubectl: Kubectl, faults: Faults, rolled: drill.Rolled, node: str
) -> dict[str, Any]:
    """The crash of a worker with the load going through the cloud's load balancer (a LoadBalancer
    Service of the same pods) instead of a NodePort: DETECT is when haproxy's health checks take the
    node out, not when it turns NotReady."""
    entry = drill.load_balancer_entry(kubectl, rolled)
    load = ServiceLoad(lab, entry)
    watch = drill.LoadBalancerWatch(lab, node)
    try:
        drill.warm(load)
        watch.start()
        got = drill.lose_worker(lab, kubectl, faults, rolled, load=load, fault="crash", node=node)
    finally:
        watch.stop()
        load.stop()
        drill.delete_load_balancer(kubectl, rolled)
    figures = _figures(f"crash {node} via load balancer", watch.down_after, got.replaced, got.recovered, got.requests)
    return {**figures, "node_notready_s": got.detected}


def _volume(lab: Lab, kubectl: Kubectl, faults: Faults) -> dict[str, Any]:
    """The crash of the worker holding a StatefulSet pod's disk (``drill.lose_volume_worker``): no
    load; DETECT is the NotReady, REPLACE the new pod Running on the other worker with the disk."""
    got = drill.lose_volume_worker(lab, kubectl, faults)
    return {
        "fault": f"crash {got.node} with a volume",
        "detect_s": got.detected,
        "evicted_s": got.evicted,
        "out_of_service_s": got.tainted,
        "deleted_s": got.deleted,
        "scheduled_s": got.scheduled,
        "detached_s": got.detached,
        "attached_s": got.attached,
        "replaced_s": got.running,
        "recover_s": None,
        "moved_to": got.moved_to,
        "stuck_until_out_of_service": got.stuck,
        "data_kept": bool(got.written) and got.read_back == got.written,
    }


def _volume_row(figures: dict[str, Any]) -> str:
    replaced = figures["replaced_s"]
    return (
        f"{figures['fault']:<33} {figures['detect_s']:>8.1f} {replaced:>9.1f} {'-':>9} {'-':>16} {'-':>9}"
        f"  (evicted +{figures['evicted_s']:.1f}, out-of-service +{figures['out_of_service_s']:.1f},"
        f" deleted +{figures['deleted_s']:.1f}, scheduled +{figures['scheduled_s']:.1f},"
        f" detached +{figures['detached_s']:.1f}, attached +{figures['attached_s']:.1f};"
        f" {'data kept' if figures['data_kept'] else 'DATA LOST'})"
    )


def measure(lab: Lab, groups: tuple[str, ...] = GROUPS) -> list[dict[str, Any]]:
    kubectl = Kubectl(lab.kubeconfig)
    faults = Faults(lab)
    rows: list[dict[str, Any]] = []
    if "volume" in groups:  # before the Deployment of the other faults exists: the drill has the workers alone
        rows.append(_volume(lab, kubectl, faults))
        print(_volume_row(rows[-1]), flush=True)
        if set(groups) == {"volume"}:
            return rows
    rolled = drill.Rolled.create(kubectl)
    worker1, worker2 = (w.name for w in lab.workers[:2])
    try:
        if "drain" in groups:
            rows.extend(_rollouts(lab, kubectl, rolled))
        if "lb" in groups:
            rows.append(_behind_load_balancer(lab, kubectl, faults, rolled, worker2))
            print(_row(rows[-1]), f"(node NotReady after {rows[-1]['node_notready_s']}s)", flush=True)
        for fault, node in (("crash", worker2), ("partition", worker1), ("pause", worker2)):
            if fault not in groups:
                continue
            load = ServiceLoad(lab, rolled.entry(lab, avoid=node))
            try:
                drill.warm(load)
                got = drill.lose_worker(lab, kubectl, faults, rolled, load=load, fault=fault, node=node)
            finally:
                load.stop()
            rows.append(_figures(f"{fault} {node}", got.detected, got.replaced, got.recovered, got.requests))
            print(_row(rows[-1]), flush=True)
        if "kills" in groups:
            rolled.next()  # the kills hit one rollout in turn
            for component in drill.KILLS:
                node = lab.master.name if components.master_only(component) else worker1
                load = ServiceLoad(lab, rolled.entry(lab, avoid=node))
                try:
                    drill.warm(load)
                    killed = drill.kill(lab, kubectl, faults, rolled, node=node, component=component)
                finally:
                    load.stop()
                rows.append(
                    _figures(
                        f"kill {component} ({node.split('-')[-1]})",
                        killed.restarted,
                        None,
                        killed.ready,
                        load.summary(killed.began),
                    )
                )
                print(_row(rows[-1]), flush=True)
        rolled.wait()
        if "master" not in groups:
            return rows
        load = ServiceLoad(lab, rolled.entry(lab, avoid=lab.master.name))
        try:
            drill.warm(load)
            began = time.time()
            rolled.next()
            faults.crash(lab.master.name)
            faults.heal(lab.master.name, wait=True)
            eventually(lambda: drill.all_nodes_ready(kubectl), timeout=300, interval=2, what="every node Ready")
            rolled.wait()
            recover = round(time.time() - began, 1)
        finally:
            load.stop()
        rows.append(_figures(f"crash {lab.master.name}", None, None, recover, load.summary(began)))
        print(_row(rows[-1]), flush=True)
    finally:
        faults.heal()
        rolled.delete()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default=None, help="measure this existing lab instead of creating one")
    parser.add_argument(
        "--faults",
        default=",".join(GROUPS),
        help=f"which faults, comma-separated (default: all of {', '.join(GROUPS)})",
    )
    args = parser.parse_args(argv)
    groups = tuple(g for g in args.faults.split(",") if g)
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown or not groups:
        parser.error(f"unknown faults {', '.join(unknown) or '(none)'}; choose from {', '.join(GROUPS)}")
    try:
        with _lab(args.lab) as lab:
            grace = lab.spec.get("node_grace_period")
            print(
                f"=== faults on lab {lab.name!r}: grace {grace}s, toleration {drill.TOLERATION}s,"
                f" {drill.REPLICAS} replicas, 5 requests/s",
                flush=True,
            )
            print(f"{'FAULT':<33} {'DETECT s':>8} {'REPLACE s':>9} {'RECOVER s':>9} {'FAILED':>16} {'UNTIL':>9}")
            rows = measure(lab, groups)
    except (RuntimeError, NotInTime) as exc:
        print(f"benchmark faults: {exc}", file=sys.stderr)
        return 1
    for row in rows:
        emit("faults", {**row, "grace_s": grace, "toleration_s": drill.TOLERATION, "replicas": drill.REPLICAS})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
