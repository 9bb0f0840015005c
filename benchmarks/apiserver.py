"""API server throughput and latency against real etcd.

1. create latency at a fixed rate (open loop: requests leave on schedule, whatever the answers do);
2. watch delivery latency: many watchers on one namespace while pods are created at a fixed rate (by
   a separate process), measured from the create's acknowledgement to each watcher's receipt of
   the event; an event that arrives before its acknowledgement counts as 0 ms;
3. peak writes per second with many creates in flight (closed loop, driven by wrk so that the load
   generator, written in C, does not take the CPU the server is being measured on). It runs last:
   its aftermath (every watch cache digesting the burst) would distort the other two.

Objects are pods of about 800 bytes, sent over HTTPS with a bearer token, as a controller would. They
name a scheduler nobody runs, so that the lab's scheduler does not write to them while they are
measured.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import re
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from benchmarks.common import Target, emit, local_lab, percentile, target_from_kubeconfig
from provisioner.errors import HostError
from provisioner.system import packages

WRK_SCRIPT = Path(__file__).with_name("wrk_create.lua")


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "bench", "tier": "load"},
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
            # no scheduler serves this name: the lab's scheduler leaves these pods alone, so the
            # figures are the API server's own (benchmarks.scheduler sets its own name)
            "schedulerName": "kubelab-benchmark-unscheduled",
        },
    }


def secret(name: str) -> dict[str, Any]:
    """A Secret of about the pod's size: what the encryption at rest works on."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "labels": {"app": "bench", "tier": "load"},
            "annotations": {"kubelab.io/purpose": "api server benchmark"},
        },
        "type": "Opaque",
        "data": {
            "password": base64.b64encode(b"p" * 32).decode(),
            "certificate": base64.b64encode(bytes(range(256)) * 2).decode(),
        },
    }


# what the load creates: pods (default) or secrets (--objects secrets), by plural
OBJECTS: dict[str, Callable[[str], dict[str, Any]]] = {"pods": pod, "secrets": secret}


class Client:
    def __init__(self, target: Target, *, connections: int, objects: str = "pods") -> None:
        self.target = target
        self.objects = objects
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=target.ssl_context(), limit=connections),
            headers={"Authorization": f"Bearer {target.token}"},
        )

    async def close(self) -> None:
        await self.session.close()

    async def create_pod(self, namespace: str, name: str) -> float:
        """Create one object of the client's kind (a pod unless told otherwise); the seconds it took."""
        body = json.dumps(OBJECTS[self.objects](name)).encode()
        started = time.perf_counter()
        async with self.session.post(
            f"{self.target.server}/api/v1/namespaces/{namespace}/{self.objects}",
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


async def open_loop(rate: float, count: int, job: Callable[[int], Coroutine[Any, Any, None]]) -> float:
    """Start ``job(0..count-1)`` on schedule, ``rate`` per second, whatever earlier jobs are doing;
    return the seconds until all finished."""
    start = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(job(i)))
    await asyncio.gather(*tasks)
    return time.perf_counter() - start


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

    achieved = count / await open_loop(rate, count, one)
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


def peak(target: Target, *, connections: int, seconds: float, objects: str = "pods") -> dict[str, Any]:
    """Closed loop with wrk (C, from Debian) so that the load generator does not starve the server."""
    require_wrk()
    namespace = f"peak-{uuid.uuid4().hex[:6]}"
    asyncio.run(_namespace(target, namespace))
    template = json.dumps(OBJECTS[objects]("%s"))
    argv = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds:.0f}s",
        "--latency",
        "--timeout",
        "10s",
        "-H",
        f"Authorization: Bearer {target.token}",
        "-H",
        "Content-Type: application/json",
        "-s",
        str(WRK_SCRIPT),
        target.server,
        "--",
        namespace,
        template,
        objects,
    ]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    per_second = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    quantiles = dict(re.findall(r"^\s+(50|90|99)%\s+([\d.]+\w+)", out, re.M))
    return {
        "connections": connections,
        "writes_per_s": round(per_second, 1),
        "errors": int(failed.group(1)) if failed else 0,
        "p50_ms": _ms(quantiles.get("50", "nan")),
        "p99_ms": _ms(quantiles.get("99", "nan")),
    }


