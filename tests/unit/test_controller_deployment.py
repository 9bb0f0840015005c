"""The Deployment controller: its plan (pure) and its sync against an in-process API server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from agents.apiserver.server import ApiServer
from agents.controllers.base import rfc3339
from agents.controllers.deployment import (
    DESIRED,
    HASH_LABEL,
    REVISION,
    REVISION_HISTORY,
    DeploymentController,
    plan,
    template_hash,
    without_hash,
)
from agents.controllers.replicaset import ReplicaSetController
from agents.machinery.objects import Object, deep_copy
from agents.machinery.resources import DEPLOYMENTS, REPLICASETS
from tests.support.controllerharness import Harness, running

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def deployment(replicas: int = 3, *, image: str = "busybox:1.36", **spec: Any) -> Object:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "dep-uid", "generation": 2},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
            **spec,
        },
        "status": {},
    }


def owned_set(dep: Object, *, replicas: int, available: int | None = None, revision: int = 1, **status: int) -> Object:
    """The ReplicaSet ``dep``'s template makes, as the API would return it, owned by ``dep``."""
    template = deep_copy(dep["spec"]["template"])
    digest = template_hash(without_hash(template))
    template["metadata"]["labels"][HASH_LABEL] = digest
    count = replicas if available is None else available
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"web-{digest}",
            "namespace": "default",
            "uid": f"rs-{digest}",
            "resourceVersion": "7",
            "creationTimestamp": f"2026-01-0{revision}T00:00:00Z",
            "annotations": {REVISION: str(revision), DESIRED: str(dep["spec"]["replicas"])},
            "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "dep-uid", "controller": True}],
        },
        "spec": {"replicas": replicas, "template": template},
        "status": {"replicas": replicas, "readyReplicas": count, "availableReplicas": count, **status},
    }


def progressing(conditions: list[dict[str, Any]]) -> tuple[str, str]:
    found = next(c for c in conditions if c["type"] == "Progressing")
    return found["status"], found["reason"]


# --- the plan ------------------------------------------------------------------------------------


