"""Scheduling throughput and the time to scale a deployment, on simulated nodes.

1. throughput: ``--pods`` pods (3000) wait in one namespace for a scheduler named ``bench-scheduler``,
   which nobody runs yet; then a second scheduler process with that name starts (without leader
   election, beside the lab's own) and binds them to the ``--nodes`` (100) simulated nodes. Pods per
   second are counted from the first binding to the last, as seen by a watch; the time from the
   process' start to the last binding (its initial list included) is printed too.
2. scale: a deployment of one replica is scaled with the real ``kubectl scale --replicas=1000``; the
   figure is the time from that command to the moment all 1000 pods are Running (the deployment and
   replicaset controllers, the scheduler, and the simulated kubelets all take part).

Everything else runs as ``./kubelab up --driver local --simulated-nodes 100`` starts it, on the same
machine as the benchmark, so the figures are those of the whole control plane sharing its CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from benchmarks.apiserver import Client, pod
from benchmarks.common import Target, emit, local_lab, target_from_kubeconfig
from kubelab_testing.kubectl import Kubectl
from provisioner.project import ROOT

BENCH_SCHEDULER = "bench-scheduler"


async def _list_version(client: Client, path: str) -> str:
    async with client.session.get(f"{client.target.server}{path}?limit=1") as response:
        response.raise_for_status()
        return str((await response.json())["metadata"]["resourceVersion"])


async def _watch_until(
    client: Client, path: str, version: str, done: Callable[[dict[str, Any]], bool], *, deadline: float
) -> None:
    """Follow a watch from ``version`` until ``done(event)`` says so, or raise TimeoutError."""
    url = f"{client.target.server}{path}?watch=1&allowWatchBookmarks=false&resourceVersion={version}"
    async with asyncio.timeout(deadline):
        async with client.session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
            response.raise_for_status()
            async for line in response.content:
                if done(json.loads(line)):
                    return
    raise BenchmarkError(f"the watch on {path} ended early")


class BenchmarkError(Exception):
    """The cluster did not do what was measured (in time): said in one line, not a traceback."""


async def _delete_namespace(client: Client, namespace: str, *, wait: float = 0) -> float:
    """Delete a namespace; with ``wait``, wait that long at most until it is gone (its pods deleted,
    the namespace removed) and return how long it took."""
    url = f"{client.target.server}/api/v1/namespaces/{namespace}"
    started = time.perf_counter()
    async with client.session.delete(url) as response:
        await response.read()
    if not wait:
        return 0.0
    while time.perf_counter() - started < wait:
        async with client.session.get(url) as response:
            await response.read()
            if response.status == 404:
                return time.perf_counter() - started
        await asyncio.sleep(0.2)
    raise BenchmarkError(f"namespace {namespace} was not gone {wait:.0f} s after its deletion")


async def _create_pods(client: Client, namespace: str, count: int) -> float:
    semaphore = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        body = pod(f"s-{i:05d}")
        body["spec"]["schedulerName"] = BENCH_SCHEDULER
        async with (
            semaphore,
            client.session.post(
                f"{client.target.server}/api/v1/namespaces/{namespace}/pods",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            ) as response,
        ):
            await response.read()
            if response.status != 201:
                raise RuntimeError(f"creating pod {i}: HTTP {response.status}")

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - started


async def throughput(target: Target, *, pods: int) -> dict[str, Any]:
    client = Client(target, connections=64)
    namespace = f"sched-{uuid.uuid4().hex[:6]}"
    try:
        await client.namespace(namespace)
        created = await _create_pods(client, namespace, pods)
        print(f"created {pods} pending pods in {created:.1f} s", flush=True)
        path = f"/api/v1/namespaces/{namespace}/pods"
        version = await _list_version(client, path)
        bound: dict[str, float] = {}

        def all_bound(event: dict[str, Any]) -> bool:
            obj = event["object"]
            if obj.get("spec", {}).get("nodeName"):
                bound.setdefault(obj["metadata"]["name"], time.perf_counter())
            return len(bound) == pods

        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agents.scheduler",
            "--kubeconfig",
            str(target.kubeconfig),
            "--scheduler-name",
            BENCH_SCHEDULER,
            "--leader-elect",
            "false",
            "--log-level",
            "warning",
            cwd=ROOT,
        )
        started = time.perf_counter()
        try:
            await _watch_until(client, path, version, all_bound, deadline=pods / 10 + 60)
        except TimeoutError:
            raise BenchmarkError(f"only {len(bound)} of {pods} pods were bound in {pods / 10 + 60:.0f} s") from None
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)
        times = sorted(bound.values())
        span = times[-1] - times[0]
        return {
            "pods": pods,
            "pods_per_s": round(pods / span, 1),
            "first_binding_s": round(times[0] - started, 2),
            "all_bound_s": round(times[-1] - started, 2),
            # the next phase starts on an empty cluster; how long emptying took is a figure too
            "namespace_deleted_s": round(await _delete_namespace(client, namespace, wait=pods / 10 + 60), 2),
        }
    except BaseException:
        await _delete_namespace(client, namespace)
        raise
    finally:
        await client.close()


async def _kubectl(target: Target, *args: str) -> None:
    """kubectl (kubelab_testing's, bound to the target) without blocking the loop that measures."""
    argv = Kubectl(target.kubeconfig).argv(*args)
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL)
    if await process.wait() != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed")


