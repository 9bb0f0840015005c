"""Job controller: runs pods until ``completions`` of them succeed, or the Job fails.

At most ``parallelism`` pods run at once. Each pod carries the ``batch.kubernetes.io/job-tracking``
finalizer; a finished pod is first recorded in ``status.uncountedTerminatedPods``, then its finalizer
is removed, then it is counted in ``succeeded``/``failed``, so a pod is counted once even if the
controller restarts in between. More failures than ``backoffLimit`` or a run longer than
``activeDeadlineSeconds`` fail the Job; ``suspend`` stops its pods; ``ttlSecondsAfterFinished``
deletes a finished Job. Indexed Jobs give each pod a completion index. A failed pod is replaced after
a back-off (10 s, doubled for each earlier failure, at most 6 minutes), as kube's controller does.

``plan`` is pure: from the Job, its pods, the time and how long ago this controller saw a pod of it
fail, it decides the tracking writes (uncounted pods, finalizers to remove), the pods to create or
delete, the outcome (conditions and their event), the status, and when to look again. A Job being
deleted starts and stops no pods and lets every pod of it go (its finalizer removed).

A pod whose Job is gone (deleted, or replaced by another of the same name) or that no longer has a
controller keeps its finalizer until something removes it: these orphans have their own keys in the
queue (``orphan_key``), found when a Job is deleted, when such a pod is seen (at start too, as the
informer lists every pod), and when a Job's key finds no Job; ``release_orphan`` decides (pure).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from agents.controllers import claim
from agents.controllers.base import (
    Context,
    Controller,
    Event,
    delete_object,
    gather_limited,
    ignore_not_found,
    rfc3339,
    write_status,
)
from agents.controllers.podutil import Expectations, is_active, is_ready, pod_from_template
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.informer import key_of
from agents.machinery.objects import Object, deep_copy, parse_time
from agents.machinery.resources import JOBS, PODS

log = logging.getLogger(__name__)

TRACKING = "batch.kubernetes.io/job-tracking"
MAX_BACKOFF = 360.0  # seconds: the longest wait before replacing a failed pod, as kube's
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
ORPHAN = "orphan-pod:"  # queue keys of pods to check by ``release_orphan`` (a Job's key is "namespace/name")


def orphan_key(pod: Object) -> str:
    return ORPHAN + key_of(pod)


def finished(job: Object) -> str:
    """ "Complete", "Failed" or "" (still running)."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return str(condition["type"])
    return ""


def parse_indexes(text: str) -> set[int]:
    out: set[int] = set()
    for part in (text or "").split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


def format_indexes(indexes: set[int]) -> str:
    parts, ordered = [], sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def _condition(kind: str, reason: str, message: str, *, now: datetime) -> dict[str, Any]:
    stamp = rfc3339(now)
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
    }


def completed_indexes(status: Mapping[str, Any], pods: list[Object]) -> set[int]:
    """The indexes recorded as completed, and those of succeeded pods not recorded yet."""
    indexes = parse_indexes(status.get("completedIndexes", ""))
    for pod in pods:
        index = _index_of(pod)
        if index is not None and (pod.get("status") or {}).get("phase") == "Succeeded":
            indexes.add(index)
    return indexes


def _index_of(pod: Object) -> int | None:
    raw = (pod["metadata"].get("annotations") or {}).get(INDEX_ANNOTATION)
    return int(raw) if raw is not None and raw.isdigit() else None


def _tracked(pod: Object) -> bool:
    return TRACKING in (pod["metadata"].get("finalizers") or [])


def job_ref(pod: Object) -> dict[str, Any] | None:
    """The pod's controller reference when it names a batch/v1 Job."""
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref if ref.get("kind") == "Job" and ref.get("apiVersion") == JOBS.api_version else None
    return None


def _has_controller(pod: Object) -> bool:
    return any(ref.get("controller") for ref in pod["metadata"].get("ownerReferences") or [])


