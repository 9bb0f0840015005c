"""The Job controller: its plan (pure) and its sync against an in-process API server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.apiserver.server import ApiServer
from agents.controllers.base import rfc3339
from agents.controllers.garbagecollector import GarbageCollector
from agents.controllers.job import INDEX_ANNOTATION, TRACKING, JobController, Plan, plan, release_orphan
from agents.machinery.objects import Object
from agents.machinery.resources import JOBS, PODS
from tests.support.controllerharness import Harness, running

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REF = {"kind": "Job", "name": "work", "uid": "job-uid", "controller": True}


def job(status: dict[str, Any] | None = None, **spec: Any) -> Object:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "work", "namespace": "default", "uid": "job-uid"},
        "spec": {
            "completions": 3,
            "parallelism": 2,
            "backoffLimit": 6,
            "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}},
            **spec,
        },
        "status": status or {},
    }


def pod(name: str, phase: str = "Running", *, tracked: bool = True, index: int | None = None) -> Object:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "default",
        "uid": f"uid-{name}",
        "creationTimestamp": "2026-06-01T11:00:00Z",
        "ownerReferences": [REF],
    }
    if tracked:
        meta["finalizers"] = [TRACKING]
    if index is not None:
        meta["annotations"] = {INDEX_ANNOTATION: str(index)}
    return {"metadata": meta, "spec": {}, "status": {"phase": phase}}


def planned(j: Object, pods: list[Object], **inputs: Any) -> Plan:
    return plan(
        j,
        pods,
        now=inputs.pop("now", NOW),
        expectations_met=inputs.pop("expectations_met", True),
        backoff=inputs.pop("backoff", 10.0),
        failure_age=inputs.pop("failure_age", None),
    )


def condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), None)


STARTED = {"startTime": rfc3339(NOW - timedelta(minutes=1))}

# --- the plan ------------------------------------------------------------------------------------


def test_a_job_starts_parallelism_pods_that_carry_the_tracking_finalizer() -> None:
    decided = planned(job(), [])
    assert len(decided.create) == 2
    assert all(p["metadata"]["finalizers"] == [TRACKING] for p in decided.create)
    assert decided.status["startTime"] == rfc3339(NOW)
    assert planned(job(), [], expectations_met=False).create == []  # its last creates are not seen yet


def test_a_finished_pod_is_recorded_as_uncounted_before_its_finalizer_goes() -> None:
    done = pod("a", "Succeeded")
    decided = planned(job(STARTED, completions=2), [done, pod("b")])
    assert decided.uncounted is not None
    assert decided.uncounted["uncountedTerminatedPods"] == {"succeeded": ["uid-a"], "failed": []}
    assert [p["metadata"]["name"] for p in decided.release] == ["a"]
    assert decided.create == []  # counted as a success already: b is the last pod the Job needs


def test_a_recorded_pod_is_counted_once_its_finalizer_is_gone() -> None:
    recorded = {**STARTED, "uncountedTerminatedPods": {"succeeded": ["uid-a"], "failed": []}}
    decided = planned(job(recorded), [pod("a", "Succeeded", tracked=False), pod("b")])
    assert decided.uncounted is None and decided.release == []
    assert decided.status["succeeded"] == 1
    assert decided.status["uncountedTerminatedPods"] == {}
    assert len(decided.create) == 1  # room for one more beside b


def test_a_job_with_its_completions_succeeded_completes_with_an_event() -> None:
    decided = planned(job({**STARTED, "succeeded": 3}), [])
    complete = condition(decided.status, "Complete")
    assert complete is not None and complete["status"] == "True"
    assert condition(decided.status, "SuccessCriteriaMet") is not None
    assert decided.status["completionTime"] == rfc3339(NOW)
    assert [(e.reason, e.message) for e in decided.events] == [
        ("Completed", "Reached expected number of succeeded pods")
    ]


def test_failures_beyond_the_backoff_limit_fail_the_job_and_stop_its_pods() -> None:
    decided = planned(job({**STARTED, "failed": 2}, backoffLimit=1), [pod("running")])
    failed = condition(decided.status, "Failed")
    assert failed is not None and failed["reason"] == "BackoffLimitExceeded"
    assert condition(decided.status, "FailureTarget") is not None
    assert [p["metadata"]["name"] for p in decided.delete] == ["running"]
    assert decided.events[0].type == "Warning"


def test_a_failed_pod_is_replaced_only_after_the_back_off_doubled_per_earlier_failure() -> None:
    decided = planned(job(STARTED), [pod("gone", "Failed"), pod("b")])
    assert decided.failure_seen and decided.create == []
    assert decided.requeue_after == 10.0  # the first failure: the base delay, counted from now
    counted = {**STARTED, "failed": 2}
    assert planned(job(counted), [pod("b")], failure_age=15.0).requeue_after == 5.0  # 20 s for the second
    assert len(planned(job(counted), [pod("b")], failure_age=25.0).create) == 1


def test_an_indexed_job_gives_each_new_pod_the_lowest_free_index() -> None:
    status = {**STARTED, "completedIndexes": "0"}
    decided = planned(job(status, completionMode="Indexed", parallelism=3), [pod("one", index=1)])
    [made] = decided.create
    assert made["metadata"]["annotations"][INDEX_ANNOTATION] == "2"
    assert made["spec"]["hostname"] == "work-2"
    assert {"name": "JOB_COMPLETION_INDEX", "value": "2"} in made["spec"]["containers"][0]["env"]


def test_a_suspended_job_stops_its_pods_and_says_so() -> None:
    decided = planned(job(STARTED, suspend=True), [pod("a")])
    assert [p["metadata"]["name"] for p in decided.delete] == ["a"]
    suspended = condition(decided.status, "Suspended")
    assert suspended is not None and suspended["reason"] == "JobSuspended"


def test_a_job_running_past_its_active_deadline_fails_and_until_then_is_looked_at_again() -> None:
    running_job = job(STARTED, activeDeadlineSeconds=90)
    assert planned(running_job, [pod("a"), pod("b")]).requeue_after == 30.1
    late = planned(running_job, [pod("a"), pod("b")], now=NOW + timedelta(seconds=31))
    failed = condition(late.status, "Failed")
    assert failed is not None and failed["reason"] == "DeadlineExceeded"


def test_a_finished_job_goes_once_its_ttl_has_passed() -> None:
    finished = {
        "completionTime": rfc3339(NOW - timedelta(seconds=50)),
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    waiting = planned(job(finished, ttlSecondsAfterFinished=60), [pod("a", "Succeeded")])
    assert not waiting.delete_job and waiting.requeue_after == 10.1
    assert [p["metadata"]["name"] for p in waiting.release] == ["a"]  # a finished Job keeps no finalizer
    assert planned(job(finished, ttlSecondsAfterFinished=30), []).delete_job


def test_a_job_being_deleted_lets_every_pod_go_and_starts_or_stops_none() -> None:
    going = job(STARTED)
    going["metadata"]["deletionTimestamp"] = rfc3339(NOW)
    terminating = pod("b")
    terminating["metadata"]["deletionTimestamp"] = rfc3339(NOW)
    decided = planned(going, [pod("a"), terminating])
    assert sorted(p["metadata"]["name"] for p in decided.release) == ["a", "b"]
    assert decided.create == [] and decided.delete == []  # parallelism 2 would otherwise start one
    assert decided.uncounted is not None  # the terminating pod is recorded before its finalizer goes
    assert decided.uncounted["uncountedTerminatedPods"]["failed"] == ["uid-b"]


BATCH_REF = {"apiVersion": "batch/v1", **REF}


def orphan(*refs: dict[str, Any], tracked: bool = True, deleting: bool = False) -> Object:
    found = pod("p", tracked=tracked)
    found["metadata"]["ownerReferences"] = list(refs)
    if deleting:
        found["metadata"]["deletionTimestamp"] = rfc3339(NOW)
    return found


def test_a_pod_whose_job_is_gone_loses_its_finalizer_even_while_being_deleted() -> None:
    assert release_orphan(orphan(BATCH_REF), None)
    assert release_orphan(orphan(BATCH_REF, deleting=True), None)
    replaced = job()
    replaced["metadata"]["uid"] = "another-uid"  # a new Job of the same name is not this pod's Job
    assert release_orphan(orphan(BATCH_REF), replaced)


def test_a_pod_with_no_controller_loses_its_finalizer() -> None:
    assert release_orphan(orphan(), None)
    assert release_orphan(orphan({**BATCH_REF, "controller": False}), job())  # released by its Job


def test_a_pod_of_a_live_job_or_of_another_kind_or_untracked_keeps_what_it_has() -> None:
    assert not release_orphan(orphan(BATCH_REF), job())  # its Job's sync counts it first
    assert not release_orphan(orphan({**BATCH_REF, "kind": "ReplicaSet", "apiVersion": "apps/v1"}), None)
    assert not release_orphan(orphan(BATCH_REF, tracked=False), None)


# --- the sync ------------------------------------------------------------------------------------


def manifest(**spec: Any) -> Object:
    body = job(**spec)
    body["metadata"] = {"name": "work"}
    del body["status"]
    return body


async def finished(h: Harness) -> Object | None:
    found = await h.get(JOBS, "work")
    status = (found or {}).get("status") or {}
    done = [c for c in status.get("conditions") or [] if c["type"] in ("Complete", "Failed") and c["status"] == "True"]
    return found if done else None


async def test_job_runs_pods_until_its_completions_succeed_counting_each_once(server: ApiServer) -> None:
    async with running(server, JobController) as h, h.kubelet(phase="Succeeded", ready=False):
        await h.create(JOBS, manifest(completions=3, parallelism=2))
        done = await h.eventually(lambda: finished(h), what="the Job to finish")
        assert condition(done["status"], "Complete") is not None
        assert done["status"]["succeeded"] == 3 and not done["status"].get("failed")

        async def released() -> list[Object]:
            pods = await h.items(PODS)
            return pods if pods and all(TRACKING not in (p["metadata"].get("finalizers") or []) for p in pods) else []

        assert len(await h.eventually(released, what="every tracking finalizer removed")) == 3


async def test_job_failing_beyond_its_backoff_limit_is_failed(server: ApiServer) -> None:
    async with running(server, JobController) as h, h.kubelet(phase="Failed", ready=False):
        await h.create(JOBS, manifest(completions=1, parallelism=1, backoffLimit=0))
        done = await h.eventually(lambda: finished(h), what="the Job to fail")
        failed = condition(done["status"], "Failed")
        assert failed is not None and failed["reason"] == "BackoffLimitExceeded"
        assert done["status"]["failed"] == 1
        events = await h.eventually(lambda: _warned(h))
        assert ("BackoffLimitExceeded", "Job has reached the specified backoff limit") in events


@pytest.mark.parametrize("propagation", ["Background", "Foreground"])
async def test_deleting_a_job_whose_pods_have_not_finished_lets_them_go(server: ApiServer, propagation: str) -> None:
    async with running(server, JobController, GarbageCollector) as h:
        await h.create(JOBS, manifest(completions=2, parallelism=2))

        async def two() -> list[Object]:
            pods = await h.items(PODS)
            return pods if len(pods) == 2 else []

        pods = await h.eventually(two, what="two pods")
        assert all(TRACKING in p["metadata"]["finalizers"] for p in pods)
        await h.client.delete(JOBS, "work", "default", propagation=propagation)

        async def all_gone() -> bool:
            return not await h.items(PODS) and await h.get(JOBS, "work") is None

        await h.eventually(all_gone, what="the Job and its pods gone")


async def test_a_pod_left_terminating_while_the_controller_was_down_is_let_go_at_start(server: ApiServer) -> None:
    async with running(server) as h:  # no controller runs: a pod loses its Job meanwhile
        stray = pod("stray")
        stray["metadata"] = {
            "name": "stray",
            "finalizers": [TRACKING],
            "ownerReferences": [{**BATCH_REF, "uid": "a-job-long-gone"}],
        }
        stray["spec"] = {"containers": [{"name": "main", "image": "busybox"}]}
        del stray["status"]
        await h.create(PODS, stray)
        await h.client.delete(PODS, "stray", "default")
        held = await h.get(PODS, "stray")
        assert held is not None and held["metadata"].get("deletionTimestamp")  # the finalizer holds it
    async with running(server, JobController) as h:

        async def gone() -> bool:
            return await h.get(PODS, "stray") is None

        await h.eventually(gone, what="the stray pod gone")


async def _warned(h: Harness) -> list[tuple[str, str]]:
    events = await h.events("work")
    return events if any(reason == "BackoffLimitExceeded" for reason, _ in events) else []
