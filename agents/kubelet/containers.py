"""What the kubelet and containerd say to each other: container ids and specs, tasks, their exits and
OOMs, containerd's errors, and kube's rule for the process a container runs.

Container ids are ``<pod uid>_<container name>_<attempt>``: ``_`` appears in neither a pod uid nor a
container name, so an id says which pod and container it belongs to without another call. Containers
the kubelet creates carry the label ``io.kubelab.managed=true``; others are not its business.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.kubelet.errors import KubeletError
from agents.machinery.errors import TemporaryError

MANAGED = "io.kubelab.managed"
_ID = re.compile(r"^([0-9a-f-]+)_([a-z0-9]([-a-z0-9]*[a-z0-9])?)_(\d+)$")


class ContainerdError(KubeletError):
    """containerd refused or failed; ``message`` is its own explanation, ``code`` the gRPC status
    (``not_found``, ``already_exists``, ``failed_precondition``, ...; "" when it is not a status)."""

    def __init__(self, operation: str, message: str, code: str = "") -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation
        self.message = message
        self.code = code


class ContainerdUnavailableError(ContainerdError, TemporaryError):
    """containerd does not answer (not started yet, restarting)."""


class ImageNotFoundError(ContainerdError):
    """The registry has no such image (a user's mistake; kube says ErrImagePull)."""


@dataclass(frozen=True)
class ContainerId:
    pod_uid: str
    name: str
    attempt: int

    def __str__(self) -> str:
        return f"{self.pod_uid}_{self.name}_{self.attempt}"

    @classmethod
    def parse(cls, text: str) -> ContainerId | None:
        found = _ID.match(text)
        return cls(found.group(1), found.group(2), int(found.group(4))) if found else None


@dataclass(frozen=True)
class Mount:
    source: str
    destination: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    """What the kubelet asks containerd for: one container of a pod, in the pod's namespaces."""

    id: ContainerId
    image: str  # a full reference: docker.io/library/busybox:latest
    argv: tuple[str, ...] = ()  # empty: the image's own Entrypoint + Cmd
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = ""
    netns: str = ""  # the pod sandbox's network namespace path
    uts: str = ""  # the pod's UTS namespace (its hostname), shared by its containers
    pidns: str = ""  # another container's PID namespace to join (an ephemeral container's target); "": its own
    mounts: tuple[Mount, ...] = ()
    stdin: bool = False  # stdin on a FIFO attach sessions write to (the container's `stdin: true`)
    tty: bool = False  # a terminal (the container's `tty: true`)
    memory_limit: int = 0  # bytes; 0: none
    cpu_quota: int = 0  # microseconds per period; 0: none
    cpu_period: int = 100_000
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskExit:
    id: str
    exit_status: int
    exited_at: str


@dataclass(frozen=True)
class TaskOOM:
    """The kernel's OOM killer killed a process of the container (its memory limit was reached)."""

    id: str


@dataclass(frozen=True)
class Task:
    id: str
    pid: int
    status: str  # RUNNING, STOPPED, CREATED, PAUSED, PAUSING, UNKNOWN


def command_line(config: Mapping[str, Any], command: Sequence[str], args: Sequence[str]) -> tuple[str, ...]:
    """The process a container runs, as kube decides it: ``command`` replaces the image's
    Entrypoint (and drops its Cmd), ``args`` replaces its Cmd; neither: the image's own."""
    entrypoint = list(command) if command else list(config.get("Entrypoint") or [])
    arguments = list(args) if args else ([] if command else list(config.get("Cmd") or []))
    return tuple(entrypoint + arguments)
