"""API server throughput and latency against real etcd.

1. create latency at a fixed rate (open loop: requests leave on schedule, whatever the answers do);
2. peak writes per second with many creates in flight (closed loop);
3. watch delivery latency: many watchers on one namespace while pods are created at a fixed rate,
   measured from the create's acknowledgement to each watcher's receipt of the event.

Objects are pods of about 800 bytes, sent over HTTPS with a bearer token, as a controller would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import Target, emit, local_lab, percentile, target_from_kubeconfig


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "bench", "tier": "load", "run": name[-4:]},
            "annotations": {"kubelab.io/purpose": "api server benchmark"},
        },
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "registry.lab/busybox:1.36",
                    "command": ["sh", "-c", "sleep 3600"],
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    "env": [{"name": "MODE", "value": "bench"}, {"name": "LEVEL", "value": "3"}],
                    "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5},
                }
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 5,
        },
    }


class Client:
    def __init__(self, target: Target, *, connections: int) -> None:
        self.target = target
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=target.ssl_context(), limit=connections),
            headers={"Authorization": f"Bearer {target.token}"},
        )

    async def close(self) -> None:
        await self.session.close()

    async def create_pod(self, namespace: str, name: str) -> float:
        body = json.dumps(pod(name)).encode()
        started = time.perf_counter()
        async with self.session.post(
            f"{self.target.server}/api/v1/namespaces/{namespace}/pods",
            data=body,
            headers={"Content-Type": "application/json"},
        ) as response:
            await response.read()
            if response.status != 201:
                raise RuntimeError(f"create failed: {response.status}")
        return time.perf_counter() - started

    async def namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        async with self.session.post(f"{self.target.server}/api/v1/namespaces", json=body) as response:
            await response.read()


async def fixed_rate(client: Client, *, rate: float, count: int) -> dict[str, float]:
    namespace = f"rate-{uuid.uuid4().hex[:6]}"
    await client.namespace(namespace)
    latencies: list[float] = []
    errors = 0

    async def one(i: int) -> None:
        nonlocal errors
        try:
            latencies.append(await client.create_pod(namespace, f"p-{i:06d}"))
        except (RuntimeError, aiohttp.ClientError):
            errors += 1

    start = time.perf_counter()
    tasks = []
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)
    achieved = count / (time.perf_counter() - start)
    ms = [v * 1000 for v in latencies]
    return {
        "rate": rate,
        "count": count,
        "achieved_per_s": round(achieved, 1),
        "errors": errors,
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
    }


async def peak(client: Client, *, in_flight: int, seconds: float) -> dict[str, float]:
    namespace = f"peak-{uuid.uuid4().hex[:6]}"
    await client.namespace(namespace)
    done = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < deadline:
            latencies.append(await client.create_pod(namespace, f"w{w:03d}-{i:06d}"))
            done += 1
            i += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(in_flight)))
    elapsed = time.perf_counter() - start
    ms = [v * 1000 for v in latencies]
    return {
        "in_flight": in_flight,
        "writes": done,
        "writes_per_s": round(done / elapsed, 1),
        "p50_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
    }


async def watch_delivery(target: Target, *, watchers: int, rate: float, count: int) -> dict[str, float]:
    namespace = f"watch-{uuid.uuid4().hex[:6]}"
    writer = Client(target, connections=64)
    await writer.namespace(namespace)
    acked: dict[str, float] = {}
    received: list[dict[str, float]] = [{} for _ in range(watchers)]
    ready = asyncio.Event()
    opened = 0
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=target.ssl_context(), limit=1),
            headers={"Authorization": f"Bearer {target.token}"},
        )
        for _ in range(watchers)
    ]
    start_rv = ""
    async with writer.session.get(f"{target.server}/api/v1/namespaces/{namespace}/pods") as response:
        start_rv = (await response.json())["metadata"]["resourceVersion"]

    async def watch(index: int) -> None:
        nonlocal opened
        url = f"{target.server}/api/v1/namespaces/{namespace}/pods?watch=1&resourceVersion={start_rv}"
        async with sessions[index].get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
            opened += 1
            if opened == watchers:
                ready.set()
            seen = received[index]
            async for line in response.content:
                now = time.perf_counter()
                event = json.loads(line)
                seen[event["object"]["metadata"]["name"]] = now
                if len(seen) == count:
                    return

    tasks = [asyncio.create_task(watch(i)) for i in range(watchers)]
    await asyncio.wait_for(ready.wait(), 60)
    await asyncio.sleep(0.5)

    async def one(i: int) -> None:
        name = f"w-{i:06d}"
        await writer.create_pod(namespace, name)
        acked[name] = time.perf_counter()

    begin = time.perf_counter()
    creates = []
    for i in range(count):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        creates.append(asyncio.create_task(one(i)))
    await asyncio.gather(*creates)
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    except TimeoutError:
        for task in tasks:
            task.cancel()
    delays = [max(0.0, seen[name] - acked[name]) * 1000 for seen in received for name in seen if name in acked]
    missing = watchers * count - len(delays)
    await writer.close()
    for session in sessions:
        await session.close()
    return {
        "watchers": watchers,
        "rate": rate,
        "events": count,
        "deliveries": len(delays),
        "missing": missing,
        "p50_ms": round(percentile(delays, 50), 2),
        "p99_ms": round(percentile(delays, 99), 2),
        "max_ms": round(max(delays), 2) if delays else float("nan"),
    }


async def run(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    client = Client(target, connections=128)
    try:
        for i in range(100):  # warm up connections, caches and the event loop
            await client.create_pod("default", f"warm-{uuid.uuid4().hex[:4]}-{i}")
        rate = await fixed_rate(client, rate=args.rate, count=args.count)
        print(
            f"create at {rate['rate']:.0f}/s: p50 {rate['p50_ms']} ms, p99 {rate['p99_ms']} ms,"
            f" max {rate['max_ms']} ms ({rate['count']} pods, achieved {rate['achieved_per_s']}/s,"
            f" {rate['errors']} errors)",
            flush=True,
        )
        top = await peak(client, in_flight=args.in_flight, seconds=args.seconds)
        print(
            f"peak: {top['writes_per_s']} writes/s with {top['in_flight']} in flight"
            f" (p50 {top['p50_ms']} ms, p99 {top['p99_ms']} ms)",
            flush=True,
        )
    finally:
        await client.close()
    watched = await watch_delivery(target, watchers=args.watchers, rate=args.watch_rate, count=args.watch_count)
    print(
        f"watch: {watched['watchers']} watchers, {watched['events']} events at {watched['rate']:.0f}/s:"
        f" delivery p50 {watched['p50_ms']} ms, p99 {watched['p99_ms']} ms, max {watched['max_ms']} ms"
        f" ({watched['missing']} missing)",
        flush=True,
    )
    return {"create_at_rate": rate, "peak": top, "watch": watched}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, help="measure this cluster instead of a fresh local lab")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--watch-rate", type=float, default=100)
    parser.add_argument("--watch-count", type=int, default=500)
    args = parser.parse_args(argv)
    if args.kubeconfig:
        target = target_from_kubeconfig(args.kubeconfig, Path("/tmp"))
        figures = asyncio.run(run(target, args))
    else:
        with local_lab() as target:
            figures = asyncio.run(run(target, args))
    emit("apiserver", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
