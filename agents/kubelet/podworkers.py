"""Pod workers: each pod driven towards its spec, one sync at a time per pod.

kube's kubelet runs one worker per pod UID so that nothing happens to a pod twice at once. Here one
work queue of pod UIDs does it: the queue never hands out a UID that is being synced, and a UID added
meanwhile is synced once more afterwards. Everything that concerns a pod only queues its UID: the pod
informer (this node's pods), the PLEG's events, probe results, back-off timers. ``sync(uid)`` then
reads the pod again (level-triggered), asks the pure planner (:func:`podstate.plan`) what to do, does
it through the runtime (pull, sandbox, create and start containers, start their probes, stop the pod),
and hands the pod to the status manager.

A container's postStart hook runs right after its start, inside the sync (its probes start once the
hook has ended; a failing hook has the run killed); stopping runs the preStop hooks and the stop
order of :mod:`agents.kubelet.termination`. A pod's claim volumes are mounted by the volume manager
(:mod:`agents.kubelet.volumemanager`) before a container is created (``FailedMount`` while they cannot
be), and unmounted before the pod's directory is removed.

Each step is an Event on the pod, with kube's reasons (``Pulling``, ``Pulled``, ``Created``,
``Started``, ``Failed``, ``FailedCreatePodSandBox``, ``Unhealthy``, ``Killing``, ...). Keyed by UID,
a pod deleted and created again under the same name is two pods: the old one's containers are
stopped by its own sync, whatever the new one does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span

from agents.kubelet import dns, hooks, podstate, termination
from agents.kubelet.containers import ContainerdError, ContainerId, ImageNotFoundError
from agents.kubelet.errors import KubeletError
from agents.kubelet.podcache import PodCache, PodRecord, containerd_id
from agents.kubelet.probes import ContainerProber, Kind
from agents.kubelet.runtime import CONTAINERD, Runtime, container_spec, hostname_of
from agents.kubelet.serviceenv import service_environment
from agents.kubelet.statusmanager import StatusManager
from agents.kubelet.tokens import TokenManager
from agents.kubelet.volumemanager import VolumeManager
from agents.kubelet.volumes import VolumeError, VolumeFiles, environment, plan_volumes, write_volumes
from agents.machinery import tracing
from agents.machinery.client import ApiError, Client
from agents.machinery.events import NORMAL, WARNING, EventRecorder
from agents.machinery.imagerefs import full_reference
from agents.machinery.informer import Informer
from agents.machinery.objects import Object
from agents.machinery.resources import CONFIGMAPS, PODS, SECRETS, ResourceRef
from agents.machinery.workqueue import WorkQueue, run_workers

log = logging.getLogger(__name__)

BY_UID = "uid"
SANDBOX_RETRY = 5.0  # seconds before a pod whose sandbox failed is synced again
PROBE_KILL_GRACE_MAX = 30.0
TRACER = "kubelet"


def pull_policy(container: dict[str, Any]) -> str:
    """The container's imagePullPolicy, defaulted as kube defaults it: Always for ``:latest`` or no tag."""
    policy = container.get("imagePullPolicy")
    if policy:
        return str(policy)
    image = str(container.get("image") or "")
    tagged = ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
    return "IfNotPresent" if tagged or "@" in image else "Always"


def image_step(policy: str, *, present: bool) -> Literal["pull", "use", "refuse"]:
    """What a pull policy makes of an image present or not: kube's image manager's rule."""
    if policy == "Never" and not present:
        return "refuse"
    if policy == "Always" or not present:
        return "pull"
    return "use"


def unprobed(pod: Object, record: PodRecord) -> list[tuple[dict[str, Any], str]]:
    """The containers whose current run runs without probe workers (runs adopted after a restart),
    with that run's containerd id."""
    running = record.running()
    return [
        (container, containerd_id(running[container["name"]]))
        for container in podstate.all_containers_of(pod)
        if container["name"] in running and container["name"] not in record.probers
    ]


def _settled(pod: Object) -> bool:
    """Whether a pod is where its start ends: Ready, or ended."""
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return True
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def uid_of(pod: Object) -> str:
    return str(pod["metadata"]["uid"])


