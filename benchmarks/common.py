"""Shared by the benchmarks: a local lab of their own (``kubelab_testing``'s, once the machine is quiet),
the API server as a raw HTTPS target, percentiles, and machine facts."""

from __future__ import annotations

import base64
import json
import os
import platform
import ssl
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from kubelab_testing.lab import created_lab, up_flags
from provisioner.lab import kubeconfig


def percentile(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def calibration(seconds: float = 0.5) -> int:
    """Iterations of an empty Python loop per second: how fast this (possibly shared) machine is
    right now. Figures measured minutes apart on a shared host differ with it."""
    start = time.perf_counter()
    count = 0
    while time.perf_counter() - start < seconds:
        count += 1
    return int(count / seconds)


def machine() -> dict[str, object]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        # measured after the lab is gone: how fast the (shared) host ran around this benchmark
        "python_loops_per_s": calibration(),
    }


@dataclass(frozen=True)
class Target:
    server: str
    token: str
    ca_file: Path
    kubeconfig: Path

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def target_from_kubeconfig(path: Path, workdir: Path) -> Target:
    config = yaml.safe_load(path.read_text())
    cluster = config["clusters"][0]["cluster"]
    ca = workdir / "ca.crt"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    return Target(cluster["server"], kubeconfig.bearer_token(path), ca, path)


def busy_fraction(window: float = 0.5) -> float:
    """Share of this machine's CPU time spent busy over the next ``window`` seconds (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle and iowait
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(window)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def settle(*, below: float = 0.15, deadline: float = 20.0) -> float:
    """Wait until the machine is quiet (a fresh lab's components finish starting up), at most
    ``deadline`` seconds; return the busy share last seen so a report can mention a noisy host."""
    end = time.monotonic() + deadline
    busy = busy_fraction()
    while busy > below and time.monotonic() < end:
        busy = busy_fraction()
    return busy


@contextmanager
def local_lab(name: str = "bench", extra: Sequence[str] = (), env: Mapping[str, str] | None = None) -> Iterator[Target]:
    """A fresh local-driver lab on free ports (``extra``: more ``kubelab up`` flags; the control plane alone
    unless they give ``--nodes``; ``env``: more variables for ``kubelab`` and the components it starts),
    removed afterwards."""
    with created_lab(name, up_flags("local", *extra), env=env) as lab:
        settle()
        yield target_from_kubeconfig(lab.kubeconfig, lab.home)


def emit(name: str, figures: dict[str, object]) -> None:
    print(json.dumps({"benchmark": name, **figures, "machine": machine()}), flush=True)
