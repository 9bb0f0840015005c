"""containerd, through its own gRPC API: images, containers, tasks, exec and events.

Why the gRPC API and not containerd's client ``ctr``: ``ctr`` is a Go program of more than 20 MB, and
starting it costs a large part of a second of CPU on the VM lab's emulated CPUs (about 20 ms on this
host). The kubelet asks containerd something every two seconds on every node (the PLEG's relist), and
several times for each container it starts or stops; over the API each of those is one request on one
long-lived connection. The stubs are generated from containerd's own ``.proto`` files
(:mod:`agents.kubelet.containerd_api`, ``tools/containerd_api.py``). What still goes through ``ctr``,
and why, is :mod:`agents.kubelet.ctr`: pulling an image (containerd 1.6 pulls in the client, not the
daemon) and the streams of ``kubectl exec``.

With the API the client writes what ``ctr`` would have written for it: the container's OCI runtime
spec (:mod:`agents.kubelet.oci`, pure), the rootfs snapshot prepared from the image's unpacked layers
(named after the container), the task's rootfs mounts and its log file (a ``file://`` URI, which the
runc shim opens itself). Exit and OOM events come from one long-lived subscription, not from polling.

What the kubelet and containerd say to each other (ids, specs, tasks, events, errors) is
:mod:`agents.kubelet.containers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal as signals
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The kubelet forks (CNI plugins, ip, ctr) while gRPC's threads poll its channel; gRPC's fork handlers
# would then only log, at every fork, that they are skipped. Read when grpc is first imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc
from google.protobuf import any_pb2, empty_pb2

from agents.kubelet.attach import StdinPipes, Terminals
from agents.kubelet.containerd_api.events import task_pb2 as task_events
from agents.kubelet.containerd_api.services.containers.v1 import containers_pb2, containers_pb2_grpc
from agents.kubelet.containerd_api.services.content.v1 import content_pb2, content_pb2_grpc
from agents.kubelet.containerd_api.services.events.v1 import events_pb2, events_pb2_grpc
from agents.kubelet.containerd_api.services.images.v1 import images_pb2, images_pb2_grpc
from agents.kubelet.containerd_api.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from agents.kubelet.containerd_api.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from agents.kubelet.containerd_api.services.version.v1 import version_pb2_grpc
from agents.kubelet.containerd_api.types.task import task_pb2
from agents.kubelet.containers import (
    MANAGED,
    ContainerdError,
    ContainerdUnavailableError,
    ContainerSpec,
    ImageNotFoundError,
    Task,
    TaskExit,
    TaskOOM,
)
from agents.kubelet.ctr import Ctr
from agents.kubelet.oci import SpecError, chain_id, runtime_spec

log = logging.getLogger(__name__)

RUNTIME = "io.containerd.runc.v2"
SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Process"
EXIT_EVENT = "containerd.events.TaskExit"
OOM_EVENT = "containerd.events.TaskOOM"
INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
CALL_SECONDS = 60.0  # one request to containerd
KILL_WAIT = 10.0  # seconds a SIGKILLed task gets to end before its removal
PROBE_OUTPUT = 10 * 1024  # bytes of an exec's output kept (kube keeps 10 KiB of a probe's)


@dataclass(frozen=True)
class Image:
    """What the kubelet needs of an image: its config and the snapshot its rootfs is unpacked to."""

    config: dict[str, Any]  # the OCI config's ``config`` (Entrypoint, Cmd, Env, WorkingDir, User, ...)
    chain_id: str


def event_of(envelope: events_pb2.Envelope) -> TaskExit | TaskOOM | None:
    """A task's exit or OOM from an event envelope; other events, and the ends of processes exec'd
    into a container (probes), are None."""
    kind = envelope.event.type_url.rsplit("/", 1)[-1]
    if kind == EXIT_EVENT:
        exited = task_events.TaskExit.FromString(envelope.event.value)
        if exited.id and exited.container_id and exited.id != exited.container_id:
            return None  # an exec'd process: its id is the exec id
        at = exited.exited_at.ToDatetime().isoformat() + "Z" if exited.HasField("exited_at") else ""
        return TaskExit(str(exited.container_id or exited.id), int(exited.exit_status), at)
    if kind == OOM_EVENT:
        return TaskOOM(str(task_events.TaskOOM.FromString(envelope.event.value).container_id))
    return None


def task_of(process: task_pb2.Process) -> Task:
    return Task(str(process.id or process.container_id), int(process.pid), task_pb2.Status.Name(process.status))


def _code(exc: grpc.aio.AioRpcError) -> str:
    return str(exc.code().name).lower()


class Containerd:
    """One containerd namespace, through containerd's gRPC API (``ctr`` for what the API leaves to
    the client: pulls, and the streams of ``kubectl exec``)."""

    def __init__(
        self,
        *,
        address: str,
        namespace: str = "k8s.io",
        snapshotter: str = "overlayfs",
        fifo_dir: Path,
        ctr: Ctr,
    ) -> None:
        self.address = address
        self.namespace = namespace
        self.snapshotter = snapshotter
        self.fifo_dir = fifo_dir
        self.ctr = ctr
        self._metadata = (("containerd-namespace", namespace),)
        self._channel: Any = None
        self._images: dict[str, Image] = {}  # by the image's target digest: what a digest names never changes
        self._processes: dict[str, dict[str, Any]] = {}  # container id -> its OCI process (for exec)
        # the stdin of containers created with `stdin: true` (attach)
        self.stdin = StdinPipes(fifo_dir, close_io=self.close_stdin)
        self._with_stdin: set[str] = set()
        self.terminals = Terminals(fifo_dir)  # the output of containers with `tty: true`
        self._with_tty: set[str] = set()

    # --- the connection ----------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                f"unix://{self.address}", options=[("grpc.max_receive_message_length", 64 * 2**20)]
            )
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def _call(self, operation: str, method: Any, request: Any, *, seconds: float = CALL_SECONDS) -> Any:
        """One unary request in this namespace; containerd's refusal is a ContainerdError."""
        try:
            return await method(request, timeout=seconds, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            raise self._error(operation, exc) from exc

    def _error(self, operation: str, exc: grpc.aio.AioRpcError) -> ContainerdError:
        details = str(exc.details() or exc.code().name)
        if exc.code() == grpc.StatusCode.UNAVAILABLE:
            return ContainerdUnavailableError(operation, f"containerd does not answer at {self.address}: {details}")
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ContainerdUnavailableError(operation, "containerd did not answer in time")
        return ContainerdError(operation, details, _code(exc))

    def _tasks(self) -> tasks_pb2_grpc.TasksStub:
        return tasks_pb2_grpc.TasksStub(self._connect())

    def _containers(self) -> containers_pb2_grpc.ContainersStub:
        return containers_pb2_grpc.ContainersStub(self._connect())

    def _snapshots(self) -> snapshots_pb2_grpc.SnapshotsStub:
        return snapshots_pb2_grpc.SnapshotsStub(self._connect())

    def cgroup(self, container: str) -> str:
        """The container's cgroup, as its runtime spec names it."""
        return f"/{self.namespace}/{container}"

    async def version(self) -> str:
        """containerd's version, as the node reports it (``containerRuntimeVersion``)."""
        stub = version_pb2_grpc.VersionStub(self._connect())
        return str((await self._call("version", stub.Version, empty_pb2.Empty())).version)

    # --- images ------------------------------------------------------------------------------------

    async def has_image(self, reference: str) -> bool:
        stub = images_pb2_grpc.ImagesStub(self._connect())
        try:
            await self._call("get image", stub.Get, images_pb2.GetImageRequest(name=reference))
        except ContainerdError as exc:
            if exc.code == "not_found":
                return False
            raise
        return True

    async def pull(self, reference: str) -> None:
        await self.ctr.pull(reference)

    async def _read(self, digest: str) -> dict[str, Any]:
        """A JSON blob of the content store (a manifest, an index, a config)."""
        stub = content_pb2_grpc.ContentStub(self._connect())
        data = bytearray()
        call = stub.Read(content_pb2.ReadContentRequest(digest=digest), timeout=CALL_SECONDS, metadata=self._metadata)
        try:
            async for chunk in call:
                data += chunk.data
        except grpc.aio.AioRpcError as exc:
            raise self._error(f"read {digest}", exc) from exc
        found: dict[str, Any] = json.loads(bytes(data))
        return found

    async def image(self, reference: str) -> Image:
        """The image's config and the ChainID of its layers (linux/amd64 of an index)."""
        stub = images_pb2_grpc.ImagesStub(self._connect())
        try:
            found = await self._call("get image", stub.Get, images_pb2.GetImageRequest(name=reference))
        except ContainerdError as exc:
            if exc.code == "not_found":
                raise ImageNotFoundError(f"inspect {reference}", "not found", exc.code) from exc
            raise
        target = found.image.target
        digest = str(target.digest)
        if digest not in self._images:
            manifest = await self._read(digest)
            if str(target.media_type) in INDEX_TYPES or "manifests" in manifest:
                chosen = next(
                    (
                        m
                        for m in manifest["manifests"]
                        if (m.get("platform") or {}).get("architecture", "amd64") == "amd64"
                    ),
                    manifest["manifests"][0],
                )
                manifest = await self._read(chosen["digest"])
            config = await self._read(manifest["config"]["digest"])
            diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
            self._images[digest] = Image(dict(config.get("config") or {}), chain_id(diff_ids))
        return self._images[digest]

    async def image_config(self, reference: str) -> dict[str, Any]:
        """The image's OCI config (``Entrypoint``, ``Cmd``, ``Env``, ``WorkingDir``, ...)."""
        return (await self.image(reference)).config

    # --- containers and tasks ----------------------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> None:
        """The container (its runtime spec as :mod:`agents.kubelet.oci` writes it) and its rootfs
        snapshot, prepared from the image's unpacked layers. The container is made first: containerd's
        garbage collector keeps a snapshot a container names, so none is left unreferenced meanwhile."""
        image = await self.image(spec.image)
        cid = str(spec.id)
        try:
            oci_spec = runtime_spec(spec, image_config=image.config, namespace=self.namespace)
        except SpecError as exc:
            raise ContainerdError(f"create {cid}", str(exc), "invalid_argument") from exc
        container = containers_pb2.Container(
            id=cid,
            labels={MANAGED: "true", **spec.labels},
            image=spec.image,
            runtime=containers_pb2.Container.Runtime(name=RUNTIME),
            spec=any_pb2.Any(type_url=SPEC_TYPE, value=json.dumps(oci_spec).encode()),
            snapshotter=self.snapshotter,
            snapshot_key=cid,
        )
        stub = self._containers()
        await self._call(f"create {cid}", stub.Create, containers_pb2.CreateContainerRequest(container=container))
        prepare = snapshots_pb2.PrepareSnapshotRequest(snapshotter=self.snapshotter, key=cid, parent=image.chain_id)
        try:
            try:
                await self._call(f"prepare the rootfs of {cid}", self._snapshots().Prepare, prepare)
            except ContainerdError as exc:
                if exc.code != "already_exists":  # the snapshot of an interrupted earlier create
                    raise
                await self._remove_snapshot(cid)
                await self._call(f"prepare the rootfs of {cid}", self._snapshots().Prepare, prepare)
        except ContainerdError:
            with contextlib.suppress(ContainerdError):
                await self._call(f"delete {cid}", stub.Delete, containers_pb2.DeleteContainerRequest(id=cid))
            raise
        self._processes[cid] = oci_spec["process"]
        if spec.stdin:
            self._with_stdin.add(cid)
        if spec.tty:
            self._with_tty.add(cid)

    async def start(self, container: str, *, log_file: Path) -> None:
        """The container's task, its output to ``log_file``, started. A task that cannot be created or
        started (a command that does not exist, say) is a ContainerdError in kube's words: "failed to
        create containerd task: <the runtime's message>"."""
        log_file.parent.mkdir(parents=True, exist_ok=True)
        stub = self._tasks()
        mounts = await self._call(
            f"start {container}",
            self._snapshots().Mounts,
            snapshots_pb2.MountsRequest(snapshotter=self.snapshotter, key=container),
        )
        uri = f"file://{log_file}"
        stdin = str(self.stdin.open(container)) if container in self._with_stdin else ""
        tty = container in self._with_tty
        if tty:  # a terminal's output goes to a FIFO only: the kubelet copies it to the log file
            uri = str(self.terminals.open(container, log_file))
        request = tasks_pb2.CreateTaskRequest(
            container_id=container,
            rootfs=list(mounts.mounts),
            stdin=stdin,
            stdout=uri,
            stderr="" if tty else uri,
            terminal=tty,
        )
        try:
            await self._call(f"start {container}", stub.Create, request, seconds=120)
        except ContainerdUnavailableError:
            raise
        except ContainerdError as exc:
            raise ContainerdError(f"start {container}", f"failed to create containerd task: {exc.message}") from exc
        try:
            await self._call(f"start {container}", stub.Start, tasks_pb2.StartRequest(container_id=container))
        except ContainerdError as exc:
            with contextlib.suppress(ContainerdError):
                await self._call(
                    f"delete task {container}", stub.Delete, tasks_pb2.DeleteTaskRequest(container_id=container)
                )
            raise ContainerdError(
                f"start {container}", f'failed to start containerd task "{container}": {exc.message}'
            ) from exc

    async def close_stdin(self, container: str) -> None:
        """The end of a task's input: its shim closes the container's stdin (a stdinOnce attach ended)."""
        request = tasks_pb2.CloseIORequest(container_id=container, stdin=True)
        await self._call(f"close the stdin of {container}", self._tasks().CloseIO, request)

    def has_terminal(self, container: str) -> bool:
        return self.terminals.is_open(container)

    async def resize(self, container: str, width: int, height: int) -> None:
        """The size of a container's terminal (an attach session's resize messages)."""
        request = tasks_pb2.ResizePtyRequest(container_id=container, width=width, height=height)
        await self._call(f"resize the terminal of {container}", self._tasks().ResizePty, request)

    async def kill(self, container: str, signal: str = "SIGTERM") -> None:
        """Signal the container's task; a task that has ended or is gone is no error."""
        request = tasks_pb2.KillRequest(container_id=container, signal=int(signals.Signals[signal]))
        try:
            await self._call(f"kill {container}", self._tasks().Kill, request)
        except ContainerdError as exc:
            if exc.code != "not_found" and "process already finished" not in exc.message:
                raise

    async def wait(self, container: str, *, seconds: float) -> bool:
        """Whether the container's task ends (or is gone) within ``seconds``."""
        try:
            await self._call(
                f"wait {container}", self._tasks().Wait, tasks_pb2.WaitRequest(container_id=container), seconds=seconds
            )
        except ContainerdUnavailableError:
            return False
        except ContainerdError as exc:
            if exc.code == "not_found":
                return True
            raise
        return True

    async def delete_task(self, container: str) -> int | None:
        """Remove a stopped task; its exit status (None: there was no task, or another caller removed it
        meanwhile: the PLEG removes the task of a run that ended while a pod worker stops the pod, and
        the loser's request finds the shim gone, ``ttrpc: closed``)."""
        tasks = self._tasks()
        try:
            done = await self._call(
                f"delete task {container}", tasks.Delete, tasks_pb2.DeleteTaskRequest(container_id=container)
            )
        except ContainerdError as exc:
            if exc.code == "not_found":
                return None
            if isinstance(exc, ContainerdUnavailableError):
                raise
            try:
                await self._call(f"get task {container}", tasks.Get, tasks_pb2.GetRequest(container_id=container))
            except ContainerdError as again:
                if again.code == "not_found":
                    return None
            raise
        return int(done.exit_status)

    async def delete(self, container: str) -> None:
        """Remove a container, its task (killed first if it still runs) and its rootfs snapshot."""
        tasks = self._tasks()
        try:
            found = await self._call(f"get task {container}", tasks.Get, tasks_pb2.GetRequest(container_id=container))
        except ContainerdError as exc:
            if exc.code != "not_found":
                raise
        else:
            if found.process.status != task_pb2.STOPPED:
                await self.kill(container, "SIGKILL")
                await self.wait(container, seconds=KILL_WAIT)
            await self.delete_task(container)
        try:
            await self._call(
                f"delete {container}", self._containers().Delete, containers_pb2.DeleteContainerRequest(id=container)
            )
        except ContainerdError as exc:
            if exc.code != "not_found":
                raise
        await self._remove_snapshot(container)
        self._processes.pop(container, None)
        self._with_stdin.discard(container)
        self.stdin.remove(container)
        self._with_tty.discard(container)
        self.terminals.close(container)

    async def _remove_snapshot(self, key: str) -> None:
        request = snapshots_pb2.RemoveSnapshotRequest(snapshotter=self.snapshotter, key=key)
        try:
            await self._call(f"remove the rootfs of {key}", self._snapshots().Remove, request)
        except ContainerdError as exc:
            if exc.code != "not_found":
                raise

    async def containers(self) -> list[str]:
        """Ids of the containers the kubelet created (labelled); others are not its business."""
        request = containers_pb2.ListContainersRequest(filters=[f'labels."{MANAGED}"==true'])
        found = await self._call("list containers", self._containers().List, request)
        return [str(c.id) for c in found.containers]

    async def tasks(self) -> dict[str, Task]:
        found = await self._call("list tasks", self._tasks().List, tasks_pb2.ListTasksRequest())
        tasks = {task.id: task for task in (task_of(p) for p in found.tasks)}
        for task in tasks.values():  # the streams of containers an earlier kubelet started (attach)
            if task.status == "RUNNING":
                self.stdin.adopt(task.id)
                self.terminals.adopt(task.id)
        return tasks

    # --- exec --------------------------------------------------------------------------------------

    async def _process(self, container: str) -> dict[str, Any]:
        """The container's OCI process, the template of the processes exec'd into it."""
        if container not in self._processes:
            found = await self._call(
                f"get {container}", self._containers().Get, containers_pb2.GetContainerRequest(id=container)
            )
            self._processes[container] = dict(json.loads(found.container.spec.value).get("process") or {})
        return self._processes[container]

    async def exec(self, container: str, argv: Sequence[str], *, seconds: float) -> tuple[int, str]:
        """Run ``argv`` in a running container; its exit code and output (stdout and stderr together,
        the first 10 KiB). A command that does not end within ``seconds`` is killed: 124, as
        ``timeout`` says it; one that cannot start: 126 and the runtime's message."""
        exec_id = f"exec-{uuid.uuid4().hex[:12]}"
        self.fifo_dir.mkdir(parents=True, exist_ok=True)
        fifo = self.fifo_dir / exec_id
        os.mkfifo(fifo, 0o600)
        # read and write: no end of file while the shim has not opened it yet, and never blocks
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        output = bytearray()

        def readable() -> None:
            with contextlib.suppress(BlockingIOError):
                while chunk := os.read(fd, 65536):
                    output.extend(chunk[: max(0, PROBE_OUTPUT - len(output))])

        loop = asyncio.get_running_loop()
        loop.add_reader(fd, readable)
        tasks = self._tasks()
        try:
            process = dict(await self._process(container), args=list(argv), terminal=False)
            spec = any_pb2.Any(type_url=PROCESS_TYPE, value=json.dumps(process).encode())
            request = tasks_pb2.ExecProcessRequest(
                container_id=container, exec_id=exec_id, stdout=str(fifo), stderr=str(fifo), spec=spec
            )
            await self._call(f"exec in {container}", tasks.Exec, request)
            try:
                try:
                    await self._call(
                        f"exec in {container}",
                        tasks.Start,
                        tasks_pb2.StartRequest(container_id=container, exec_id=exec_id),
                    )
                except ContainerdError as exc:
                    return 126, exc.message
                waited = tasks_pb2.WaitRequest(container_id=container, exec_id=exec_id)
                try:
                    # the deadline is the probe's, kept here: containerd words its own expiry as it likes
                    done = await asyncio.wait_for(tasks.Wait(waited, metadata=self._metadata), seconds)
                except TimeoutError:
                    with contextlib.suppress(ContainerdError):
                        kill = tasks_pb2.KillRequest(container_id=container, exec_id=exec_id, signal=9)
                        await self._call(f"exec in {container}", tasks.Kill, kill)
                        await self._call(f"exec in {container}", tasks.Wait, waited, seconds=KILL_WAIT)
                    return 124, f"command timed out after {seconds:g}s"
                except grpc.aio.AioRpcError as exc:
                    raise self._error(f"exec in {container}", exc) from exc
                code = int(done.exit_status)
            finally:
                with contextlib.suppress(ContainerdError):  # waits for the output to be copied
                    delete = tasks_pb2.DeleteProcessRequest(container_id=container, exec_id=exec_id)
                    await self._call(f"exec in {container}", tasks.DeleteProcess, delete)
            readable()
            return code, output.decode(errors="replace")
        finally:
            loop.remove_reader(fd)
            os.close(fd)
            fifo.unlink(missing_ok=True)

    async def exec_process(
        self, container: str, argv: Sequence[str], *, tty: bool, stdin: Any, stdout: Any, stderr: Any
    ) -> asyncio.subprocess.Process:
        """Start ``argv`` in a running container with the given standard streams (``kubectl exec``)."""
        return await self.ctr.exec_process(container, argv, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr)

    # --- events ------------------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[TaskExit | TaskOOM]:
        """Task exits and OOMs of this namespace as containerd reports them, until cancelled
        (subscribing again when the stream ends)."""
        stub = events_pb2_grpc.EventsStub(self._connect())
        topics = ("/tasks/exit", "/tasks/oom")
        request = events_pb2.SubscribeRequest(
            filters=[f'namespace=="{self.namespace}",topic=="{topic}"' for topic in topics]
        )
        while True:
            call = stub.Subscribe(request)
            try:
                async for envelope in call:
                    event = event_of(envelope)
                    if event is not None:
                        yield event
                log.warning("containerd's event stream ended; subscribing again")
            except grpc.aio.AioRpcError as exc:
                log.warning("containerd's event stream failed (%s); subscribing again", exc.details() or exc.code())
            finally:
                call.cancel()
            await asyncio.sleep(1)
