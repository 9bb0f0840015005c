"""The controllers' pure decisions: rollout arithmetic, replica plans, pod facts, taints, endpoints, cron times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agents.controllers.cronjob import MAX_MISSED, due_times
from agents.controllers.deployment import (
    HASH_LABEL,
    REVISION,
    complete,
    deployment_status,
    new_replicas,
    old_scale_down,
    revision_of,
    set_condition,
    surge_and_unavailable,
    template_hash,
    without_hash,
)
from agents.controllers.endpoints import MAX_PER_SLICE, endpoints_for, selected_pods, slices_for
from agents.controllers.job import finished, format_indexes, parse_indexes
from agents.controllers.nodelifecycle import (
    NOT_READY,
    UNREACHABLE,
    UNSCHEDULABLE,
    Heartbeats,
    heartbeat,
    ready_status,
    toleration_seconds,
    wanted_taints,
)
from agents.controllers.podutil import (
    Expectations,
    deletion_rank,
    is_active,
    is_available,
    is_ready,
    pod_from_template,
)
from agents.controllers.replicaset import BURST, plan, replica_status
from agents.machinery import cron
from agents.machinery.objects import Object, now

LONG_AGO = "2020-01-01T00:00:00Z"
NOW = datetime(2026, 6, 1, tzinfo=UTC)  # the time plans are made at, where it does not matter


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- builders: plain dicts shaped like the API's objects ----------------------------------------


def pod(
    name: str,
    *,
    namespace: str = "default",
    phase: str = "Running",
    ready: bool | None = True,
    ready_since: str = LONG_AGO,
    node: str | None = "n1",
    restarts: int = 0,
    created: str | None = "2026-01-01T00:00:00Z",
    labels: dict[str, str] | None = None,
    deleting: bool = False,
    ip: str | None = "10.0.0.1",
    ports: list[dict[str, Any]] | None = None,
) -> Object:
    """A Pod; ``ready=None`` leaves out the Ready condition."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{name}", "labels": labels or {}}
    if created is not None:
        meta["creationTimestamp"] = created
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:10:00Z"
    container: dict[str, Any] = {"name": "app", "image": "busybox"}
    if ports:
        container["ports"] = ports
    spec: dict[str, Any] = {"containers": [container]}
    if node:
        spec["nodeName"] = node
    status: dict[str, Any] = {"phase": phase, "containerStatuses": [{"name": "app", "restartCount": restarts}]}
    if ready is not None:
        status["conditions"] = [
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": ready_since}
        ]
    if ip:
        status["podIP"] = ip
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def deployment(
    replicas: int = 3,
    *,
    surge: int | str | None = None,
    unavailable: int | str | None = None,
    recreate: bool = False,
    generation: int = 1,
    status: dict[str, Any] | None = None,
) -> Object:
    rolling: dict[str, Any] = {}
    if surge is not None:
        rolling["maxSurge"] = surge
    if unavailable is not None:
        rolling["maxUnavailable"] = unavailable
    strategy: dict[str, Any] = {"type": "Recreate"} if recreate else {"type": "RollingUpdate", "rollingUpdate": rolling}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "dep-uid", "generation": generation},
        "spec": {
            "replicas": replicas,
            "strategy": strategy,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web"}]}},
        },
        "status": status or {},
    }


