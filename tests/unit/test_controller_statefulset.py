"""The StatefulSet controller (and ControllerRevisions): its plan (pure) and its sync."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agents.apiserver.server import ApiServer
from agents.controllers import history
from agents.controllers.base import Create, Delete
from agents.controllers.statefulset import POD_NAME_LABEL, StatefulSetController, plan
from agents.machinery.objects import Object
from agents.machinery.resources import CONTROLLER_REVISIONS, PODS, STATEFULSETS
from tests.support.controllerharness import Harness, running

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REF = {"kind": "StatefulSet", "name": "db", "uid": "sts-uid", "controller": True}


def stateful_set(replicas: int = 3, *, image: str = "busybox:1.36", **spec: Any) -> Object:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default", "uid": "sts-uid", "generation": 1},
        "spec": {
            "serviceName": "db",
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
            **spec,
        },
    }


def revision(sts: Object, name: str, number: int = 1) -> Object:
    meta = {"name": name, "namespace": "default", "uid": f"uid-{name}", "ownerReferences": [REF]}
    return {"metadata": meta, "data": history.revision_data(sts), "revision": number}


def pod(
    ordinal: int, *, ready: bool = True, rev: str = "db-r1", phase: str = "Running", deleting: bool = False
) -> Object:
    meta: dict[str, Any] = {
        "name": f"db-{ordinal}",
        "namespace": "default",
        "uid": f"uid-db-{ordinal}",
        "labels": {"app": "db", history.HASH_LABEL: rev},
        "ownerReferences": [REF],
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    condition = {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    return {"metadata": meta, "spec": {}, "status": {"phase": phase, "conditions": [condition]}}


def steps(decided: Any) -> list[tuple[str, str]]:
    out = []
    for step in decided.steps:
        if isinstance(step, Create):
            out.append(("create", step.body["metadata"]["name"]))
        else:
            assert isinstance(step, Delete)
            out.append(("delete", step.target["metadata"]["name"]))
    return out


def planned(sts: Object, pods: list[Object], *, update: str = "db-r1") -> Any:
    revisions = [revision(sts, "db-r1")]
    if update != "db-r1":
        revisions.append(revision(sts, update, 2))
    chosen = next(r for r in revisions if r["metadata"]["name"] == update)
    return plan(sts, pods, revisions=revisions, update=chosen, now=NOW)


# --- the plan ------------------------------------------------------------------------------------


def test_ordered_ready_creates_the_lowest_missing_ordinal_only_once_the_ones_below_are_ready() -> None:
    sts = stateful_set(3)
    assert steps(planned(sts, [])) == [("create", "db-0")]
    assert steps(planned(sts, [pod(0, ready=False)])) == []
    assert steps(planned(sts, [pod(0)])) == [("create", "db-1")]


def test_parallel_creates_every_missing_ordinal_at_once() -> None:
    sts = stateful_set(3, podManagementPolicy="Parallel")
    assert steps(planned(sts, [pod(1, ready=False)])) == [("create", "db-0"), ("create", "db-2")]


def test_pods_get_stable_names_a_hostname_in_the_service_and_their_revision() -> None:
    [step] = planned(stateful_set(1), []).steps
    assert isinstance(step, Create)
    meta, spec = step.body["metadata"], step.body["spec"]
    assert (meta["name"], spec["hostname"], spec["subdomain"]) == ("db-0", "db-0", "db")
    assert meta["labels"][POD_NAME_LABEL] == "db-0"
    assert meta["labels"][history.HASH_LABEL] == "db-r1"
    assert meta["ownerReferences"][0]["uid"] == "sts-uid"
    assert step.event is not None and step.event.reason == "SuccessfulCreate"


def test_scaling_down_removes_the_highest_ordinal_first_and_one_at_a_time() -> None:
    sts = stateful_set(1)
    assert steps(planned(sts, [pod(0), pod(1), pod(2)])) == [("delete", "db-2")]
    assert steps(planned(sts, [pod(0), pod(1), pod(2, deleting=True)])) == []  # wait for db-2 to go
    assert steps(planned(sts, [pod(0, ready=False), pod(1)])) == []  # and for every pod to be ready


def test_a_failed_pod_is_deleted_so_that_it_is_made_again() -> None:
    [step] = planned(stateful_set(2), [pod(0, phase="Failed"), pod(1)]).steps
    assert isinstance(step, Delete) and step.target["metadata"]["name"] == "db-0"
    assert step.event is not None and step.event.reason == "RecreatingFailedPod"


def test_a_rolling_update_replaces_the_highest_outdated_ordinal_down_to_the_partition() -> None:
    sts = stateful_set(3)
    old = [pod(0), pod(1), pod(2)]
    assert steps(planned(sts, old, update="db-r2")) == [("delete", "db-2")]
    assert steps(planned(sts, [pod(0), pod(1), pod(2, rev="db-r2")], update="db-r2")) == [("delete", "db-1")]
    partitioned = stateful_set(3, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}})
    assert steps(planned(partitioned, [pod(0), pod(1), pod(2, rev="db-r2")], update="db-r2")) == []
    on_delete = stateful_set(3, updateStrategy={"type": "OnDelete"})
    assert steps(planned(on_delete, old, update="db-r2")) == []


def test_the_status_counts_pods_by_revision_and_moves_the_current_revision_once_all_are_updated() -> None:
    sts = stateful_set(2)
    sts["status"] = {"currentRevision": "db-r1"}
    mixed = planned(sts, [pod(0), pod(1, rev="db-r2")], update="db-r2").status
    assert (mixed["currentReplicas"], mixed["updatedReplicas"], mixed["currentRevision"]) == (1, 1, "db-r1")
    done = planned(sts, [pod(0, rev="db-r2"), pod(1, rev="db-r2")], update="db-r2").status
    assert (done["currentReplicas"], done["currentRevision"], done["updateRevision"]) == (2, "db-r2", "db-r2")
    assert done["readyReplicas"] == 2


def test_revisions_beyond_the_history_limit_go_oldest_first_but_never_the_current_or_update_one() -> None:
    sts = stateful_set(1, revisionHistoryLimit=1)
    revisions = [revision(sts, f"db-r{n}", n) for n in (1, 2, 3, 4)]
    assert [r["metadata"]["name"] for r in history.beyond_limit(sts, revisions, {"db-r1", "db-r4"})] == ["db-r2"]


def test_a_template_gets_a_new_revision_or_an_old_one_back_at_the_top() -> None:
    sts = stateful_set(1)
    created = history.revision_step(sts, [])
    assert created.create is not None and created.create["revision"] == 1
    assert created.create["metadata"]["labels"][history.HASH_LABEL] in created.create["metadata"]["name"]
    other = stateful_set(1, image="busybox:1.37")
    old, newer = revision(sts, "db-r1", 1), revision(other, "db-r2", 2)
    assert history.revision_step(sts, [old, newer]).promote == old
    assert history.revision_step(sts, [old, newer]).revision == 3
    assert history.revision_step(other, [old, newer]).found == newer


# --- the sync ------------------------------------------------------------------------------------


def manifest(replicas: int) -> Object:
    body = stateful_set(replicas)
    body["metadata"] = {"name": "db"}
    return body


async def names(h: Harness) -> list[str]:
    return sorted(p["metadata"]["name"] for p in await h.items(PODS) if not p["metadata"].get("deletionTimestamp"))


def ready_in(state: dict[str, Object], name: str) -> bool:
    conditions = (state[name].get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


async def test_statefulset_creates_pods_in_ordinal_order_each_once_the_previous_is_ready(server: ApiServer) -> None:
    async with running(server, StatefulSetController) as h, h.history(PODS) as changes, h.kubelet():
        await h.create(STATEFULSETS, manifest(3))

        async def ready() -> Object | None:
            sts = await h.get(STATEFULSETS, "db")
            return sts if sts is not None and sts["status"].get("readyReplicas") == 3 else None

        sts = await h.eventually(ready, what="readyReplicas 3")
        [revision] = await h.items(CONTROLLER_REVISIONS)

        async def all_seen() -> bool:
            return sum(1 for change, _ in changes if change == "ADDED") == 3

        await h.eventually(all_seen, what="the three pods in the history")
    assert sts["status"]["updateRevision"] == revision["metadata"]["name"]
    added = [obj["metadata"]["name"] for change, obj in changes if change == "ADDED"]
    assert added == ["db-0", "db-1", "db-2"]
    for earlier, later in (("db-0", "db-1"), ("db-1", "db-2")):
        state: dict[str, Object] = {}
        for change, obj in changes:
            if change == "ADDED" and obj["metadata"]["name"] == later:
                break
            state[obj["metadata"]["name"]] = obj
        assert ready_in(state, earlier), f"{later} was made before {earlier} was ready"


async def test_statefulset_scaled_down_removes_its_highest_ordinals(server: ApiServer) -> None:
    async with running(server, StatefulSetController) as h, h.kubelet():
        await h.create(STATEFULSETS, manifest(3))

        async def have(expected: list[str]) -> bool:
            return await names(h) == expected

        await h.eventually(lambda: have(["db-0", "db-1", "db-2"]), what="three pods")
        await h.client.patch(STATEFULSETS, "db", {"spec": {"replicas": 1}}, "default")
        await h.eventually(lambda: have(["db-0"]), what="db-0 alone")

        async def deletions() -> list[str]:
            reported = [message for reason, message in await h.events("db") if reason == "SuccessfulDelete"]
            return reported if len(reported) == 2 else []

        assert await h.eventually(deletions, what="two deletions reported") == [
            "delete Pod db-2 in StatefulSet db successful",
            "delete Pod db-1 in StatefulSet db successful",
        ]
