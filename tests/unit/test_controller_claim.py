"""Adoption and release (agents/controllers/claim.py): which children an owner keeps, adopts, lets go."""

from __future__ import annotations

from typing import Any

from agents.controllers import claim
from agents.controllers.podutil import is_active
from agents.machinery.objects import Object
from agents.machinery.selectors import from_structured

SELECTOR = from_structured({"matchLabels": {"app": "web"}})


def owner(*, deleting: bool = False) -> Object:
    meta: dict[str, Any] = {"name": "web", "namespace": "default", "uid": "owner-uid"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta}


def child(name: str, *, app: str = "web", controller: str = "", deleting: bool = False, phase: str = "") -> Object:
    meta: dict[str, Any] = {"name": name, "namespace": "default", "uid": f"uid-{name}", "labels": {"app": app}}
    if controller:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": "x", "uid": controller, "controller": True}]
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase} if phase else {}}


def names(objs: list[Object]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def test_controlled_children_are_those_whose_controller_reference_names_the_owner() -> None:
    children = [child("mine", controller="owner-uid"), child("theirs", controller="other"), child("orphan")]
    assert names(claim.controlled(owner(), children)) == ["mine"]


def test_a_matching_orphan_is_adopted_and_kept_in_the_order_seen() -> None:
    children = [child("a", controller="owner-uid"), child("orphan"), child("b", controller="owner-uid")]
    decided = claim.decide(owner(), children, selector=SELECTOR)
    assert names(decided.controlled) == ["a", "orphan", "b"]
    assert names(decided.adopt) == ["orphan"]
    assert decided.release == []


def test_orphans_that_do_not_match_and_children_of_other_owners_are_left_alone() -> None:
    children = [child("other-app", app="db"), child("theirs", controller="other")]
    assert claim.decide(owner(), children, selector=SELECTOR) == claim.Claim()


def test_a_controlled_child_that_stops_matching_is_released_unless_it_is_being_deleted() -> None:
    children = [
        child("moved", app="db", controller="owner-uid"),
        child("going", app="db", controller="owner-uid", deleting=True),
    ]
    decided = claim.decide(owner(), children, selector=SELECTOR)
    assert names(decided.release) == ["moved"]
    assert names(decided.controlled) == ["going"]


def test_without_release_an_owner_keeps_every_child_it_controls() -> None:
    decided = claim.decide(
        owner(), [child("moved", app="db", controller="owner-uid")], selector=SELECTOR, release=False
    )
    assert names(decided.controlled) == ["moved"]
    assert decided.release == []


def test_an_owner_being_deleted_adopts_nothing() -> None:
    decided = claim.decide(owner(deleting=True), [child("orphan")], selector=SELECTOR)
    assert decided.adopt == [] and decided.controlled == []


def test_adoptable_filters_the_orphans_an_owner_may_take() -> None:
    finished, running = child("finished", phase="Succeeded"), child("running", phase="Running")
    decided = claim.decide(owner(), [finished, running], selector=SELECTOR, adoptable=is_active)
    assert names(decided.adopt) == ["running"]
