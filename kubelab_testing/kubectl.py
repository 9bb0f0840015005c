"""The real kubectl, bound to a lab's kubeconfig, as tests drive a lab with it.

Tests use the client people use, so that what passes here works for them: ``kubectl(...)`` gives a
:class:`~kubelab_testing.commands.Result`, ``.ok(...)`` fails the test unless kubectl succeeded,
``.json(...)`` parses ``-o json``, ``.watch(...)`` follows ``kubectl get -w`` event by event, and
:func:`manifest` writes objects as the YAML a user would apply. A
``cache_dir`` of the test's own keeps kubectl's discovery cache away from the user's ``~/.kube/cache``
(labs on the same port, one after the other, would read each other's).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubelab_testing.commands import Result, run, stop
from kubelab_testing.waiting import NotInTime, eventually

TIMEOUT = 120.0  # one kubectl call, also against a VM lab under software emulation

Event = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Kubectl:
    kubeconfig: Path
    cache_dir: Path | None = None
    binary: str = "kubectl"
    env: tuple[tuple[str, str], ...] = ()  # variables kubectl runs with, e.g. its KUBECTL_* feature switches

    def argv(self, *args: str) -> list[str]:
        cache = ["--cache-dir", str(self.cache_dir)] if self.cache_dir is not None else []
        return [self.binary, "--kubeconfig", str(self.kubeconfig), *cache, *args]

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = TIMEOUT) -> Result:
        return run(self.argv(*args), stdin=stdin, timeout=timeout, env=dict(self.env))

    def ok(self, *args: str, stdin: str | None = None, timeout: float = TIMEOUT) -> str:
        """kubectl's output; fails the test (:class:`~kubelab_testing.commands.CommandFailed`) unless it succeeded."""
        return self(*args, stdin=stdin, timeout=timeout).checked(f"kubectl {shlex.join(args)}")

    def json(self, *args: str, timeout: float = TIMEOUT) -> Any:
        return json.loads(self.ok(*args, "-o", "json", timeout=timeout))

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """kubectl started in the background, its output and errors readable as text."""
        environment = dict(os.environ, **dict(self.env)) if self.env else None
        return subprocess.Popen(
            self.argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
        )

    def watch(self, *args: str) -> KubectlWatch:
        """``kubectl get ARGS -w``, followed event by event (a context manager that stops it)."""
        return KubectlWatch(self, *args)


@contextmanager
def running_pod(
    kubectl: Kubectl, name: str, container: dict[str, Any], *, prefix: str, timeout: float = 180.0
) -> Iterator[str]:
    """A namespace of its own (``PREFIX-xxxxxx``, its name yielded) holding one pod ``name`` of one
    ``container``, waited for until it runs; the namespace is deleted afterwards (without waiting)."""
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    kubectl.ok("create", "namespace", namespace)
    try:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [container]},
        }
        kubectl.ok("apply", "-f", "-", stdin=manifest(pod))

        def running() -> bool:
            return bool(kubectl.json("get", "pod", name, "-n", namespace)["status"].get("phase") == "Running")

        eventually(running, timeout=timeout, what=f"pod {name} to run")
        yield namespace
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """The ``status.conditions`` entry of type ``kind`` of an object as kubectl prints it ({} if none)."""
    for found in (obj.get("status") or {}).get("conditions") or []:
        if found.get("type") == kind:
            return dict(found)
    return {}


def manifest(*documents: dict[str, Any]) -> str:
    """YAML documents separated by ``---``, as a user's manifest file (``kubectl apply -f -``'s stdin)."""
    return yaml.safe_dump_all(documents, sort_keys=False)


class KubectlWatch:
    """``kubectl get -w -o json --output-watch-events``, read event by event in a thread.

    kubectl prints each event as a JSON document (one line each); the initial list arrives as ADDED
    events, then live changes follow in the order of the API's watch.
    """

    def __init__(self, kubectl: Kubectl, *args: str) -> None:
        self._proc = kubectl.popen("get", *args, "-w", "-o", "json", "--output-watch-events")
        self.events: list[Event] = []
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

    def wait_for(self, check: Callable[[list[Event]], bool], *, timeout: float = 30.0, what: str = "") -> None:
        """Block until ``check(events so far)`` holds, woken by each event; :class:`NotInTime` after ``timeout`` s."""
        with self._changed:
            if not self._changed.wait_for(lambda: check(self.events), timeout):
                raise NotInTime(what or check.__name__, timeout, f"{len(self.events)} events")

    @property
    def running(self) -> bool:
        return self._proc.poll() is None

    def stop(self) -> None:
        stop(self._proc)
        self._reader.join(timeout=10)

    def __enter__(self) -> KubectlWatch:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
