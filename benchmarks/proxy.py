"""Service programming latency: an endpoint change in the API -> the new rule in the kernel.

A proxy process runs beside a fresh local lab and applies its table inside a network namespace this
benchmark creates (``--netns``), so the host's own rules are never touched. ``--services`` Services
with three endpoints each (100) make the table the size of a small cluster's. Then one Service's
EndpointSlice is changed ``--changes`` times (50), ``--gap`` seconds apart (0.2 s), each time to a
new endpoint address. The figure is the time from sending the change to the API server until
``nft monitor`` in the namespace reports the transaction that holds the new endpoint's DNAT rule
(the moment ``nft list table`` would show it; the changing Service's chain comes first in the
transaction, so the monitor's printing of the others does not count). The API's own acknowledgement time is printed too:
what remains is the watch delivery, the proxy's debounce (``--min-sync-interval``), rendering the
whole ruleset and ``nft -f``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import uvloop

from benchmarks.apiserver import Client
from benchmarks.common import Target, emit, local_lab, percentile, target_from_kubeconfig
from kubelab_testing.commands import stop
from kubelab_testing.lab import free_port
from kubelab_testing.waiting import NotInTime, answers, eventually
from provisioner.errors import HostError
from provisioner.project import ROOT
from provisioner.system import packages

# a DNAT target in nft's text: "10.244.200.1:8080" or, in a numgen map, "10.244.200.1 . 8080"
_TARGET = re.compile(r"(\d+\.\d+\.\d+\.\d+)(?::| \. )\d+")


# The Service whose endpoint changes. Its name sorts before the background Services' (bg-...), so its
# chain comes first in the transaction and "nft monitor", which prints a transaction's rules in order,
# reports it at once instead of after thousands of other rules' lines.
PROBE = "a-probe"


class BenchmarkError(Exception):
    """What was measured did not happen (in time): said in one line."""


def _service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    }


def _slice(name: str, addresses: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-1", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def _address(i: int) -> str:
    """A distinct pod address per change (10.244.200.1, .2, ...)."""
    return f"10.244.{200 + i // 250}.{i % 250 + 1}"


async def _post(client: Client, path: str, body: dict[str, Any]) -> None:
    async with client.session.post(f"{client.target.server}{path}", json=body) as response:
        text = await response.text()
        if response.status != 201:
            raise BenchmarkError(f"POST {path}: {response.status} {text[:200]}")


async def _populate(client: Client, namespace: str, services: int) -> None:
    semaphore = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        name = f"bg-{i:04d}"
        addresses = [f"10.244.{i // 80 + 1}.{(i % 80) * 3 + k + 1}" for k in range(3)]
        async with semaphore:
            await _post(client, f"/api/v1/namespaces/{namespace}/services", _service(name))
            await _post(
                client, f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices", _slice(name, addresses)
            )

    await asyncio.gather(*(one(i) for i in range(services)))


class Monitor:
    """``nft monitor rules`` in the namespace: when each endpoint address first appeared in a rule."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.seen: dict[str, float] = {}
        self.changed = asyncio.Event()
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.netns, "nft", "monitor", "rules", stdout=subprocess.PIPE
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            now = time.perf_counter()
            line = raw.decode()
            if " dnat " in line:
                for address in _TARGET.findall(line[line.index(" dnat ") :]):
                    self.seen.setdefault(address, now)
                self.changed.set()

    async def wait_for(self, address: str, *, patience: float) -> float:
        async with asyncio.timeout(patience):
            while address not in self.seen:
                self.changed.clear()
                await self.changed.wait()
        return self.seen[address]

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


def _wait_ready(process: subprocess.Popen[bytes], port: int, *, patience: float) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            raise BenchmarkError("the proxy exited before it was ready")
        return answers(f"http://127.0.0.1:{port}/readyz")

    try:
        eventually(ready, timeout=patience, interval=0.05, what="the proxy's /readyz")
    except NotInTime:
        raise BenchmarkError(f"the proxy was not ready within {patience:.0f} s") from None