def rs(
    name: str,
    *,
    replicas: int,
    available: int = 0,
    current: int | None = None,
    ready: int | None = None,
    created: str = "2026-01-01T00:00:00Z",
    generation: int = 1,
    template_labels: dict[str, str] | None = None,
) -> Object:
    """A ReplicaSet asking for ``replicas`` pods, of which ``current`` exist (default: all) and
    ``available`` are available (and, by default, as many ready)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "creationTimestamp": created,
            "generation": generation,
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": template_labels or {"app": "web"}}, "spec": {}},
        },
        "status": {
            "replicas": replicas if current is None else current,
            "readyReplicas": available if ready is None else ready,
            "availableReplicas": available,
        },
    }


# --- deployment: template hash -------------------------------------------------------------------

TEMPLATE: Object = {
    "metadata": {"labels": {"app": "web", "tier": "front"}},
    "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
}


def test_template_hash_is_stable_across_runs_and_key_order() -> None:
    reordered = {
        "spec": {"containers": [{"image": "nginx:1.27", "name": "web"}]},
        "metadata": {"labels": {"tier": "front", "app": "web"}},
    }
    assert template_hash(TEMPLATE) == template_hash(reordered)
    # ReplicaSet names embed the hash: changing the algorithm would orphan every existing ReplicaSet.
    pinned = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}
    assert template_hash(pinned) == "6c8d7489d5"


def test_template_hash_uses_only_dns_safe_characters_without_vowels() -> None:
    digest = template_hash(TEMPLATE)
    assert digest
    assert set(digest) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_template_hash_changes_with_the_template() -> None:
    changed = {**TEMPLATE, "spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}
    assert template_hash(changed) != template_hash(TEMPLATE)


def test_template_hash_changes_with_the_collision_count() -> None:
    hashes = {template_hash(TEMPLATE, n) for n in range(4)}
    assert len(hashes) == 4
    assert template_hash(TEMPLATE, 0) == template_hash(TEMPLATE)


def test_without_hash_drops_the_pod_template_hash_label_without_touching_the_input() -> None:
    labelled = {"metadata": {"labels": {"app": "web", HASH_LABEL: "abc"}}, "spec": {}}
    assert without_hash(labelled) == {"metadata": {"labels": {"app": "web"}}, "spec": {}}
    assert labelled["metadata"]["labels"][HASH_LABEL] == "abc"
    assert without_hash({"metadata": {"labels": {HASH_LABEL: "abc"}}, "spec": {}}) == {"metadata": {}, "spec": {}}


def test_revision_of_reads_the_annotation_and_treats_garbage_as_zero() -> None:
    assert revision_of(None) == 0
    assert revision_of({"metadata": {"annotations": {REVISION: "7"}}}) == 7
    assert revision_of({"metadata": {"annotations": {REVISION: "seven"}}}) == 0
    assert revision_of({"metadata": {}}) == 0


# --- deployment: surge and unavailability --------------------------------------------------------


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [
        (10, None, None, (3, 2)),  # defaults 25%/25%: 2.5 rounds up for surge, down for unavailable
        (3, None, None, (1, 0)),
        (4, None, None, (1, 1)),
        (10, 2, 1, (2, 1)),
        (10, "50%", "10%", (5, 1)),
        (10, "33%", "33%", (4, 3)),
        (3, "1%", "99%", (1, 2)),
        (5, 0, 0, (0, 1)),  # never both zero: kube's ResolveFenceposts makes unavailable 1
        (5, "0%", "0%", (0, 1)),
        (5, "0%", "10%", (0, 1)),  # 0.5 rounds down to 0, then the fencepost rule applies
        (3, 1, 5, (1, 3)),  # unavailable never exceeds replicas
        (0, None, None, (0, 0)),
    ],
)
def test_surge_rounds_up_and_unavailable_rounds_down(
    replicas: int, surge: int | str | None, unavailable: int | str | None, expected: tuple[int, int]
) -> None:
    assert surge_and_unavailable(deployment(replicas, surge=surge, unavailable=unavailable)) == expected


def test_recreate_allows_no_surge_and_every_pod_unavailable() -> None:
    assert surge_and_unavailable(deployment(4, recreate=True)) == (0, 4)


# --- deployment: rolling update arithmetic -------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "old", "expected"),
    [
        (0, 4, 1),  # 4 replicas, 25% surge = 1 extra pod allowed
        (1, 4, 1),  # at replicas + surge already: wait
        (2, 2, 3),
        (3, 0, 4),  # room for 2, but never beyond the desired count
        (4, 1, 4),
        (6, 0, 4),  # a new set above the desired count is cut back
    ],
)
def test_new_replica_set_grows_within_replicas_plus_max_surge(new: int, old: int, expected: int) -> None:
    olds = [rs("web-old", replicas=old, available=old)]
    assert new_replicas(deployment(4), rs("web-new", replicas=new), olds) == expected


def test_old_replica_sets_shrink_only_as_far_as_max_unavailable_allows() -> None:
    new = rs("web-new", replicas=1, available=0)
    old = rs("web-old", replicas=4, available=4)
    assert old_scale_down(deployment(4, surge=1, unavailable=1), new, [old]) == {"web-old": 3}


def test_old_replica_sets_do_not_shrink_while_new_pods_are_unavailable_and_none_may_be_lost() -> None:
    new = rs("web-new", replicas=1, available=0)
    old = rs("web-old", replicas=3, available=3)
    assert old_scale_down(deployment(3, surge=1, unavailable=0), new, [old]) == {}


def test_old_replica_sets_shrink_by_the_available_pods_above_the_minimum() -> None:
    new = rs("web-new", replicas=2, available=2)
    old = rs("web-old", replicas=3, available=3)
    assert old_scale_down(deployment(4, surge=1, unavailable=1), new, [old]) == {"web-old": 1}


def test_unavailable_old_pods_are_removed_first_since_they_cost_no_availability() -> None:
    healthy = rs("web-v1", replicas=2, available=2, created="2026-01-01T00:00:00Z")
    broken = rs("web-v2", replicas=2, available=0, created="2026-01-02T00:00:00Z")
    new = rs("web-v3", replicas=1, available=0)
    assert old_scale_down(deployment(4, surge=1, unavailable=1), new, [healthy, broken]) == {"web-v2": 1}


def test_the_oldest_old_replica_set_is_scaled_down_first() -> None:
    newer = rs("web-v2", replicas=2, available=2, created="2026-01-02T00:00:00Z")
    older = rs("web-v1", replicas=2, available=2, created="2026-01-01T00:00:00Z")
    new = rs("web-v3", replicas=1, available=1)
    assert old_scale_down(deployment(4, surge=1, unavailable=1), new, [newer, older]) == {"web-v1": 0}


def test_deployment_status_sums_the_replica_sets_and_omits_zero_counts() -> None:
    new = rs("web-new", replicas=2, available=2)
    old = rs("web-old", replicas=1, available=1)
    status = deployment_status(deployment(3, generation=4), new, [old])
    assert status == {
        "observedGeneration": 4,
        "replicas": 3,
        "updatedReplicas": 2,
        "readyReplicas": 3,
        "availableReplicas": 3,
    }


def test_deployment_status_counts_unavailable_replicas_and_keeps_the_collision_count() -> None:
    new = rs("web-new", replicas=3, available=1, ready=2)
    status = deployment_status(deployment(3, status={"collisionCount": 2}), new, [])
    assert status == {
        "observedGeneration": 1,
        "replicas": 3,
        "updatedReplicas": 3,
        "readyReplicas": 2,
        "availableReplicas": 1,
        "unavailableReplicas": 2,
        "collisionCount": 2,
    }


def test_deployment_status_without_any_replica_set_reports_only_the_generation() -> None:
    # as kube: unavailable counts what the replica sets want, and there are none yet
    assert deployment_status(deployment(2, generation=3), None, []) == {"observedGeneration": 3}


def test_mid_rollout_the_surge_pod_that_is_not_available_yet_counts_as_unavailable() -> None:
    new = rs("web-new", replicas=1, available=0, current=1)
    old = rs("web-old", replicas=3, available=3)
    assert deployment_status(deployment(3), new, [old])["unavailableReplicas"] == 1


def test_a_rollout_is_complete_when_every_replica_is_updated_and_available() -> None:
    dep = deployment(3)
    assert complete(dep, deployment_status(dep, rs("web-new", replicas=3, available=3), []))
    still_old = deployment_status(dep, rs("web-new", replicas=3, available=3), [rs("web-old", replicas=1, available=1)])
    assert not complete(dep, still_old)
    not_available = deployment_status(dep, rs("web-new", replicas=3, available=2), [])
    assert not complete(dep, not_available)


def test_set_condition_adds_a_missing_condition_with_both_timestamps() -> None:
    [added] = set_condition([], "Available", "True", "MinimumReplicasAvailable", "ok")
    assert added["type"] == "Available"
    assert (added["status"], added["reason"], added["message"]) == ("True", "MinimumReplicasAvailable", "ok")
    assert added["lastUpdateTime"] == added["lastTransitionTime"]
    assert datetime.fromisoformat(added["lastTransitionTime"].replace("Z", "+00:00")).year >= 2026


def test_set_condition_keeps_the_transition_time_when_the_status_does_not_change() -> None:
    progressing = {
        "type": "Progressing",
        "status": "True",
        "reason": "NewReplicaSetCreated",
        "message": "old",
        "lastUpdateTime": LONG_AGO,
        "lastTransitionTime": LONG_AGO,
    }
    available = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "ok"}
    out = set_condition([available, progressing], "Progressing", "True", "ReplicaSetUpdated", "new")
    assert out[0] == available
    assert out[1]["lastTransitionTime"] == LONG_AGO
    assert out[1]["lastUpdateTime"] != LONG_AGO
    assert (out[1]["reason"], out[1]["message"]) == ("ReplicaSetUpdated", "new")
    assert progressing["message"] == "old"  # the input is not changed


def test_set_condition_moves_the_transition_time_when_the_status_changes() -> None:
    available = {
        "type": "Available",
        "status": "True",
        "reason": "MinimumReplicasAvailable",
        "message": "ok",
        "lastUpdateTime": LONG_AGO,
        "lastTransitionTime": LONG_AGO,
    }
    [out] = set_condition([available], "Available", "False", "MinimumReplicasUnavailable", "down")
    assert out["status"] == "False"
    assert out["lastTransitionTime"] != LONG_AGO
    assert out["lastUpdateTime"] == out["lastTransitionTime"]


def test_set_condition_leaves_an_unchanged_condition_exactly_as_it_was() -> None:
    available = {
        "type": "Available",
        "status": "True",
        "reason": "MinimumReplicasAvailable",
        "message": "ok",
        "lastUpdateTime": LONG_AGO,
        "lastTransitionTime": LONG_AGO,
    }
    assert set_condition([available], "Available", "True", "MinimumReplicasAvailable", "ok") == [available]


# --- podutil -------------------------------------------------------------------------------------


def test_terminal_and_deleting_pods_are_not_active() -> None:
    assert is_active(pod("running"))
    assert is_active(pod("pending", phase="Pending", ready=None))
    assert not is_active(pod("done", phase="Succeeded"))
    assert not is_active(pod("crashed", phase="Failed"))
    assert not is_active(pod("going", deleting=True))


def test_a_pod_is_ready_only_with_a_true_ready_condition() -> None:
    assert is_ready(pod("p", ready=True))
    assert not is_ready(pod("p", ready=False))
    assert not is_ready(pod("p", ready=None))


def test_a_ready_pod_is_available_once_it_has_been_ready_for_min_ready_seconds() -> None:
    since = "2026-03-01T12:00:00Z"
    p = pod("p", ready_since=since)
    assert not is_available(p, 30, now=utc("2026-03-01T12:00:29"))
    assert not is_available(p, 30, now=utc("2026-03-01T12:00:30"))  # strictly after, as kube
    assert is_available(p, 30, now=utc("2026-03-01T12:00:31"))
    assert is_available(p, 0, now=utc("2026-03-01T12:00:00"))


def test_a_pod_that_is_not_ready_is_never_available() -> None:
    assert not is_available(pod("p", ready=False), 0)
    assert not is_available(pod("p", ready=None), 0)


def _ranked(*pods: Object) -> list[str]:
    return [p["metadata"]["name"] for p in sorted(pods, key=deletion_rank)]


def test_unassigned_pods_are_deleted_before_assigned_ones() -> None:
    assert _ranked(
        pod("assigned", phase="Pending", ready=None), pod("unassigned", phase="Pending", ready=None, node=None)
    ) == [
        "unassigned",
        "assigned",
    ]


def test_pending_pods_are_deleted_before_unknown_before_running() -> None:
    assert _ranked(pod("running"), pod("unknown", phase="Unknown"), pod("pending", phase="Pending")) == [
        "pending",
        "unknown",
        "running",
    ]


def test_not_ready_pods_are_deleted_before_ready_ones() -> None:
    assert _ranked(pod("ready"), pod("not-ready", ready=False)) == ["not-ready", "ready"]


def test_pods_that_restarted_more_are_deleted_first() -> None:
    assert _ranked(pod("calm", restarts=0), pod("flappy", restarts=7), pod("some", restarts=2)) == [
        "flappy",
        "some",
        "calm",
    ]


def test_newer_pods_are_deleted_before_older_ones_and_a_missing_creation_time_goes_first() -> None:
    assert _ranked(
        pod("old", created="2026-01-01T00:00:00Z"),
        pod("newest", created="2026-01-03T00:00:00Z"),
        pod("newer", created="2026-01-02T00:00:00Z"),
        pod("unknown-age", created=None),
    ) == ["unknown-age", "newest", "newer", "old"]


def test_pod_from_template_copies_the_template_under_the_owners_controller_reference() -> None:
    template: Object = {
        "metadata": {"labels": {"app": "web"}, "annotations": {"note": "x"}, "finalizers": ["example.com/keep"]},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
    }
    owner = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web-abc", "namespace": "shop", "uid": "rs-uid"},
    }
    made = pod_from_template(template, owner, labels={"extra": "1"})
    assert made == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "namespace": "shop",
            "generateName": "web-abc-",
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-abc",
                    "uid": "rs-uid",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "labels": {"app": "web", "extra": "1"},
            "annotations": {"note": "x"},
            "finalizers": ["example.com/keep"],
        },
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
    }
    made["spec"]["containers"][0]["image"] = "changed"
    assert template["spec"]["containers"][0]["image"] == "nginx"  # the spec is a copy


def test_pod_from_template_uses_an_explicit_name_instead_of_generate_name() -> None:
    owner = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "d", "uid": "u"}}
    made = pod_from_template({"spec": {}}, owner, name="db-0")
    assert made["metadata"]["name"] == "db-0"
    assert "generateName" not in made["metadata"]
    assert "labels" not in made["metadata"]


def test_expectations_hold_until_every_expected_create_and_delete_is_observed() -> None:
    expectations = Expectations()
    assert expectations.satisfied("default/web")
    expectations.expect("default/web", adds=2, deletes=["uid-a"])
    assert not expectations.satisfied("default/web")
    expectations.observed_add("default/web")
    expectations.observed_delete("default/web", "uid-a")
    assert not expectations.satisfied("default/web")
    expectations.observed_add("default/web")
    assert expectations.satisfied("default/web")
    assert expectations.satisfied("default/other")


def test_a_delete_is_observed_by_the_pod_it_named_once_and_twice_is_harmless() -> None:
    expectations = Expectations()
    expectations.expect("k", deletes=["a", "b"])
    expectations.observed_delete("k", "a")  # deletionTimestamp seen
    expectations.observed_delete("k", "a")  # then the object gone: counts once
    expectations.observed_delete("k", "other")  # a pod it did not delete counts for nothing
    assert not expectations.satisfied("k")
    expectations.observed_delete("k", "b")
    assert expectations.satisfied("k")


def test_expectations_lowered_for_failed_requests_are_satisfied_without_observations() -> None:
    expectations = Expectations()
    expectations.expect("k", adds=3, deletes=["a", "b"])
    expectations.observed_add("k")
    expectations.observed_delete("k", "a")
    expectations.lower("k", adds=2, deletes=["b"])
    assert expectations.satisfied("k")


def test_forgotten_expectations_are_satisfied() -> None:
    expectations = Expectations()
    expectations.expect("k", deletes=["a", "b"])
    expectations.forget("k")
    assert expectations.satisfied("k")


def test_observations_beyond_the_expected_count_do_not_go_negative() -> None:
    expectations = Expectations()
    expectations.expect("k", adds=1)
    expectations.observed_add("k")
    expectations.observed_add("k")
    expectations.expect("k", adds=1)
    assert not expectations.satisfied("k")


# --- replicaset ----------------------------------------------------------------------------------


def replica_set(replicas: int, *, min_ready: int = 0, deleting: bool = False) -> Object:
    out = rs("web-abc", replicas=replicas, generation=7)
    out["spec"]["minReadySeconds"] = min_ready
    out["status"] = {}
    if deleting:
        out["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return out


def test_plan_creates_the_missing_pods_ignoring_finished_and_deleting_ones() -> None:
    pods = [pod("a"), pod("done", phase="Succeeded"), pod("failed", phase="Failed"), pod("going", deleting=True)]
    decided = plan(replica_set(3), pods, expectations_met=True, now=NOW)
    assert decided.create == 2
    assert decided.delete == []


def test_plan_creates_at_most_one_burst_at_a_time() -> None:
    assert plan(replica_set(BURST + 100), [], expectations_met=True, now=NOW).create == BURST


def test_plan_deletes_the_surplus_pods_that_rank_first_for_deletion() -> None:
    pods = [
        pod("old", created="2026-01-01T00:00:00Z"),
        pod("young", created="2026-01-03T00:00:00Z"),
        pod("flappy", restarts=5),
        pod("not-ready", ready=False),
        pod("unknown", phase="Unknown"),
        pod("pending", phase="Pending", ready=None),
        pod("unassigned", phase="Pending", ready=None, node=None),
    ]
    decided = plan(replica_set(2), pods, expectations_met=True, now=NOW)
    assert decided.create == 0
    assert [p["metadata"]["name"] for p in decided.delete] == [
        "unassigned",
        "pending",
        "unknown",
        "not-ready",
        "flappy",
    ]


def test_plan_does_nothing_while_expectations_are_not_met_but_still_reports_status() -> None:
    decided = plan(replica_set(3), [pod("a")], expectations_met=False, now=NOW)
    assert (decided.create, decided.delete) == (0, [])
    assert decided.status["replicas"] == 1
    decided = plan(replica_set(0), [pod("a")], expectations_met=False, now=NOW)
    assert (decided.create, decided.delete) == (0, [])


def test_plan_does_nothing_for_a_replica_set_being_deleted() -> None:
    decided = plan(replica_set(3, deleting=True), [], expectations_met=True, now=NOW)
    assert (decided.create, decided.delete) == (0, [])


def test_plan_does_nothing_when_the_count_is_right() -> None:
    decided = plan(replica_set(2), [pod("a"), pod("b")], expectations_met=True, now=NOW)
    assert (decided.create, decided.delete) == (0, [])


def test_replica_status_counts_active_labelled_ready_and_available_pods() -> None:
    pods = [
        pod("long-ready", labels={"app": "web"}),
        pod("just-ready", labels={"app": "web"}, ready_since=now()),
        pod("not-ready", labels={"app": "web"}, ready=False),
        pod("unlabelled"),
        pod("finished", labels={"app": "web"}, phase="Succeeded"),
    ]
    assert replica_status(replica_set(4, min_ready=3600), pods, now=datetime.now(UTC)) == {
        "replicas": 4,
        "fullyLabeledReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 2,  # long-ready and unlabelled; just-ready waits for minReadySeconds
        "observedGeneration": 7,
    }


def test_replica_status_omits_zero_counts_but_always_reports_replicas() -> None:
    assert replica_status(replica_set(1), [], now=NOW) == {"replicas": 0, "observedGeneration": 7}


def test_replica_status_reports_a_create_failure_and_clears_it_afterwards() -> None:
    failing = replica_status(replica_set(1), [], now=NOW, failure="quota exceeded")
    assert failing["conditions"] == [
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "quota exceeded"}
    ]
    recovered = replica_set(1)
    recovered["status"] = failing
    assert "conditions" not in replica_status(recovered, [pod("a")], now=NOW)


# --- job -----------------------------------------------------------------------------------------


def test_completed_indexes_parse_from_ranges_and_lists() -> None:
    assert parse_indexes("1,3-5,7") == {1, 3, 4, 5, 7}
    assert parse_indexes("0-2,10") == {0, 1, 2, 10}
    assert parse_indexes("") == set()


def test_completed_indexes_format_as_compact_ranges() -> None:
    assert format_indexes({7, 1, 3, 4, 5}) == "1,3-5,7"
    assert format_indexes({0, 1}) == "0-1"
    assert format_indexes({2}) == "2"
    assert format_indexes(set()) == ""


@pytest.mark.parametrize("text", ["1,3-5,7", "0", "0-9", "2,4,6", "0-1,3-4,10-12"])
def test_completed_indexes_round_trip(text: str) -> None:
    assert format_indexes(parse_indexes(text)) == text


def test_a_job_is_finished_by_a_true_complete_or_failed_condition() -> None:
    assert finished({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}) == "Complete"
    assert finished({"status": {"conditions": [{"type": "Failed", "status": "True"}]}}) == "Failed"
    assert finished({"status": {"conditions": [{"type": "Failed", "status": "False"}]}}) == ""
    assert finished({"status": {"conditions": [{"type": "Suspended", "status": "True"}]}}) == ""
    assert finished({}) == ""


# --- node lifecycle ------------------------------------------------------------------------------


def lifecycle_node(*, ready: str | None = "True", heartbeat: str | None = None, unschedulable: bool = False) -> Object:
    conditions: list[dict[str, Any]] = []
    if ready is not None:
        condition: dict[str, Any] = {"type": "Ready", "status": ready}
        if heartbeat:
            condition["lastHeartbeatTime"] = heartbeat
        conditions.append(condition)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {"conditions": conditions},
    }


def lease(renewed: str) -> Object:
    return {"metadata": {"name": "n1", "namespace": "kube-node-lease"}, "spec": {"renewTime": renewed}}


def test_ready_status_reads_the_ready_condition() -> None:
    assert ready_status(lifecycle_node(ready="True")) == "True"
    assert ready_status(lifecycle_node(ready="False")) == "False"
    assert ready_status(lifecycle_node(ready="Unknown")) == "Unknown"
    assert ready_status(lifecycle_node(ready=None)) == ""


def test_the_heartbeat_is_what_the_kubelet_wrote_to_its_lease_and_ready_condition() -> None:
    node = lifecycle_node(heartbeat="2026-01-01T00:01:00Z")
    assert heartbeat(node, lease("2026-01-01T00:05:00.250000Z")) == (
        "2026-01-01T00:05:00.250000Z",
        "2026-01-01T00:01:00Z",
    )
    assert heartbeat(lifecycle_node(ready=None), None) == ("", "")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_node_is_silent_for_as_long_as_its_heartbeat_has_not_changed_by_the_controllers_clock() -> None:
    clock = Clock()
    beats = Heartbeats(clock)
    assert beats.silent_for("n1", ("a", "x")) == 0.0  # first seen: a whole grace period from now
    clock.now += 30
    assert beats.silent_for("n1", ("a", "x")) == 30.0
    clock.now += 15
    assert beats.silent_for("n1", ("b", "x")) == 0.0  # the lease was renewed
    clock.now += 41
    assert beats.silent_for("n1", ("b", "x")) == 41.0
    beats.forget("n1")
    assert beats.silent_for("n1", ("b", "x")) == 0.0


def test_a_node_whose_clock_runs_behind_is_not_silent_while_it_keeps_renewing() -> None:
    # a VM resumed after a pause writes stamps minutes in the past until its clock catches up
    clock = Clock()
    beats = Heartbeats(clock)
    for second in range(0, 200, 10):
        clock.now += 10
        stamp = f"2026-01-01T00:00:{second // 10:02d}Z"
        assert beats.silent_for("n1", (stamp, stamp)) == 0.0


def _without_time(taints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in t.items() if k != "timeAdded"} for t in taints]


def test_a_not_ready_node_gets_the_not_ready_taints_and_keeps_its_own() -> None:
    own = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    taints = wanted_taints(lifecycle_node(ready="False"), [own])
    assert _without_time(taints) == [
        own,
        {"key": NOT_READY, "effect": "NoSchedule"},
        {"key": NOT_READY, "effect": "NoExecute"},
    ]
    assert "timeAdded" not in taints[1]
    assert "timeAdded" in taints[2]  # NoExecute taints carry the time eviction counts from


def test_an_unknown_node_gets_the_unreachable_taints_in_place_of_not_ready() -> None:
    before = [
        {"key": NOT_READY, "effect": "NoSchedule"},
        {"key": NOT_READY, "effect": "NoExecute", "timeAdded": LONG_AGO},
    ]
    taints = wanted_taints(lifecycle_node(ready="Unknown"), before)
    assert _without_time(taints) == [
        {"key": UNREACHABLE, "effect": "NoSchedule"},
        {"key": UNREACHABLE, "effect": "NoExecute"},
    ]
    assert taints[1]["timeAdded"] != LONG_AGO


def test_a_condition_taint_that_is_still_wanted_keeps_its_time_added() -> None:
    before = [
        {"key": NOT_READY, "effect": "NoSchedule"},
        {"key": NOT_READY, "effect": "NoExecute", "timeAdded": LONG_AGO},
    ]
    assert wanted_taints(lifecycle_node(ready="False"), before) == before


def test_a_ready_node_loses_its_condition_taints() -> None:
    own = {"key": "dedicated", "value": "gpu", "effect": "NoExecute"}
    before = [{"key": UNREACHABLE, "effect": "NoSchedule"}, own, {"key": UNREACHABLE, "effect": "NoExecute"}]
    assert wanted_taints(lifecycle_node(ready="True"), before) == [own]


def test_a_cordoned_node_gets_the_unschedulable_taint_and_loses_it_when_uncordoned() -> None:
    cordoned = wanted_taints(lifecycle_node(unschedulable=True), [])
    assert cordoned == [{"key": UNSCHEDULABLE, "effect": "NoSchedule"}]
    assert wanted_taints(lifecycle_node(unschedulable=False), cordoned) == []


def with_tolerations(*tolerations: dict[str, Any]) -> Object:
    out = pod("p")
    out["spec"]["tolerations"] = list(tolerations)
    return out


NOT_READY_NOEXEC = {"key": NOT_READY, "effect": "NoExecute"}


def test_a_pod_that_does_not_tolerate_a_no_execute_taint_must_go_at_once() -> None:
    assert toleration_seconds(pod("p"), [NOT_READY_NOEXEC]) == 0.0
    other = with_tolerations({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"})
    assert toleration_seconds(other, [NOT_READY_NOEXEC]) == 0.0


def test_a_pod_with_no_no_execute_taints_to_face_stays_forever() -> None:
    assert toleration_seconds(pod("p"), []) is None
    assert toleration_seconds(pod("p"), [{"key": NOT_READY, "effect": "NoSchedule"}]) is None


def test_a_toleration_without_seconds_tolerates_forever() -> None:
    forever = with_tolerations({"key": NOT_READY, "operator": "Exists", "effect": "NoExecute"})
    assert toleration_seconds(forever, [NOT_READY_NOEXEC]) is None


def test_toleration_seconds_counts_from_when_the_taint_was_added() -> None:
    default = with_tolerations(
        {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
    )
    assert toleration_seconds(default, [NOT_READY_NOEXEC]) == 300.0
    added = stamp(datetime.now(UTC) - timedelta(seconds=100))
    left = toleration_seconds(default, [{**NOT_READY_NOEXEC, "timeAdded": added}])
    assert left is not None
    assert 198.0 < left <= 200.0
    assert toleration_seconds(default, [{**NOT_READY_NOEXEC, "timeAdded": LONG_AGO}]) == 0.0


def test_the_shortest_toleration_over_all_no_execute_taints_wins() -> None:
    tolerant = with_tolerations(
        {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "maintenance", "operator": "Exists", "tolerationSeconds": 60},
    )
    taints = [NOT_READY_NOEXEC, {"key": "maintenance", "value": "now", "effect": "NoExecute"}]
    assert toleration_seconds(tolerant, taints) == 60.0


def test_zero_or_negative_toleration_seconds_mean_evict_at_once() -> None:
    for seconds in (0, -5):
        pod_ = with_tolerations({"key": NOT_READY, "operator": "Exists", "tolerationSeconds": seconds})
        assert toleration_seconds(pod_, [NOT_READY_NOEXEC]) == 0.0


# --- endpoints -----------------------------------------------------------------------------------


def service(*, ports: list[dict[str, Any]] | None = None, publish: bool = False, selector: bool = True) -> Object:
    spec: dict[str, Any] = {
        "ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    }
    if selector:
        spec["selector"] = {"app": "web"}
    if publish:
        spec["publishNotReadyAddresses"] = True
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "default", "uid": "s"},
        "spec": spec,
    }


def web(name: str, ip: str | None, *, port: int = 8080, **kwargs: Any) -> Object:
    return pod(name, ip=ip, labels={"app": "web"}, ports=[{"name": "http", "containerPort": port}], **kwargs)


def address(name: str, ip: str) -> dict[str, Any]:
    return {
        "ip": ip,
        "targetRef": {"kind": "Pod", "namespace": "default", "name": name, "uid": f"uid-{name}"},
        "nodeName": "n1",
    }


def _backends() -> list[Object]:
    return [
        web("web-c", "10.0.0.3", port=9090),
        web("web-b", "10.0.0.2", ready=False),
        web("web-a", "10.0.0.1"),
        web("web-no-ip", None),
        web("web-done", "10.0.0.9", phase="Succeeded"),
        web("web-going", "10.0.0.4", deleting=True),
        pod("db-0", ip="10.0.0.5", labels={"app": "db"}),
    ]


def test_selected_pods_match_the_selector_have_an_ip_and_are_not_finished() -> None:
    assert [p["metadata"]["name"] for p in selected_pods(service(), _backends())] == [
        "web-a",
        "web-b",
        "web-c",
        "web-going",
    ]


def test_a_service_without_selector_selects_no_pods() -> None:
    assert selected_pods(service(selector=False), _backends()) == []
    assert endpoints_for(service(selector=False), _backends()) == []
    assert slices_for(service(selector=False), _backends()) == []


def test_endpoints_split_ready_and_not_ready_pods_and_group_them_by_resolved_named_port() -> None:
    assert endpoints_for(service(), _backends()) == [
        {
            "addresses": [address("web-a", "10.0.0.1")],
            "notReadyAddresses": [address("web-b", "10.0.0.2")],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        },
        {"addresses": [address("web-c", "10.0.0.3")], "ports": [{"name": "http", "port": 9090, "protocol": "TCP"}]},
    ]


def test_publish_not_ready_addresses_lists_every_selected_pod_as_ready() -> None:
    [first, second] = endpoints_for(service(publish=True), _backends())
    assert first == {
        "addresses": [address("web-a", "10.0.0.1"), address("web-b", "10.0.0.2"), address("web-going", "10.0.0.4")],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }
    assert second["addresses"] == [address("web-c", "10.0.0.3")]


@pytest.mark.parametrize(
    ("service_port", "expected"),
    [
        ({"port": 80, "targetPort": 8000}, 8000),
        ({"port": 80, "targetPort": "8001"}, 8001),
        ({"port": 80}, 80),  # no targetPort: the service port itself
    ],
)
def test_numeric_target_ports_are_used_as_given(service_port: dict[str, Any], expected: int) -> None:
    [subset] = endpoints_for(service(ports=[service_port]), [web("web-a", "10.0.0.1")])
    assert subset["ports"] == [{"port": expected, "protocol": "TCP"}]


def test_a_named_target_port_only_matches_a_container_port_of_the_same_protocol() -> None:
    udp = pod("web-a", labels={"app": "web"}, ports=[{"name": "dns", "containerPort": 53, "protocol": "UDP"}])
    ports = [
        {"name": "dns-udp", "port": 53, "targetPort": "dns", "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "targetPort": "dns", "protocol": "TCP"},
    ]
    [subset] = endpoints_for(service(ports=ports), [udp])
    assert subset["ports"] == [{"name": "dns-udp", "port": 53, "protocol": "UDP"}]


def test_endpoint_slices_carry_ready_serving_and_terminating_conditions() -> None:
    [first, second] = slices_for(service(), _backends())
    assert first["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert [(e["addresses"], e["conditions"]) for e in first["endpoints"]] == [
        (["10.0.0.1"], {"ready": True, "serving": True, "terminating": False}),
        (["10.0.0.2"], {"ready": False, "serving": False, "terminating": False}),
        (["10.0.0.4"], {"ready": False, "serving": True, "terminating": True}),
    ]
    assert first["endpoints"][0]["targetRef"] == {
        "kind": "Pod",
        "namespace": "default",
        "name": "web-a",
        "uid": "uid-web-a",
    }
    assert first["endpoints"][0]["nodeName"] == "n1"
    assert second["ports"] == [{"name": "http", "port": 9090, "protocol": "TCP"}]
    assert [e["addresses"] for e in second["endpoints"]] == [["10.0.0.3"]]


def test_endpoint_slices_hold_at_most_one_hundred_endpoints() -> None:
    pods = [web(f"web-{i:03d}", f"10.0.{i // 250}.{i % 250 + 1}") for i in range(MAX_PER_SLICE + 1)]
    pieces = slices_for(service(), pods)
    assert [len(p["endpoints"]) for p in pieces] == [100, 1]
    assert pieces[1]["endpoints"][0]["targetRef"]["name"] == "web-100"


# --- cronjob -------------------------------------------------------------------------------------

UTC_ZONE = ZoneInfo("UTC")


def test_due_times_lists_scheduled_times_after_since_up_to_and_including_until() -> None:
    times, upcoming = due_times(
        cron.parse("*/15 * * * *"), utc("2026-01-01T10:00:00"), utc("2026-01-01T10:45:00"), UTC_ZONE
    )
    assert times == [utc("2026-01-01T10:15:00"), utc("2026-01-01T10:30:00"), utc("2026-01-01T10:45:00")]
    assert upcoming == utc("2026-01-01T11:00:00")


def test_due_times_is_empty_between_two_runs_and_names_the_next_one() -> None:
    times, upcoming = due_times(
        cron.parse("0 * * * *"), utc("2026-01-01T10:00:00"), utc("2026-01-01T10:59:59"), UTC_ZONE
    )
    assert times == []
    assert upcoming == utc("2026-01-01T11:00:00")


def test_due_times_reads_the_schedule_in_the_cronjobs_time_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    winter, _ = due_times(cron.parse("0 9 * * *"), utc("2026-01-01T00:00:00"), utc("2026-01-01T12:00:00"), berlin)
    summer, upcoming = due_times(
        cron.parse("0 9 * * *"), utc("2026-07-01T00:00:00"), utc("2026-07-01T12:00:00"), berlin
    )
    assert winter == [utc("2026-01-01T08:00:00")]
    assert summer == [utc("2026-07-01T07:00:00")]
    assert upcoming == utc("2026-07-02T07:00:00")
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in [*winter, *summer, upcoming])


def test_due_times_keeps_only_the_latest_hundred_missed_runs() -> None:
    times, upcoming = due_times(
        cron.parse("* * * * *"), utc("2026-01-01T00:00:00"), utc("2026-01-01T03:00:00"), UTC_ZONE
    )
    assert len(times) == MAX_MISSED == 100
    assert (times[0], times[-1]) == (utc("2026-01-01T01:21:00"), utc("2026-01-01T03:00:00"))
    assert upcoming == utc("2026-01-01T03:01:00")


def test_a_pod_that_serves_none_of_the_service_ports_gets_no_address() -> None:
    unnamed = pod("web-x", ip="10.0.0.7", labels={"app": "web"})  # declares no port named "http"
    assert endpoints_for(service(), [web("web-a", "10.0.0.1"), unnamed]) == [
        {"addresses": [address("web-a", "10.0.0.1")], "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}
    ]


def test_publish_not_ready_addresses_makes_every_slice_endpoint_ready() -> None:
    [first, _] = slices_for(service(publish=True), _backends())
    assert [e["conditions"]["ready"] for e in first["endpoints"]] == [True, True, True]
    assert [e["conditions"]["serving"] for e in first["endpoints"]] == [True, False, True]


def test_lower_pod_deletion_cost_goes_first_whatever_the_age() -> None:
    cheap = pod("cheap", created="2026-01-01T00:00:00Z")
    dear = pod("dear", created="2026-02-01T00:00:00Z")
    cheap["metadata"]["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": "-100"}
    dear["metadata"]["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": "100"}
    assert [p["metadata"]["name"] for p in sorted([dear, cheap], key=deletion_rank)] == ["cheap", "dear"]


def test_pods_doubled_up_on_a_node_go_before_pods_alone_on_theirs() -> None:
    alone = pod("alone", node="n1", created="2026-03-01T00:00:00Z")
    crowded = pod("crowded", node="n2", created="2026-01-01T00:00:00Z")
    order = sorted([alone, crowded], key=lambda p: deletion_rank(p, {"n1": 1, "n2": 3}))
    assert [p["metadata"]["name"] for p in order] == ["crowded", "alone"]


def test_the_pod_ready_most_recently_goes_first() -> None:
    veteran = pod("veteran", ready_since="2026-01-01T00:00:00Z", created="2026-03-01T00:00:00Z")
    rookie = pod("rookie", ready_since="2026-02-01T00:00:00Z", created="2026-01-01T00:00:00Z")
    assert [p["metadata"]["name"] for p in sorted([veteran, rookie], key=deletion_rank)] == ["rookie", "veteran"]


def test_scaling_down_removes_pods_from_the_node_holding_most_of_the_set() -> None:
    pods = [pod("a1", node="a"), pod("b1", node="b"), pod("b2", node="b")]
    result = plan(rs("web", replicas=2, current=3), pods, expectations_met=True, now=NOW)
    assert [p["spec"]["nodeName"] for p in result.delete] == ["b"]


def test_a_toleration_without_seconds_does_not_outlast_a_matching_one_with_seconds() -> None:
    mixed = with_tolerations(
        {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute"},
        {"operator": "Exists", "tolerationSeconds": 60},
    )
    assert toleration_seconds(mixed, [NOT_READY_NOEXEC]) == 60.0


def test_surge_counts_the_pods_an_old_replica_set_still_has_after_its_scale_down() -> None:
    old = rs("web-old", replicas=5, current=6, available=6)  # told 5, its sixth pod not deleted yet
    new = rs("web-new", replicas=1, current=1, available=1)
    assert new_replicas(deployment(6, surge=1, unavailable=1), new, [old]) == 1


def test_old_pods_are_counted_available_only_up_to_their_replica_sets_spec() -> None:
    old = rs("web-old", replicas=5, current=6, available=6)  # its status still counts the doomed pod
    new = rs("web-new", replicas=1, current=1, available=1)
    assert old_scale_down(deployment(6, surge=1, unavailable=1), new, [old]) == {"web-old": 4}
    waiting = rs("web-new", replicas=1, current=1, available=0)
    assert old_scale_down(deployment(6, surge=1, unavailable=1), waiting, [old]) == {}
