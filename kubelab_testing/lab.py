"""A lab as a test or a benchmark sees it, without pytest: its files and nodes, the real kubectl
bound to its kubeconfig, `kubelab fault` and a load probe against its Services.

The pytest plugin (``kubelab_testing.plugin``) hands these out as fixtures; benchmarks use them
directly.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class NotInTime(AssertionError):
    """A condition did not hold before its deadline."""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.code == 0


@dataclass(frozen=True)
class Node:
    name: str
    role: str
    ip: str


@dataclass(frozen=True)
class Lab:
    name: str
    home: Path

    @property
    def root(self) -> Path:
        return self.home / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    @property
    def spec(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.root / "lab.json").read_text())
        return data

    @property
    def nodes(self) -> list[Node]:
        from provisioner.drivers.libvirt import plan as vmplan  # noqa: PLC0415
        from provisioner.lab import spec as labspec  # noqa: PLC0415 - keeps plugin loading light

        spec = labspec.LabSpec.from_json((self.root / "lab.json").read_text())
        return [Node(m.name, m.role, m.ip) for m in vmplan.machines(spec)]

    @property
    def workers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "worker"]

    @property
    def master(self) -> Node:
        return self.nodes[0]

    def cli(self, *args: str, timeout: float = 1800) -> Result:
        """Run ``kubelab ARGS`` for this lab (``--name`` is added where the command takes it)."""
        env = dict(os.environ, KUBELAB_HOME=str(self.home))
        argv = [sys.executable, "-m", "provisioner.cli", *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        return Result(done.returncode, done.stdout, done.stderr)

    def ssh(self, node: str, command: str, *, timeout: float = 120) -> Result:
        argv = ["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", node, command]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        return Result(done.returncode, done.stdout, done.stderr)

    def on_lab_network(self, argv: list[str]) -> list[str]:
        """``argv`` run where the lab's machines are reachable (inside kubelab's namespace if it has one)."""
        from provisioner.drivers.libvirt import daemon as libvirthost  # noqa: PLC0415

        daemon = libvirthost.current()
        return daemon.wrap(argv) if daemon is not None else argv


@dataclass(frozen=True)
class Kubectl:
    kubeconfig: Path
    binary: str = "kubectl"

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 120) -> Result:
        argv = [self.binary, "--kubeconfig", str(self.kubeconfig), *args]
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        result = self(*args, stdin=stdin, timeout=timeout)
        assert result.ok, f"kubectl {shlex.join(args)} failed ({result.code}): {result.err}{result.out}"
        return result.out

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json"))


def eventually(check: Callable[[], Any], *, timeout: float = 60.0, interval: float = 1.0, what: str = "") -> Any:
    """``check()``'s first truthy value, polled every ``interval`` until ``timeout``; fails the test otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise NotInTime(f"{what or 'condition'} did not hold within {timeout:.0f}s (last: {last!r})")
        time.sleep(interval)


@dataclass(frozen=True)
class Faults:
    """Fault injection for a test (``kubelab fault ...``): each call prints and returns what it did
    and fails the test if the fault could not be injected."""

    lab: Lab

    def _run(self, *args: str, timeout: float = 300) -> str:
        done = self.lab.cli("fault", *args, "--name", self.lab.name, timeout=timeout)
        assert done.ok, f"kubelab fault {shlex.join(args)} failed ({done.code}): {done.err}{done.out}"
        print(done.out, end="")
        return done.out

    def crash(self, node: str) -> str:
        return self._run("crash", node)

    def pause(self, node: str) -> str:
        return self._run("pause", node)

    def partition(self, node: str) -> str:
        return self._run("partition", node)

    def kill(self, node: str, component: str) -> str:
        return self._run("kill", node, component)

    def heal(self, node: str | None = None, *, wait: bool = False) -> str:
        return self._run("heal", *([node] if node else []), *(["--wait"] if wait else []), timeout=900)

    def list(self) -> str:
        return self._run("list")


class ServiceLoad:
    """Requests at ``url`` (e.g. a NodePort on a node) from where the lab's machines are reachable,
    ``rate`` a second for at most ``seconds`` (``python -m kubelab_testing.loadprobe``); ``samples()``
    reads what came back so far and ``summary(since)`` says how many failed and until when."""

    def __init__(self, lab: Lab, url: str, *, rate: float = 5.0, seconds: float = 900.0) -> None:
        from provisioner.drivers.libvirt import daemon as libvirthost  # noqa: PLC0415

        daemon = libvirthost.current()
        netns = daemon.netns if daemon is not None and daemon.netns else "-"
        self.url = url
        self._out = tempfile.NamedTemporaryFile(prefix="kubelab-load-", suffix=".jsonl")  # noqa: SIM115
        argv = [sys.executable, "-m", "kubelab_testing.loadprobe", netns, url, str(rate), str(seconds)]
        self._process = subprocess.Popen(argv, stdout=self._out, cwd=ROOT)
        self._final: list[Any] | None = None  # what came back, kept once stopped

    def samples(self) -> list[Any]:
        from kubelab_testing import loadprobe  # noqa: PLC0415

        if self._final is not None:
            return self._final
        return loadprobe.parse(Path(self._out.name).read_text().splitlines())

    def summary(self, since: float, until: float | None = None) -> Any:
        from kubelab_testing import loadprobe  # noqa: PLC0415

        return loadprobe.summarize(self.samples(), since, until)

    def stop(self) -> None:
        """Stop sending; ``samples()`` and ``summary()`` keep answering from what came back."""
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)
        if self._final is None:
            self._final = self.samples()
        self._out.close()