def _deployment(name: str) -> dict[str, Any]:
    template = pod(name)
    template["metadata"] = {"labels": {"app": name}}
    del template["spec"]["schedulerName"]  # the lab's own scheduler places these
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template},
    }


async def scale(target: Target, *, replicas: int) -> dict[str, Any]:
    client = Client(target, connections=4)
    namespace = f"scale-{uuid.uuid4().hex[:6]}"
    path = f"/api/v1/namespaces/{namespace}/pods"
    try:
        await client.namespace(namespace)
        version = await _list_version(client, path)
        async with client.session.post(
            f"{target.server}/apis/apps/v1/namespaces/{namespace}/deployments", json=_deployment("web")
        ) as response:
            response.raise_for_status()
        running: set[str] = set()

        def count_running(event: dict[str, Any]) -> bool:
            obj = event["object"]
            if obj.get("status", {}).get("phase") == "Running" and event["type"] != "DELETED":
                running.add(obj["metadata"]["name"])
            return len(running) >= target_count

        target_count = 1
        try:
            await _watch_until(client, path, version, count_running, deadline=60)
        except TimeoutError:
            raise BenchmarkError("the deployment's first pod was not Running within 60 s") from None
        version = await _list_version(client, path)
        target_count = replicas
        deadline = replicas / 5 + 60
        started = time.perf_counter()
        watch = asyncio.create_task(_watch_until(client, path, version, count_running, deadline=deadline))
        await _kubectl(target, "-n", namespace, "scale", "deployment/web", f"--replicas={replicas}")
        try:
            await watch
        except TimeoutError:
            raise BenchmarkError(f"{len(running)} of {replicas} pods were Running after {deadline:.0f} s") from None
        return {"replicas": replicas, "all_running_s": round(time.perf_counter() - started, 2)}
    finally:
        await _delete_namespace(client, namespace)
        await client.close()


def run(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    uvloop.install()
    measured = asyncio.run(throughput(target, pods=args.pods))
    print(
        f"throughput: {measured['pods']} pods bound at {measured['pods_per_s']} pods/s"
        f" (first binding {measured['first_binding_s']} s after the scheduler started,"
        f" all bound after {measured['all_bound_s']} s)",
        flush=True,
    )
    print(f"namespace with {measured['pods']} running pods deleted in {measured['namespace_deleted_s']} s", flush=True)
    scaled = asyncio.run(scale(target, replicas=args.replicas))
    print(f"scale: kubectl scale --replicas={scaled['replicas']} -> all Running in {scaled['all_running_s']} s")
    return {"throughput": measured, "scale": scaled}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", type=Path, help="measure this cluster instead of a fresh local lab")
    parser.add_argument("--nodes", type=int, default=100, help="simulated nodes of the fresh lab")
    parser.add_argument("--pods", type=int, default=3000)
    parser.add_argument("--replicas", type=int, default=1000)
    args = parser.parse_args(argv)
    try:
        if args.kubeconfig:
            figures = run(target_from_kubeconfig(args.kubeconfig, Path("/tmp")), args)
        else:
            with local_lab(extra=["--simulated-nodes", str(args.nodes)]) as target:
                figures = run(target, args)
    except BenchmarkError as exc:
        print(f"benchmark scheduler: {exc}", file=sys.stderr)
        return 1
    emit("scheduler", {**figures, "nodes": args.nodes})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
