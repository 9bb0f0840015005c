"""A steady stream of HTTP requests at a Service, to see what a fault costs its clients.

Run as ``python -m kubelab_testing.loadprobe NETNS URL RATE SECONDS [DEADLINE]``: from inside the network
namespace NETNS (``-``: stay here), one ``GET`` every 1/RATE seconds for SECONDS seconds (open loop: a slow
answer does not delay the next request), each with a deadline of DEADLINE seconds (default 1). Every
answer is one JSON line on standard output, ``{"t": <UNIX time sent>, "ok": <2xx within the deadline>,
"ms": <latency>}``, so a reader can follow it live; the program ends by itself. :func:`summarize` turns
the lines into figures, and :class:`ServiceLoad` runs the program in the background for a test or a benchmark
and reads it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kubelab_testing.commands import stop
from provisioner.system.netns import enter

if TYPE_CHECKING:
    from kubelab_testing.lab import Lab

DEADLINE = 1.0  # the fault drills': a request not answered in a second counts as failed
MAX_DEADLINE = 30.0
MAX_SECONDS = 3600.0
MAX_RATE = 50.0


@dataclass(frozen=True)
class Sample:
    t: float
    ok: bool
    ms: float


async def _get(host: str, port: int, path: str) -> bool:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status = await reader.readline()
        await reader.read()  # the whole answer: a half-sent one is a failure too
        parts = status.split()
        return len(parts) >= 2 and parts[1].startswith(b"2")
    finally:
        writer.close()


async def _one(host: str, port: int, path: str, deadline: float) -> None:
    sent = time.time()
    began = time.monotonic()
    try:
        ok = await asyncio.wait_for(_get(host, port, path), deadline)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        ok = False
    elapsed = (time.monotonic() - began) * 1000
    print(json.dumps({"t": round(sent, 3), "ok": ok, "ms": round(elapsed, 1)}), flush=True)


async def run(url: str, rate: float, seconds: float, deadline: float = DEADLINE) -> None:
    parsed = urllib.parse.urlsplit(url)
    host, port, path = parsed.hostname or "", parsed.port or 80, parsed.path or "/"
    began = time.monotonic()
    pending: set[asyncio.Task[None]] = set()
    count = 0
    while (due := began + count / rate) < began + seconds:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        task = asyncio.create_task(_one(host, port, path, deadline))
        pending.add(task)
        task.add_done_callback(pending.discard)
        count += 1
    await asyncio.gather(*pending)


def parse(lines: Iterable[str]) -> list[Sample]:
    out = []
    for line in lines:
        try:
            item = json.loads(line)
            out.append(Sample(float(item["t"]), bool(item["ok"]), float(item["ms"])))
        except (ValueError, KeyError, TypeError):
            continue
    return out


@dataclass(frozen=True)
class Summary:
    requests: int
    failed: int
    first_failure: float | None  # seconds after ``since``
    back_to_zero: float | None  # seconds after ``since`` of the last failure (None: none failed)
    slowest_ms: float = 0.0  # the longest a request that succeeded waited for its answer
    over_1s: int = 0  # requests that succeeded but took longer than a second
    failed_after_ms: tuple[float, ...] = ()  # how long each failed request took to fail (the deadline: no answer)

    @property
    def failed_share(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    def describe(self) -> str:
        if not self.failed:
            return f"{self.requests} requests, none failed"
        return (
            f"{self.requests} requests, {self.failed} failed ({100 * self.failed_share:.1f}%),"
            f" failures from +{self.first_failure:.1f}s until +{self.back_to_zero:.1f}s"
        )


def summarize(samples: Sequence[Sample], since: float, until: float | None = None) -> Summary:
    """Requests sent from ``since`` (a UNIX time, e.g. the fault's) until ``until`` (default: all)."""
    window = [s for s in samples if s.t >= since and (until is None or s.t <= until)]
    failed = [s for s in window if not s.ok]
    answered = [s.ms for s in window if s.ok]
    return Summary(
        len(window),
        len(failed),
        failed[0].t - since if failed else None,
        failed[-1].t - since if failed else None,
        max(answered, default=0.0),
        sum(1 for ms in answered if ms > 1000),
        tuple(s.ms for s in failed),
    )


class ServiceLoad:
    """Requests at ``url`` (e.g. a NodePort on a node) from where the lab's machines are reachable,
    ``rate`` a second for at most ``seconds``; ``samples()`` reads what came back so far and
    ``summary(since)`` says how many failed and until when."""

    def __init__(
        self, lab: Lab, url: str, *, rate: float = 5.0, seconds: float = 900.0, deadline: float = DEADLINE
    ) -> None:
        self.url = url
        self.deadline = deadline
        self._out = tempfile.NamedTemporaryFile(prefix="kubelab-load-", suffix=".jsonl")  # noqa: SIM115
        netns = lab.network_namespace or "-"
        argv = [sys.executable, "-m", "kubelab_testing.loadprobe", netns, url, str(rate), str(seconds), str(deadline)]
        self._process = subprocess.Popen(argv, stdout=self._out)
        self._final: list[Sample] | None = None  # what came back, kept once stopped

    def samples(self) -> list[Sample]:
        if self._final is not None:
            return self._final
        return parse(Path(self._out.name).read_text().splitlines())

    def summary(self, since: float, until: float | None = None) -> Summary:
        return summarize(self.samples(), since, until)

    def stop(self) -> None:
        """Stop sending; ``samples()`` and ``summary()`` keep answering from what came back."""
        stop(self._process)
        if self._final is None:
            self._final = self.samples()
        self._out.close()


def main(argv: Sequence[str]) -> int:
    try:
        netns, url, rate, seconds = argv[0], argv[1], float(argv[2]), float(argv[3])
        deadline = float(argv[4]) if len(argv) > 4 else DEADLINE
        if len(argv) > 5:
            raise ValueError("too many arguments")
        if not 0 < rate <= MAX_RATE or not 0 < seconds <= MAX_SECONDS or not url.startswith("http://"):
            raise ValueError(f"RATE in (0, {MAX_RATE:.0f}], SECONDS in (0, {MAX_SECONDS:.0f}], an http:// URL")
        if not 0 < deadline <= MAX_DEADLINE:
            raise ValueError(f"DEADLINE in (0, {MAX_DEADLINE:.0f}]")
    except (IndexError, ValueError) as exc:
        print(f"usage: python -m kubelab_testing.loadprobe NETNS URL RATE SECONDS [DEADLINE] ({exc})", file=sys.stderr)
        return 2
    try:
        enter(netns)
        asyncio.run(run(url, rate, seconds, deadline))
    except OSError as exc:
        print(f"kubelab loadprobe: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
