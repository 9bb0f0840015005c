"""CronJob controller: creates a Job from the template at every scheduled time.

The schedule is read in ``spec.timeZone`` (UTC by default). A run missed by more than
``startingDeadlineSeconds`` is skipped; ``concurrencyPolicy`` decides what happens while an earlier
Job still runs (Allow, Forbid, Replace). Jobs are named ``<cronjob>-<minutes since the epoch>``, so a
run is never created twice. Finished Jobs beyond the history limits are deleted, oldest first.

``plan`` is pure: from the CronJob, its Jobs and the time it decides the Jobs to replace, the Job to
create, the finished Jobs to drop, the events, the status and when the next run is due.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agents.controllers import claim
from agents.controllers.base import Context, Controller, Create, Delete, Event, delete_object, rfc3339, write_status
from agents.controllers.job import finished
from agents.controllers.podutil import controller_ref
from agents.machinery import cron
from agents.machinery.client import ApiError
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.informer import key_of
from agents.machinery.objects import Object, deep_copy, parse_time
from agents.machinery.resources import CRONJOBS, JOBS

log = logging.getLogger(__name__)
SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100


def due_times(
    schedule: cron.Schedule, since: datetime, until: datetime, zone: ZoneInfo
) -> tuple[list[datetime], datetime]:
    """Scheduled times in (since, until], at most MAX_MISSED of the latest, and the next one after."""
    local = since.astimezone(zone).replace(tzinfo=None)
    end = until.astimezone(zone).replace(tzinfo=None)
    times: list[datetime] = []
    while True:
        local = schedule.next_after(local)
        if local > end:
            return times[-MAX_MISSED:], local.replace(tzinfo=zone).astimezone(UTC)
        times.append(local.replace(tzinfo=zone).astimezone(UTC))


@dataclass
class Plan:
    events: list[Event] = field(default_factory=list)  # about the schedule, recorded first
    replace: list[Delete] = field(default_factory=list)  # running Jobs a Replace policy removes
    create: Create | None = None  # the Job of the scheduled time
    trim: list[Delete] = field(default_factory=list)  # finished Jobs beyond the history limits
    status: dict[str, Any] | None = None  # without the Job being created in ``active``; None: leave it
    requeue_after: float | None = None


def job_ref(job: Object) -> dict[str, Any]:
    meta = job["metadata"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": meta["name"],
        "namespace": meta["namespace"],
        "uid": meta["uid"],
        "resourceVersion": meta.get("resourceVersion", ""),
    }


def new_job(cronjob: Object, scheduled: datetime) -> Object:
    template = deep_copy((cronjob.get("spec") or {}).get("jobTemplate") or {})
    meta = template.get("metadata") or {}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"{cronjob['metadata']['name']}-{int(scheduled.timestamp() // 60)}",
            "namespace": cronjob["metadata"]["namespace"],
            "labels": meta.get("labels") or {},
            "annotations": {**(meta.get("annotations") or {}), SCHEDULED_TIMESTAMP: rfc3339(scheduled)},
            "ownerReferences": [controller_ref(cronjob)],
        },
        "spec": template.get("spec") or {},
    }


def plan(cronjob: Object, jobs: list[Object], *, now: datetime) -> Plan:
    """What to do for ``cronjob`` given the Jobs it controls, at ``now``."""
    spec = cronjob.get("spec") or {}
    try:
        schedule = cron.parse(spec.get("schedule", ""))
        zone = ZoneInfo(spec.get("timeZone") or "UTC")
    except (cron.CronError, ZoneInfoNotFoundError, ValueError) as exc:
        return Plan(events=[Event(WARNING, "UnparseableSchedule", str(exc))])
    result = Plan()
    active = [j for j in jobs if not finished(j)]
    status: dict[str, Any] = deep_copy(cronjob.get("status") or {})
    since = parse_time(status.get("lastScheduleTime") or cronjob["metadata"]["creationTimestamp"])
    times, upcoming = due_times(schedule, since, now, zone)
    if times and not spec.get("suspend"):
        scheduled = times[-1]
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and (now - scheduled).total_seconds() > int(deadline):
            message = f"Missed scheduled time to start a job: {rfc3339(scheduled)}"
            result.events.append(Event(WARNING, "MissSchedule", message))
            status["lastScheduleTime"] = rfc3339(scheduled)
        else:
            policy = spec.get("concurrencyPolicy", "Allow")
            if active and policy == "Forbid":
                message = "Not starting job because prior execution is running and concurrency policy is Forbid"
                result.events.append(Event(NORMAL, "JobAlreadyActive", message))
            else:
                if active and policy == "Replace":
                    result.replace = [_deleted(job) for job in active]
                    active = []
                body = new_job(cronjob, scheduled)
                created = Event(NORMAL, "SuccessfulCreate", f"Created job {body['metadata']['name']}")
                result.create = Create(body, created)
                status["lastScheduleTime"] = rfc3339(scheduled)
    successful = [j for j in jobs if finished(j) == "Complete"]
    if successful:
        latest = max((j.get("status") or {}).get("completionTime", "") for j in successful)
        if latest:
            status["lastSuccessfulTime"] = latest
    status["active"] = [job_ref(j) for j in active]
    if not active:
        status.pop("active")
    result.status = status
    for outcome, limit in (
        ("Complete", spec.get("successfulJobsHistoryLimit", 3)),
        ("Failed", spec.get("failedJobsHistoryLimit", 1)),
    ):
        done = sorted(
            (j for j in jobs if finished(j) == outcome), key=lambda j: j["metadata"].get("creationTimestamp", "")
        )
        result.trim += [_deleted(job) for job in done[: max(len(done) - int(limit), 0)]]
    result.requeue_after = max((upcoming - now).total_seconds(), 0) + 0.2
    return result


def _deleted(job: Object) -> Delete:
    return Delete(job, Event(NORMAL, "SuccessfulDelete", f"Deleted job {job['metadata']['name']}"))


class CronJobController(Controller):
    name = "cronjob"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.cronjobs = ctx.informer(CRONJOBS)
        self.jobs = ctx.informer(JOBS)
        self.cronjobs.on_any(self.enqueue)
        self.jobs.on_any(lambda job: self.enqueue_owner(job, "CronJob", self.cronjobs))

    async def sync(self, key: str) -> None:
        cronjob = self.cronjobs.get(key)
        if cronjob is None or cronjob["metadata"].get("deletionTimestamp"):
            return
        jobs = claim.controlled(cronjob, self.jobs.by_index("namespace", cronjob["metadata"]["namespace"]))
        decided = plan(cronjob, jobs, now=self.now())
        self.record(cronjob, *decided.events)
        for step in decided.replace:
            await self._delete(cronjob, step)
        created = await self._create(cronjob, decided.create) if decided.create is not None else None
        for step in decided.trim:
            await self._delete(cronjob, step)
        if decided.status is not None:
            status = decided.status
            if created is not None:  # the new Job runs too
                status = {**status, "active": [*(status.get("active") or []), job_ref(created)]}
            await write_status(self.client, CRONJOBS, cronjob, status)
        if decided.requeue_after is not None:
            self.queue.add_after(key, decided.requeue_after)

    async def _delete(self, cronjob: Object, step: Delete) -> None:
        await delete_object(self.client, JOBS, step.target, propagation="Background")
        self.record(cronjob, step.event)

    async def _create(self, cronjob: Object, step: Create) -> Object | None:
        """The Job created, or None when it exists already (this run was started before)."""
        try:
            job = await self.client.create(JOBS, step.body)
        except ApiError as exc:
            if exc.already_exists:
                return None
            self.recorder.record(cronjob, WARNING, "FailedCreate", f"Error creating job: {exc}")
            raise
        self.record(cronjob, step.event)
        return job

    def enqueue(self, obj: Object) -> None:
        self.queue.add(key_of(obj))
