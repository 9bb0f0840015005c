"""Pod startup latency on the lab's real node: from the create's acknowledgement to the pod Running,
as a watch sees it, with the image already on the node (Kubernetes' pod startup SLO measures the
same thing: p99 <= 5 s; the goal here is p99 <= 2 s).

Warm-up pods pull the image first, one on every node the pods can land on (Ready, schedulable, no
``NoSchedule`` or ``NoExecute`` taint), so that no measured pod waits for a pull. Then ``--pods``
(50) pods are created one every ``1 / --rate`` seconds (open loop), each scheduled by the lab's
scheduler and started by its kubelet
(sandbox: network namespace, CNI, hostname; container: create and start in containerd).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.apiserver import Client
from benchmarks.common import Target, emit, local_lab, percentile, target_from_kubeconfig

IMAGE = "busybox:1.35.0"


def pod(name: str, node: str = "") -> dict[str, Any]:
    """A pod that sleeps; with ``node``, bound to that node directly (``spec.nodeName``, no scheduler)."""
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}],
        "terminationGracePeriodSeconds": 1,
    }
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "startup"}}, "spec": spec}


def pod_nodes(nodes: list[dict[str, Any]]) -> list[str]:
    """The nodes the scheduler may put the measured pods on: Ready, not cordoned, and without a taint
    that keeps pods off (``NoSchedule``, ``NoExecute``); each gets a warm-up pod."""
    found = []
    for node in nodes:
        spec, status = node.get("spec") or {}, node.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        keeps_off = any(t.get("effect") in ("NoSchedule", "NoExecute") for t in spec.get("taints") or [])
        if ready and not spec.get("unschedulable") and not keeps_off:
            found.append(str(node["metadata"]["name"]))
    return sorted(found)


class BenchmarkError(Exception):
    """The node did not start the pods in time: said in one line."""


async def _post(client: Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with client.session.post(f"{client.target.server}{path}", json=body) as response:
        found: dict[str, Any] = await response.json()
        if response.status >= 300:
            raise BenchmarkError(f"POST {path}: {response.status} {found.get('message', '')}")
        return found


async def _until_no_pods(client: Client, path: str) -> float:
    """Seconds until the namespace's pod list is empty (each pod gone, not only Terminating)."""
    began = time.perf_counter()
    while True:
        async with client.session.get(f"{client.target.server}{path}") as response:
            if not (await response.json()).get("items"):
                return time.perf_counter() - began
        await asyncio.sleep(0.25)


async def _delete_namespace(client: Client, namespace: str) -> None:
    """Delete the benchmark's namespace and wait until it is gone (its pods stopped and removed), so a
    measurement that follows starts on a lab as settled as this one found it."""
    url = f"{client.target.server}/api/v1/namespaces/{namespace}"
    async with client.session.delete(url) as response:
        await response.read()
    try:
        async with asyncio.timeout(300):
            while True:
                async with client.session.get(url) as response:
                    if response.status == 404:
                        return
                await asyncio.sleep(0.5)
    except TimeoutError:
        raise BenchmarkError(f"namespace {namespace} was not gone 300 s after its deletion") from None


def _steps(
    names: list[str], created: dict[str, float], scheduled: dict[str, float], running: dict[str, float]
) -> dict[str, float]:
    """Where the latency went, p50 and p99 of each step: create -> bound by the scheduler
    (``spec.nodeName`` seen), bound -> Running (the node's part: the kubelet's watch, the sandbox, the
    container). A binding the watch saw only with Running counts as none of the node's time."""
    figures: dict[str, float] = {}
    for step, spans in (
        ("schedule", [(scheduled.get(n, running[n]) - created[n]) * 1000 for n in names]),
        ("node", [(running[n] - scheduled.get(n, running[n])) * 1000 for n in names]),
    ):
        figures[f"{step}_p50_ms"] = round(percentile(spans, 50), 1)
        figures[f"{step}_p99_ms"] = round(percentile(spans, 99), 1)
    return figures


