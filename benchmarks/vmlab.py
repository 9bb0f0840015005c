"""``kubelab up`` of a VM lab (1 master, 2 workers), wall time split by phase, with a cold and a warm
guest-image cache, then pod startup latency on the VMs.

Phases, as ``kubelab up`` records them in run/up-phases.json: image (build or reuse the guest image),
machines (network, overlays, domains defined and started), boot (until every machine answers ssh),
playbooks (ansible-runner: every role on every machine), ready (every node Ready, the built-in images
in the lab registry).

With ``--lab NAME``, an existing lab that has settled is measured instead: pod startup at 0.1/s and
0.5/s, how long deleting 20 pods takes, and what the node agents cost an idle worker.

Cold: an empty image cache (a temporary one, the machine's own cache is left alone), so the guest image
is built from Debian packages first. Warm: the same lab created again with the image in the cache.
Reference points: kubespray on Vagrant/libvirt takes 13-15 min for 3 VMs; minikube's kvm2 driver about
50 s for one VM. The goal: a warm ``up`` of 3 VMs under 4 minutes under TCG (2 host cores), under 60 s
with hardware KVM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import podstartup
from benchmarks.common import emit, target_from_kubeconfig
from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab, created_lab, up_flags
from kubelab_testing.waiting import NotInTime, eventually
from provisioner.lab.components import unit_of
from provisioner.lab.paths import default_home

LAB = "bench-vm"


def _figures(lab: Lab, wall: float) -> dict[str, Any]:
    """``up``'s wall time and the phases it recorded."""
    recorded: dict[str, Any] = json.loads((lab.root / "run" / "up-phases.json").read_text())
    return {"wall_s": round(wall, 1), **{k: round(v, 1) for k, v in recorded["phases"].items()}, **recorded}


IDLE_SECONDS = 60.0
AGENTS = ("kubelet", "containerd", "proxy")


def idle_cpu(lab: Lab, node: str, *, seconds: float = IDLE_SECONDS) -> dict[str, float]:
    """Percent of one vCPU each node agent used over ``seconds`` on an idle ``node``: its systemd
    unit's cgroup ``usage_usec``, so the programs a unit starts (``ctr``, CNI plugins) count too."""
    units = {agent: unit_of(agent) for agent in AGENTS}
    script = " ".join(
        f"$(sed -n 's/^usage_usec //p' /sys/fs/cgroup/system.slice/{u}.service/cpu.stat)" for u in units.values()
    )

    def sample() -> list[int]:
        done = lab.ssh(node, f"echo {script}")
        if not done.ok:
            raise RuntimeError(f"cannot read the agents' cgroups on {node}: {done.err.strip()}")
        return [int(v) for v in done.out.split()]

    before = sample()
    time.sleep(seconds)  # a measurement window, not a wait for a condition
    after = sample()
    return {a: round((after[i] - before[i]) / (seconds * 1e6) * 100, 2) for i, a in enumerate(units)}


SETTLE_SECONDS = 300.0


def until_no_pod_terminating(lab: Lab, *, seconds: float = SETTLE_SECONDS) -> None:
    """Wait until no pod of the lab is being deleted: the idle figure and each startup figure are of
    a lab that is not still stopping the pods of something before."""
    kubectl = Kubectl(lab.kubeconfig)

    def terminating() -> list[str]:
        pods = kubectl.json("get", "pods", "--all-namespaces", "-o", "json")["items"]
        return [p["metadata"]["name"] for p in pods if p["metadata"].get("deletionTimestamp")]

    try:
        eventually(lambda: not terminating(), timeout=seconds, what="no pod terminating")
    except NotInTime:
        raise RuntimeError(f"pods still terminating after {seconds:.0f} s: {terminating()[:5]}") from None


