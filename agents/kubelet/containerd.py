"""containerd, driven through its own client ``ctr``.

Why ``ctr`` and not containerd's gRPC API from Python: every operation the kubelet performs is then
a command a user can run by hand on the node to see the same thing (``ctr -n k8s.io tasks ls``), and
no generated protobuf stubs are needed (the ones on PyPI were generated for protobuf 3 and do not
import with the protobuf the rest of kubelab uses). The cost is a process per operation, about
20 ms on the host. Exit statuses come from one long-running ``ctr events`` stream (the kubelet's
pod lifecycle event source), not from polling.

Container ids are ``<pod uid>_<container name>_<attempt>``: ``_`` appears in neither a pod uid nor a
container name, so an id says which pod and container it belongs to without another call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANAGED = "io.kubelab.managed"
_ID = re.compile(r"^([0-9a-f-]+)_([a-z0-9]([-a-z0-9]*[a-z0-9])?)_(\d+)$")
_EXIT_WARNING = re.compile(r"exit with non-zero exit code (\d+)")


class ContainerdError(Exception):
    """``ctr`` failed; ``message`` is containerd's own explanation (the last line ctr printed)."""

    def __init__(self, operation: str, message: str) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation
        self.message = message


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
    mounts: tuple[Mount, ...] = ()
    memory_limit: int = 0  # bytes; 0: none
    cpu_quota: int = 0  # microseconds per period; 0: none
    cpu_period: int = 100_000
    labels: Mapping[str, str] = field(default_factory=dict)


def create_args(spec: ContainerSpec) -> list[str]:
    """The ``ctr containers create`` arguments for a spec (pure, so tests can read them)."""
    args = ["containers", "create", "--label", f"{MANAGED}=true"]
    for key, value in sorted(spec.labels.items()):
        args += ["--label", f"{key}={value}"]
    for key, value in spec.env.items():
        args += ["--env", f"{key}={value}"]
    if spec.working_dir:
        args += ["--cwd", spec.working_dir]
    if spec.netns:
        args += ["--with-ns", f"network:{spec.netns}"]
    if spec.uts:
        args += ["--with-ns", f"uts:{spec.uts}"]
    for mount in spec.mounts:
        options = "rbind:ro" if mount.read_only else "rbind:rw"
        args += ["--mount", f"type=bind,src={mount.source},dst={mount.destination},options={options}"]
    if spec.memory_limit:
        args += ["--memory-limit", str(spec.memory_limit)]
    if spec.cpu_quota:
        args += ["--cpu-quota", str(spec.cpu_quota), "--cpu-period", str(spec.cpu_period)]
    args += [spec.image, str(spec.id)]
    if spec.argv:
        args += ["--", *spec.argv]  # after --: ctr would take the container's own -c for its --config
    return args


@dataclass(frozen=True)
class TaskExit:
    id: str
    exit_status: int
    exited_at: str


@dataclass(frozen=True)
class Task:
    id: str
    pid: int
    status: str  # RUNNING, STOPPED, CREATED, PAUSED, UNKNOWN


def parse_event(line: str) -> TaskExit | None:
    """A ``/tasks/exit`` line of ``ctr events`` as a TaskExit of a container's own process; other
    events, and the ends of processes exec'd into a container (probes), are None."""
    if " /tasks/exit " not in line:
        return None
    try:
        body: dict[str, Any] = json.loads(line.split(" /tasks/exit ", 1)[1])
    except ValueError:
        return None
    if body.get("id") and body.get("container_id") and body["id"] != body["container_id"]:
        return None  # an exec'd process: its id is the exec id
    return TaskExit(
        str(body.get("container_id") or body.get("id")), int(body.get("exit_status", 0)), str(body.get("exited_at", ""))
    )


def parse_tasks(text: str) -> dict[str, Task]:
    tasks = {}
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[1].isdigit():
            tasks[parts[0]] = Task(parts[0], int(parts[1]), parts[2])
    return tasks


