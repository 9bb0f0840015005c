"""The load probe: real requests at a local HTTP server, one JSON line each, and the figures drawn from them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kubelab_testing import loadprobe
from kubelab_testing.loadprobe import Sample


def _probe(url: str, rate: str = "20", seconds: str = "0.5", *deadline: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "kubelab_testing.loadprobe", "-", url, rate, seconds, *deadline]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_the_probe_sends_at_its_rate_and_reports_each_answer(echo_port: int) -> None:
    done = _probe(f"http://127.0.0.1:{echo_port}/")
    samples = loadprobe.parse(done.stdout.splitlines())
    assert done.returncode == 0 and len(samples) == 10 and all(s.ok for s in samples)
    assert 0.4 <= samples[-1].t - samples[0].t <= 0.8  # open loop: one every 50 ms
    failing = loadprobe.parse(_probe(f"http://127.0.0.1:{echo_port}/fail").stdout.splitlines())
    assert len(failing) == 10 and not any(s.ok for s in failing)  # a 5xx answer is a failure


def test_an_answer_after_the_deadline_is_a_failure_and_one_within_it_says_how_long_it_took(echo_port: int) -> None:
    url = f"http://127.0.0.1:{echo_port}/slow"
    late = loadprobe.parse(_probe(url, "10", "0.2", "0.2").stdout.splitlines())
    assert len(late) == 2 and not any(s.ok for s in late)
    waited = loadprobe.parse(_probe(url, "10", "0.2", "2").stdout.splitlines())
    assert len(waited) == 2 and all(s.ok and s.ms >= 400 for s in waited)
    summary = loadprobe.summarize([*waited, Sample(waited[0].t, True, 1500.0)], since=0)
    assert summary.failed == 0 and summary.over_1s == 1 and summary.slowest_ms == 1500.0


def test_nothing_listening_is_a_failure_not_a_hang() -> None:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    samples = loadprobe.parse(_probe(f"http://127.0.0.1:{closed}/", "10", "0.3").stdout.splitlines())
    assert len(samples) == 3 and not any(s.ok for s in samples)


@pytest.mark.parametrize(
    "args",
    [
        ["-", "http://x/", "0", "5"],
        ["-", "ftp://x/", "1", "5"],
        ["-", "http://x/"],
        ["-", "http://x/", "1", "5", "0"],
        ["-", "http://x/", "1", "5", "1", "extra"],
    ],
)
def test_bad_arguments_are_one_usage_line(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kubelab_testing.loadprobe", *args], capture_output=True, text=True, check=False
    )
    assert (
        done.returncode == 2
        and done.stderr.startswith("usage: python -m kubelab_testing.loadprobe")
        and done.stderr.count("\n") == 1
    )


def test_the_summary_counts_failures_from_the_fault_and_when_they_stopped() -> None:
    samples = [Sample(100 + i * 0.5, not 4 <= i <= 9, 3.0) for i in range(20)]
    summary = loadprobe.summarize(samples, since=101.0)
    assert (summary.requests, summary.failed) == (18, 6)
    assert summary.first_failure == 1.0 and summary.back_to_zero == 3.5
    assert summary.describe() == "18 requests, 6 failed (33.3%), failures from +1.0s until +3.5s"
    assert loadprobe.summarize(samples, since=105.0).describe() == "10 requests, none failed"
    assert loadprobe.summarize(samples, since=101.0, until=102.0).requests == 3