async def measure(target: Target, netns: str, args: argparse.Namespace) -> dict[str, Any]:
    client = Client(target, connections=16)
    namespace = f"proxy-{uuid.uuid4().hex[:6]}"
    monitor = Monitor(netns)
    try:
        await client.namespace(namespace)
        started = time.perf_counter()
        await _populate(client, namespace, args.services)
        print(f"created {args.services} services with 3 endpoints each in {time.perf_counter() - started:.1f} s")
        await _post(client, f"/api/v1/namespaces/{namespace}/services", _service(PROBE))
        await _post(
            client,
            f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
            _slice(PROBE, ["10.244.199.1"]),
        )
        await monitor.start()
        await monitor.wait_for("10.244.199.1", patience=30)  # the proxy has the whole table
        slice_url = f"{target.server}/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices/{PROBE}-1"
        latencies: list[float] = []
        acks: list[float] = []
        for i in range(args.changes):
            address = _address(i)
            patch = {"endpoints": [{"addresses": [address], "conditions": {"ready": True}}]}
            sent = time.perf_counter()
            async with client.session.patch(
                slice_url, json=patch, headers={"Content-Type": "application/merge-patch+json"}
            ) as response:
                await response.read()
                if response.status != 200:
                    raise BenchmarkError(f"patching the slice answered {response.status}")
            acks.append(time.perf_counter() - sent)
            try:
                seen = await monitor.wait_for(address, patience=5)
            except TimeoutError:
                raise BenchmarkError(f"change {i}: {address} was not in the rules 5 s after the change") from None
            latencies.append(seen - sent)
            pause = sent + args.gap - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)  # pacing: changes leave at a fixed rate
        lister = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", netns, "nft", "list", "table", "ip", "kubelab", stdout=subprocess.PIPE
        )
        listed = (await lister.communicate())[0].decode()
        if _address(args.changes - 1) not in _TARGET.findall(listed):
            raise BenchmarkError("nft list table does not show the last endpoint")
        return {
            "changes": args.changes,
            "services": args.services + 1,
            "latency_p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "latency_p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "latency_max_ms": round(max(latencies) * 1000, 1),
            "api_ack_p50_ms": round(percentile(acks, 50) * 1000, 1),
            "min_sync_interval_s": args.min_sync_interval,
        }
    finally:
        await monitor.stop()
        async with client.session.delete(f"{target.server}/api/v1/namespaces/{namespace}") as response:
            await response.read()
        await client.close()


def run(target: Target, args: argparse.Namespace) -> dict[str, Any]:
    netns = f"kl-px-bench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    proxy: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        port = free_port()
        proxy = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agents.proxy",
                "--kubeconfig",
                str(target.kubeconfig),
                "--netns",
                netns,
                "--node-name",
                "bench-node",
                "--routes",
                "false",
                "--min-sync-interval",
                str(args.min_sync_interval),
                "--healthz-port",
                str(port),
                "--log-level",
                args.proxy_log_level,
            ],
            cwd=ROOT,
        )
        _wait_ready(proxy, port, patience=30)
        uvloop.install()
        figures = asyncio.run(measure(target, netns, args))
    finally:
        if proxy is not None:
            stop(proxy, timeout=30)
        subprocess.run(["ip", "netns", "del", netns], check=False)
    print(
        f"endpoint change -> rule in place, {figures['changes']} changes, {figures['services']} services:"
        f" p50 {figures['latency_p50_ms']} ms, p99 {figures['latency_p99_ms']} ms,"
        f" max {figures['latency_max_ms']} ms (API acknowledgement p50 {figures['api_ack_p50_ms']} ms)",
        flush=True,
    )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", type=Path, help="measure this cluster instead of a fresh local lab")
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--services", type=int, default=100, help="other services in the table")
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between two changes")
    parser.add_argument("--min-sync-interval", type=float, default=0.05, help="the proxy's setting")
    parser.add_argument("--proxy-log-level", default="warning", help="debug: the proxy logs each sync's timings")
    args = parser.parse_args(argv)
    try:
        packages.ensure([packages.NFT])
    except HostError as exc:
        print(f"benchmark proxy: {exc}", file=sys.stderr)
        return 1
    try:
        if args.kubeconfig:
            figures = run(target_from_kubeconfig(args.kubeconfig, Path("/tmp")), args)
        else:
            with local_lab() as target:
                figures = run(target, args)
    except BenchmarkError as exc:
        print(f"benchmark proxy: {exc}", file=sys.stderr)
        return 1
    emit("proxy", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