def settled(lab: Lab, tmp: Path) -> dict[str, Any]:
    """An existing, settled lab: pod startup at two rates, deleting 20 pods, idle CPU on a worker. Each
    measurement starts once no pod is terminating (``podstartup`` waits for its namespace to go)."""
    target = target_from_kubeconfig(lab.kubeconfig, tmp)
    worker = next(n.name for n in lab.nodes if n.role == "worker")
    until_no_pod_terminating(lab)
    idle = idle_cpu(lab, worker)
    print(
        f"=== idle {worker} over {IDLE_SECONDS:.0f}s (% of one vCPU): "
        + ", ".join(f"{a} {v}" for a, v in idle.items())
        + f", together {sum(idle.values()):.2f}",
        flush=True,
    )
    slow = asyncio.run(podstartup.measure(target, pods=5, rate=0.1, patience=300))
    print(f"=== {podstartup.summary(slow)}", flush=True)
    busy = asyncio.run(podstartup.measure(target, pods=20, rate=0.5, deletion=True, patience=300))
    print(
        f"=== {podstartup.summary(busy)}; all deleted in {busy['deleted_s']} s",
        flush=True,
    )
    return {"idle_cpu_pct": idle, "idle_total_pct": round(sum(idle.values()), 2), "slow": slow, "busy": busy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", help="measure this existing, settled lab instead of making one")
    parser.add_argument("--home", type=Path, help="the existing lab's KUBELAB_HOME (default: $KUBELAB_HOME)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-cold", action="store_true", help="measure only the warm up (image cached)")
    parser.add_argument("--pods", type=int, default=10, help="pods for the startup latency on the VMs")
    parser.add_argument("--rate", type=float, default=0.5, help="pods created per second")
    args = parser.parse_args(argv)
    if args.lab:
        home = args.home or default_home()
        with tempfile.TemporaryDirectory(prefix="kubelab-bench-vm-") as tmp:
            try:
                figures = settled(Lab(args.lab, home), Path(tmp))
            except (RuntimeError, podstartup.BenchmarkError) as exc:
                print(f"benchmark vmlab: {exc}", file=sys.stderr)
                return 1
        emit("vmlab_settled", figures)
        return 0
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="kubelab-bench-vm-") as tmp:
        # QEMU runs as libvirt's user: the cold run's image cache must be readable by it
        os.chmod(tmp, 0o755)
        home = Path(tmp) / "home"
        env = {} if args.skip_cold else {"KUBELAB_GUEST_CACHE": str(Path(tmp) / "guest-cache")}
        flags = up_flags("libvirt", "--workers", str(args.workers))
        try:
            runs = ["warm"] if args.skip_cold else ["cold", "warm"]
            for run in runs:
                began = time.monotonic()
                with created_lab(LAB, flags, home=home, env=env, show=True) as lab:
                    figures = _figures(lab, time.monotonic() - began)
                    results[run] = figures
                    line = ", ".join(
                        f"{k} {figures[k]:.0f}s" for k in ("image", "machines", "boot", "playbooks", "ready")
                    )
                    print(
                        f"=== up ({run} image cache, {figures['accel']}): {figures['wall_s']:.0f}s: {line}", flush=True
                    )
                    if run == runs[-1]:
                        target = target_from_kubeconfig(lab.kubeconfig, Path(tmp))
                        startup = asyncio.run(podstartup.measure(target, pods=args.pods, rate=args.rate))
                        print(
                            f"=== pod startup on the VMs: {startup['pods']} pods at {startup['rate']:g}/s:"
                            f" p50 {startup['p50_ms']} ms, p99 {startup['p99_ms']} ms",
                            flush=True,
                        )
        except (RuntimeError, podstartup.BenchmarkError) as exc:
            print(f"benchmark vmlab: {exc}", file=sys.stderr)
            return 1
    for run, figures in results.items():
        emit("vmlab_up", {"cache": run, **{k: v for k, v in figures.items() if k not in ("phases", "created")}})
    emit("vmlab_podstartup", startup)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
