"""The kubelet: registers its node, keeps its Lease, and runs the pods bound to it.

Level-triggered like the controllers: the pod informer (only this node's pods), containerd's exit
events and the back-off timers all just queue a pod's key; ``sync(key)`` observes what runs, asks
the pure planner (:mod:`agents.kubelet.podstate`) what to do, does it, and writes the status.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import time
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Network, ip_network
from pathlib import Path
from typing import Any

from agents.kubelet import node as nodes
from agents.kubelet import podstate
from agents.kubelet.cni import (
    CONFLIST_NAME,
    BridgeNetwork,
    CniClient,
    PodRef,
    bridge_conflist,
    port_mappings,
    write_conflist,
)
from agents.kubelet.containerd import ContainerdError, ContainerId, ContainerSpec, Ctr, ImageNotFoundError, Mount
from agents.kubelet.containerd import command_line as process_of
from agents.kubelet.errors import KubeletError
from agents.kubelet.probes import ContainerProber
from agents.kubelet.sandbox import NETNS_DIR, SandboxManager
from agents.kubelet.server import KubeletServer
from agents.kubelet.settings import KubeletSettings
from agents.kubelet.volumes import VolumeError, environment, mounts, plan_volumes, write_volumes
from agents.machinery import quantity
from agents.machinery.client import ApiError, ApiUnavailableError, Client
from agents.machinery.events import NORMAL, WARNING, EventRecorder
from agents.machinery.imagerefs import full_reference
from agents.machinery.informer import Informer, key_of
from agents.machinery.leader import LeaderElector
from agents.machinery.objects import Object
from agents.machinery.resources import CONFIGMAPS, NODES, PODS, SECRETS
from agents.machinery.workqueue import WorkQueue, run_workers

log = logging.getLogger(__name__)
NODE_LEASES = "kube-node-lease"


def pull_policy(container: dict[str, Any]) -> str:
    policy = container.get("imagePullPolicy")
    if policy:
        return str(policy)
    image = str(container.get("image") or "")
    tagged = ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
    return "IfNotPresent" if tagged or "@" in image else "Always"


def cpu_quota(limits: dict[str, Any], period: int = 100_000) -> int:
    cpu = limits.get("cpu")
    return quantity.milli(cpu) * period // 1000 if cpu else 0


def _is_mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point (a namespace file bound there), from /proc/self/mountinfo."""
    target = str(path)
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return False
    return any(len(parts) > 4 and parts[4] == target for parts in (line.split() for line in lines))


@dataclass
class PodRuntime:
    """What this kubelet knows of one pod's containers (rebuilt from containerd after a restart)."""

    uid: str
    key: str
    attempts: dict[str, list[podstate.Attempt]] = field(default_factory=dict)
    pulls: dict[str, podstate.PullFailure] = field(default_factory=dict)
    sandbox_ip: str = ""
    started_at: float = field(default_factory=time.time)

    probers: dict[str, ContainerProber] = field(default_factory=dict)  # by container name, current run

    def observed(self) -> podstate.Observed:
        probes = {name: (p.state.ready, p.state.started) for name, p in self.probers.items()}
        return podstate.Observed(self.sandbox_ip, self.attempts, self.pulls, probes)

    def stop_prober(self, name: str) -> None:
        prober = self.probers.pop(name, None)
        if prober is not None:
            prober.stop()

    def record(self, name: str, attempt: podstate.Attempt) -> None:
        runs = self.attempts.setdefault(name, [])
        runs[:] = [a for a in runs if a.number != attempt.number] + [attempt]
        runs.sort(key=lambda a: a.number)
        del runs[:-2]  # the current run and the one before it are all a status shows


