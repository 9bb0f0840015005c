"""What a pod's containers should do next, and the status that reports them: pure functions.

The kubelet observes (sandbox, each container's attempts as containerd shows them, image pull
results), asks :func:`plan` what to do, lets the executor do it, and writes :func:`pod_status`.
The rules are kube's: restartPolicy decides whether an exited container runs again, with a back-off
of 10 s doubling to 5 min (reset after a container ran 10 min), and the phase follows the containers.
A run's end carries kube's reason: ``Completed`` (exit 0), ``Error``, ``OOMKilled`` (the kernel's OOM
killer struck in it), ``StartError`` (the runtime could not start it: exit 128 and the runtime's
message). A container that cannot get a run at all (``CreateContainerConfigError``,
``CreateContainerError``) waits with that reason and the message, and is tried again with the pull
back-off.

Init containers (kube's ``initContainers``) run one at a time, in order, each to a successful end
before the next starts, and the app containers only after all of them; a failing one runs again as
the pod's restartPolicy says (Never: the pod fails), with the same back-off. An init container with
``restartPolicy: Always`` is a sidecar: once started (its startupProbe passed, if it has one) the
next init container may start; it runs on beside the app containers, restarted whenever it exits,
until the app containers are done.

Ephemeral containers (``kubectl debug``) are added to a running pod; each starts once, may start
before the pod is initialized, is never restarted, does not count for the phase or readiness, and
is reported in ``ephemeralContainerStatuses``; a finished pod's are stopped with its sidecars.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

BACKOFF_START = 10.0
BACKOFF_MAX = 300.0
MOUNT_BACKOFF_START = 0.5
MOUNT_BACKOFF_MAX = 122.0
BACKOFF_RESET = 600.0

State = Literal["created", "running", "exited"]
OOM_KILLED = "OOMKilled"
FAILED_MOUNT = "FailedMount"
START_ERROR = "StartError"
START_ERROR_EXIT_CODE = 128  # containerd's CRI says this exit code for a container that could not start


@dataclass(frozen=True)
class Attempt:
    """One run of a container (kube's "container", containerd's container + task)."""

    number: int
    state: State
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    container_id: str = ""
    reason: str = ""  # how it ended when the exit code does not say it (OOMKilled, StartError)
    message: str = ""


@dataclass(frozen=True)
class PullFailure:
    message: str
    at: float
    failures: int  # consecutive
    not_found: bool  # the registry has no such image (ErrImagePull then ImagePullBackOff)


@dataclass(frozen=True)
class Problem:
    """Why a container's next run could not be made (kube's waiting reasons
    CreateContainerConfigError, CreateContainerError), and since when."""

    reason: str
    message: str
    at: float
    failures: int  # consecutive


@dataclass(frozen=True)
class Observed:
    sandbox_ip: str = ""  # "" : no sandbox yet
    attempts: Mapping[str, Sequence[Attempt]] = field(default_factory=dict)  # by container name, oldest first
    pulls: Mapping[str, PullFailure] = field(default_factory=dict)  # by container name
    problems: Mapping[str, Problem] = field(default_factory=dict)  # by container name
    probes: Mapping[str, tuple[bool, bool]] = field(default_factory=dict)  # name -> (ready, started) of its run


@dataclass(frozen=True)
class CreateSandbox:
    pass


@dataclass(frozen=True)
class StartContainer:
    name: str
    attempt: int


@dataclass(frozen=True)
class StopContainers:
    """Stop these containers, in this order (the sidecars of a pod whose app containers are done)."""

    names: tuple[str, ...]
    grace_seconds: float


@dataclass(frozen=True)
class StopPod:
    """Stop every running container (SIGTERM, then SIGKILL after the grace period), then the sandbox."""

    grace_seconds: float


Action = CreateSandbox | StartContainer | StopContainers | StopPod


def containers_of(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((pod.get("spec") or {}).get("containers") or [])


def init_containers_of(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((pod.get("spec") or {}).get("initContainers") or [])


def ephemeral_containers_of(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((pod.get("spec") or {}).get("ephemeralContainers") or [])


def all_containers_of(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Init containers first, then the app containers: every container the kubelet may run."""
    return init_containers_of(pod) + containers_of(pod)


def is_sidecar(container: Mapping[str, Any]) -> bool:
    """An init container that runs beside the app containers (kube's restartable init container)."""
    return container.get("restartPolicy") == "Always"


