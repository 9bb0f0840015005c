"""The container runtime as the kubelet sees it: everything it asks of containerd and the node.

This is kube's container runtime seam (CRI and the kubelet's ``kuberuntime`` manager): the pod
workers decide what a pod needs, the PLEG asks what runs, and both do it through this object, which
decides nothing. It holds what the runtime knows that containerd would take a request to tell again
(images present, image configs), when each start returned, which the PLEG's relist needs to judge a
run only by a task list asked for after its start (on a loaded node a start takes seconds, and a list
asked for meanwhile does not show the task yet), and which containers the kernel's OOM killer hit
(containerd's OOM events, or the container's cgroup counting an OOM kill: :mod:`agents.kubelet.cgroups`).

The pod sandbox (a network namespace wired by CNI, :mod:`agents.kubelet.sandbox`) exists once the
node has its podCIDR (:meth:`Runtime.use_network`), as kube's runtime learns it through
``UpdateRuntimeConfig``; with it come the pod's hostname (a UTS namespace its containers share) and
its ``/etc/hosts``. How a container's spec follows from the pod is :func:`container_spec`, pure so
that tests read it; how containerd is asked is :mod:`agents.kubelet.containerd` (its gRPC API).
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from agents.kubelet import cgroups, dns, namespaces
from agents.kubelet.cni import BridgeNetwork, CniClient, PodRef, port_mappings
from agents.kubelet.containerd import Containerd
from agents.kubelet.containers import ContainerdError, ContainerId, ContainerSpec, Mount, Task, TaskExit, TaskOOM
from agents.kubelet.containers import command_line as process_of
from agents.kubelet.dns import DnsSettings, Resolver
from agents.kubelet.sandbox import NETNS_DIR, Sandbox, SandboxManager
from agents.kubelet.settings import NetworkSettings
from agents.kubelet.volumes import VolumeFiles, expand, mounts
from agents.machinery import quantity
from agents.machinery.objects import Object

log = logging.getLogger(__name__)

CONTAINERD = "containerd://"  # the scheme of a containerID in a pod's status
KILL_POLL = 0.2  # seconds between looks at a task that was asked to stop


def cpu_quota(limits: Mapping[str, Any], period: int = 100_000) -> int:
    cpu = limits.get("cpu")
    return quantity.milli(cpu) * period // 1000 if cpu else 0


def hostname_of(pod: Object) -> str:
    return str((pod.get("spec") or {}).get("hostname") or pod["metadata"]["name"])[:63]


def hosts_file(ip: str, hostname: str) -> str:
    """The pod's ``/etc/hosts``, as kube's kubelet writes it."""
    return (
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"fe00::0\tip6-localnet\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{ip}\t{hostname}\n"
    )


def container_spec(
    pod: Object,
    container: Mapping[str, Any],
    *,
    cid: ContainerId,
    image: str,
    config: Mapping[str, Any],
    env: Mapping[str, str],
    volumes: list[VolumeFiles],
    netns: str,
    uts: str,
    hosts: Path,
    resolv: Path | None = None,
    pidns: str = "",
) -> ContainerSpec:
    """What containerd is asked to create for one run of ``container``: the process (kube's rule over
    the image's Entrypoint and Cmd, ``$(VAR)`` in the command and args expanded from ``env``), the
    pod's namespaces, ``/etc/hosts``, ``/etc/resolv.conf`` and the volumes as bind mounts, the limits
    as cgroup settings, and the pod's name and namespace as labels."""
    limits = (container.get("resources") or {}).get("limits") or {}
    return ContainerSpec(
        cid,
        image,
        # kube expands $(VAR) in the container's own command and args with its environment (not the image's)
        argv=process_of(
            config,
            [expand(str(c), env) for c in container.get("command") or []],
            [expand(str(a), env) for a in container.get("args") or []],
        ),
        env=env,
        working_dir=str(container.get("workingDir") or config.get("WorkingDir") or ""),
        netns=netns,
        uts=uts,
        pidns=pidns,
        stdin=bool(container.get("stdin")),
        tty=bool(container.get("tty")),
        mounts=(
            Mount(str(hosts), "/etc/hosts"),
            *([Mount(str(resolv), "/etc/resolv.conf")] if resolv is not None else []),
            *mounts(container, volumes),
        ),
        memory_limit=quantity.whole(limits["memory"]) if limits.get("memory") else 0,
        cpu_quota=cpu_quota(limits),
        labels={
            "io.kubernetes.pod.name": pod["metadata"]["name"],
            "io.kubernetes.pod.namespace": pod["metadata"]["namespace"],
        },
    )


def is_mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point (a namespace file bound there), from /proc/self/mountinfo."""
    target = str(path)
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    return any(len(parts) > 4 and parts[4] == target for parts in (line.split() for line in lines))


class Runtime:
    """containerd, the pod sandboxes and the pods' directories on this node."""

    def __init__(
        self,
        containerd: Containerd,
        *,
        root: Path,
        network: NetworkSettings,
        node_name: str,
        dns: DnsSettings | None = None,
    ) -> None:
        self.containerd = containerd
        self.root = root
        self.network = network
        self.node_name = node_name
        self.dns = dns if dns is not None else DnsSettings()
        self.version = "containerd://unknown"
        self.sandboxes: SandboxManager | None = None  # once the node has its podCIDR
        self._images: set[str] = set()  # references known to be in containerd (pulled or seen)
        self._image_configs: dict[str, dict[str, Any]] = {}  # reference -> its image config
        # container id -> when its start returned (inf while it runs)
        self._starts: dict[str, float] = {}
        self._oom_killed: set[str] = set()  # container ids with an OOM event since their task was removed

    async def read_version(self, *, period: float = 0.5) -> None:
        """containerd's version, asked until containerd answers: a containerd restarted at the same
        time as the kubelet (a converging ``up``, a drill) may not listen yet when the kubelet asks."""
        waited = False
        while True:
            try:
                self.version = f"{CONTAINERD}{await self.containerd.version()}"
                break
            except ContainerdError as exc:
                if not waited:
                    log.info("waiting for containerd: %s", exc)
                waited = True
                await asyncio.sleep(period)
        if waited:
            log.info("containerd answers: %s", self.version)

    def use_network(self, network: BridgeNetwork) -> None:
        """The pod network is known (the node's podCIDR): pods can have sandboxes from now on."""
        cni = CniClient(plugin_dirs=(self.network.cni_bin_dir,), node_netns=self.network.node_netns)
        self.sandboxes = SandboxManager(
            cni=cni,
            network=network,
            state_dir=self.root / "sandboxes",
            netns_prefix=f"kl-{self.node_name}-",  # its own: stale() must not take another node's namespaces
        )

    # --- a pod's places on the node ----------------------------------------------------------------

    def pod_dir(self, uid: str) -> Path:
        return self.root / "pods" / uid

    def log_file(self, uid: str, name: str, attempt: int) -> Path:
        return self.pod_dir(uid) / "logs" / name / f"{attempt}.log"

    def hosts_path(self, uid: str) -> Path:
        return self.pod_dir(uid) / "etc-hosts"

    def resolv_path(self, uid: str) -> Path:
        return self.pod_dir(uid) / "resolv.conf"

    def netns_path(self, uid: str) -> Path | None:
        """The pod sandbox's network namespace (None: no pod network yet)."""
        return NETNS_DIR / self.sandboxes.netns_name(uid) if self.sandboxes is not None else None

    def uts_path(self, uid: str) -> str:
        """The pod's UTS namespace file, or "" when the pod has none (its containers keep the node's name)."""
        uts = self.pod_dir(uid) / "uts"
        return str(uts) if is_mounted(uts) else ""

    # --- images ----------------------------------------------------------------------------------

    async def has_image(self, reference: str) -> bool:
        if reference in self._images:
            return True
        present = await self.containerd.has_image(reference)
        if present:
            self._images.add(reference)
        return present

    async def pull(self, reference: str) -> None:
        await self.containerd.pull(reference)
        self._image_configs.pop(reference, None)  # the tag may name another image now
        self._images.add(reference)

    async def image_config(self, reference: str) -> dict[str, Any]:
        if reference not in self._image_configs:
            self._image_configs[reference] = await self.containerd.image_config(reference)
        return self._image_configs[reference]

    # --- sandboxes -------------------------------------------------------------------------------

    async def run_sandbox(self, pod: Object) -> Sandbox:
        """The pod's sandbox, made unless it exists; the caller has checked that the pod network is
        known (``sandboxes``)."""
        assert self.sandboxes is not None
        meta = pod["metadata"]
        return await self.sandboxes.ensure(
            PodRef(meta["namespace"], meta["name"], meta["uid"]), port_mappings=port_mappings(pod.get("spec") or {})
        )

    async def pod_identity(self, pod: Object, ip: str) -> Resolver:
        """The pod's hostname (a UTS namespace its containers share), its /etc/hosts and its
        /etc/resolv.conf (:mod:`agents.kubelet.dns`); returns the resolver it was given."""
        meta = pod["metadata"]
        uid, hostname = meta["uid"], hostname_of(pod)
        self.pod_dir(uid).mkdir(parents=True, exist_ok=True)
        self.hosts_path(uid).write_text(hosts_file(ip, hostname))
        try:
            node = dns.parse_resolv_conf(self.dns.resolv_conf.read_text())
        except OSError:
            node = dns.Resolver()  # a node without a resolver of its own (the lab is offline)
        resolver = dns.pod_resolver(
            pod, cluster_dns=self.dns.cluster_dns, cluster_domain=self.dns.cluster_domain, node=node
        )
        self.resolv_path(uid).write_text(resolver.render())
        uts = self.pod_dir(uid) / "uts"
        if not is_mounted(uts):
            try:
                await namespaces.add_uts(uts, hostname)
            except OSError as exc:
                log.warning(
                    "pod %s/%s: no UTS namespace (%s); it keeps the node's hostname",
                    meta["namespace"],
                    meta["name"],
                    exc.strerror or exc,
                )
        return resolver

    async def remove_stale_sandboxes(self) -> None:
        """Sandboxes half made or half gone (an earlier run ended in the middle) are undone."""
        if self.sandboxes is not None:
            for uid in self.sandboxes.stale():
                await self.sandboxes.remove(uid)

    def existing_sandboxes(self) -> list[Sandbox]:
        return self.sandboxes.existing() if self.sandboxes is not None else []

    async def remove_pod(self, uid: str) -> None:
        """Every container of the pod, its sandbox, its UTS namespace and its volumes go."""
        for cid in await self.containerd.containers():
            parsed = ContainerId.parse(cid)
            if parsed is not None and parsed.pod_uid == uid:
                await self.containerd.delete(cid)
        if self.sandboxes is not None:
            await self.sandboxes.remove(uid)
        uts = self.pod_dir(uid) / "uts"
        if is_mounted(uts):
            try:
                namespaces.unmount(uts)
            except OSError as exc:
                log.warning("pod %s: its UTS namespace stays mounted: %s", uid, exc.strerror or exc)
        shutil.rmtree(self.pod_dir(uid) / "volumes", ignore_errors=True)

    # --- containers and tasks ----------------------------------------------------------------------

    async def create(self, spec: ContainerSpec) -> None:
        """Create the container; a leftover of an interrupted start under the same id is removed first."""
        try:
            await self.containerd.create(spec)
        except ContainerdError as exc:
            if "already exists" not in exc.message:
                raise
            await self.containerd.delete(str(spec.id))
            await self.containerd.create(spec)

    async def start(self, cid: ContainerId) -> None:
        """Start the container's task, its output to the run's log file; remembers when the start returned."""
        self._starts[str(cid)] = math.inf  # before the first await: no task list can slip in between
        try:
            await self.containerd.start(str(cid), log_file=self.log_file(cid.pod_uid, cid.name, cid.attempt))
        finally:
            self._starts[str(cid)] = time.time()

    def start_returned(self, cid: str) -> float:
        """When the start of ``cid`` returned: inf while it runs, 0 when it is not remembered
        (long done, or started by an earlier kubelet)."""
        return self._starts.get(cid, 0.0)

    def forget_start(self, cid: str) -> None:
        self._starts.pop(cid, None)

    async def kill(self, cid: str, *, grace: float) -> None:
        """SIGTERM, then SIGKILL if it still runs after ``grace`` seconds."""
        await self.containerd.kill(cid, "SIGTERM")
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            task = (await self.containerd.tasks()).get(cid)
            if task is None or task.status != "RUNNING":
                return
            await asyncio.sleep(KILL_POLL)
        await self.containerd.kill(cid, "SIGKILL")

    async def stop(self, cids: Sequence[str], *, grace: float) -> None:
        """Signal every container (SIGTERM, or SIGKILL when ``grace`` is 0) and wait up to ``grace``
        seconds for their tasks to end; what still runs then is killed by :meth:`remove_pod`."""
        for cid in cids:
            await self.containerd.kill(cid, "SIGTERM" if grace > 0 else "SIGKILL")
        deadline = time.monotonic() + grace
        while cids and time.monotonic() < deadline:
            tasks = await self.containerd.tasks()
            if all(tasks.get(cid) is None or tasks[cid].status != "RUNNING" for cid in cids):
                break
            await asyncio.sleep(KILL_POLL)

    async def remove_old_runs(self, uid: str, name: str, *, keep_from: int) -> None:
        """Remove the containers (and logs) of runs before ``keep_from``: the previous run stays,
        for ``kubectl logs --previous`` and the status's lastState."""
        for cid in await self.containerd.containers():
            parsed = ContainerId.parse(cid)
            if parsed is not None and parsed.pod_uid == uid and parsed.name == name and parsed.attempt < keep_from:
                await self.containerd.delete(cid)
                self.log_file(uid, name, parsed.attempt).unlink(missing_ok=True)

    async def containers(self) -> list[str]:
        return await self.containerd.containers()

    async def tasks(self) -> dict[str, Task]:
        return await self.containerd.tasks()

    async def delete_task(self, cid: str) -> int | None:
        """Remove an ended task (its cgroup goes with it): its exit status, None when there was none."""
        code = await self.containerd.delete_task(cid)
        self._oom_killed.discard(cid)
        return code

    async def exits(self) -> AsyncIterator[TaskExit]:
        """Task exits as containerd reports them; its OOM events are remembered for :meth:`oom_killed`."""
        async for event in self.containerd.events():
            if isinstance(event, TaskOOM):
                log.info("container %s: the OOM killer killed a process", event.id)
                self._oom_killed.add(event.id)
            else:
                yield event

    def oom_killed(self, cid: str) -> bool:
        """Whether the kernel's OOM killer killed a process of the container's task: an OOM event, or
        its cgroup's count (asked before the task's removal takes the cgroup)."""
        return cid in self._oom_killed or cgroups.oom_kills(self.containerd.cgroup(cid)) > 0

    async def exec(self, cid: str, argv: list[str], seconds: float) -> tuple[int, str]:
        """A command in a running container, to its end (exec probes): its exit code and output; a
        container containerd cannot exec in (gone, stopped) is a failure with containerd's words."""
        try:
            return await self.containerd.exec(cid, argv, seconds=seconds)
        except ContainerdError as exc:
            return 126, exc.message

    async def exec_process(
        self, cid: str, argv: Sequence[str], *, tty: bool, stdin: Any, stdout: Any, stderr: Any
    ) -> asyncio.subprocess.Process:
        """A command in a running container with the given standard streams (``kubectl exec``)."""
        return await self.containerd.exec_process(cid, argv, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr)
