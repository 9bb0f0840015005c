"""What the node's agents cost: the kubelet's relist, an idle node, and starting and deleting pods, in
CPU-seconds and wall time, on the local driver's node (the host's containerd).

1. **relist**: one look at containerd's tasks, the PLEG's every two seconds, both ways side by side:
   ``ctr tasks list`` (a process, as the kubelet did before issue 14) and containerd's gRPC API
   (``Tasks.List`` on one connection, as it does now); wall time and CPU of the asking side (the ctr
   process, or this process) and of containerd, per call, averaged over ``--lists`` calls;
2. **idle node**: the kubelet's CPU (its own and that of the processes it started and reaped) and
   containerd's over ``--idle`` seconds with no pods;
3. **start**: ``--pods`` pods created at once (a busybox container each, image present), until all
   are Running; wall time, and the CPU of the kubelet (with its children: CNI plugins, ``ip``,
   ``ctr``), of containerd, and of the containerd shims the pods got;
4. **delete**: the same pods deleted at once (their process ends on SIGTERM), until all are gone from
   the API (the kubelet removes a pod once its containers and sandbox are gone).

The VM lab's figures are the integrator's (``benchmarks.vmlab``); these are the host's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from benchmarks.apiserver import Client
from benchmarks.common import Target, emit, settle, target_from_kubeconfig
from kubelab_testing.lab import Lab, created_lab, up_flags

TICKS = os.sysconf("SC_CLK_TCK")
IMAGE = "busybox:1.35.0"
# ends at once on SIGTERM (a shell as PID 1 ignores the signal unless it traps it)
COMMAND = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


class BenchmarkError(Exception):
    """The node did not do what was measured in time: said in one line."""


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """CPU-seconds a process used (user + system), with those of its reaped children."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    used = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return used / TICKS


def forks() -> int:
    """Processes started on this machine since boot (``processes`` in /proc/stat): the difference over
    a phase counts every process it spawned (ctr, CNI plugins, ip, runc, shims), whoever spawned them."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("processes "):
            return int(line.split()[1])
    return 0


def shims_cpu(socket: Path) -> float:
    """CPU-seconds of the live shims (``containerd-shim-runc-v2``) of the containerd at ``socket``."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"containerd-shim" in argv[0] and str(socket).encode() in argv:
                total += cpu_seconds(int(entry.name))
        except (OSError, IndexError):
            continue
    return total


def pid_of(lab: Lab, component: str) -> int:
    import json  # noqa: PLC0415

    return int(json.loads((lab.root / "run" / f"{component}.json").read_text())["pid"])


def relist_costs(socket: Path, containerd: int, lists: int) -> dict[str, float]:
    """Per call: wall ms and CPU ms of ``ctr tasks list`` and of ``Tasks.List`` over gRPC."""
    figures: dict[str, float] = {}
    command = ["ctr", "--address", str(socket), "--namespace", "k8s.io", "tasks", "list"]
    children0, daemon0, began = (
        resource.getrusage(resource.RUSAGE_CHILDREN),
        cpu_seconds(containerd),
        time.perf_counter(),
    )
    for _ in range(lists):
        subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - began
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures["ctr_wall_ms"] = wall / lists * 1000
    figures["ctr_cpu_ms"] = (
        (children1.ru_utime + children1.ru_stime - children0.ru_utime - children0.ru_stime) / lists * 1000
    )
    figures["ctr_containerd_cpu_ms"] = (cpu_seconds(containerd) - daemon0) / lists * 1000

    async def grpc_lists() -> None:
        from agents.kubelet.containerd_api.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc  # noqa: PLC0415

        async with grpc.aio.insecure_channel(f"unix://{socket}") as channel:
            stub = tasks_pb2_grpc.TasksStub(channel)
            metadata = (("containerd-namespace", "k8s.io"),)
            await stub.List(tasks_pb2.ListTasksRequest(), metadata=metadata)  # the connection, once
            self0, daemon0, began = (
                resource.getrusage(resource.RUSAGE_SELF),
                cpu_seconds(containerd),
                time.perf_counter(),
            )
            for _ in range(lists):
                await stub.List(tasks_pb2.ListTasksRequest(), metadata=metadata)
            wall = time.perf_counter() - began
            self1 = resource.getrusage(resource.RUSAGE_SELF)
            figures["grpc_wall_ms"] = wall / lists * 1000
            figures["grpc_cpu_ms"] = (self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime) / lists * 1000
            figures["grpc_containerd_cpu_ms"] = (cpu_seconds(containerd) - daemon0) / lists * 1000

    asyncio.run(grpc_lists())
    return {key: round(value, 3) for key, value in figures.items()}


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "main", "image": IMAGE, "command": COMMAND}],
            "terminationGracePeriodSeconds": 10,
        },
    }