def test_a_template_without_replica_set_is_planned_as_a_new_one_and_nothing_else() -> None:
    old = owned_set(deployment(image="busybox:1.35"), replicas=3, revision=4)
    decided = plan(deployment(), [old], now=NOW)
    assert decided.create is not None
    assert decided.scale == [] and decided.delete == [] and decided.status == {}
    made = decided.create
    digest = made["metadata"]["labels"][HASH_LABEL]
    assert made["metadata"]["name"] == f"web-{digest}"
    assert made["metadata"]["annotations"][REVISION] == "5"  # one above the old ones
    assert made["spec"]["replicas"] == 0
    assert made["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: digest}
    assert made["metadata"]["ownerReferences"][0]["uid"] == "dep-uid"


def test_a_hash_collision_moves_the_new_replica_set_to_another_name() -> None:
    first = plan(deployment(), [], now=NOW).create
    colliding = deployment()
    colliding["status"] = {"collisionCount": 1}
    second = plan(colliding, [], now=NOW).create
    assert first is not None and second is not None
    assert first["metadata"]["name"] != second["metadata"]["name"]


def test_once_created_the_new_replica_set_grows_within_max_surge_and_progressing_says_it_was_created() -> None:
    dep = deployment(4)
    old = owned_set(deployment(4, image="busybox:1.35"), replicas=4, revision=1)
    new = owned_set(dep, replicas=0, revision=2)
    decided = plan(dep, [old, new], now=NOW, created=True)
    assert [(s.name, s.replicas) for s in decided.scale] == [(new["metadata"]["name"], 1)]  # 25% of 4
    assert decided.scale[0].event.message == f"Scaled up replica set {new['metadata']['name']} from 0 to 1"
    assert decided.annotate is None
    assert progressing(decided.status["conditions"]) == ("True", "NewReplicaSetCreated")
    assert decided.revision == "2"  # the Deployment's own revision annotation follows the new set


def test_old_replica_sets_shrink_once_the_new_one_is_as_large_as_surge_allows() -> None:
    dep = deployment(4)
    old = owned_set(deployment(4, image="busybox:1.35"), replicas=4, revision=1)
    new = owned_set(dep, replicas=1, available=0, revision=2)
    decided = plan(dep, [old, new], now=NOW)
    assert [(s.name, s.replicas) for s in decided.scale] == [(old["metadata"]["name"], 3)]  # 1 may be unavailable
    assert progressing(decided.status["conditions"]) == ("True", "ReplicaSetUpdated")
    # the status counts the sets as the scale leaves them: 3 + 1 pods wanted, 4 available
    assert decided.status["replicas"] == 5 and "unavailableReplicas" not in decided.status


def test_a_rollback_makes_the_old_replica_set_the_newest_revision_and_keeps_its_history() -> None:
    dep = deployment(2)
    back = owned_set(dep, replicas=0, revision=1)
    current = owned_set(deployment(2, image="busybox:1.37"), replicas=2, revision=2)
    decided = plan(dep, [back, current], now=NOW)
    assert decided.annotate is not None and decided.annotate.name == back["metadata"]["name"]
    assert decided.annotate.annotations[REVISION] == "3"
    assert decided.annotate.annotations[REVISION_HISTORY] == "1"
    assert decided.revision == "3"


def test_recreate_scales_every_old_replica_set_to_zero_and_waits_for_their_pods() -> None:
    dep = deployment(2, strategy={"type": "Recreate"})
    old = owned_set(deployment(2, image="busybox:1.35"), replicas=2)
    decided = plan(dep, [old], now=NOW)
    assert decided.create is None
    assert [(s.name, s.replicas) for s in decided.scale] == [(old["metadata"]["name"], 0)]
    draining = owned_set(deployment(2, image="busybox:1.35"), replicas=0, available=0)
    draining["status"]["replicas"] = 1  # a pod still terminating
    assert plan(dep, [draining], now=NOW).create is None
    draining["status"]["replicas"] = 0
    assert plan(dep, [draining], now=NOW).create is not None


def test_recreate_scales_the_new_replica_set_to_replicas_at_once() -> None:
    dep = deployment(3, strategy={"type": "Recreate"})
    new = owned_set(dep, replicas=0, available=0)
    decided = plan(dep, [new], now=NOW, created=True)
    assert [(s.name, s.replicas) for s in decided.scale] == [(new["metadata"]["name"], 3)]
    assert progressing(decided.status["conditions"]) == ("True", "ReplicaSetUpdated")


def test_a_paused_deployment_changes_no_replica_set_and_says_it_is_paused() -> None:
    dep = deployment(3, paused=True)
    old = owned_set(deployment(3, image="busybox:1.35"), replicas=3)
    decided = plan(dep, [old], now=NOW)
    assert decided.create is None and decided.scale == [] and decided.annotate is None
    assert progressing(decided.status["conditions"]) == ("Unknown", "DeploymentPaused")


def test_idle_old_replica_sets_beyond_the_history_limit_are_deleted_oldest_first() -> None:
    dep = deployment(1, revisionHistoryLimit=1)
    idle = [owned_set(deployment(1, image=f"busybox:1.{n}"), replicas=0, revision=n) for n in (1, 2, 3)]
    new = owned_set(dep, replicas=1, revision=4)
    decided = plan(dep, [*idle, new], now=NOW)
    assert [rs["metadata"]["annotations"][REVISION] for rs in decided.delete] == ["1", "2"]


def test_progress_that_stalls_past_its_deadline_turns_progressing_false_and_until_then_requeues() -> None:
    dep = deployment(2, progressDeadlineSeconds=60)
    new = owned_set(dep, replicas=2, available=1)
    updated = rfc3339(NOW - timedelta(seconds=50))
    stalled = {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "lastUpdateTime": updated}
    dep["status"] = {"conditions": [stalled]}
    decided = plan(dep, [new], now=NOW)
    assert decided.requeue_after is not None and 10.0 < decided.requeue_after <= 10.2
    later = plan(dep, [new], now=NOW + timedelta(seconds=11))
    assert progressing(later.status["conditions"]) == ("False", "ProgressDeadlineExceeded")
    assert later.requeue_after is None


def test_a_finished_rollout_is_reported_available_and_progressed() -> None:
    dep = deployment(2)
    decided = plan(dep, [owned_set(dep, replicas=2)], now=NOW)
    assert decided.scale == []
    assert decided.status["availableReplicas"] == 2 and decided.status["observedGeneration"] == 2
    assert progressing(decided.status["conditions"]) == ("True", "NewReplicaSetAvailable")
    assert next(c for c in decided.status["conditions"] if c["type"] == "Available")["status"] == "True"


# --- the sync ------------------------------------------------------------------------------------


def manifest(replicas: int, image: str = "busybox:1.36", **spec: Any) -> Object:
    body = deployment(replicas, image=image, **spec)
    body["metadata"] = {"name": "web"}
    del body["status"]
    return body


async def replica_sets(h: Harness) -> dict[str, Object]:
    return {rs["metadata"]["name"]: rs for rs in await h.items(REPLICASETS)}


async def test_deployment_creates_a_replica_set_for_its_template_and_scales_it_to_replicas(server: ApiServer) -> None:
    async with running(server, DeploymentController) as h:
        await h.create(DEPLOYMENTS, manifest(3))

        async def scaled() -> Object | None:
            found = list((await replica_sets(h)).values())
            return found[0] if len(found) == 1 and found[0]["spec"]["replicas"] == 3 else None

        rs = await h.eventually(scaled, what="one ReplicaSet of 3")
        digest = rs["metadata"]["labels"][HASH_LABEL]
        assert rs["metadata"]["name"] == f"web-{digest}"
        assert rs["metadata"]["annotations"][REVISION] == "1"

        async def annotated() -> Object | None:
            dep = await h.get(DEPLOYMENTS, "web")
            return dep if dep and (dep["metadata"].get("annotations") or {}).get(REVISION) == "1" else None

        await h.eventually(annotated, what="the Deployment's revision annotation")
        events = await h.eventually(lambda: h.events("web"))
        assert ("ScalingReplicaSet", f"Scaled up replica set web-{digest} from 0 to 3") in events


async def test_deployment_rolls_to_a_new_template_and_keeps_the_old_replica_set_at_zero(server: ApiServer) -> None:
    async with running(server, DeploymentController, ReplicaSetController) as h, h.kubelet():
        await h.create(DEPLOYMENTS, manifest(2))

        async def complete(count: int) -> dict[str, Object]:
            dep = await h.get(DEPLOYMENTS, "web")
            sets = await replica_sets(h)
            status = (dep or {}).get("status") or {}
            seen = dep is not None and status.get("observedGeneration") == dep["metadata"]["generation"]
            done = status.get("updatedReplicas") == status.get("availableReplicas") == status.get("replicas") == 2
            return sets if seen and done and len(sets) == count else {}

        await h.eventually(lambda: complete(1), what="the first rollout")
        await h.client.patch(
            DEPLOYMENTS,
            "web",
            {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "busybox:1.37"}]}}}},
            "default",
        )
        sets = await h.eventually(lambda: complete(2), what="the second rollout")
        by_revision = {rs["metadata"]["annotations"][REVISION]: rs for rs in sets.values()}
        assert by_revision["1"]["spec"]["replicas"] == 0
        assert by_revision["2"]["spec"]["replicas"] == 2
        assert by_revision["2"]["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.37"


async def test_deployment_adopts_an_orphan_replica_set_its_selector_matches(server: ApiServer) -> None:
    async with running(server, DeploymentController) as h:
        orphan = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web-by-hand", "labels": {"app": "web"}},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "main", "image": "busybox:1.35"}]},
                },
            },
        }
        await h.create(REPLICASETS, orphan)
        await h.create(DEPLOYMENTS, manifest(1))

        async def adopted() -> bool:
            rs = await h.get(REPLICASETS, "web-by-hand")
            refs = (rs or {}).get("metadata", {}).get("ownerReferences") or []
            return any(r["kind"] == "Deployment" and r["name"] == "web" and r.get("controller") for r in refs)

        await h.eventually(adopted, what="the orphan adopted")
        sets = await h.eventually(lambda: _two(h), what="a ReplicaSet for the template beside it")
        assert "web-by-hand" in sets


async def _two(h: Harness) -> dict[str, Object]:
    sets = await replica_sets(h)
    return sets if len(sets) == 2 else {}
