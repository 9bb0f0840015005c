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
class StopPod:
    """Stop every running container (SIGTERM, then SIGKILL after the grace period), then the sandbox."""

    grace_seconds: float


Action = CreateSandbox | StartContainer | StopPod


def containers_of(pod: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((pod.get("spec") or {}).get("containers") or [])


def restart_policy(pod: Mapping[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("restartPolicy") or "Always")


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


def plan(pod: Mapping[str, Any], observed: Observed, now: float) -> tuple[list[Action], float | None]:
    """The actions to take now, and when to look again (None: only on a change)."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        grace = meta.get("deletionGracePeriodSeconds")
        default = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        return [StopPod(float(grace if grace is not None else default))], None
    if not observed.sandbox_ip:
        return [CreateSandbox()], None
    policy = restart_policy(pod)
    actions: list[Action] = []
    wake: float | None = None
    for container in containers_of(pod):
        name = container["name"]
        attempts = list(observed.attempts.get(name) or [])
        failure = observed.pulls.get(name) or observed.problems.get(name)
        if failure is not None:
            retry_at = failure.at + retry_backoff(failure)
            if now < retry_at:
                wake = retry_at if wake is None else min(wake, retry_at)
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
            wake = start_at if wake is None else min(wake, start_at)
    return actions, wake


def backing_off(pod: Mapping[str, Any], observed: Observed, now: float) -> list[str]:
    """The containers whose next run waits out a crash back-off now (kube's ``BackOff`` events)."""
    policy = restart_policy(pod)
    names = []
    for container in containers_of(pod):
        attempts = list(observed.attempts.get(container["name"]) or [])
        last = attempts[-1] if attempts else None
        exited = last is not None and last.state == "exited" and wants_restart(policy, last.exit_code)
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
) -> dict[str, Any]:
    """One container's status; ``probed`` is (ready, started) as its probes say (no probes: both);
    ``problem`` is why its next run could not be made."""
    image = str(container.get("image") or "")
    status: dict[str, Any] = {
        "name": container["name"],
        "image": image,
        "imageID": "",
        "ready": False,
        "restartCount": attempts[-1].number if attempts else 0,
        "started": False,
        "state": {"waiting": {"reason": "ContainerCreating"}},
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
    elif last.state == "exited":
        if wants_restart(policy, last.exit_code):
            status["lastState"] = _terminated(last)
            if failure is None and (problem is None or problem.reason == FAILED_MOUNT):
                wait = int(max(0.0, next_start(attempts) - now))
                message = f"back-off {wait}s restarting failed container={container['name']}"
                status["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
        else:
            status["state"] = _terminated(last)
    return status


def _last(attempts: Sequence[Attempt] | None) -> Attempt | None:
    return attempts[-1] if attempts else None


def phase(pod: Mapping[str, Any], observed: Observed) -> str:
    """kube's pod phase from the containers: Pending until each has run once, Running while any
    runs or will run again, then Succeeded (all exited 0) or Failed."""
    policy = restart_policy(pod)
    containers = containers_of(pod)
    lasts: list[Attempt | None] = [_last(observed.attempts.get(c["name"])) for c in containers]
    if not observed.sandbox_ip or any(a is None for a in lasts):
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
    statuses = [
        container_status(
            c,
            observed.attempts.get(c["name"]) or [],
            observed.pulls.get(c["name"]),
            policy=policy,
            now=now,
            probed=observed.probes.get(c["name"], (True, True)),
            problem=observed.problems.get(c["name"]),
        )
        for c in containers_of(pod)
    ]
    current = phase(pod, observed)
    ready = current == "Running" and all(s["ready"] for s in statuses)
    at = rfc3339(now)
    previous = {c.get("type"): c for c in old.get("conditions") or []}

    def condition(kind: str, value: bool, reason: str = "") -> dict[str, Any]:
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
        return found

    not_ready = "PodCompleted" if current in ("Succeeded", "Failed") else "ContainersNotReady"
    owned = {"PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"}
    conditions = [c for c in old.get("conditions") or [] if c.get("type") not in owned]
    conditions += [
        condition("PodReadyToStartContainers", bool(observed.sandbox_ip)),
        condition("Initialized", True),
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