async def measure(
    target: Target, *, pods: int, rate: float, deletion: bool = False, patience: float = 0.0
) -> dict[str, Any]:
    """Startup latency of ``pods`` pods created at ``rate`` a second; with ``deletion``, also how long
    deleting them all takes until every one is gone. ``patience``: seconds after the last create
    before pods not yet Running fail the measurement (default: 60 + one per pod)."""
    client = Client(target, connections=8)
    namespace = f"startup-{uuid.uuid4().hex[:6]}"
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    scheduled: dict[str, float] = {}  # spec.nodeName first seen: the scheduler's binding
    watcher: asyncio.Task[None] | None = None
    try:
        await _post(
            client, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        )
        path = f"/api/v1/namespaces/{namespace}/pods"
        async with client.session.get(f"{target.server}/api/v1/nodes") as response:
            nodes = pod_nodes((await response.json()).get("items") or [])
        if not nodes:
            raise BenchmarkError("no node is Ready and open to pods (kubectl get nodes; check their taints)")
        warm_ups = {f"warm-up-{node}": node for node in nodes}
        # the watch starts at the first create: every later change of these pods reaches it
        versions = [
            (await _post(client, path, pod(name, node)))["metadata"]["resourceVersion"]
            for name, node in warm_ups.items()
        ]
        version = versions[0]
        wanted = {f"p-{i:03d}" for i in range(pods)}
        warmed, finished = asyncio.Event(), asyncio.Event()

        async def follow() -> None:
            url = f"{target.server}{path}?watch=1&resourceVersion={version}"
            async with client.session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
                async for line in response.content:
                    obj = json.loads(line)["object"]
                    name = obj["metadata"]["name"]
                    now = time.perf_counter()
                    if obj.get("spec", {}).get("nodeName"):
                        scheduled.setdefault(name, now)
                    if obj.get("status", {}).get("phase") == "Running" and name not in running:
                        running[name] = now
                        if set(warm_ups) <= set(running):
                            warmed.set()
                        if wanted <= set(running):
                            finished.set()
                            return

        watcher = asyncio.create_task(follow())
        try:
            await asyncio.wait_for(warmed.wait(), 120)  # the warm-ups pull the image
        except TimeoutError:
            late = ", ".join(sorted(set(warm_ups) - set(running)))
            raise BenchmarkError(f"warm-up pods not Running within 120 s: {late} (are their nodes Ready?)") from None
        start = time.perf_counter()
        for i in range(pods):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            name = f"p-{i:03d}"
            await _post(client, path, pod(name))
            created[name] = time.perf_counter()
        try:
            await asyncio.wait_for(finished.wait(), timeout=patience or 60 + pods)
        except TimeoutError:
            raise BenchmarkError(
                f"{len(wanted - set(running))} of {pods} pods not Running within {patience or 60 + pods:.0f}s"
            ) from None
        latencies = [(running[n] - created[n]) * 1000 for n in sorted(wanted)]
        figures: dict[str, Any] = {
            "pods": pods,
            "rate": rate,
            "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
            "max_ms": round(max(latencies), 1),
            **_steps(sorted(wanted), created, scheduled, running),
        }
        if deletion:
            watcher.cancel()
            async with client.session.delete(f"{target.server}{path}") as response:  # the whole collection
                await response.read()
            try:
                async with asyncio.timeout(300):
                    figures["deleted_s"] = round(await _until_no_pods(client, path), 1)
            except TimeoutError:
                raise BenchmarkError("the pods were not all gone 300 s after their deletion") from None
        return figures
    finally:
        if watcher is not None:
            watcher.cancel()
        try:
            await _delete_namespace(client, namespace)
        finally:
            await client.close()


def summary(figures: dict[str, Any]) -> str:
    """One line of a measurement's figures."""
    return (
        f"{figures['pods']} pods at {figures['rate']:g}/s: p50 {figures['p50_ms']} ms,"
        f" p99 {figures['p99_ms']} ms, max {figures['max_ms']} ms (scheduling p50 {figures['schedule_p50_ms']} ms,"
        f" p99 {figures['schedule_p99_ms']} ms; the node's part p50 {figures['node_p50_ms']} ms,"
        f" p99 {figures['node_p99_ms']} ms)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", type=Path, help="measure this cluster instead of a fresh local lab")
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--rate", type=float, default=5.0, help="pods created per second")
    args = parser.parse_args(argv)
    try:
        if args.kubeconfig:
            figures = asyncio.run(
                measure(target_from_kubeconfig(args.kubeconfig, Path("/tmp")), pods=args.pods, rate=args.rate)
            )
        else:
            with local_lab(extra=["--nodes", "1"]) as target:
                figures = asyncio.run(measure(target, pods=args.pods, rate=args.rate))
    except BenchmarkError as exc:
        print(f"benchmark podstartup: {exc}", file=sys.stderr)
        return 1
    print(f"pod startup (create -> Running, image present): {summary(figures)}", flush=True)
    emit("podstartup", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
