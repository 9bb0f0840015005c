"""StatefulSet volumeClaimTemplates: one claim per ordinal made before its pod and named in its volumes,
kept by default, and owned as ``persistentVolumeClaimRetentionPolicy`` says (the garbage collector
does the deleting)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agents.apiserver.kinds import strategy_for
from agents.apiserver.resources import RESOURCES
from agents.apiserver.server import ApiServer
from agents.controllers import history
from agents.controllers.base import Create, Delete
from agents.controllers.statefulset import Plan, StatefulSetController, claim_owners, new_claims, new_pod, plan
from agents.machinery.objects import Object
from agents.machinery.resources import PERSISTENT_VOLUME_CLAIMS, PODS, STATEFULSETS
from tests.support.controllerharness import Harness, running

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REF = {"kind": "StatefulSet", "name": "db", "uid": "sts-uid", "controller": True}
SET_REF = {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "sts-uid"}


def stateful_set(
    replicas: int = 2, *, when_deleted: str = "Retain", when_scaled: str = "Retain", **spec: Any
) -> Object:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default", "uid": "sts-uid", "generation": 1},
        "spec": {
            "serviceName": "db",
            "replicas": replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "containers": [{"name": "main", "image": "busybox:1.36"}],
                    "volumes": [{"name": "data", "emptyDir": {}}, {"name": "scratch", "emptyDir": {}}],
                },
            },
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data", "labels": {"app": "other", "tier": "db"}},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                }
            ],
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": when_deleted, "whenScaled": when_scaled},
            **spec,
        },
    }


def revision(sts: Object) -> Object:
    meta = {"name": "db-r1", "namespace": "default", "uid": "uid-db-r1", "ownerReferences": [REF]}
    return {"metadata": meta, "data": history.revision_data(sts), "revision": 1}


def pod(ordinal: int, *, uid: str = "") -> Object:
    meta: dict[str, Any] = {
        "name": f"db-{ordinal}",
        "namespace": "default",
        "uid": uid or f"uid-db-{ordinal}",
        "labels": {"app": "db", history.HASH_LABEL: "db-r1"},
        "ownerReferences": [REF],
    }
    ready = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    return {"metadata": meta, "spec": {}, "status": {"phase": "Running", "conditions": [ready]}}


def claim(ordinal: int, *, owners: list[dict[str, Any]] | None = None, deleting: bool = False) -> Object:
    meta: dict[str, Any] = {"name": f"data-db-{ordinal}", "namespace": "default", "resourceVersion": "7"}
    if owners:
        meta["ownerReferences"] = owners
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {}}


def planned(sts: Object, pods: list[Object], claims: list[Object]) -> Plan:
    rev = revision(sts)
    return plan(sts, pods, revisions=[rev], update=rev, now=NOW, claims=claims)


def steps(decided: Plan) -> list[tuple[str, str, str]]:
    out = []
    for step in decided.steps:
        if isinstance(step, Create):
            out.append(("create", step.body["kind"], step.body["metadata"]["name"]))
        else:
            assert isinstance(step, Delete)
            out.append(("delete", step.target.get("kind", "Pod"), step.target["metadata"]["name"]))
    return out


def owners(decided: Plan) -> dict[str, list[dict[str, Any]]]:
    return {o.claim["metadata"]["name"]: o.references for o in decided.owners}


# --- the claims and the pods' volumes ------------------------------------------------------------


def test_each_ordinal_gets_its_claims_before_its_pod() -> None:
    decided = planned(stateful_set(2), [], [])
    assert steps(decided) == [
        ("create", "PersistentVolumeClaim", "data-db-0"),
        ("create", "Pod", "db-0"),
        ("create", "PersistentVolumeClaim", "data-db-1"),
        ("create", "Pod", "db-1"),
    ]
    first = decided.steps[0]
    assert isinstance(first, Create) and first.event is not None
    assert first.event.message == "create Claim data-db-0 Pod db-0 in StatefulSet db success"


def test_a_claim_is_named_after_template_set_and_ordinal_and_labelled_with_the_selector() -> None:
    [made] = new_claims(stateful_set(), 3)
    assert made["metadata"] == {"name": "data-db-3", "namespace": "default", "labels": {"app": "db", "tier": "db"}}
    assert made["spec"]["resources"] == {"requests": {"storage": "1Gi"}}
    assert made["kind"] == "PersistentVolumeClaim" and made["apiVersion"] == "v1"


def test_the_pod_mounts_its_claim_in_place_of_the_template_volume_of_that_name() -> None:
    sts = stateful_set()
    body = new_pod(sts, 1, revision(sts))
    assert body["spec"]["volumes"] == [
        {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-1"}},
        {"name": "scratch", "emptyDir": {}},
    ]


def test_existing_claims_are_reused_not_made_again() -> None:
    decided = planned(stateful_set(2), [pod(0)], [claim(0), claim(1)])
    assert steps(decided) == [("create", "Pod", "db-1")]


def test_a_claim_being_deleted_holds_its_pod_back_with_a_warning() -> None:
    decided = planned(stateful_set(1), [], [claim(0, deleting=True)])
    assert steps(decided) == []
    [event] = decided.events
    assert (event.type, event.reason) == ("Warning", "FailedCreate")
    assert event.message == "create Pod db-0 in StatefulSet db failed error: pvc data-db-0 is being deleted"


def test_scaling_down_keeps_the_claims_by_default() -> None:
    decided = planned(stateful_set(1), [pod(0), pod(1)], [claim(0), claim(1)])
    assert steps(decided) == [("delete", "Pod", "db-1")]
    assert decided.owners == []


# --- persistentVolumeClaimRetentionPolicy ----------------------------------------------------------


def test_when_deleted_delete_makes_the_claims_the_set_s() -> None:
    sts = stateful_set(1, when_deleted="Delete")
    [made] = new_claims(sts, 0)
    assert made["metadata"]["ownerReferences"] == [SET_REF]
    # a claim made under Retain is given the reference once the policy says Delete
    assert owners(planned(sts, [pod(0)], [claim(0)])) == {"data-db-0": [SET_REF]}


def test_when_scaled_delete_gives_a_scaled_away_claim_to_its_pod_before_the_pod_goes() -> None:
    sts = stateful_set(1, when_scaled="Delete")
    decided = planned(sts, [pod(0), pod(1)], [claim(0), claim(1)])
    pod_ref = {"apiVersion": "v1", "kind": "Pod", "name": "db-1", "uid": "uid-db-1"}
    assert owners(decided) == {"data-db-1": [pod_ref]}
    assert steps(decided) == [("delete", "Pod", "db-1")]  # the executor writes owners first


def test_delete_delete_moves_a_scaled_away_claim_from_the_set_to_the_pod() -> None:
    sts = stateful_set(1, when_deleted="Delete", when_scaled="Delete")
    decided = planned(sts, [pod(0), pod(1)], [claim(0, owners=[SET_REF]), claim(1, owners=[SET_REF])])
    assert owners(decided) == {"data-db-1": [{"apiVersion": "v1", "kind": "Pod", "name": "db-1", "uid": "uid-db-1"}]}


def test_retain_takes_the_policy_s_references_away_again() -> None:
    pod_ref = {"apiVersion": "v1", "kind": "Pod", "name": "db-0", "uid": "uid-db-0"}
    other = {"apiVersion": "v1", "kind": "ConfigMap", "name": "keep", "uid": "cm-uid"}
    decided = planned(stateful_set(1), [pod(0)], [claim(0, owners=[SET_REF, pod_ref, other])])
    assert owners(decided) == {"data-db-0": [other]}


def test_a_claim_another_object_controls_is_left_alone() -> None:
    controller = {"apiVersion": "v1", "kind": "Thing", "name": "x", "uid": "x-uid", "controller": True}
    sts = stateful_set(1, when_deleted="Delete")
    assert claim_owners(claim(0, owners=[controller]), sts, pod(0), scaled_away=False) is None


def test_a_claim_still_owned_by_an_earlier_pod_holds_the_new_pod_back() -> None:
    earlier = {"apiVersion": "v1", "kind": "Pod", "name": "db-1", "uid": "uid-earlier"}
    sts = stateful_set(2, when_scaled="Delete")
    decided = planned(sts, [pod(0)], [claim(0), claim(1, owners=[earlier])])
    assert steps(decided) == []
    # with Retain the claim is simply reused
    assert steps(planned(stateful_set(2), [pod(0)], [claim(0), claim(1, owners=[earlier])])) == [
        ("create", "Pod", "db-1")
    ]


# --- the controller against an API server -----------------------------------------------------------


async def claims_of(h: Harness) -> dict[str, Object]:
    return {c["metadata"]["name"]: c for c in await h.items(PERSISTENT_VOLUME_CLAIMS)}


async def test_statefulset_makes_claims_before_pods_and_keeps_them_on_scale_down(server: ApiServer) -> None:
    body = stateful_set(2)
    body["metadata"] = {"name": "db"}
    async with running(server, StatefulSetController) as h, h.history(PERSISTENT_VOLUME_CLAIMS) as made, h.kubelet():
        async with h.history(PODS) as pods:
            await h.create(STATEFULSETS, body)

            async def two_pods() -> bool:
                return sum(1 for change, _ in pods if change == "ADDED") == 2

            await h.eventually(two_pods, what="two pods")
        assert sorted(obj["metadata"]["name"] for change, obj in made if change == "ADDED") == [
            "data-db-0",
            "data-db-1",
        ]
        claims = await claims_of(h)
        assert claims["data-db-0"]["metadata"]["labels"] == {"app": "db", "tier": "db"}
        db0 = await h.get(PODS, "db-0")
        assert db0 is not None
        assert {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}} in db0["spec"]["volumes"]
        await h.client.patch(STATEFULSETS, "db", {"spec": {"replicas": 1}}, "default")

        async def one_pod() -> bool:
            return [
                p["metadata"]["name"] for p in await h.items(PODS) if not p["metadata"].get("deletionTimestamp")
            ] == ["db-0"]

        await h.eventually(one_pod, what="db-0 alone")
        assert sorted(await claims_of(h)) == ["data-db-0", "data-db-1"]


async def test_statefulset_with_when_scaled_delete_hands_the_claim_to_its_pod(server: ApiServer) -> None:
    body = stateful_set(2, when_scaled="Delete")
    body["metadata"] = {"name": "db"}
    async with running(server, StatefulSetController) as h, h.kubelet():
        await h.create(STATEFULSETS, body)

        async def pod_uid() -> str:
            found = await h.get(PODS, "db-1")
            return str(found["metadata"]["uid"]) if found else ""

        uid = await h.eventually(pod_uid, what="db-1")
        await h.client.patch(STATEFULSETS, "db", {"spec": {"replicas": 1}}, "default")

        async def owned_by_pod() -> list[dict[str, Any]]:
            found = (await claims_of(h)).get("data-db-1")
            refs = (found or {}).get("metadata", {}).get("ownerReferences") or []
            return [r for r in refs if r.get("kind") == "Pod"]

        [ref] = await h.eventually(owned_by_pod, what="data-db-1 owned by db-1")
        assert (ref["name"], ref["uid"]) == ("db-1", uid)


def test_containers_may_mount_a_claim_template_by_its_name_and_nothing_else() -> None:

    def stateful_set(mount: str) -> Object:
        return {
            "metadata": {"name": "db", "namespace": "ns"},
            "spec": {
                "selector": {"matchLabels": {"app": "db"}},
                "serviceName": "db",
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {
                        "containers": [
                            {"name": "c", "image": "busybox", "volumeMounts": [{"name": mount, "mountPath": "/data"}]}
                        ]
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                    }
                ],
            },
        }

    strategy = strategy_for(next(r for r in RESOURCES if r.qualified == "statefulsets.apps"))
    assert strategy.validate(stateful_set("data")) == []
    (error,) = strategy.validate(stateful_set("other"))
    assert "volumeMounts[0].name" in str(error) and "other" in str(error)
