"""Job controller: runs pods until ``completions`` of them succeed, or the Job fails.

At most ``parallelism`` pods run at once. Each pod carries the ``batch.kubernetes.io/job-tracking``
finalizer; a finished pod is first recorded in ``status.uncountedTerminatedPods``, then its finalizer
is removed, then it is counted in ``succeeded``/``failed``, so a pod is counted once even if the
controller restarts in between. More failures than ``backoffLimit`` or a run longer than
``activeDeadlineSeconds`` fail the Job; ``suspend`` stops its pods; ``ttlSecondsAfterFinished``
deletes a finished Job. Indexed Jobs give each pod a completion index. A failed pod is replaced after
a back-off (10 s, doubled for each earlier failure, at most 6 minutes), as kube's controller does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any

from agents.controllers.base import Context, Controller, delete_object, gather_limited, ignore_not_found, owner_uid
from agents.controllers.podutil import Expectations, is_ready, pod_from_template
from agents.machinery.client import ApiError
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.informer import key_of
from agents.machinery.objects import Object, deep_copy, now, parse_time
from agents.machinery.resources import JOBS, PODS

log = logging.getLogger(__name__)

TRACKING = "batch.kubernetes.io/job-tracking"
MAX_BACKOFF = 360.0  # seconds: the longest wait before replacing a failed pod, as kube's
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"


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


def _condition(kind: str, reason: str, message: str) -> dict[str, Any]:
    stamp = now()
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
        self.jobs.on(
            add=self.enqueue, update=lambda _o, n: self.enqueue(n), delete=lambda j: self.expectations.forget(key_of(j))
        )
        self.pods.on(add=self._pod_added, update=lambda _o, n: self._pod_changed(n), delete=self._pod_deleted)

    def _owner_key(self, pod: Object) -> str | None:
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "Job":
                return f"{pod['metadata']['namespace']}/{ref['name']}"
        return None

    def _pod_added(self, pod: Object) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.observed_add(key)
            self.queue.add(key)

    def _pod_changed(self, pod: Object) -> None:
        key = self._owner_key(pod)
        if key:
            self.queue.add(key)

    def _pod_deleted(self, pod: Object) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.observed_delete(key, pod["metadata"]["uid"])
            self.queue.add(key)

    async def sync(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None:
            self.expectations.forget(key)
            return
        uid = job["metadata"]["uid"]
        pods = [p for p in self.pods.by_index("namespace", job["metadata"]["namespace"]) if owner_uid(p) == uid]
        spec = job.get("spec") or {}
        status: dict[str, Any] = deep_copy(job.get("status") or {})
        status = await self._track(job, pods, status)
        done = finished(job)
        if done:
            await self._finish(job, pods, status, done)
            return
        active = [
            p
            for p in pods
            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")
        ]
        if not spec.get("suspend"):
            status.setdefault("startTime", now())
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
        verdict = self._verdict(job, status, active, succeeded=succeeded, failed=failed, done_indexes=done_indexes)
        if verdict is not None and pending:
            await self._write_status(job, status, pods)  # every finished pod is counted before the outcome
            return
        if verdict is not None:
            kind, reason, message = verdict
            conditions = [c for c in status.get("conditions") or [] if c.get("type") not in (kind,)]
            if kind == "Failed":
                conditions.append(_condition("FailureTarget", reason, message))
            else:
                conditions.append(_condition("SuccessCriteriaMet", reason, message))
                status["completionTime"] = now()
            conditions.append(_condition(kind, reason, message))
            status["conditions"] = conditions
            self.recorder.record(
                job, NORMAL if kind == "Complete" else WARNING, "Completed" if kind == "Complete" else reason, message
            )
            await self._delete(job, active)
            await self._write_status(job, status, pods)
            return
        if spec.get("suspend"):
            await self._delete(job, active)
            status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != "Suspended"] + [
                _condition("Suspended", "JobSuspended", "Job suspended")
            ]
            await self._write_status(job, status, pods)
            return
        completed = len(done_indexes) if indexed else succeeded
        want = parallelism if completions is None else min(parallelism, int(completions) - completed)
        want = max(want, 0)
        if completions is None and succeeded > 0:
            want = 0  # a work-queue Job: once one pod succeeds, no new pods start
        wait = self._backoff_left(key, failed)
        if self.expectations.satisfied(key):
            if len(active) < want and wait > 0:
                self.queue.add_after(key, wait)  # a pod failed lately: the replacement waits (kube's backoff)
            elif len(active) < want:
                await self._create(
                    job, key, count=want - len(active), active=active, done=done_indexes, indexed=indexed
                )
            elif len(active) > want:
                await self._delete(
                    job,
                    sorted(active, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)[
                        : len(active) - want
                    ],
                )
        await self._write_status(job, status, pods)
        deadline = spec.get("activeDeadlineSeconds")
        if deadline and status.get("startTime"):
            left = parse_time(status["startTime"]).timestamp() + int(deadline) - datetime.now(UTC).timestamp()
            self.queue.add_after(key, max(left, 0) + 0.1)

    def _backoff_left(self, key: str, failed: int) -> float:
        """Seconds until a replacement may start after the latest failure: the base delay doubled for
        every earlier failure, at most six minutes."""
        last = self._last_failure.get(key)
        if not failed or last is None:
            return 0.0
        delay = min(self.backoff * float(2 ** (failed - 1)), MAX_BACKOFF)
        return max(last + delay - asyncio.get_running_loop().time(), 0.0)

    def _verdict(
        self,
        job: Object,
        status: dict[str, Any],
        active: list[Object],
        *,
        succeeded: int,
        failed: int,
        done_indexes: set[int],
    ) -> tuple[str, str, str] | None:
        spec = job.get("spec") or {}
        if failed > int(spec.get("backoffLimit", 6)):
            return "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        deadline = spec.get("activeDeadlineSeconds")
        if (
            deadline
            and status.get("startTime")
            and (datetime.now(UTC) - parse_time(status["startTime"])).total_seconds() >= int(deadline)
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

    async def _track(self, job: Object, pods: list[Object], status: dict[str, Any]) -> dict[str, Any]:
        """Count finished pods exactly once (uncounted -> finalizer removed -> counted)."""
        uncounted = status.get("uncountedTerminatedPods") or {}
        pending = {"succeeded": list(uncounted.get("succeeded") or []), "failed": list(uncounted.get("failed") or [])}
        changed = False
        for pod in pods:
            phase = (pod.get("status") or {}).get("phase")
            tracked = TRACKING in (pod["metadata"].get("finalizers") or [])
            uid = pod["metadata"]["uid"]
            ended = phase in ("Succeeded", "Failed") or bool(pod["metadata"].get("deletionTimestamp"))
            if not tracked or not ended:
                continue
            bucket = "succeeded" if phase == "Succeeded" else "failed"
            if uid not in pending["succeeded"] and uid not in pending["failed"]:
                pending[bucket].append(uid)
                changed = True
                if bucket == "failed":
                    self._last_failure[key_of(job)] = asyncio.get_running_loop().time()
        if changed:
            status["uncountedTerminatedPods"] = pending
            status = await self._write_status(job, status, pods)
        for pod in pods:
            if pod["metadata"]["uid"] in pending["succeeded"] + pending["failed"] and TRACKING in (
                pod["metadata"].get("finalizers") or []
            ):
                await self._release(pod)
        live = {p["metadata"]["uid"] for p in pods if TRACKING in (p["metadata"].get("finalizers") or [])}
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

    async def _create(
        self, job: Object, key: str, *, count: int, active: list[Object], done: set[int], indexed: bool
    ) -> None:
        template = deep_copy((job.get("spec") or {}).get("template") or {})
        template.setdefault("metadata", {})["finalizers"] = [TRACKING]
        bodies = []
        if indexed:
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
        else:
            bodies = [pod_from_template(template, job) for _ in range(count)]
        if not bodies:
            return
        self.expectations.expect(key, adds=len(bodies))
        results = await gather_limited([partial(self.client.create, PODS, body) for body in bodies])
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            self.expectations.lower(key, adds=len(errors))
            self.recorder.record(job, WARNING, "FailedCreate", f"Error creating: {errors[0]}")
        for result in results:
            if not isinstance(result, BaseException):
                self.recorder.record(job, NORMAL, "SuccessfulCreate", f"Created pod: {result['metadata']['name']}")

    async def _delete(self, job: Object, pods: list[Object]) -> None:
        if pods:
            await gather_limited(
                [
                    partial(
                        ignore_not_found,
                        partial(self.client.delete, PODS, p["metadata"]["name"], p["metadata"]["namespace"]),
                    )
                    for p in pods
                ]
            )

    async def _finish(self, job: Object, pods: list[Object], status: dict[str, Any], done: str) -> None:
        for pod in pods:
            if TRACKING in (pod["metadata"].get("finalizers") or []):
                await self._release(pod)
        if done == "Failed":
            await self._delete(
                job,
                [
                    p
                    for p in pods
                    if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                    and not p["metadata"].get("deletionTimestamp")
                ],
            )
        await self._write_status(job, status, pods)
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        finished_at = status.get("completionTime") or next(
            (c.get("lastTransitionTime") for c in status.get("conditions") or [] if c.get("type") == done), None
        )
        if ttl is not None and finished_at:
            left = parse_time(finished_at).timestamp() + int(ttl) - datetime.now(UTC).timestamp()
            if left <= 0:
                await delete_object(self.client, JOBS, job, propagation="Background")
            else:
                self.queue.add_after(key_of(job), left + 0.1)

    async def _write_status(self, job: Object, status: dict[str, Any], pods: list[Object]) -> dict[str, Any]:
        active = [
            p
            for p in pods
            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")
        ]
        status = {
            **status,
            "active": len(active),
            "ready": sum(1 for p in active if is_ready(p)),
            "terminating": sum(1 for p in pods if p["metadata"].get("deletionTimestamp")),
        }
        status = {k: v for k, v in status.items() if v not in (0, None, "", []) or k in ("ready",)}
        if status == (job.get("status") or {}):
            return status
        body = deep_copy(self.jobs.get(key_of(job)) or job)
        body["status"] = status
        try:
            updated = await self.client.update_status(JOBS, body)
        except ApiError as exc:
            if exc.not_found:
                return status
            raise
        return dict(updated.get("status") or {})