async def _request(client: Client, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    async with client.session.request(method, f"{client.target.server}{path}", json=body) as response:
        found: dict[str, Any] = await response.json()
        if response.status >= 300 and response.status != 404:
            raise BenchmarkError(f"{method} {path}: {response.status} {found.get('message', '')}")
        return found


async def _phases(client: Client, namespace: str, names: list[str]) -> dict[str, str]:
    found = await _request(client, "GET", f"/api/v1/namespaces/{namespace}/pods")
    return {p["metadata"]["name"]: (p.get("status") or {}).get("phase", "") for p in found["items"]}


async def _until(what: str, check: Any, *, within: float) -> float:
    began = time.perf_counter()
    while not await check():
        if time.perf_counter() - began > within:
            raise BenchmarkError(f"{what} did not happen within {within:.0f}s")
        await asyncio.sleep(0.05)
    return time.perf_counter() - began


async def pods_cost(target: Target, *, kubelet: int, containerd: int, socket: Path, pods: int) -> dict[str, float]:
    client = Client(target, connections=8)
    namespace = f"node-{uuid.uuid4().hex[:6]}"
    path = f"/api/v1/namespaces/{namespace}/pods"
    figures: dict[str, float] = {}
    try:
        await _request(client, "POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        await _request(client, "POST", path, pod("warm-up"))  # the image, pulled once
        await _until("the warm-up pod Running", lambda: _running(client, namespace, ["warm-up"]), within=120)
        await _request(client, "DELETE", f"{path}/warm-up")
        await _until("the warm-up pod gone", lambda: _gone(client, namespace, ["warm-up"]), within=60)
        settle()
        names = [f"p-{i:03d}" for i in range(pods)]
        kubelet0, containerd0, shims0 = cpu_seconds(kubelet), cpu_seconds(containerd), shims_cpu(socket)
        forks0, began = forks(), time.perf_counter()
        await asyncio.gather(*(_request(client, "POST", path, pod(name)) for name in names))
        figures["start_wall_s"] = round(
            time.perf_counter()
            - began
            + await _until("all pods Running", lambda: _running(client, namespace, names), within=60 + 5 * pods),
            2,
        )
        figures["start_processes"] = forks() - forks0
        figures["start_kubelet_cpu_s"] = round(cpu_seconds(kubelet) - kubelet0, 2)
        figures["start_containerd_cpu_s"] = round(cpu_seconds(containerd) - containerd0, 2)
        figures["start_shims_cpu_s"] = round(shims_cpu(socket) - shims0, 2)
        kubelet0, containerd0 = cpu_seconds(kubelet), cpu_seconds(containerd)
        forks0, began = forks(), time.perf_counter()
        await asyncio.gather(*(_request(client, "DELETE", f"{path}/{name}") for name in names))
        figures["delete_wall_s"] = round(
            time.perf_counter()
            - began
            + await _until("all pods gone", lambda: _gone(client, namespace, names), within=60 + 5 * pods),
            2,
        )
        figures["delete_processes"] = forks() - forks0
        figures["delete_kubelet_cpu_s"] = round(cpu_seconds(kubelet) - kubelet0, 2)
        figures["delete_containerd_cpu_s"] = round(cpu_seconds(containerd) - containerd0, 2)
    finally:
        async with client.session.delete(f"{target.server}/api/v1/namespaces/{namespace}") as response:
            await response.read()
        await client.close()
    return figures


async def _running(client: Client, namespace: str, names: list[str]) -> bool:
    phases = await _phases(client, namespace, names)
    return all(phases.get(name) == "Running" for name in names)


async def _gone(client: Client, namespace: str, names: list[str]) -> bool:
    phases = await _phases(client, namespace, names)
    return not set(names) & set(phases)


def idle_cost(kubelet: int, containerd: int, seconds: float) -> dict[str, float]:
    kubelet0, containerd0, forks0 = cpu_seconds(kubelet), cpu_seconds(containerd), forks()
    time.sleep(seconds)
    return {
        "idle_seconds": seconds,
        "idle_processes_per_min": round((forks() - forks0) * 60 / seconds, 1),
        "idle_kubelet_cpu_s_per_min": round((cpu_seconds(kubelet) - kubelet0) * 60 / seconds, 3),
        "idle_containerd_cpu_s_per_min": round((cpu_seconds(containerd) - containerd0) * 60 / seconds, 3),
    }


async def _node_ready(target: Target) -> bool:
    client = Client(target, connections=1)
    try:
        nodes = await _request(client, "GET", "/api/v1/nodes")
    except (aiohttp.ClientError, BenchmarkError):
        return False
    finally:
        await client.close()
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for n in nodes.get("items") or []
        for c in (n.get("status") or {}).get("conditions") or []
    )


def measure(lab: Lab, *, lists: int, idle: float, pods: int) -> dict[str, Any]:
    target = target_from_kubeconfig(lab.kubeconfig, lab.root)
    asyncio.run(_until("the node Ready", lambda: _node_ready(target), within=120))
    settle()
    kubelet, containerd = pid_of(lab, "kubelet"), pid_of(lab, "containerd")
    figures: dict[str, Any] = {"lists": lists, "pods": pods}
    socket = lab.root / "run" / "containerd.sock"
    figures |= relist_costs(socket, containerd, lists)
    figures |= idle_cost(kubelet, containerd, idle)
    figures |= asyncio.run(pods_cost(target, kubelet=kubelet, containerd=containerd, socket=socket, pods=pods))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lists", type=int, default=50, help="task lists asked each way")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds the idle node is watched")
    parser.add_argument("--pods", type=int, default=10, help="pods started and deleted at once")
    args = parser.parse_args(argv)
    try:
        with created_lab("node-bench", up_flags("local", "--nodes", "1")) as lab:
            figures = measure(lab, lists=args.lists, idle=args.idle, pods=args.pods)
    except BenchmarkError as exc:
        print(f"benchmark node: {exc}", file=sys.stderr)
        return 1
    print(
        f"relist, per task list: ctr {figures['ctr_wall_ms']:.1f} ms wall, {figures['ctr_cpu_ms']:.1f} ms CPU"
        f" (+ containerd {figures['ctr_containerd_cpu_ms']:.1f} ms); gRPC {figures['grpc_wall_ms']:.2f} ms wall,"
        f" {figures['grpc_cpu_ms']:.2f} ms CPU (+ containerd {figures['grpc_containerd_cpu_ms']:.2f} ms)\n"
        f"idle node: kubelet {figures['idle_kubelet_cpu_s_per_min']} CPU-s/min,"
        f" containerd {figures['idle_containerd_cpu_s_per_min']} CPU-s/min,"
        f" {figures['idle_processes_per_min']} processes started/min\n"
        f"{figures['pods']} pods started at once: {figures['start_wall_s']} s to all Running,"
        f" {figures['start_processes']} processes started; CPU kubelet"
        f" {figures['start_kubelet_cpu_s']} s, containerd {figures['start_containerd_cpu_s']} s,"
        f" shims {figures['start_shims_cpu_s']} s\n"
        f"deleted at once: {figures['delete_wall_s']} s to all gone, {figures['delete_processes']} processes started;"
        f" CPU kubelet {figures['delete_kubelet_cpu_s']} s,"
        f" containerd {figures['delete_containerd_cpu_s']} s",
        flush=True,
    )
    emit("node", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
