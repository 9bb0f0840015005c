"""The CronJob controller: its plan (pure) and its sync against an in-process API server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agents.apiserver.server import ApiServer
from agents.controllers.base import rfc3339
from agents.controllers.cronjob import SCHEDULED_TIMESTAMP, CronJobController, Plan, plan
from agents.machinery.objects import Object
from agents.machinery.resources import CRONJOBS, JOBS
from tests.support.controllerharness import running

NOW = datetime(2026, 6, 1, 12, 7, 30, tzinfo=UTC)
TEMPLATE_SPEC = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}
REF = {"kind": "CronJob", "name": "nightly", "uid": "cron-uid", "controller": True}


def cron_job(*, last: str = "2026-06-01T12:00:00Z", **spec: Any) -> Object:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": "nightly",
            "namespace": "default",
            "uid": "cron-uid",
            "creationTimestamp": "2026-05-01T00:00:00Z",
        },
        "spec": {
            "schedule": "*/5 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": TEMPLATE_SPEC}}},
            **spec,
        },
        "status": {"lastScheduleTime": last},
    }


def job(name: str, outcome: str = "", created: str = "2026-06-01T00:00:00Z") -> Object:
    status: dict[str, Any] = {}
    if outcome:
        status["conditions"] = [{"type": outcome, "status": "True"}]
    meta = {"name": name, "namespace": "default", "uid": f"uid-{name}", "creationTimestamp": created}
    return {"metadata": {**meta, "ownerReferences": [REF]}, "status": status}


def reasons(decided: Plan) -> list[str]:
    return [e.reason for e in decided.events]


# --- the plan ------------------------------------------------------------------------------------


def test_a_scheduled_time_that_passed_starts_its_job_and_the_next_one_is_awaited() -> None:
    decided = plan(cron_job(), [], now=NOW)
    assert decided.create is not None
    made = decided.create.body
    due = datetime(2026, 6, 1, 12, 5, tzinfo=UTC)
    assert made["metadata"]["name"] == f"nightly-{int(due.timestamp() // 60)}"
    assert made["metadata"]["annotations"][SCHEDULED_TIMESTAMP] == "2026-06-01T12:05:00Z"
    assert made["metadata"]["ownerReferences"][0]["uid"] == "cron-uid"
    assert decided.status is not None and decided.status["lastScheduleTime"] == "2026-06-01T12:05:00Z"
    assert decided.requeue_after == 150.2  # 12:10 is the next run


def test_nothing_starts_between_two_scheduled_times() -> None:
    decided = plan(cron_job(last="2026-06-01T12:05:00Z"), [], now=NOW)
    assert decided.create is None and decided.events == []


def test_a_run_missed_by_more_than_the_starting_deadline_is_skipped_and_reported() -> None:
    decided = plan(cron_job(startingDeadlineSeconds=60), [], now=NOW)
    assert decided.create is None
    assert reasons(decided) == ["MissSchedule"]
    assert decided.status is not None and decided.status["lastScheduleTime"] == "2026-06-01T12:05:00Z"


def test_forbid_starts_nothing_while_a_job_runs_and_replace_deletes_it_first() -> None:
    running_job = job("nightly-1")
    forbidden = plan(cron_job(concurrencyPolicy="Forbid"), [running_job], now=NOW)
    assert forbidden.create is None and reasons(forbidden) == ["JobAlreadyActive"]
    replaced = plan(cron_job(concurrencyPolicy="Replace"), [running_job], now=NOW)
    assert [d.target["metadata"]["name"] for d in replaced.replace] == ["nightly-1"]
    assert replaced.create is not None
    allowed = plan(cron_job(), [running_job], now=NOW)
    assert allowed.replace == [] and allowed.create is not None
    assert allowed.status is not None and [r["name"] for r in allowed.status["active"]] == ["nightly-1"]


def test_finished_jobs_beyond_the_history_limits_are_deleted_oldest_first() -> None:
    jobs = [job(f"ok-{n}", "Complete", created=f"2026-05-0{n}T00:00:00Z") for n in (3, 1, 2)]
    jobs += [job("bad-1", "Failed", "2026-05-01T00:00:00Z"), job("bad-2", "Failed", "2026-05-02T00:00:00Z")]
    decided = plan(cron_job(successfulJobsHistoryLimit=1, last=rfc3339(NOW)), jobs, now=NOW)
    assert [d.target["metadata"]["name"] for d in decided.trim] == ["ok-1", "ok-2", "bad-1"]


def test_a_suspended_cron_job_starts_nothing_and_a_bad_schedule_is_reported() -> None:
    assert plan(cron_job(suspend=True), [], now=NOW).create is None
    broken = plan(cron_job(schedule="every tuesday"), [], now=NOW)
    assert reasons(broken) == ["UnparseableSchedule"]
    assert broken.status is None and broken.requeue_after is None


# --- the sync ------------------------------------------------------------------------------------


async def test_cronjob_starts_the_run_it_missed_and_lists_it_as_active(server: ApiServer) -> None:
    async with running(server, CronJobController) as h:
        body = cron_job(schedule="* * * * *")
        body["metadata"] = {"name": "nightly"}
        del body["status"]
        await h.create(CRONJOBS, body)
        earlier = rfc3339(datetime.now(UTC) - timedelta(minutes=3))
        patch = {"status": {"lastScheduleTime": earlier}}  # as if it had last run three minutes ago
        await h.client.patch(CRONJOBS, "nightly", patch, "default", subresource="status")

        async def one_job() -> list[Object]:
            return await h.items(JOBS)

        [made] = await h.eventually(one_job, what="a Job")
        assert made["metadata"]["name"].startswith("nightly-")
        assert made["metadata"]["ownerReferences"][0]["name"] == "nightly"

        async def active() -> Object | None:
            found = await h.get(CRONJOBS, "nightly")
            return found if found and (found.get("status") or {}).get("active") else None

        cron = await h.eventually(active, what="the Job listed as active")
        assert [ref["name"] for ref in cron["status"]["active"]] == [made["metadata"]["name"]]
        assert cron["status"]["lastScheduleTime"] > earlier