class PodWorkers:
    def __init__(
        self,
        client: Client,
        *,
        pods: Informer,
        cache: PodCache,
        runtime: Runtime,
        status: StatusManager,
        recorder: EventRecorder,
        node_ip: str,
        name: str,
        services: Informer | None = None,
        volume_manager: VolumeManager | None = None,
    ) -> None:
        self.client = client
        self.pods = pods
        self.volume_manager = volume_manager  # persistent volumes (claims): mounted before the containers start
        self.services = services  # the cluster's Services, for the containers' service variables
        self.tokens = TokenManager(client)
        self.cache = cache
        self.runtime = runtime
        self.status = status
        self.recorder = recorder
        self.node_ip = node_ip
        self.queue = WorkQueue(f"kubelet-{name}")
        # pods whose start is traced (from their first sync until Ready or failed): the context of
        # their last "sync pod" span, which the readiness probes' spans go under
        self.starting: dict[str, otel_context.Context | None] = {}
        pods.add_index(BY_UID, lambda pod: [uid_of(pod)])
        pods.on(add=self.enqueue, update=self.pod_updated, delete=self.enqueue)

    # --- what queues a pod ---------------------------------------------------------------------------

    def enqueue(self, pod: Object) -> None:
        self.queue.add(uid_of(pod))

    def pod_updated(self, old: Object, new: Object) -> None:
        self.enqueue(new)
        if uid_of(old) != uid_of(new):  # the name now belongs to another pod: the old one is gone
            self.enqueue(old)

    def enqueue_uid(self, uid: str) -> None:
        self.queue.add(uid)

    def enqueue_all(self) -> None:
        """Every pod of this node, and every pod the kubelet still has a record of (one deleted while
        the kubelet was away is cleaned up)."""
        for pod in self.pods.items():
            self.enqueue(pod)
        for record in self.cache.records():
            self.queue.add(record.uid)

    def pod(self, uid: str) -> Object | None:
        found = self.pods.by_index(BY_UID, uid)
        return found[0] if found else None

    async def run(self, workers: int) -> None:
        await run_workers(self.queue, self.sync, workers=workers)

    # --- sync --------------------------------------------------------------------------------------

    async def sync(self, uid: str) -> None:
        pod = self.pod(uid)
        if pod is None:
            self.starting.pop(uid, None)
            record = self.cache.get(uid)
            if record is not None:
                await self._stop(record, grace=0)  # gone from the API (grace 0): nothing to wait for
            return
        if self.cache.get(uid) is None and tracing.enabled() and tracing.traceparent(pod) and not _settled(pod):
            self.starting[uid] = None  # its first sync: the pod's start is traced until it is Ready or failed
        if uid not in self.starting:
            await self._sync(pod, uid)
            return
        with tracing.span_for(pod, "sync pod", tracer_name=TRACER) as span:
            if span.is_recording():
                self.starting[uid] = trace.set_span_in_context(span)
            else:  # a trace context that cannot be continued (or one not sampled): nothing to record
                self.starting.pop(uid, None)
            record = await self._sync(pod, uid)
            status = self.status.status(pod, record, now=time.time()) if record is not None else {}
            if status.get("phase") in ("Failed", "Succeeded") or record is None:
                self.starting.pop(uid, None)
                if status.get("phase") == "Failed":
                    tracing.fail(span, str(status.get("message") or status.get("reason") or "the pod failed"))
            elif _settled({"status": status}):
                span.add_event("ready")
                self.starting.pop(uid, None)

    async def _sync(self, pod: Object, uid: str) -> PodRecord | None:
        """One sync of a pod the API has; the pod's record, or None once the pod is stopped for good."""
        record = self.cache.ensure(uid, f"{pod['metadata']['namespace']}/{pod['metadata']['name']}")
        now = time.time()
        actions, wake = podstate.plan(pod, record.observed(), now)
        meta = pod["metadata"]
        for name in podstate.backing_off(pod, record.observed(), now):
            where = f"{meta['name']}_{meta['namespace']}({uid})"
            self.recorder.record(pod, WARNING, "BackOff", f"Back-off restarting failed container {name} in pod {where}")
        for action in actions:
            if isinstance(action, podstate.StopPod):
                await self._stop(record, grace=action.grace_seconds, pod=pod)
                await self._confirm_deletion(pod)
                return None
            if isinstance(action, podstate.StopContainers):
                groups = [(name,) for name in action.names]  # one after the other
                await self._stop_containers(pod, record, groups, grace=action.grace_seconds)
            if isinstance(action, podstate.CreateSandbox):
                if not await self._sandbox(pod, record):
                    return record
                actions_after, wake = podstate.plan(pod, record.observed(), now)
                for follow in actions_after:
                    if isinstance(follow, podstate.StartContainer):
                        await self._start(pod, record, follow)
            elif isinstance(action, podstate.StartContainer):
                await self._start(pod, record, action)
        if record.sandbox_ip and self.runtime.sandboxes is not None:
            for container, cid in unprobed(pod, record):
                self._probe(pod, record, container, cid)
        if await self.status.update(pod, record) == "conflict":
            self.queue.add(uid)  # the informer brings the newer version
        if wake is not None:
            self.queue.add_after(uid, max(0.0, wake - time.time()))
        return record

    async def _sandbox(self, pod: Object, record: PodRecord) -> bool:
        if self.runtime.sandboxes is None:
            return False  # no podCIDR yet: the pod network's arrival queues every pod again
        try:
            with tracing.child("sandbox", tracer_name=TRACER) as span:
                try:
                    sandbox = await self.runtime.run_sandbox(pod)
                except KubeletError as exc:
                    tracing.fail(span, str(exc))
                    raise
        except KubeletError as exc:
            self.recorder.record(pod, WARNING, "FailedCreatePodSandBox", f"Failed to create pod sandbox: {exc}")
            self.queue.add_after(record.uid, SANDBOX_RETRY)
            return False
        record.sandbox_ip = str(sandbox.ip)
        resolver = await self.runtime.pod_identity(pod, record.sandbox_ip)
        spec = pod.get("spec") or {}
        if dns.missing_cluster_dns(spec, self.runtime.dns.cluster_dns):
            policy = spec.get("dnsPolicy") or "ClusterFirst"
            self.recorder.record(
                pod,
                WARNING,
                "MissingClusterDNS",
                f'kubelet does not have ClusterDNS IP configured and cannot create Pod using "{policy}" policy.'
                ' Falling back to "Default" policy.',
            )
        if resolver.dropped:
            self.recorder.record(
                pod,
                WARNING,
                "DNSConfigForming",
                "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver"
                f" line is: {' '.join(resolver.nameservers)}"
                if any(d.startswith("nameserver ") for d in resolver.dropped)
                else f"Search Line limits were exceeded, some search paths have been omitted, the applied search"
                f" line is: {' '.join(resolver.searches)}",
            )
        return True

    # --- containers --------------------------------------------------------------------------------

    async def _read(self, kind: ResourceRef, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self.client.get(kind, name, namespace)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    async def refresh_tokens(self, every: float = 30.0) -> None:
        """Rewrite the projected volumes of running pods whose ServiceAccount token nears its end."""
        while True:
            await asyncio.sleep(every)
            pods = self.pods.items()
            self.tokens.forget({uid_of(pod) for pod in pods})
            for pod in pods:
                uid = uid_of(pod)
                if self.cache.get(uid) is None or not self.tokens.due(uid):
                    continue
                try:
                    write_volumes(await self._volumes(pod, uid, only="projected"))
                except (VolumeError, ApiError) as exc:
                    log.warning("refreshing the token of pod %s: %s", pod["metadata"]["name"], exc)

    async def _volumes(self, pod: Object, uid: str, *, only: str = "") -> list[VolumeFiles]:
        published = await self.volume_manager.mount_pod(pod) if self.volume_manager and not only else {}
        return await plan_volumes(
            pod,
            self.runtime.pod_dir(uid),
            configmaps=self._configmap,
            secrets=self._secret,
            tokens=self.tokens.token,
            only=only,
            published=published,
        )

    async def _configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(CONFIGMAPS, namespace, name)

    async def _secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(SECRETS, namespace, name)

    async def _ensure_image(self, pod: Object, record: PodRecord, container: dict[str, Any]) -> str | None:
        """The container's image as a full reference, pulled as its policy says; None when it cannot
        be had (the failure is recorded for the status and the pull back-off)."""
        image = str(container.get("image") or "")
        with tracing.child("pull image", tracer_name=TRACER, attributes={"container.image.name": image}) as span:
            reference = await self._image(pod, record, container, span)
            if reference is None and span.is_recording():
                failure = record.pulls.get(container["name"])
                tracing.fail(span, failure.message if failure is not None else "the image cannot be had")
            return reference

    async def _image(self, pod: Object, record: PodRecord, container: dict[str, Any], span: Span) -> str | None:
        name, image = container["name"], str(container.get("image") or "")
        reference = full_reference(image)
        try:
            present = await self.runtime.has_image(reference)
        except ContainerdError as exc:  # a reference containerd cannot read, say
            failures = record.pulls[name].failures + 1 if name in record.pulls else 1
            message = f'failed to inspect image "{reference}": {exc.message}'
            record.pulls[name] = podstate.PullFailure(message, time.time(), failures, False)
            self.recorder.record(pod, WARNING, "InspectFailed", message)
            return None
        step = image_step(pull_policy(container), present=present)
        span.set_attribute("image.cached", step == "use")
        if step == "refuse":
            message = f'Container image "{image}" is not present with pull policy of Never'
            record.pulls[name] = podstate.PullFailure(message, time.time(), 1, True)
            self.recorder.record(pod, WARNING, "ErrImageNeverPull", message)
            return None
        if step == "pull":
            began = time.monotonic()
            self.recorder.record(pod, NORMAL, "Pulling", f'Pulling image "{image}"')
            try:
                await self.runtime.pull(reference)
            except ContainerdError as exc:
                failures = record.pulls[name].failures + 1 if name in record.pulls else 1
                message = f'failed to pull and unpack image "{reference}": {exc.message}'
                record.pulls[name] = podstate.PullFailure(
                    message, time.time(), failures, isinstance(exc, ImageNotFoundError)
                )
                self.recorder.record(pod, WARNING, "Failed", f'Failed to pull image "{image}": {exc.message}')
                return None
            took = time.monotonic() - began
            self.recorder.record(pod, NORMAL, "Pulled", f'Successfully pulled image "{image}" in {took:.3f}s')
        else:
            self.recorder.record(pod, NORMAL, "Pulled", f'Container image "{image}" already present on machine')
        record.pulls.pop(name, None)
        return reference

    async def _start(self, pod: Object, record: PodRecord, action: podstate.StartContainer) -> None:
        everyone = [*podstate.all_containers_of(pod), *podstate.ephemeral_containers_of(pod)]
        container = next(c for c in everyone if c["name"] == action.name)
        reference = await self._ensure_image(pod, record, container)
        if reference is None:
            return
        uid = uid_of(pod)
        cid = ContainerId(uid, action.name, action.attempt)
        try:
            config = await self.runtime.image_config(reference)
            volumes = await self._volumes(pod, uid)
            write_volumes(volumes)
            env = await environment(
                pod,
                container,
                image_env=[*(config.get("Env") or []), f"HOSTNAME={hostname_of(pod)}"],
                host_ip=self.node_ip,
                pod_ip=record.sandbox_ip,
                configmaps=self._configmap,
                secrets=self._secret,
                service_env=service_environment(pod, self.services.items()) if self.services is not None else {},
            )
            netns = self.runtime.netns_path(uid)
            spec = container_spec(
                pod,
                container,
                cid=cid,
                image=reference,
                config=config,
                env=env,
                volumes=volumes,
                netns=str(netns) if netns is not None else "",
                uts=self.runtime.uts_path(uid),
                hosts=self.runtime.hosts_path(uid),
                resolv=self.runtime.resolv_path(uid),
                pidns=await self._target_pid_namespace(record, container),
            )
        except (VolumeError, ApiError) as exc:
            reason = exc.reason if isinstance(exc, VolumeError) else "CreateContainerConfigError"
            self._problem(pod, record, action.name, reason, str(exc))
            return
        except ContainerdError as exc:
            self._problem(pod, record, action.name, "CreateContainerError", exc.message)
            return
        named = {"k8s.container.name": action.name}
        try:
            with tracing.child("create container", tracer_name=TRACER, attributes=named) as span:
                try:
                    await self.runtime.create(spec)
                except ContainerdError as exc:
                    tracing.fail(span, exc.message)
                    raise
        except ContainerdError as exc:
            self._problem(pod, record, action.name, "CreateContainerError", exc.message)
            return
        record.problems.pop(action.name, None)
        self.recorder.record(pod, NORMAL, "Created", f"Created container {action.name}")
        # recorded before the start: a process that ends at once must find its run to end
        record.record(
            action.name, podstate.Attempt(action.attempt, "running", time.time(), container_id=f"{CONTAINERD}{cid}")
        )
        try:
            with tracing.child("start container", tracer_name=TRACER, attributes=named) as span:
                try:
                    await self.runtime.start(cid)
                except ContainerdError as exc:
                    tracing.fail(span, exc.message)
                    raise
        except ContainerdError as exc:
            # kube's StartError: the run ended before it began, exit 128 and the runtime's message
            now = time.time()
            ended = podstate.Attempt(
                action.attempt,
                "exited",
                now,
                now,
                podstate.START_ERROR_EXIT_CODE,
                f"{CONTAINERD}{cid}",
                podstate.START_ERROR,
                exc.message,
            )
            record.record(action.name, ended)
            self.recorder.record(pod, WARNING, "Failed", f"Error: {exc.message}")
            return
        self.recorder.record(pod, NORMAL, "Started", f"Started container {action.name}")
        if not await self._post_start(pod, record, container, str(cid)):
            return
        self._probe(pod, record, container, str(cid))
        if action.attempt >= 2:  # from the third run on, runs before the previous one are removed
            await self.runtime.remove_old_runs(uid, action.name, keep_from=action.attempt - 1)

    async def _target_pid_namespace(self, record: PodRecord, container: dict[str, Any]) -> str:
        """An ephemeral container with a ``targetContainerName`` joins that container's PID namespace
        (it sees and may signal its processes); "" when there is none or it does not run now."""
        target = container.get("targetContainerName")
        run = record.running().get(str(target)) if target else None
        if run is None:
            return ""
        task = (await self.runtime.tasks()).get(containerd_id(run))
        return f"/proc/{task.pid}/ns/pid" if task is not None and task.pid > 0 else ""

    def _hook_target(self, pod: Object, record: PodRecord, container: dict[str, Any], cid: str) -> hooks.HookTarget:
        meta = pod["metadata"]
        return hooks.HookTarget(
            container=container,
            cid=cid,
            pod_ref=f"{meta['name']}_{meta['namespace']}({uid_of(pod)})",
            netns=self.runtime.netns_path(uid_of(pod)),
            pod_ip=record.sandbox_ip,
        )

    async def _post_start(self, pod: Object, record: PodRecord, container: dict[str, Any], cid: str) -> bool:
        """The container's postStart hook, if it has one; False when it failed and the run is being killed."""
        handler = hooks.handler_of(container, "postStart")
        if handler is None:
            return True
        target = self._hook_target(pod, record, container, cid)
        result = await hooks.run_hook(handler, target, exec_in=self.runtime.exec, seconds=hooks.POST_START_BOUND)
        if result.success:
            return True
        name = container["name"]
        self.recorder.record(pod, WARNING, "FailedPostStartHook", result.message)
        self.recorder.record(pod, NORMAL, "Killing", f"FailedPostStartHook: Container {name} failed its postStart hook")
        await self._kill_one(
            pod, record, container, cid, grace=min(podstate.termination_grace(pod), PROBE_KILL_GRACE_MAX)
        )
        return False

    def _problem(self, pod: Object, record: PodRecord, name: str, reason: str, message: str) -> None:
        """The container's next run could not be made: an Event and a waiting reason in its status;
        it is tried again after the back-off (the planner's wake)."""
        before = record.problems.get(name)
        failures = before.failures + 1 if before is not None else 1
        problem = podstate.Problem(reason, message, time.time(), failures)
        record.problems[name] = problem
        self.queue.add_after(record.uid, podstate.retry_backoff(problem))
        if reason == podstate.FAILED_MOUNT:
            self.recorder.record(pod, WARNING, reason, message)
        else:  # kube's kubelet: a Failed event, "Error: " and the message
            self.recorder.record(pod, WARNING, "Failed", f"Error: {message}")

    def _probe(self, pod: Object, record: PodRecord, container: dict[str, Any], cid: str) -> None:
        """Start the probes of a container's new run (and stop those of its previous one)."""
        name = container["name"]
        record.stop_prober(name)
        if not any(f"{kind}Probe" in container for kind in ("liveness", "readiness", "startup")):
            return
        uid = uid_of(pod)

        async def failed(kind: Kind, message: str) -> None:
            current = self.pod(uid) or pod
            self.recorder.record(current, WARNING, "Unhealthy", f"{kind.capitalize()} probe failed: {message}")
            if kind == "readiness":
                return
            self.recorder.record(current, NORMAL, "Killing", f"Container {name} failed {kind} probe, will be restarted")
            # the probe's own terminationGracePeriodSeconds, else the pod's (kube's order)
            grace = float(
                container[f"{kind}Probe"].get("terminationGracePeriodSeconds", podstate.termination_grace(current))
            )
            await self._kill_one(current, record, container, cid, grace=min(grace, PROBE_KILL_GRACE_MAX))

        netns = self.runtime.netns_path(uid)
        assert netns is not None
        record.probers[name] = ContainerProber(
            container=container,
            container_id=cid,
            netns=netns,
            pod_ip=record.sandbox_ip,
            exec_probe=self.runtime.exec,
            on_change=lambda: self.queue.add(uid),
            on_failure=failed,
            traced=lambda kind: self._probe_span(uid, kind),
        )

    def _probe_span(self, uid: str, kind: Kind) -> AbstractContextManager[Span]:
        """A readiness probe's span, under the pod's last "sync pod" while its start is traced."""
        parent = self.starting.get(uid) if kind == "readiness" else None
        if parent is None:
            return contextlib.nullcontext(INVALID_SPAN)
        return tracing.tracer(TRACER).start_as_current_span("readiness probe", context=parent)

    # --- stopping ----------------------------------------------------------------------------------

    async def _stop(self, record: PodRecord, *, grace: float, pod: Object | None = None) -> None:
        """Stop every running container (with ``pod``: its preStop hooks and stop order, within
        ``grace`` seconds; without: at once), then remove the containers (what still runs is
        killed), the sandbox and the pod's volumes."""
        record.stop_probers()
        if pod is None or grace <= 0:
            await self.runtime.stop([containerd_id(a) for a in record.running().values()], grace=grace)
        else:
            await self._stop_containers(pod, record, termination.stop_order(pod, record.running()), grace=grace)
        if self.volume_manager is not None:  # its disks unmounted first: removing its directory must not reach them
            await self.volume_manager.unmount_pod(record.uid)
        await self.runtime.remove_pod(record.uid)
        self.cache.forget(record.uid)

    async def _stop_containers(
        self, pod: Object, record: PodRecord, groups: Sequence[Sequence[str]], *, grace: float
    ) -> None:
        """Stop the running containers of ``groups`` in order: preStop hook, SIGTERM, SIGKILL when the
        grace period is over (kube's ``Killing`` and ``FailedPreStopHook`` events)."""
        running = record.running()
        specs = {c["name"]: c for c in podstate.all_containers_of(pod)}
        stopping = [
            [
                termination.Stopping(name, containerd_id(running[name]), specs.get(name) or {"name": name})
                for name in group
                if name in running
            ]
            for group in groups
        ]
        for group in stopping:
            for target in group:
                record.stop_prober(target.name)
                self.recorder.record(pod, NORMAL, "Killing", f"Stopping container {target.name}")
        pre_stop, kill = self._stopping_steps(pod, record)
        await termination.stop_containers(stopping, grace=grace, pre_stop=pre_stop, kill=kill)

    async def _kill_one(
        self, pod: Object, record: PodRecord, container: Mapping[str, Any], cid: str, *, grace: float
    ) -> None:
        """Kill one container's run to have it restarted (a failed liveness or startup probe, a failed
        postStart hook): its preStop hook, then SIGTERM, SIGKILL at the end of ``grace``, as kube's
        kubelet kills a container whatever the reason. Its probes go on until its next run replaces them
        (a failing probe calls this from its own task)."""
        target = termination.Stopping(str(container["name"]), cid, container)
        pre_stop, kill = self._stopping_steps(pod, record)
        await termination.stop_containers([[target]], grace=grace, pre_stop=pre_stop, kill=kill)

    def _stopping_steps(self, pod: Object, record: PodRecord) -> tuple[termination.PreStop, termination.Kill]:
        """How a container of ``pod`` is stopped: its preStop hook (a failure is a ``FailedPreStopHook``
        event), then SIGTERM and SIGKILL."""

        async def pre_stop(target: termination.Stopping, seconds: float) -> None:
            handler = hooks.handler_of(target.container, "preStop")
            if handler is None:
                return
            hook_target = self._hook_target(pod, record, dict(target.container), target.cid)
            try:
                async with asyncio.timeout(seconds):
                    result = await hooks.run_hook(handler, hook_target, exec_in=self.runtime.exec, seconds=seconds)
            except TimeoutError:
                log.info("pod %s: the preStop hook of %s did not end within the grace period", record.key, target.name)
                return
            if not result.success:
                self.recorder.record(pod, WARNING, "FailedPreStopHook", result.message)

        async def kill(cid: str, seconds: float) -> None:
            await self.runtime.kill(cid, grace=seconds)

        return pre_stop, kill

    async def _confirm_deletion(self, pod: Object) -> None:
        """The containers are gone: remove the pod object (grace 0), as kube's kubelet does."""
        if pod["metadata"].get("finalizers"):
            return
        try:
            await self.client.delete(
                PODS, pod["metadata"]["name"], pod["metadata"]["namespace"], grace_period=0, uid=uid_of(pod)
            )
        except ApiError as exc:
            if not (exc.not_found or exc.conflict):
                raise
