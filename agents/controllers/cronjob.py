"""CronJob controller: creates a Job from the template at every scheduled time.

The schedule is read in ``spec.timeZone`` (UTC by default). A run missed by more than
``startingDeadlineSeconds`` is skipped; ``concurrencyPolicy`` decides what happens while an earlier
Job still runs (Allow, Forbid, Replace). Jobs are named ``<cronjob>-<minutes since the epoch>``, so a
run is never created twice. Finished Jobs beyond the history limits are deleted, oldest first.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agents.controllers.base import Context, Controller, delete_object, ignore_not_found, owner_uid
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


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        spec = cronjob.get("spec") or {}
        try:
            schedule = cron.parse(spec.get("schedule", ""))
            zone = ZoneInfo(spec.get("timeZone") or "UTC")
        except (cron.CronError, ZoneInfoNotFoundError, ValueError) as exc:
            self.recorder.record(cronjob, WARNING, "UnparseableSchedule", str(exc))
            return
        uid = cronjob["metadata"]["uid"]
        jobs = [j for j in self.jobs.by_index("namespace", cronjob["metadata"]["namespace"]) if owner_uid(j) == uid]
        active = [j for j in jobs if not finished(j)]
        status: dict[str, Any] = deep_copy(cronjob.get("status") or {})
        current = datetime.now(UTC)
        since = parse_time(status.get("lastScheduleTime") or cronjob["metadata"]["creationTimestamp"])
        times, upcoming = due_times(schedule, since, current, zone)
        if times and not spec.get("suspend"):
            scheduled = times[-1]
            deadline = spec.get("startingDeadlineSeconds")
            if deadline is not None and (current - scheduled).total_seconds() > int(deadline):
                self.recorder.record(
                    cronjob, WARNING, "MissSchedule", f"Missed scheduled time to start a job: {_stamp(scheduled)}"
                )
                status["lastScheduleTime"] = _stamp(scheduled)
            else:
                policy = spec.get("concurrencyPolicy", "Allow")
                if active and policy == "Forbid":
                    self.recorder.record(
                        cronjob,
                        NORMAL,
                        "JobAlreadyActive",
                        "Not starting job because prior execution is running and concurrency policy is Forbid",
                    )
                else:
                    if active and policy == "Replace":
                        for job in active:
                            await delete_object(self.client, JOBS, job, propagation="Background")
                            self.recorder.record(
                                cronjob, NORMAL, "SuccessfulDelete", f"Deleted job {job['metadata']['name']}"
                            )
                        active = []
                    created = await self._create_job(cronjob, scheduled)
                    if created is not None:
                        active.append(created)
                    status["lastScheduleTime"] = _stamp(scheduled)
        successful = [j for j in jobs if finished(j) == "Complete"]
        if successful:
            latest = max((j.get("status") or {}).get("completionTime", "") for j in successful)
            if latest:
                status["lastSuccessfulTime"] = latest
        refs = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": j["metadata"]["name"],
                "namespace": j["metadata"]["namespace"],
                "uid": j["metadata"]["uid"],
                "resourceVersion": j["metadata"].get("resourceVersion", ""),
            }
            for j in active
        ]
        status["active"] = refs
        if not refs:
            status.pop("active")
        await self._trim_history(cronjob, jobs)
        if status != (cronjob.get("status") or {}):
            body = deep_copy(cronjob)
            body["status"] = status
            await ignore_not_found(partial(self.client.update_status, CRONJOBS, body))
        self.queue.add_after(key, max((upcoming - datetime.now(UTC)).total_seconds(), 0) + 0.2)

    async def _create_job(self, cronjob: Object, scheduled: datetime) -> Object | None:
        template = deep_copy((cronjob.get("spec") or {}).get("jobTemplate") or {})
        meta = template.get("metadata") or {}
        name = f"{cronjob['metadata']['name']}-{int(scheduled.timestamp() // 60)}"
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": cronjob["metadata"]["namespace"],
                "labels": meta.get("labels") or {},
                "annotations": {**(meta.get("annotations") or {}), SCHEDULED_TIMESTAMP: _stamp(scheduled)},
                "ownerReferences": [controller_ref(cronjob)],
            },
            "spec": template.get("spec") or {},
        }
        try:
            job = await self.client.create(JOBS, body)
        except ApiError as exc:
            if exc.already_exists:
                return None
            self.recorder.record(cronjob, WARNING, "FailedCreate", f"Error creating job: {exc}")
            raise
        self.recorder.record(cronjob, NORMAL, "SuccessfulCreate", f"Created job {name}")
        return job

    async def _trim_history(self, cronjob: Object, jobs: list[Object]) -> None:
        spec = cronjob.get("spec") or {}
        for outcome, limit in (
            ("Complete", spec.get("successfulJobsHistoryLimit", 3)),
            ("Failed", spec.get("failedJobsHistoryLimit", 1)),
        ):
            done = sorted(
                (j for j in jobs if finished(j) == outcome), key=lambda j: j["metadata"].get("creationTimestamp", "")
            )
            for job in done[: max(len(done) - int(limit), 0)]:
                await delete_object(self.client, JOBS, job, propagation="Background")
                self.recorder.record(cronjob, NORMAL, "SuccessfulDelete", f"Deleted job {job['metadata']['name']}")

    def enqueue(self, obj: Object) -> None:
        self.queue.add(key_of(obj))