def release_orphan(pod: Object, job: Object | None) -> bool:
    """Whether ``pod``'s tracking finalizer comes off outside any Job's sync: the pod has no controller,
    or its controller reference names a Job that is gone (``job``, the Job of that name now, is None or
    another one). A pod of a live Job is left to that Job's sync, which counts it first; a pod some
    other kind controls is not this controller's to touch."""
    if not _tracked(pod):
        return False
    if not _has_controller(pod):
        return True
    ref = job_ref(pod)
    if ref is None:
        return False
    return job is None or (job.get("metadata") or {}).get("uid") != ref.get("uid")


@dataclass
class Plan:
    uncounted: dict[str, Any] | None = None  # status naming newly finished pods, written before their finalizers go
    release: list[Object] = field(default_factory=list)  # pods whose tracking finalizer goes
    failure_seen: bool = False  # a pod newly found failed: the back-off counts from now
    events: list[Event] = field(default_factory=list)
    delete: list[Object] = field(default_factory=list)
    create: list[Object] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    delete_job: bool = False  # finished longer ago than ttlSecondsAfterFinished
    requeue_after: float | None = None


def job_status(status: dict[str, Any], pods: list[Object]) -> dict[str, Any]:
    """``status`` with the pod counts (active, ready, terminating), zero counts left out."""
    active = [p for p in pods if is_active(p)]
    status = {
        **status,
        "active": len(active),
        "ready": sum(1 for p in active if is_ready(p)),
        "terminating": sum(1 for p in pods if p["metadata"].get("deletionTimestamp")),
    }
    return {k: v for k, v in status.items() if v not in (0, None, "", []) or k in ("ready",)}