class Kubelet:
    def __init__(self, client: Client, settings: KubeletSettings, *, ctr: Ctr, recorder: EventRecorder) -> None:
        self.client = client
        self.settings = settings
        self.name = settings.node_name
        self.ctr = ctr
        self.recorder = recorder
        self.root = settings.root_dir
        self.pods = Informer(client, PODS, field_selector=f"spec.nodeName={self.name}")
        self.node_informer = Informer(client, NODES, field_selector=f"metadata.name={self.name}")
        self.queue = WorkQueue(f"kubelet-{self.name}")
        self.runtime: dict[str, PodRuntime] = {}  # by pod uid
        # container id -> when `ctr start` returned (inf while it runs): the relist judges a run only
        # by a task list asked for after its start was done
        self.starts: dict[str, float] = {}
        self.images: set[str] = set()  # references known to be in containerd (pulled or seen)
        self.image_configs: dict[str, dict[str, Any]] = {}  # reference -> its image config
        self.sandboxes: SandboxManager | None = None
        self.runtime_version = "containerd://unknown"
        self.pods.on(add=self._enqueue, update=lambda _o, n: self._enqueue(n), delete=self._enqueue)
        self.node_informer.on(add=self._node_changed, update=lambda _o, n: self._node_changed(n))

    # --- node ----------------------------------------------------------------------------------

    def _node_object(self) -> dict[str, Any]:
        facts = nodes.machine_facts(self.root)
        return nodes.node_object(
            self.name,
            ip=self.settings.node_ip,
            facts=facts,
            max_pods=self.settings.max_pods,
            runtime_version=self.runtime_version,
            port=self.settings.server.port,
            labels=nodes.parse_labels(self.settings.node_labels),
            taints=nodes.parse_taints(self.settings.register_with_taints),
        )

    async def register(self) -> None:
        body = self._node_object()
        try:
            await self.client.create(NODES, body)
            log.info("registered node %s", self.name)
        except ApiError as exc:
            if not exc.already_exists:
                raise
            current = await self.client.get(NODES, self.name)
            await self.client.patch(
                NODES, self.name, nodes.heartbeat(current, body), kind="merge", subresource="status"
            )
            log.info("node %s was registered before; status refreshed", self.name)

    async def heartbeats(self) -> None:
        elector = LeaderElector(
            self.client, name=self.name, identity=self.name, namespace=NODE_LEASES, lease_duration=40
        )
        last_status = time.monotonic()
        while True:
            try:
                await elector.try_acquire_or_renew()
                if time.monotonic() - last_status >= self.settings.status_interval:
                    current = self.node_informer.get(self.name) or await self.client.get(NODES, self.name)
                    patch = nodes.heartbeat(current, self._node_object())
                    await self.client.patch(NODES, self.name, patch, kind="merge", subresource="status")
                    last_status = time.monotonic()
            except (ApiError, ApiUnavailableError) as exc:
                log.warning("node %s heartbeat failed: %s", self.name, exc)
            await asyncio.sleep(self.settings.lease_interval)

    def _node_changed(self, node: Object) -> None:
        cidr = (node.get("spec") or {}).get("podCIDR")
        if cidr and self.sandboxes is None:
            subnet = ip_network(cidr)
            assert isinstance(subnet, IPv4Network)
            network = BridgeNetwork(subnet, self.root / "cni" / "ipam", bridge=self.settings.network.bridge)
            cni = CniClient(
                plugin_dirs=(self.settings.network.cni_bin_dir,), node_netns=self.settings.network.node_netns
            )
            self.sandboxes = SandboxManager(
                cni=cni,
                network=network,
                state_dir=self.root / "sandboxes",
                netns_prefix=f"kl-{self.name}-",  # its own: stale() must not take another node's namespaces
            )
            log.info("pod network %s on bridge %s", cidr, network.bridge)
            if self.settings.cni_conf_dir is not None:
                self._write_conflist(self.settings.cni_conf_dir / CONFLIST_NAME, network)
            for pod in self.pods.items():
                self._enqueue(pod)

    def _write_conflist(self, path: Path, network: BridgeNetwork) -> None:
        """The node's network list as a file, for people and tools (cnitool) on the node; the
        kubelet itself runs the list it holds in memory."""
        try:
            if write_conflist(path, bridge_conflist(network)):
                log.info("CNI network list written to %s", path)
        except OSError as exc:
            log.warning("could not write the CNI network list %s: %s", path, exc)

    # --- pods ----------------------------------------------------------------------------------

    def _enqueue(self, pod: Object) -> None:
        self.queue.add(key_of(pod))

    def _state(self, pod: Object) -> PodRuntime:
        uid = pod["metadata"]["uid"]
        if uid not in self.runtime:
            self.runtime[uid] = PodRuntime(uid, key_of(pod))
        return self.runtime[uid]

    def pod_dir(self, uid: str) -> Path:
        return self.root / "pods" / uid

    def log_file(self, uid: str, name: str, attempt: int) -> Path:
        return self.pod_dir(uid) / "logs" / name / f"{attempt}.log"

    async def sync(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None:
            for state in [s for s in self.runtime.values() if s.key == key]:
                await self._stop(state, grace=0)  # gone from the API (grace 0): nothing to wait for
            return
        state = self._state(pod)
        now = time.time()
        actions, wake = podstate.plan(pod, state.observed(), now)
        for action in actions:
            if isinstance(action, podstate.StopPod):
                await self._stop(state, grace=action.grace_seconds)
                await self._confirm_deletion(pod)
                return
            if isinstance(action, podstate.CreateSandbox):
                if not await self._sandbox(pod, state):
                    return
                actions_after, wake = podstate.plan(pod, state.observed(), now)
                for follow in actions_after:
                    if isinstance(follow, podstate.StartContainer):
                        await self._start(pod, state, follow)
            elif isinstance(action, podstate.StartContainer):
                await self._start(pod, state, action)
        if state.sandbox_ip and self.sandboxes is not None:  # runs adopted after a restart get their probes
            for container in podstate.containers_of(pod):
                runs = state.attempts.get(container["name"]) or []
                if runs and runs[-1].state == "running" and container["name"] not in state.probers:
                    self._probe(pod, state, container, runs[-1].container_id.removeprefix("containerd://"))
        await self._report(pod, state)
        if wake is not None:
            self.queue.add_after(key, max(0.0, wake - time.time()))

    async def _sandbox(self, pod: Object, state: PodRuntime) -> bool:
        if self.sandboxes is None:
            return False  # no podCIDR yet: the node update brings the pod back
        meta = pod["metadata"]
        try:
            sandbox = await self.sandboxes.ensure(
                PodRef(meta["namespace"], meta["name"], meta["uid"]), port_mappings=port_mappings(pod.get("spec") or {})
            )
        except KubeletError as exc:
            self.recorder.record(pod, WARNING, "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc}")
            self.queue.add_after(key_of(pod), 5.0)
            return False
        state.sandbox_ip = str(sandbox.ip)
        await self._pod_identity(pod, state.sandbox_ip)
        return True

    def hostname_of(self, pod: Object) -> str:
        return str((pod.get("spec") or {}).get("hostname") or pod["metadata"]["name"])[:63]

    async def _pod_identity(self, pod: Object, ip: str) -> None:
        """The pod's hostname (a UTS namespace its containers share) and its /etc/hosts, as kube's
        kubelet writes it."""
        uid, hostname = pod["metadata"]["uid"], self.hostname_of(pod)
        directory = self.pod_dir(uid)
        directory.mkdir(parents=True, exist_ok=True)
        hosts = (
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"fe00::0\tip6-localnet\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{ip}\t{hostname}\n"
        )
        (directory / "etc-hosts").write_text(hosts)
        uts = directory / "uts"
        if not _is_mounted(uts):
            uts.touch()
            process = await asyncio.create_subprocess_exec(
                "unshare", f"--uts={uts}", "hostname", hostname, stderr=asyncio.subprocess.PIPE
            )
            _, err = await process.communicate()
            if process.returncode != 0:
                log.warning(
                    "pod %s: no UTS namespace (%s); it keeps the node's hostname", key_of(pod), err.decode().strip()
                )

    async def _read(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.client.get(kind, name, namespace)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    async def _configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(CONFIGMAPS, namespace, name)

    async def _secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(SECRETS, namespace, name)

    async def _ensure_image(self, pod: Object, state: PodRuntime, container: dict[str, Any]) -> str | None:
        name, image = container["name"], str(container.get("image") or "")
        reference = full_reference(image)
        policy = pull_policy(container)
        present = reference in self.images or await self.ctr.has_image(reference)
        if policy == "Never" and not present:
            message = f'Container image "{image}" is not present with pull policy of Never'
            state.pulls[name] = podstate.PullFailure(message, time.time(), 1, True)
            self.recorder.record(pod, WARNING, "ErrImageNeverPull", message)
            return None
        if policy == "Always" or not present:
            began = time.monotonic()
            self.recorder.record(pod, NORMAL, "Pulling", f'Pulling image "{image}"')
            try:
                await self.ctr.pull(reference)
            except ContainerdError as exc:
                failures = state.pulls[name].failures + 1 if name in state.pulls else 1
                message = f'failed to pull and unpack image "{reference}": {exc.message}'
                state.pulls[name] = podstate.PullFailure(
                    message, time.time(), failures, isinstance(exc, ImageNotFoundError)
                )
                self.recorder.record(pod, WARNING, "Failed", f'Failed to pull image "{image}": {exc.message}')
                return None
            took = time.monotonic() - began
            self.image_configs.pop(reference, None)  # the tag may name another image now
            self.recorder.record(pod, NORMAL, "Pulled", f'Successfully pulled image "{image}" in {took:.3f}s')
        else:
            self.recorder.record(pod, NORMAL, "Pulled", f'Container image "{image}" already present on machine')
        state.pulls.pop(name, None)
        self.images.add(reference)
        return reference

    async def _start(self, pod: Object, state: PodRuntime, action: podstate.StartContainer) -> None:
        container = next(c for c in podstate.containers_of(pod) if c["name"] == action.name)
        reference = await self._ensure_image(pod, state, container)
        if reference is None:
            return
        uid = pod["metadata"]["uid"]
        cid = ContainerId(uid, action.name, action.attempt)
        try:
            if reference not in self.image_configs:
                self.image_configs[reference] = await self.ctr.image_config(reference)
            config = self.image_configs[reference]
            volumes = await plan_volumes(pod, self.pod_dir(uid), configmaps=self._configmap, secrets=self._secret)
            write_volumes(volumes)
            env = await environment(
                pod,
                container,
                image_env=[*(config.get("Env") or []), f"HOSTNAME={self.hostname_of(pod)}"],
                host_ip=self.settings.node_ip,
                pod_ip=state.sandbox_ip,
                configmaps=self._configmap,
                secrets=self._secret,
            )
            limits = (container.get("resources") or {}).get("limits") or {}
            spec = ContainerSpec(
                cid,
                reference,
                argv=process_of(config, container.get("command") or [], container.get("args") or []),
                env=env,
                working_dir=str(container.get("workingDir") or config.get("WorkingDir") or ""),
                netns=str(NETNS_DIR / self.sandboxes.netns_name(uid)) if self.sandboxes else "",
                uts=str(self.pod_dir(uid) / "uts") if _is_mounted(self.pod_dir(uid) / "uts") else "",
                mounts=(Mount(str(self.pod_dir(uid) / "etc-hosts"), "/etc/hosts"), *mounts(container, volumes)),
                memory_limit=quantity.whole(limits["memory"]) if limits.get("memory") else 0,
                cpu_quota=cpu_quota(limits),
                labels={
                    "io.kubernetes.pod.name": pod["metadata"]["name"],
                    "io.kubernetes.pod.namespace": pod["metadata"]["namespace"],
                },
            )
        except (VolumeError, ApiError) as exc:
            reason = exc.reason if isinstance(exc, VolumeError) else "CreateContainerConfigError"
            self.recorder.record(pod, WARNING, reason, str(exc))
            self.queue.add_after(key_of(pod), 10.0)
            return
        try:
            try:
                await self.ctr.create(spec)
            except ContainerdError as exc:
                if "already exists" not in exc.message:
                    raise
                await self.ctr.delete(str(cid))  # a leftover of an interrupted start
                await self.ctr.create(spec)
            self.recorder.record(pod, NORMAL, "Created", f"Created container {action.name}")
            # recorded before the start: a process that ends at once must find its run to end
            state.record(
                action.name,
                podstate.Attempt(action.attempt, "running", time.time(), container_id=f"containerd://{cid}"),
            )
            self.starts[str(cid)] = math.inf
            try:
                await self.ctr.start(str(cid), log_file=self.log_file(uid, action.name, action.attempt))
            finally:
                self.starts[str(cid)] = time.time()
        except ContainerdError as exc:
            now = time.time()
            state.record(action.name, podstate.Attempt(action.attempt, "exited", now, now, 128, f"containerd://{cid}"))
            self.recorder.record(pod, WARNING, "Failed", f"Error: {exc.message}")
            return
        self.recorder.record(pod, NORMAL, "Started", f"Started container {action.name}")
        self._probe(pod, state, container, str(cid))
        if action.attempt >= 2:
            await self._forget_old_runs(uid, action.name, keep_from=action.attempt - 1)

    def _probe(self, pod: Object, state: PodRuntime, container: dict[str, Any], cid: str) -> None:
        """Start the probes of a container's new run (and stop those of its previous one)."""
        name = container["name"]
        state.stop_prober(name)
        if not any(f"{kind}Probe" in container for kind in ("liveness", "readiness", "startup")):
            return
        key = key_of(pod)
        grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))

        async def failed(kind: str, message: str) -> None:
            current = self.pods.get(key) or pod
            self.recorder.record(current, WARNING, "Unhealthy", f"{kind.capitalize()} probe failed: {message}")
            if kind == "readiness":
                return
            self.recorder.record(current, NORMAL, "Killing", f"Container {name} failed {kind} probe, will be restarted")
            await self._kill(cid, grace=min(grace, 30.0))

        async def run_exec(container_id: str, argv: list[str], seconds: float) -> tuple[int, str]:
            return await self.ctr.exec(container_id, argv, seconds=seconds)

        assert self.sandboxes is not None
        state.probers[name] = ContainerProber(
            container=container,
            container_id=cid,
            netns=NETNS_DIR / self.sandboxes.netns_name(pod["metadata"]["uid"]),
            pod_ip=state.sandbox_ip,
            exec_probe=run_exec,
            on_change=lambda: self.queue.add(key),
            on_failure=failed,
        )

    async def _kill(self, cid: str, *, grace: float) -> None:
        """SIGTERM, then SIGKILL if it still runs after ``grace`` seconds."""
        await self.ctr.kill(cid, "SIGTERM")
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            task = (await self.ctr.tasks()).get(cid)
            if task is None or task.status != "RUNNING":
                return
            await asyncio.sleep(0.2)
        await self.ctr.kill(cid, "SIGKILL")

    async def _forget_old_runs(self, uid: str, name: str, *, keep_from: int) -> None:
        """Remove the containers (and logs) of runs before ``keep_from``: the previous run stays,
        for ``kubectl logs --previous`` and the status's lastState."""
        for cid in await self.ctr.containers():
            parsed = ContainerId.parse(cid)
            if parsed is not None and parsed.pod_uid == uid and parsed.name == name and parsed.attempt < keep_from:
                await self.ctr.delete(cid)
                self.log_file(uid, name, parsed.attempt).unlink(missing_ok=True)

    async def _report(self, pod: Object, state: PodRuntime) -> None:
        status = podstate.pod_status(
            pod, state.observed(), host_ip=self.settings.node_ip, started_at=state.started_at, now=time.time()
        )
        if status == pod.get("status"):
            return
        try:
            await self.client.update_status(PODS, dict(pod, status=status))
        except ApiError as exc:
            if exc.conflict:
                self.queue.add(key_of(pod))  # the informer brings the newer version
            elif not exc.not_found:
                raise

    # --- stopping ----------------------------------------------------------------------------

    async def _stop(self, state: PodRuntime, *, grace: float) -> None:
        """SIGTERM every running container, SIGKILL what still runs after ``grace``, remove the
        containers and the sandbox."""
        for name in list(state.probers):
            state.stop_prober(name)
        running = [a for runs in state.attempts.values() for a in runs[-1:] if a.state == "running"]
        ids = [a.container_id.removeprefix("containerd://") for a in running]
        for cid in ids:
            await self.ctr.kill(cid, "SIGTERM" if grace > 0 else "SIGKILL")
        deadline = time.monotonic() + grace
        while ids and time.monotonic() < deadline:
            tasks = await self.ctr.tasks()
            if all(tasks.get(cid) is None or tasks[cid].status != "RUNNING" for cid in ids):
                break
            await asyncio.sleep(0.2)
        for cid in await self.ctr.containers():
            parsed = ContainerId.parse(cid)
            if parsed is not None and parsed.pod_uid == state.uid:
                await self.ctr.delete(cid)
        if self.sandboxes is not None:
            await self.sandboxes.remove(state.uid)
        uts = self.pod_dir(state.uid) / "uts"
        if _is_mounted(uts):
            process = await asyncio.create_subprocess_exec("umount", str(uts), stderr=asyncio.subprocess.DEVNULL)
            await process.wait()
        shutil.rmtree(self.pod_dir(state.uid) / "volumes", ignore_errors=True)
        self.runtime.pop(state.uid, None)

    async def _confirm_deletion(self, pod: Object) -> None:
        """The containers are gone: remove the pod object (grace 0), as kube's kubelet does."""
        if pod["metadata"].get("finalizers"):
            return
        try:
            await self.client.delete(
                PODS, pod["metadata"]["name"], pod["metadata"]["namespace"], grace_period=0, uid=pod["metadata"]["uid"]
            )
        except ApiError as exc:
            if not (exc.not_found or exc.conflict):
                raise

    # --- containerd events and adoption ------------------------------------------------------------

    def _exited(self, container: str, exit_code: int) -> bool:
        """Mark a run ended; False when it is not one this kubelet thinks is running."""
        parsed = ContainerId.parse(container)
        if parsed is None or parsed.pod_uid not in self.runtime:
            return False
        state = self.runtime[parsed.pod_uid]
        runs = state.attempts.get(parsed.name) or []
        current = next((a for a in runs if a.number == parsed.attempt), None)
        if current is None or current.state == "exited":
            return False
        state.record(parsed.name, replace(current, state="exited", finished_at=time.time(), exit_code=exit_code))
        state.stop_prober(parsed.name)
        self.queue.add(state.key)
        return True

    async def follow_exits(self) -> None:
        """containerd's exit events: how a container's end is noticed at once."""
        async for event in self.ctr.exits():
            if self._exited(event.id, event.exit_status):
                try:
                    await self.ctr.delete_task(event.id)
                except ContainerdError as exc:  # the relist retries what is left
                    log.warning("could not remove the ended task %s: %s", event.id, exc)

    async def relist(self, period: float = 2.0) -> None:
        """Every ``period``: runs this kubelet thinks are running but containerd shows stopped or
        gone (an exit event missed, e.g. while ``ctr events`` restarted) end here."""
        while True:
            await asyncio.sleep(period)
            try:
                listed_at = time.time()
                tasks = await self.ctr.tasks()
                for state in list(self.runtime.values()):
                    for runs in list(state.attempts.values()):
                        last = runs[-1] if runs else None
                        if last is None or last.state != "running":
                            continue
                        cid = last.container_id.removeprefix("containerd://")
                        if self.starts.get(cid, 0.0) >= listed_at:
                            continue  # started (or still starting) after the list was asked for
                        self.starts.pop(cid, None)
                        task = tasks.get(cid)
                        if task is None or task.status == "STOPPED":
                            code = await self.ctr.delete_task(cid) if task is not None else None
                            if self._exited(cid, code if code is not None else 0):
                                log.info("container %s ended without an event (exit %s)", cid, code)
            except ContainerdError as exc:
                log.warning("relist failed: %s", exc)

    async def adopt(self) -> None:
        """After a restart: take over the containers and sandboxes a previous run left, without
        restarting anything that still runs."""
        if self.sandboxes is not None:
            for uid in self.sandboxes.stale():
                await self.sandboxes.remove(uid)
            for sandbox in self.sandboxes.existing():
                key = f"{sandbox.pod.namespace}/{sandbox.pod.name}"
                state = self.runtime.setdefault(sandbox.pod.uid, PodRuntime(sandbox.pod.uid, key))
                state.sandbox_ip = str(sandbox.ip)
        tasks = await self.ctr.tasks()
        for cid in await self.ctr.containers():
            parsed = ContainerId.parse(cid)
            if parsed is None or parsed.pod_uid not in self.runtime:
                continue
            task = tasks.get(cid)
            state = self.runtime[parsed.pod_uid]
            if task is not None and task.status == "RUNNING":
                attempt = podstate.Attempt(parsed.attempt, "running", time.time(), container_id=f"containerd://{cid}")
            else:
                code = await self.ctr.delete_task(cid) if task is not None else None
                attempt = podstate.Attempt(
                    parsed.attempt,
                    "exited",
                    time.time(),
                    time.time(),
                    code if code is not None else 0,
                    f"containerd://{cid}",
                )
            state.record(parsed.name, attempt)
        log.info("adopted %d pods from an earlier run", len(self.runtime))

    def runs_of(self, namespace: str, name: str, container: str) -> tuple[str, list[podstate.Attempt]] | None:
        pod = self.pods.get(f"{namespace}/{name}")
        if pod is None:
            return None
        state = self.runtime.get(pod["metadata"]["uid"])
        return pod["metadata"]["uid"], list((state.attempts.get(container) if state else None) or [])

    async def serve(self) -> KubeletServer | None:
        server = self.settings.server
        if not server.port or server.cert_file is None or server.key_file is None:
            log.info("no serving certificate: the kubelet's port is not served (no kubectl logs)")
            return None
        tokens = set(server.token_file.read_text().split()) if server.token_file else set()
        running = KubeletServer(
            runs_of=self.runs_of, log_file=self.log_file, tokens=tokens, exec_process=self.ctr.exec_process
        )
        await running.start(address=server.address, port=server.port, cert=server.cert_file, key=server.key_file)
        return running

    async def run(self, ready: asyncio.Event | None = None) -> None:
        try:
            self.runtime_version = f"containerd://{await self.ctr.version()}"
        except ContainerdError as exc:
            log.warning("containerd does not answer yet: %s", exc)
        server = await self.serve()
        await self.register()
        informers = [
            asyncio.create_task(self.node_informer.run()),
            asyncio.create_task(self.pods.run()),
            asyncio.create_task(self.recorder.run()),
        ]
        try:
            await asyncio.gather(self.node_informer.synced.wait(), self.pods.synced.wait())
            await self.adopt()
            for pod in self.pods.items():
                self._enqueue(pod)
            for state in list(self.runtime.values()):
                self.queue.add(state.key)  # pods deleted while the kubelet was away are cleaned up
            if ready is not None:
                ready.set()
            await asyncio.gather(
                self.heartbeats(),
                self.follow_exits(),
                self.relist(),
                run_workers(self.queue, self.sync, workers=self.settings.pod_workers),
            )
        finally:
            for task in informers:
                task.cancel()
            if server is not None:
                await server.stop()