def restart_policy(pod: Mapping[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("restartPolicy") or "Always")


def init_restart_policy(pod: Mapping[str, Any], container: Mapping[str, Any]) -> str:
    """The policy an init container's runs follow: a sidecar's own Always; any other runs again only
    after a failure, unless the pod's policy is Never."""
    if is_sidecar(container):
        return "Always"
    return "Never" if restart_policy(pod) == "Never" else "OnFailure"


def termination_grace(pod: Mapping[str, Any]) -> float:
    """The seconds a stopping pod's containers get: the deletion's grace, else the spec's (30)."""
    meta = pod.get("metadata") or {}
    grace = meta.get("deletionGracePeriodSeconds")
    default = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
    return float(grace if grace is not None else default)


def backoff(restarts: int) -> float:
    """Seconds to wait before run number ``restarts + 1`` of a crashing container."""
    if restarts <= 0:
        return 0.0
    return float(min(BACKOFF_MAX, BACKOFF_START * 2.0 ** (restarts - 1)))


def pull_backoff(failures: int) -> float:
    return float(min(BACKOFF_MAX, BACKOFF_START * 2.0 ** max(0, failures - 1)))


def retry_backoff(failure: PullFailure | Problem) -> float:
    """How long after a failure the container is tried again: a volume that could not be set up (an
    account or ConfigMap a new namespace gets a moment later) as kube's volume manager retries,
    from 0.5 s doubling to about 2 min; anything else as an image pull."""
    if isinstance(failure, Problem) and failure.reason == FAILED_MOUNT:
        return float(min(MOUNT_BACKOFF_MAX, MOUNT_BACKOFF_START * 2.0 ** max(0, failure.failures - 1)))
    return pull_backoff(failure.failures)


def wants_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def _restarts_for_backoff(attempts: Sequence[Attempt]) -> int:
    """Crashes that count toward the back-off: the streak since a run that lasted BACKOFF_RESET."""
    streak = 0
    for attempt in reversed(attempts):
        if attempt.state == "exited" and attempt.finished_at - attempt.started_at >= BACKOFF_RESET:
            break
        streak += 1
    return streak


def next_start(attempts: Sequence[Attempt]) -> float:
    """When the next run of an exited container may start (monotonic-free: in the attempts' clock)."""
    last = attempts[-1]
    return last.finished_at + backoff(_restarts_for_backoff(attempts))


def _earlier(wake: float | None, at: float) -> float:
    return at if wake is None else min(wake, at)


def _started(observed: Observed, name: str) -> bool:
    """Whether a running container's startup probe (if any) has passed."""
    return observed.probes.get(name, (True, True))[1]


def _apps_ran(pod: Mapping[str, Any], observed: Observed) -> bool:
    """An app container has had a run: the pod's initialization was over (kube's rule after a restart)."""
    return any(observed.attempts.get(c["name"]) for c in containers_of(pod))


@dataclass(frozen=True)
class InitProgress:
    """Where a pod's initialization stands."""

    incomplete: tuple[str, ...]  # init containers not yet done (a sidecar: not yet started), in order
    failed: bool  # an init container failed and will not run again (restartPolicy Never): the pod fails

    @property
    def done(self) -> bool:
        return not self.incomplete and not self.failed


def init_progress(pod: Mapping[str, Any], observed: Observed) -> InitProgress:
    """Done once every init container ended with 0 and every sidecar started."""
    if _apps_ran(pod, observed):
        return InitProgress((), False)
    incomplete: list[str] = []
    failed = False
    for container in init_containers_of(pod):
        name = container["name"]
        last = _last(observed.attempts.get(name))
        if is_sidecar(container):
            ever_started = last is not None and (
                last.number > 0 or last.state == "exited" or (last.state == "running" and _started(observed, name))
            )
            if not ever_started:
                incomplete.append(name)
            continue
        if last is not None and last.state == "exited" and last.exit_code == 0:
            continue
        incomplete.append(name)
        if last is not None and last.state == "exited" and not wants_restart(init_restart_policy(pod, container), 1):
            failed = True
    return InitProgress(tuple(incomplete), failed)


def _init_actions(pod: Mapping[str, Any], observed: Observed, now: float) -> tuple[list[Action], float | None, bool]:
    """The init containers' next steps, when to look again, and whether the app containers may start."""
    actions: list[Action] = []
    wake: float | None = None
    initialized = _apps_ran(pod, observed)
    for container in init_containers_of(pod):
        name, sidecar = container["name"], is_sidecar(container)
        if initialized and not sidecar:
            continue
        attempts = list(observed.attempts.get(name) or [])
        last = attempts[-1] if attempts else None
        running_on = sidecar and last is not None and (initialized or last.number > 0 or last.state == "exited")
        failure = observed.pulls.get(name) or observed.problems.get(name)
        if failure is not None and (last is None or last.state == "exited"):
            retry_at = failure.at + retry_backoff(failure)
            if now < retry_at:
                wake = _earlier(wake, retry_at)
                if running_on:
                    continue
                return actions, wake, False
        if last is None:
            actions.append(StartContainer(name, 0))
            return actions, wake, False  # the next one waits for this one (a sidecar: its start)
        if last.state != "exited":
            if sidecar and (running_on or _started(observed, name)):
                continue
            return actions, wake, False
        if not sidecar and last.exit_code == 0:
            continue
        if not wants_restart(init_restart_policy(pod, container), last.exit_code):
            return actions, wake, False  # failed for good: the pod fails
        start_at = next_start(attempts)
        if now >= start_at:
            actions.append(StartContainer(name, last.number + 1))
        else:
            wake = _earlier(wake, start_at)
        if not running_on:
            return actions, wake, False
    return actions, wake, True


def _running(observed: Observed, name: str) -> bool:
    last = _last(observed.attempts.get(name))
    return last is not None and last.state != "exited"


def _sidecars_to_stop(pod: Mapping[str, Any], observed: Observed) -> tuple[str, ...]:
    """What still runs in a pod that is done (its app containers ended for good): its ephemeral
    containers first, then its sidecars, last first."""
    ephemeral = [c["name"] for c in ephemeral_containers_of(pod) if _running(observed, c["name"])]
    running = [c["name"] for c in init_containers_of(pod) if is_sidecar(c) and _running(observed, c["name"])]
    return (*ephemeral, *reversed(running))


def _ephemeral_actions(pod: Mapping[str, Any], observed: Observed, now: float) -> tuple[list[Action], float | None]:
    """Ephemeral containers (``kubectl debug``) start once each, even before the pod is initialized,
    and never run again; one whose image or config could not be had is tried again after the back-off."""
    actions: list[Action] = []
    wake: float | None = None
    for container in ephemeral_containers_of(pod):
        name = container["name"]
        if observed.attempts.get(name):
            continue
        failure = observed.pulls.get(name) or observed.problems.get(name)
        if failure is not None and now < (retry_at := failure.at + retry_backoff(failure)):
            wake = _earlier(wake, retry_at)
            continue
        actions.append(StartContainer(name, 0))
    return actions, wake


def plan(pod: Mapping[str, Any], observed: Observed, now: float) -> tuple[list[Action], float | None]:
    """The actions to take now, and when to look again (None: only on a change)."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return [StopPod(termination_grace(pod))], None
    if not observed.sandbox_ip:
        return [CreateSandbox()], None
    if phase(pod, observed) in ("Succeeded", "Failed"):
        sidecars = _sidecars_to_stop(pod, observed)
        return ([StopContainers(sidecars, termination_grace(pod))] if sidecars else []), None
    ephemeral, ephemeral_wake = _ephemeral_actions(pod, observed, now)
    actions, wake, initialized = _init_actions(pod, observed, now)
    actions = ephemeral + actions
    if ephemeral_wake is not None:
        wake = _earlier(wake, ephemeral_wake)
    if not initialized:
        return actions, wake
    policy = restart_policy(pod)
    for container in containers_of(pod):
        name = container["name"]
        attempts = list(observed.attempts.get(name) or [])
        failure = observed.pulls.get(name) or observed.problems.get(name)
        if failure is not None:
            retry_at = failure.at + retry_backoff(failure)
            if now < retry_at:
                wake = _earlier(wake, retry_at)
                continue
        if not attempts:
            actions.append(StartContainer(name, 0))
            continue
        last = attempts[-1]
        if last.state != "exited" or not wants_restart(policy, last.exit_code):
            continue
        start_at = next_start(attempts)
        if now >= start_at:
            actions.append(StartContainer(name, last.number + 1))
        else:
            wake = _earlier(wake, start_at)
    return actions, wake


def backing_off(pod: Mapping[str, Any], observed: Observed, now: float) -> list[str]:
    """The containers whose next run waits out a crash back-off now (kube's ``BackOff`` events)."""
    policy = restart_policy(pod)
    inits = {c["name"] for c in init_containers_of(pod)}
    if observed.sandbox_ip and phase(pod, observed) in ("Succeeded", "Failed"):
        return []  # nothing runs again, sidecars included
    names = []
    for container in all_containers_of(pod):
        attempts = list(observed.attempts.get(container["name"]) or [])
        last = attempts[-1] if attempts else None
        own = init_restart_policy(pod, container) if container["name"] in inits else policy
        exited = last is not None and last.state == "exited" and wants_restart(own, last.exit_code)
        if exited and now < next_start(attempts):
            names.append(str(container["name"]))
    return names


# --- status ---------------------------------------------------------------------------------------


def rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def termination_reason(attempt: Attempt) -> str:
    """kube's reason for a run's end: its own (OOMKilled, StartError), else Completed or Error."""
    return attempt.reason or ("Completed" if attempt.exit_code == 0 else "Error")


def _terminated(attempt: Attempt) -> dict[str, Any]:
    terminated: dict[str, Any] = {
        "exitCode": attempt.exit_code,
        "reason": termination_reason(attempt),
        "startedAt": rfc3339(attempt.started_at),
        "finishedAt": rfc3339(attempt.finished_at),
        "containerID": attempt.container_id,
    }
    if attempt.message:
        terminated["message"] = attempt.message
    return {"terminated": terminated}


def container_status(
    container: Mapping[str, Any],
    attempts: Sequence[Attempt],
    failure: PullFailure | None,
    *,
    policy: str,
    now: float,
    probed: tuple[bool, bool] = (True, True),
    problem: Problem | None = None,
    waiting: str = "ContainerCreating",
    init: bool = False,
) -> dict[str, Any]:
    """One container's status; ``probed`` is (ready, started) as its probes say (no probes: both);
    ``problem`` is why its next run could not be made; ``waiting`` the reason before its first run;
    ``init``: a (non-sidecar) init container, ready once it completed and never while it runs."""
    image = str(container.get("image") or "")
    status: dict[str, Any] = {
        "name": container["name"],
        "image": image,
        "imageID": "",
        "ready": False,
        "restartCount": attempts[-1].number if attempts else 0,
        "started": False,
        "state": {"waiting": {"reason": waiting}},
        "lastState": {},
    }
    if failure is not None and (not attempts or attempts[-1].state == "exited"):
        # the first failure reads ErrImagePull; while later pulls wait out their back-off, ImagePullBackOff
        if failure.failures == 1:
            status["state"] = {"waiting": {"reason": "ErrImagePull", "message": failure.message}}
        else:
            message = f'Back-off pulling image "{image}": {failure.message}'
            status["state"] = {"waiting": {"reason": "ImagePullBackOff", "message": message}}
    elif problem is not None and problem.reason != FAILED_MOUNT and (not attempts or attempts[-1].state == "exited"):
        # a volume that cannot be set up leaves the container ContainerCreating, the FailedMount event says why
        status["state"] = {"waiting": {"reason": problem.reason, "message": problem.message}}
    if not attempts:
        return status
    last = attempts[-1]
    status["containerID"] = last.container_id
    if len(attempts) > 1:
        status["lastState"] = _terminated(attempts[-2])
    if last.state == "running":
        status["state"] = {"running": {"startedAt": rfc3339(last.started_at)}}
        status["ready"], status["started"] = probed
        if init:
            status["ready"] = False
    elif last.state == "exited":
        if wants_restart(policy, last.exit_code):
            status["lastState"] = _terminated(last)
            if failure is None and (problem is None or problem.reason == FAILED_MOUNT):
                wait = int(max(0.0, next_start(attempts) - now))
                message = f"back-off {wait}s restarting failed container={container['name']}"
                status["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
        else:
            status["state"] = _terminated(last)
            status["ready"] = init and last.exit_code == 0
    return status


def _last(attempts: Sequence[Attempt] | None) -> Attempt | None:
    return attempts[-1] if attempts else None


def phase(pod: Mapping[str, Any], observed: Observed) -> str:
    """kube's pod phase from the containers: Pending until initialized and each app container has run
    once (Failed when an init container failed for good), Running while any app container runs or
    will run again, then Succeeded (all exited 0) or Failed. Sidecars do not count."""
    policy = restart_policy(pod)
    containers = containers_of(pod)
    lasts: list[Attempt | None] = [_last(observed.attempts.get(c["name"])) for c in containers]
    if not observed.sandbox_ip:
        return "Pending"
    progress = init_progress(pod, observed)
    if progress.failed:
        return "Failed"
    if not progress.done or any(a is None for a in lasts):
        return "Pending"
    done = [a for a in lasts if a is not None and a.state == "exited"]
    if any(a is not None and a.state != "exited" for a in lasts):
        return "Running"
    if any(wants_restart(policy, a.exit_code) for a in done):
        return "Running"
    return "Succeeded" if all(a.exit_code == 0 for a in done) else "Failed"


def pod_status(
    pod: Mapping[str, Any], observed: Observed, *, host_ip: str, started_at: float, now: float
) -> dict[str, Any]:
    """The pod's status as the kubelet reports it (kept: conditions other components own)."""
    old = dict(pod.get("status") or {})
    policy = restart_policy(pod)
    progress = init_progress(pod, observed)

    def status_of(c: dict[str, Any], *, own_policy: str, waiting: str, init: bool = False) -> dict[str, Any]:
        return container_status(
            c,
            observed.attempts.get(c["name"]) or [],
            observed.pulls.get(c["name"]),
            policy=own_policy,
            now=now,
            probed=observed.probes.get(c["name"], (True, True)),
            problem=observed.problems.get(c["name"]),
            waiting=waiting,
            init=init,
        )

    current = phase(pod, observed)
    finished = current in ("Succeeded", "Failed")  # a finished pod's sidecars ended for good
    app_waiting = "ContainerCreating" if progress.done else "PodInitializing"
    statuses = [status_of(c, own_policy=policy, waiting=app_waiting) for c in containers_of(pod)]
    init_statuses = [
        status_of(
            c,
            own_policy="Never" if finished else init_restart_policy(pod, c),
            waiting="PodInitializing",
            init=not is_sidecar(c),
        )
        for c in init_containers_of(pod)
    ]
    sidecar_statuses = [s for s, c in zip(init_statuses, init_containers_of(pod), strict=True) if is_sidecar(c)]
    ready = current == "Running" and all(s["ready"] for s in statuses + sidecar_statuses)
    at = rfc3339(now)
    previous = {c.get("type"): c for c in old.get("conditions") or []}

    def condition(kind: str, value: bool, reason: str = "", message: str = "") -> dict[str, Any]:
        text = "True" if value else "False"
        before = previous.get(kind) or {}
        found: dict[str, Any] = {
            "type": kind,
            "status": text,
            "lastProbeTime": None,
            "lastTransitionTime": before.get("lastTransitionTime") if before.get("status") == text else at,
        }
        if reason and not value:
            found["reason"] = reason
        if message and not value:
            found["message"] = message
        return found

    not_ready = "PodCompleted" if current in ("Succeeded", "Failed") else "ContainersNotReady"
    owned = {"PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"}
    conditions = [c for c in old.get("conditions") or [] if c.get("type") not in owned]
    conditions += [
        condition("PodReadyToStartContainers", bool(observed.sandbox_ip)),
        condition(
            "Initialized",
            not progress.incomplete,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(progress.incomplete)}]",
        ),
        condition("ContainersReady", ready, not_ready),
        condition("Ready", ready, not_ready),
    ]
    status: dict[str, Any] = {
        **old,
        "phase": current,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": old.get("startTime") or rfc3339(started_at),
        "containerStatuses": statuses,
        "qosClass": old.get("qosClass") or qos_class(pod),
    }
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    ephemeral = ephemeral_containers_of(pod)
    if ephemeral:  # never restarted, whatever the pod's restartPolicy
        status["ephemeralContainerStatuses"] = [
            status_of(c, own_policy="Never", waiting="ContainerCreating") for c in ephemeral
        ]
    if observed.sandbox_ip:
        status["podIP"] = observed.sandbox_ip
        status["podIPs"] = [{"ip": observed.sandbox_ip}]
    return status


def qos_class(pod: Mapping[str, Any]) -> str:
    """Guaranteed (limits = requests for cpu and memory everywhere), BestEffort (none), else Burstable."""
    containers = containers_of(pod)
    resources = [c.get("resources") or {} for c in containers]
    if not any((r.get("requests") or {}) or (r.get("limits") or {}) for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                return "Burstable"
    return "Guaranteed"