def plan(
    job: Object,
    pods: list[Object],
    *,
    now: datetime,
    expectations_met: bool,
    backoff: float,
    failure_age: float | None,
) -> Plan:
    """What to do for ``job`` given the pods it controls; ``backoff`` is the first replacement delay
    and ``failure_age`` the seconds since this controller saw one of its pods fail (None: never)."""
    result = Plan()
    status = _track(result, job, pods, deep_copy(job.get("status") or {}))
    spec = job.get("spec") or {}
    if (job.get("metadata") or {}).get("deletionTimestamp"):
        _release_all(result, pods)  # a Job going away starts and stops nothing and holds no pod back
        result.status = job_status(status, pods)
        return result
    done = finished(job)
    if done:
        _finish(result, job, pods, status, done, now=now)
        return result
    active = [p for p in pods if is_active(p)]
    if not spec.get("suspend"):
        status.setdefault("startTime", rfc3339(now))
    # pods that finished but are not counted yet (their finalizer is being removed) count too:
    # otherwise a finished pod would look like room for another one
    uncounted = status.get("uncountedTerminatedPods") or {}
    pending = len(uncounted.get("succeeded") or []) + len(uncounted.get("failed") or [])
    failed = int(status.get("failed", 0)) + len(uncounted.get("failed") or [])
    succeeded = int(status.get("succeeded", 0)) + len(uncounted.get("succeeded") or [])
    completions = spec.get("completions")
    parallelism = int(spec.get("parallelism", 1))
    indexed = spec.get("completionMode") == "Indexed"
    done_indexes = completed_indexes(status, pods)
    verdict = _verdict(job, status, active, succeeded=succeeded, failed=failed, done_indexes=done_indexes, now=now)
    if verdict is not None and pending:
        result.status = job_status(status, pods)  # every finished pod is counted before the outcome
        return result
    if verdict is not None:
        kind, reason, message = verdict
        conditions = [c for c in status.get("conditions") or [] if c.get("type") not in (kind,)]
        if kind == "Failed":
            conditions.append(_condition("FailureTarget", reason, message, now=now))
        else:
            conditions.append(_condition("SuccessCriteriaMet", reason, message, now=now))
            status["completionTime"] = rfc3339(now)
        conditions.append(_condition(kind, reason, message, now=now))
        status["conditions"] = conditions
        complete = kind == "Complete"
        result.events.append(Event(NORMAL if complete else WARNING, "Completed" if complete else reason, message))
        result.delete = active
        result.status = job_status(status, pods)
        return result
    if spec.get("suspend"):
        result.delete = active
        status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "Suspended"] + [
            _condition("Suspended", "JobSuspended", "Job suspended", now=now)
        ]
        result.status = job_status(status, pods)
        return result
    completed = len(done_indexes) if indexed else succeeded
    want = parallelism if completions is None else min(parallelism, int(completions) - completed)
    want = max(want, 0)
    if completions is None and succeeded > 0:
        want = 0  # a work-queue Job: once one pod succeeds, no new pods start
    age = 0.0 if result.failure_seen else failure_age
    wait = _backoff_left(failed, backoff=backoff, failure_age=age)
    waits: list[float] = []
    if expectations_met:
        if len(active) < want and wait > 0:
            waits.append(wait)  # a pod failed lately: the replacement waits (kube's backoff)
        elif len(active) < want:
            result.create = _new_pods(job, want - len(active), active=active, done=done_indexes, indexed=indexed)
        elif len(active) > want:
            newest_first = sorted(active, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
            result.delete = newest_first[: len(active) - want]
    result.status = job_status(status, pods)
    deadline = spec.get("activeDeadlineSeconds")
    if deadline and status.get("startTime"):
        left = parse_time(status["startTime"]).timestamp() + int(deadline) - now.timestamp()
        waits.append(max(left, 0) + 0.1)
    result.requeue_after = min(waits) if waits else None
    return result


def _backoff_left(failed: int, *, backoff: float, failure_age: float | None) -> float:
    """Seconds until a replacement may start after the latest failure: the base delay doubled for
    every earlier failure, at most six minutes."""
    if not failed or failure_age is None:
        return 0.0
    delay = min(backoff * float(2 ** (failed - 1)), MAX_BACKOFF)
    return max(delay - failure_age, 0.0)


def _verdict(
    job: Object,
    status: dict[str, Any],
    active: list[Object],
    *,
    succeeded: int,
    failed: int,
    done_indexes: set[int],
    now: datetime,
) -> tuple[str, str, str] | None:
    spec = job.get("spec") or {}
    if failed > int(spec.get("backoffLimit", 6)):
        return "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
    deadline = spec.get("activeDeadlineSeconds")
    if (
        deadline
        and status.get("startTime")
        and (now - parse_time(status["startTime"])).total_seconds() >= int(deadline)
    ):
        return "Failed", "DeadlineExceeded", "Job was active longer than specified deadline"
    completions = spec.get("completions")
    if spec.get("completionMode") == "Indexed" and completions is not None:
        if len(done_indexes) >= int(completions):
            return "Complete", "CompletionsReached", "Reached expected number of succeeded pods"
    elif (completions is not None and succeeded >= int(completions)) or (
        completions is None and succeeded > 0 and not active
    ):
        return "Complete", "CompletionsReached", "Reached expected number of succeeded pods"
    return None


def _track(result: Plan, job: Object, pods: list[Object], status: dict[str, Any]) -> dict[str, Any]:
    """Count finished pods exactly once: a finished pod is first named in ``uncountedTerminatedPods``
    (written before anything else), then its finalizer is removed, then, once the pod shows no
    finalizer, it is counted. Returns the status as it stands after that."""
    uncounted = status.get("uncountedTerminatedPods") or {}
    pending = {"succeeded": list(uncounted.get("succeeded") or []), "failed": list(uncounted.get("failed") or [])}
    changed = False
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase")
        uid = pod["metadata"]["uid"]
        ended = phase in ("Succeeded", "Failed") or bool(pod["metadata"].get("deletionTimestamp"))
        if not _tracked(pod) or not ended:
            continue
        bucket = "succeeded" if phase == "Succeeded" else "failed"
        if uid not in pending["succeeded"] and uid not in pending["failed"]:
            pending[bucket].append(uid)
            changed = True
            if bucket == "failed":
                result.failure_seen = True
    if changed:
        status["uncountedTerminatedPods"] = pending
        result.uncounted = deep_copy(job_status(status, pods))
        status = deep_copy(result.uncounted)
    result.release = [
        p for p in pods if p["metadata"]["uid"] in pending["succeeded"] + pending["failed"] and _tracked(p)
    ]
    live = {p["metadata"]["uid"] for p in pods if _tracked(p)}
    counted = False
    for bucket in ("succeeded", "failed"):
        settled = [uid for uid in pending[bucket] if uid not in live]
        if settled:
            status[bucket] = int(status.get(bucket, 0)) + len(settled)
            pending[bucket] = [uid for uid in pending[bucket] if uid in live]
            counted = True
    if counted:
        if (job.get("spec") or {}).get("completionMode") == "Indexed":
            status["completedIndexes"] = format_indexes(completed_indexes(status, pods))
        status["uncountedTerminatedPods"] = {k: v for k, v in pending.items() if v}
        if not status["uncountedTerminatedPods"]:
            status["uncountedTerminatedPods"] = {}
    return status


def _finish(result: Plan, job: Object, pods: list[Object], status: dict[str, Any], done: str, *, now: datetime) -> None:
    """A finished Job: every finalizer goes, a failed Job's running pods go, and the Job itself once
    ``ttlSecondsAfterFinished`` has passed."""
    _release_all(result, pods)
    if done == "Failed":
        result.delete = [p for p in pods if is_active(p)]
    result.status = job_status(status, pods)
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    finished_at = status.get("completionTime") or next(
        (c.get("lastTransitionTime") for c in status.get("conditions") or [] if c.get("type") == done), None
    )
    if ttl is not None and finished_at:
        left = parse_time(finished_at).timestamp() + int(ttl) - now.timestamp()
        if left <= 0:
            result.delete_job = True
        else:
            result.requeue_after = left + 0.1


def _release_all(result: Plan, pods: list[Object]) -> None:
    """Every tracked pod loses its finalizer (those ``_track`` releases already keep their place)."""
    releasing = {p["metadata"]["uid"] for p in result.release}
    result.release += [p for p in pods if _tracked(p) and p["metadata"]["uid"] not in releasing]


def _new_pods(job: Object, count: int, *, active: list[Object], done: set[int], indexed: bool) -> list[Object]:
    """Up to ``count`` pods, carrying the tracking finalizer; an Indexed Job's take the lowest free
    indexes (neither completed nor running)."""
    template = deep_copy((job.get("spec") or {}).get("template") or {})
    template.setdefault("metadata", {})["finalizers"] = [TRACKING]
    if not indexed:
        return [pod_from_template(template, job) for _ in range(count)]
    bodies = []
    running = {i for p in active if (i := _index_of(p)) is not None}
    completions = int((job.get("spec") or {}).get("completions") or 0)
    free = [i for i in range(completions) if i not in done and i not in running][:count]
    for index in free:
        pod = pod_from_template(
            template,
            job,
            generate_name=f"{job['metadata']['name']}-{index}-",
            labels={INDEX_LABEL: str(index)},
            annotations={INDEX_ANNOTATION: str(index)},
        )
        pod["spec"]["hostname"] = f"{job['metadata']['name']}-{index}"
        for container in pod["spec"].get("containers") or []:
            container.setdefault("env", []).append({"name": "JOB_COMPLETION_INDEX", "value": str(index)})
        bodies.append(pod)
    return bodies


class JobController(Controller):
    name = "job"
    workers = 4

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.jobs = ctx.informer(JOBS)
        self.pods = ctx.informer(PODS)
        self.expectations = Expectations()
        self.backoff = float(ctx.settings.job_backoff_seconds)
        self._last_failure: dict[str, float] = {}  # job key -> loop time of its latest pod failure
        self.jobs.on(add=self.enqueue, update=lambda _o, n: self.enqueue(n), delete=self._job_deleted)
        self.pods.on(add=self._pod_added, update=lambda _o, n: self._pod_changed(n), delete=self._pod_deleted)

    def _owner_key(self, pod: Object) -> str | None:
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "Job":
                return f"{pod['metadata']['namespace']}/{ref['name']}"
        return None

    def _job_deleted(self, job: Object) -> None:
        self.expectations.forget(key_of(job))
        for pod in self.pods.by_index("owner", job["metadata"]["uid"]):
            if _tracked(pod):
                self.queue.add(orphan_key(pod))

    def _check_orphan(self, pod: Object) -> None:
        """Queue ``pod`` for ``release_orphan`` when no Job the cache holds runs it."""
        ref = job_ref(pod)
        job = self.jobs.get(f"{pod['metadata']['namespace']}/{ref['name']}") if ref else None
        if release_orphan(pod, job):
            self.queue.add(orphan_key(pod))

    def _pod_added(self, pod: Object) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.observed_add(key)
            self.queue.add(key)
        self._check_orphan(pod)

    def _pod_changed(self, pod: Object) -> None:
        key = self._owner_key(pod)
        if key:
            self.queue.add(key)
        self._check_orphan(pod)

    def _pod_deleted(self, pod: Object) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.observed_delete(key, pod["metadata"]["uid"])
            self.queue.add(key)

    async def sync(self, key: str) -> None:
        if key.startswith(ORPHAN):
            await self._sync_orphan(key.removeprefix(ORPHAN))
            return
        job = self.jobs.get(key)
        if job is None:
            self.expectations.forget(key)
            namespace, _, name = key.partition("/")
            for pod in self.pods.by_index("namespace", namespace):
                ref = job_ref(pod)
                if ref is not None and ref.get("name") == name and _tracked(pod):
                    self.queue.add(orphan_key(pod))
            return
        pods = claim.controlled(job, self.pods.by_index("namespace", job["metadata"]["namespace"]))
        clock = asyncio.get_running_loop().time()
        last_failure = self._last_failure.get(key)
        decided = plan(
            job,
            pods,
            now=self.now(),
            expectations_met=self.expectations.satisfied(key),
            backoff=self.backoff,
            failure_age=None if last_failure is None else clock - last_failure,
        )
        if decided.failure_seen:
            self._last_failure[key] = clock
        if decided.uncounted is not None:
            await write_status(self.client, JOBS, job, decided.uncounted, latest=self.jobs.get(key))
        for pod in decided.release:
            await self._release(pod)
        self.record(job, *decided.events)
        if decided.delete:
            await gather_limited([partial(delete_object, self.client, PODS, p) for p in decided.delete])
        if decided.create:
            await self._create(job, key, decided.create)
        await write_status(self.client, JOBS, job, decided.status, latest=self.jobs.get(key))
        if decided.delete_job:
            await delete_object(self.client, JOBS, job, propagation="Background")
        if decided.requeue_after is not None:
            self.queue.add_after(key, decided.requeue_after)

    async def _sync_orphan(self, pod_key: str) -> None:
        """Remove the tracking finalizer of a pod whose Job is gone or that has no controller. The
        cache may not have seen a Job yet: a Job it lacks is asked of the API server before the
        pod is let go."""
        pod = self.pods.get(pod_key)
        if pod is None:
            return
        ref = job_ref(pod)
        job: Object | None = None
        if ref is not None:
            namespace = pod["metadata"]["namespace"]
            job = self.jobs.get(f"{namespace}/{ref['name']}")
            if job is None:
                job = await ignore_not_found(partial(self.client.get, JOBS, ref["name"], namespace))
        if release_orphan(pod, job):
            await self._release(pod)

    async def _release(self, pod: Object) -> None:
        finalizers = [f for f in pod["metadata"].get("finalizers") or [] if f != TRACKING]
        await ignore_not_found(
            partial(
                self.client.patch,
                PODS,
                pod["metadata"]["name"],
                {"metadata": {"finalizers": finalizers or None}},
                pod["metadata"]["namespace"],
            )
        )

    async def _create(self, job: Object, key: str, bodies: list[Object]) -> None:
        self.expectations.expect(key, adds=len(bodies))
        results = await gather_limited([partial(self.client.create, PODS, body) for body in bodies])
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            self.expectations.lower(key, adds=len(errors))
            self.recorder.record(job, WARNING, "FailedCreate", f"Error creating: {errors[0]}")
        for result in results:
            if not isinstance(result, BaseException):
                self.recorder.record(job, NORMAL, "SuccessfulCreate", f"Created pod: {result['metadata']['name']}")