def _ms(text: str) -> float:
    """wrk's durations ("812.00us", "4.21ms", "1.02s") in milliseconds."""
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return round(float(text[: -len(unit)]) * factor, 2)
    return float("nan")


def require_wrk() -> None:
    try:
        packages.ensure([packages.Requirement("wrk", "wrk", "the HTTP load generator of the peak benchmark")])
    except HostError as exc:
        raise SystemExit(f"benchmark: {exc}") from exc


async def _namespace(target: Target, name: str) -> None:
    client = Client(target, connections=1)
    await client.namespace(name)
    await client.close()


def _event_name(line: bytes) -> str:
    """The object's name in a watch event line, without parsing the whole event."""
    at = line.find(b'"name":"', line.find(b'"metadata":{'))
    if at < 0:
        return str(json.loads(line)["object"]["metadata"]["name"])
    start = at + len(b'"name":"')
    return line[start : line.index(b'"', start)].decode()


@dataclass(frozen=True)
class WriterJob:
    target: Target
    namespace: str
    rate: float
    count: int


def _writer(job: WriterJob, go: Any, acks: Any) -> None:
    """Creates ``count`` pods at ``rate`` once ``go`` is set; reports each ack time (its own process,
    so that the acknowledgements are timed by an idle event loop)."""
    target, namespace, rate, count = job.target, job.namespace, job.rate, job.count

    async def main() -> None:
        client = Client(target, connections=32)
        times: dict[str, float] = {}

        async def one(i: int) -> None:
            name = f"w-{i:06d}"
            await client.create_pod(namespace, name)
            times[name] = time.perf_counter()

        go.wait()
        await open_loop(rate, count, one)
        await client.close()
        acks.put(times)

    uvloop.install()
    asyncio.run(main())


async def watch_delivery(target: Target, *, watchers: int, rate: float, count: int) -> dict[str, float]:
    namespace = f"watch-{uuid.uuid4().hex[:6]}"
    setup = Client(target, connections=1)
    await setup.namespace(namespace)
    async with setup.session.get(f"{target.server}/api/v1/namespaces/{namespace}/pods") as response:
        start_rv = (await response.json())["metadata"]["resourceVersion"]
    await setup.close()
    received: list[dict[str, float]] = [{} for _ in range(watchers)]
    opened = 0
    ready = asyncio.Event()
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=target.ssl_context(), limit=1),
            headers={"Authorization": f"Bearer {target.token}"},
        )
        for _ in range(watchers)
    ]

    async def watch(index: int) -> None:
        nonlocal opened
        url = f"{target.server}/api/v1/namespaces/{namespace}/pods?watch=1&resourceVersion={start_rv}"
        async with sessions[index].get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
            opened += 1
            if opened == watchers:
                ready.set()
            seen = received[index]
            async for line in response.content:
                seen[_event_name(line)] = time.perf_counter()
                if len(seen) == count:
                    return

    context = multiprocessing.get_context("spawn")
    go, acks = context.Event(), context.Queue()
    writer = context.Process(target=_writer, args=(WriterJob(target, namespace, rate, count), go, acks))
    writer.start()
    tasks = [asyncio.create_task(watch(i)) for i in range(watchers)]
    await asyncio.wait_for(ready.wait(), 60)
    await asyncio.sleep(1.0)
    go.set()
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), count / rate + 60)
    except TimeoutError:
        for task in tasks:
            task.cancel()
    acked: dict[str, float] = await asyncio.get_running_loop().run_in_executor(None, acks.get)
    writer.join()
    for session in sessions:
        await session.close()
    delays = [(seen[name] - acked[name]) * 1000 for seen in received for name in seen if name in acked]
    early = sum(1 for d in delays if d < 0)
    delays = [max(0.0, d) for d in delays]
    missing = watchers * count - len(delays)
    return {
        "watchers": watchers,
        "rate": rate,
        "events": count,
        "deliveries": len(delays),
        "missing": missing,
        "before_ack": early,
        "p50_ms": round(percentile(delays, 50), 2),
        "p99_ms": round(percentile(delays, 99), 2),
        "max_ms": round(max(delays), 2) if delays else float("nan"),
    }