class Ctr:
    """One containerd namespace, through ``ctr``."""

    def __init__(self, *, address: str, namespace: str = "k8s.io", hosts_dir: str = "") -> None:
        self.address = address
        self.namespace = namespace
        self.hosts_dir = hosts_dir

    def _base(self) -> list[str]:
        return ["ctr", "--address", self.address, "--namespace", self.namespace]

    async def _run(self, operation: str, *args: str, seconds: float = 120) -> tuple[str, str]:
        try:
            process = await asyncio.create_subprocess_exec(
                *self._base(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
        except FileNotFoundError as exc:
            raise ContainerdError(operation, "ctr is not installed (Debian package containerd)") from exc
        try:
            out, err = await asyncio.wait_for(process.communicate(), seconds)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise ContainerdError(operation, f"ctr did not answer within {seconds:.0f}s") from None
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        if process.returncode != 0:
            lines = [line for line in stderr.strip().splitlines() if line.strip()]
            message = lines[-1].removeprefix("ctr: ") if lines else f"exit code {process.returncode}"
            raise ContainerdError(operation, message)
        return stdout, stderr

    async def version(self) -> str:
        """containerd's version, as the node reports it (``containerRuntimeVersion``)."""
        out, _ = await self._run("version", "version")
        server = out.split("Server:", 1)[-1]
        found = re.search(r"Version:\s*(\S+)", server)
        return found.group(1) if found else "unknown"

    # --- images ---

    async def has_image(self, reference: str) -> bool:
        out, _ = await self._run("list images", "images", "list", "--quiet", f"name=={reference}")
        return reference in out.split()

    async def pull(self, reference: str) -> None:
        args = ["images", "pull"]
        if self.hosts_dir:
            args += ["--hosts-dir", self.hosts_dir]
        try:
            await self._run(f"pull {reference}", *args, reference, seconds=300)
        except ContainerdError as exc:
            if "not found" in exc.message:
                raise ImageNotFoundError(exc.operation, exc.message) from exc
            raise

    async def image_config(self, reference: str) -> dict[str, Any]:
        """The image's OCI config (``Entrypoint``, ``Cmd``, ``Env``, ``WorkingDir``, ...)."""
        out, _ = await self._run("list images", "images", "list", f"name=={reference}")
        rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
        if not rows:
            raise ImageNotFoundError(f"inspect {reference}", "not found")
        manifest = json.loads((await self._run("read manifest", "content", "get", rows[0][2]))[0])
        if "manifests" in manifest:  # an index: take linux/amd64
            chosen = next(
                (m for m in manifest["manifests"] if (m.get("platform") or {}).get("architecture", "amd64") == "amd64"),
                manifest["manifests"][0],
            )
            manifest = json.loads((await self._run("read manifest", "content", "get", chosen["digest"]))[0])
        config = json.loads((await self._run("read config", "content", "get", manifest["config"]["digest"]))[0])
        return dict(config.get("config") or {})

    # --- containers and tasks ---

    async def create(self, spec: ContainerSpec) -> None:
        await self._run(f"create {spec.id}", *create_args(spec))

    async def start(self, container: str, *, log_file: Path) -> None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        await self._run(
            f"start {container}", "tasks", "start", "--detach", "--log-uri", f"file://{log_file}", container
        )

    async def exec(self, container: str, argv: Sequence[str], *, seconds: float) -> tuple[int, str]:
        """Run ``argv`` in a running container; its exit code and output (124 on timeout, as
        ``timeout`` says it)."""
        exec_id = f"exec-{uuid.uuid4().hex[:12]}"
        process = await asyncio.create_subprocess_exec(
            *self._base(),
            "tasks",
            "exec",
            "--exec-id",
            exec_id,
            container,
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), seconds)
        except TimeoutError:
            process.kill()
            await process.wait()
            return 124, f"command timed out after {seconds:g}s"
        return int(process.returncode or 0), out.decode(errors="replace")

    async def exec_process(
        self, container: str, argv: Sequence[str], *, tty: bool, stdin: Any, stdout: Any, stderr: Any
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` in a running container with the given standard streams (``kubectl exec``)."""
        args = ["tasks", "exec", "--exec-id", f"exec-{uuid.uuid4().hex[:12]}"]
        if tty:
            args.append("--tty")
        return await asyncio.create_subprocess_exec(
            *self._base(), *args, container, *argv, stdin=stdin, stdout=stdout, stderr=stderr
        )

    async def kill(self, container: str, signal: str = "SIGTERM") -> None:
        try:
            await self._run(f"kill {container}", "tasks", "kill", "--signal", signal, container)
        except ContainerdError as exc:
            if "not found" not in exc.message and "process already finished" not in exc.message:
                raise

    async def delete_task(self, container: str) -> int | None:
        """Remove a stopped task; its exit status when ctr tells it (None: unknown or no task)."""
        try:
            _, err = await self._run(f"delete task {container}", "tasks", "delete", container)
        except ContainerdError as exc:
            if "not found" in exc.message:
                return None
            raise
        found = _EXIT_WARNING.search(err)
        return int(found.group(1)) if found else 0

    async def delete(self, container: str) -> None:
        """Remove a container and its task (killing the task first if it still runs)."""
        tasks = await self.tasks()
        if container in tasks:
            if tasks[container].status == "RUNNING":
                await self.kill(container, "SIGKILL")
            try:
                await self._run(f"delete task {container}", "tasks", "delete", "--force", container)
            except ContainerdError as exc:
                if "not found" not in exc.message:
                    raise
        try:
            await self._run(f"delete {container}", "containers", "delete", container)
        except ContainerdError as exc:
            if "not found" not in exc.message:
                raise

    async def containers(self) -> list[str]:
        """Ids of the containers the kubelet created (labelled); others are not its business."""
        out, _ = await self._run("list containers", "containers", "list", "--quiet", f'labels."{MANAGED}"==true')
        return out.split()

    async def tasks(self) -> dict[str, Task]:
        out, _ = await self._run("list tasks", "tasks", "list")
        return parse_tasks(out)

    async def exits(self) -> AsyncIterator[TaskExit]:
        """Task exits as containerd reports them, until cancelled (restarts ``ctr events`` if it ends)."""
        while True:
            process = await asyncio.create_subprocess_exec(
                *self._base(), "events", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
            )
            assert process.stdout is not None
            try:
                async for raw in process.stdout:
                    event = parse_event(raw.decode(errors="replace"))
                    if event is not None:
                        yield event
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            log.warning("ctr events ended (exit %s); following again", process.returncode)
            await asyncio.sleep(1)


def command_line(config: Mapping[str, Any], command: Sequence[str], args: Sequence[str]) -> tuple[str, ...]:
    """The process a container runs, as kube decides it: ``command`` replaces the image's
    Entrypoint (and drops its Cmd), ``args`` replaces its Cmd; neither: the image's own."""
    entrypoint = list(command) if command else list(config.get("Entrypoint") or [])
    arguments = list(args) if args else ([] if command else list(config.get("Cmd") or []))
    return tuple(entrypoint + arguments)
