"""Driving the real kubectl (and the kubelab CLI) from tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelab_testing.commands import Result

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Kubectl:
    kubeconfig: Path
    cache_dir: Path
    binary: str = "kubectl"

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 60) -> Result:
        argv = [self.binary, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache_dir), *args]
        proc = subprocess.run(argv, check=False, input=stdin, capture_output=True, text=True, timeout=timeout)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str, stdin: str | None = None) -> str:
        result = self(*args, stdin=stdin)
        assert result.ok, f"kubectl {' '.join(args)} failed ({result.code}): {result.err}{result.out}"
        return result.out

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json"))

    def popen(self, *args: str) -> subprocess.Popen[str]:
        argv = [self.binary, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.cache_dir), *args]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def require_kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and kubectl is not installed")
        pytest.skip("kubectl is not installed")
    return found


def kubelab(*args: str, home: Path, timeout: float = 180) -> Result:
    env = dict(os.environ, KUBELAB_HOME=str(home))
    proc = subprocess.run(
        [str(ROOT / "kubelab"), *args], check=False, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def eventually(check: Callable[[], Any], *, timeout: float = 15.0, interval: float = 0.1, what: str = "") -> Any:
    """Return ``check()``'s first truthy value, polling until ``timeout``; fail the test otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what or check.__name__} (last value: {last!r})")


def manifest(*documents: dict[str, Any]) -> str:
    """YAML documents separated by ``---``, as a user's manifest file."""
    return yaml.safe_dump_all(documents, sort_keys=False)


class KubectlWatch:
    """``kubectl get -w -o json --output-watch-events``, read event by event in a thread.

    kubectl prints each event as a JSON document (one line each); the initial list arrives as ADDED
    events, then live changes follow in the order of the API's watch.
    """

    def __init__(self, kubectl: Kubectl, *args: str) -> None:
        self._proc = kubectl.popen("get", *args, "-w", "-o", "json", "--output-watch-events")
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        lines: list[str] = []
        for line in self._proc.stdout:
            lines.append(line)
            try:
                event = json.loads("".join(lines))
            except json.JSONDecodeError:
                continue  # a document printed over several lines: read on
            lines = []
            with self._changed:
                self.events.append((event["type"], event["object"]))
                self._changed.notify_all()

    def wait_for(
        self, check: Callable[[list[tuple[str, dict[str, Any]]]], bool], *, timeout: float = 30.0, what: str = ""
    ) -> None:
        """Block until ``check(events so far)`` holds; fail the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not check(self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"timed out after {timeout}s waiting for {what or check.__name__}")
                self._changed.wait(left)

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=10)

    def __enter__(self) -> KubectlWatch:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