async def _rate(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    client = Client(target, connections=128, objects=args.objects)
    try:
        # one second at the measured rate first, not recorded: it opens as many connections as the
        # rate needs (a TLS handshake is not a create) and warms the server's caches
        warm = uuid.uuid4().hex[:4]

        async def warm_up(i: int) -> None:
            await client.create_pod("default", f"warm-{warm}-{i}")

        await open_loop(args.rate, max(1, int(args.rate)), warm_up)
        return await fixed_rate(client, rate=args.rate, count=args.count)
    finally:
        await client.close()


def run(target: Target, args: argparse.Namespace, *, watch: bool = True) -> dict[str, Any]:
    rate = asyncio.run(_rate(target, args))
    print(
        f"create at {rate['rate']:.0f}/s: p50 {rate['p50_ms']} ms, p99 {rate['p99_ms']} ms,"
        f" max {rate['max_ms']} ms ({rate['count']} {args.objects}, achieved {rate['achieved_per_s']}/s,"
        f" {rate['errors']} errors)",
        flush=True,
    )
    figures: dict[str, Any] = {"objects": args.objects, "create_at_rate": rate}
    if watch:
        uvloop.install()  # the watchers' client should cost the machine as little as possible
        watched = asyncio.run(
            watch_delivery(target, watchers=args.watchers, rate=args.watch_rate, count=args.watch_count)
        )
        print(
            f"watch: {watched['watchers']} watchers, {watched['events']} events at {watched['rate']:.0f}/s:"
            f" delivery p50 {watched['p50_ms']} ms, p99 {watched['p99_ms']} ms, max {watched['max_ms']} ms"
            f" ({watched['missing']} missing)",
            flush=True,
        )
        figures["watch"] = watched
    top = peak(target, connections=args.connections, seconds=args.seconds, objects=args.objects)
    print(
        f"peak: {top['writes_per_s']} writes/s with {top['connections']} connections"
        f" (p50 {top['p50_ms']} ms, p99 {top['p99_ms']} ms, {top['errors']} errors)",
        flush=True,
    )
    return {**figures, "peak": top}


IDENTITIES = ("admin", "controller-manager")
GRANT = "kubelab-benchmark-namespaces"


async def _grant_namespaces(admin: Target, user: str) -> None:
    """Let ``user`` create the namespaces the benchmark writes into (the only thing it lacks)."""
    client = Client(admin, connections=1)
    rbac = f"{admin.server}/apis/rbac.authorization.k8s.io/v1"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": GRANT},
        "rules": [{"verbs": ["create"], "apiGroups": [""], "resources": ["namespaces"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": GRANT},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": GRANT},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    try:
        for path, body in ((f"{rbac}/clusterroles", role), (f"{rbac}/clusterrolebindings", binding)):
            async with client.session.post(path, json=body) as response:
                if response.status not in (201, 409):
                    raise SystemExit(f"benchmark: granting {user} namespaces failed: HTTP {response.status}")
    finally:
        await client.close()


def identity(admin: Target, who: str, workdir: Path) -> Target:
    """The load's sender: the admin (``system:masters``, allowed before any rule is walked) or the
    controller-manager (``system:kube-controller-manager``: the RBAC authorizer walks its bindings, as
    for every component and user)."""
    if who == "admin":
        return admin
    asyncio.run(_grant_namespaces(admin, "system:kube-controller-manager"))
    return target_from_kubeconfig(admin.kubeconfig.parent / "config" / "controller-manager.kubeconfig", workdir)


# --security: the same load on two fresh labs, one after the other. "off": the API server authorizes
# nothing (AlwaysAllow) and keeps Secrets as plain JSON; "on": as every lab runs (Node,RBAC, Secrets
# encrypted with aescbc), the load sent by the controller-manager, whose bindings RBAC walks. The
# settings come from the API server's KUBELAB_APISERVER_* variables, which win over its config file.
SECURITY: dict[str, tuple[dict[str, str], str]] = {
    "off": (
        {"KUBELAB_APISERVER_AUTHORIZATION_MODE": "AlwaysAllow", "KUBELAB_APISERVER_ENCRYPTION_PROVIDER_CONFIG": ""},
        "admin",
    ),
    "on": ({}, "controller-manager"),
}
# --tracing: "on" as every lab runs (each create by the admin, a user, starts a trace: the API server's
# spans sent to the lab's collector, the annotation stamped); "off": the API server without an endpoint
TRACING: dict[str, tuple[dict[str, str], str]] = {
    "off": ({"KUBELAB_APISERVER_TRACING_ENDPOINT": ""}, "admin"),
    "on": ({}, "admin"),
}
COMPARISONS = {"security": SECURITY, "tracing": TRACING}


def compare(args: argparse.Namespace, what: str, modes: list[str]) -> int:
    """Each mode of ``what`` (security, tracing) on a fresh local lab, in the order given (``off,on,off,on``
    alternates); then the ratios of the medians of "on" to those of "off"."""
    found: dict[str, list[dict[str, Any]]] = {}
    for mode in modes:
        env, who = COMPARISONS[what][mode]
        print(f"-- {what} {mode}: {args.objects} created by {who}", flush=True)
        with local_lab(env=env) as admin:
            figures = run(identity(admin, who, admin.ca_file.parent), args, watch=False)
        found.setdefault(mode, []).append(figures)
        emit("apiserver", {what: mode, "as": who, **figures})
    if {"off", "on"} <= set(found):

        def median(mode: str, part: str, figure: str) -> float:
            return float(statistics.median(f[part][figure] for f in found[mode]))

        p99 = median("on", "create_at_rate", "p99_ms") / max(median("off", "create_at_rate", "p99_ms"), 1e-9)
        writes = median("on", "peak", "writes_per_s") / max(median("off", "peak", "writes_per_s"), 1e-9)
        print(f"{what} on/off (medians): create p99 x{p99:.2f}, peak writes/s x{writes:.2f}", flush=True)
        emit(
            f"apiserver-{what}",
            {"objects": args.objects, "runs": len(modes), "p99_ratio": round(p99, 3), "peak_ratio": round(writes, 3)},
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, help="measure this cluster instead of a fresh local lab")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--watchers", type=int, default=100)
    parser.add_argument("--watch-rate", type=float, default=100)
    parser.add_argument("--watch-count", type=int, default=500)
    parser.add_argument(
        "--as",
        dest="identities",
        default="admin",
        help="who sends the load on a fresh local lab, comma separated, each measured in turn on the same lab:"
        " admin (system:masters) or controller-manager (authorized by RBAC)",
    )
    parser.add_argument("--objects", choices=sorted(OBJECTS), default="pods", help="what the load creates")
    parser.add_argument(
        "--security",
        default="",
        help="compare fresh local labs with authorization and encryption off and on (comma separated: off,on);"
        " skips the watch measurement",
    )
    parser.add_argument(
        "--tracing",
        default="",
        help="compare fresh local labs with the API server's tracing off and on (comma separated: off,on);"
        " skips the watch measurement",
    )
    args = parser.parse_args(argv)
    for what, table in COMPARISONS.items():
        if getattr(args, what):
            modes = [mode.strip() for mode in getattr(args, what).split(",") if mode.strip()]
            if not modes or any(mode not in table for mode in modes):
                parser.error(f"--{what}: choose from {', '.join(table)}")
            return compare(args, what, modes)
    identities = [who.strip() for who in args.identities.split(",") if who.strip()]
    if not identities or any(who not in IDENTITIES for who in identities):
        parser.error(f"--as: choose from {', '.join(IDENTITIES)}")
    if args.kubeconfig:
        target = target_from_kubeconfig(args.kubeconfig, Path("/tmp"))
        emit("apiserver", run(target, args))
        return 0
    with local_lab() as admin:
        for who in identities:
            print(f"-- as {who}", flush=True)
            figures = run(identity(admin, who, admin.ca_file.parent), args)
            emit("apiserver", {"as": who, **figures})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
