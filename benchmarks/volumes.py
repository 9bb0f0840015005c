"""Persistent volumes on a VM lab: what a claim costs on the lab's virtual disks.

Each round (``--rounds``, 3) follows one claim of the default class (``standard``, WaitForFirstConsumer)
through ``kubelab_testing.volumes.Mover``: ``claim_to_running`` from the claim's create to its first
pod Running on worker 1 (the scheduler choosing the node, the CSI provisioner's qcow2 in the lab's pool,
the attach/detach controller's VolumeAttachment, the cloud's hot-plug, the kubelet's mkfs, mount and
bind mount); ``move`` from that pod's delete to a pod on worker 2 Running with the same data (unmount,
detach from one machine, attach to the other, mount); ``expand`` from raising the claim's request to
its status showing the new capacity (the qcow2 grown live, the filesystem grown by the kubelet);
``delete`` from the namespace's delete to the PersistentVolume gone (the cloud volume deleted). The
figures are medians and maxima over the rounds, printed as a table and a JSON line.

``--lab NAME`` measures a lab that is up (its KUBELAB_HOME); without it a lab of 1 master and 2
workers is made for the run and removed after.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from benchmarks.common import emit
from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab, created_lab, up_flags
from kubelab_testing.volumes import Mover
from provisioner.lab.paths import default_home

LAB = "bench-volumes"
STEPS = ("claim_to_running_s", "move_s", "expand_s", "delete_s")


@contextmanager
def _lab(name: str | None) -> Iterator[Lab]:
    if name:
        yield Lab(name, default_home())
        return
    with created_lab(LAB, up_flags("libvirt", "--workers", "2"), show=True) as lab:
        yield lab


def one_round(kubectl: Kubectl, first: str, second: str) -> dict[str, float]:
    mover = Mover(kubectl, first, second)
    try:
        mover.create()
        volume = str(mover.claim()["spec"]["volumeName"])
        mover.move()
        if mover.read("reader") != mover.token:
            raise SystemExit(f"the data did not follow the claim in {mover.namespace}")
        mover.grow("128Mi")
        mover.delete(wait_for=volume)
    finally:
        kubectl("delete", "namespace", mover.namespace, "--wait=false")
    return mover.figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.volumes", description=__doc__.split("\n")[0])
    parser.add_argument("--lab", help="measure this lab (up, in KUBELAB_HOME) instead of making one")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds: give at least 1")
    with _lab(args.lab) as lab:
        kubectl = Kubectl(lab.kubeconfig)
        workers = [w.name for w in lab.workers]
        if len(workers) < 2:
            print(f"kubelab: lab {lab.name} has {len(workers)} worker(s); the move needs 2", file=sys.stderr)
            return 2
        rounds = []
        print(f"=== volumes on lab '{lab.name}': {args.rounds} rounds, {workers[0]} -> {workers[1]}")
        print(f"{'ROUND':<6}" + "".join(f"{s.removesuffix('_s'):>18}" for s in STEPS))
        for number in range(1, args.rounds + 1):
            figures = one_round(kubectl, workers[0], workers[1])
            rounds.append(figures)
            print(f"{number:<6}" + "".join(f"{figures[s]:>18.1f}" for s in STEPS), flush=True)
    summary: dict[str, object] = {"rounds": args.rounds}
    for step in STEPS:
        values = [r[step] for r in rounds]
        summary[f"{step.removesuffix('_s')}_median_s"] = round(statistics.median(values), 1)
        summary[f"{step.removesuffix('_s')}_max_s"] = round(max(values), 1)
    emit("volumes", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
