"""Which children an owner controls: adoption of orphans and release of children, decided in one place.

A child (a pod, a ReplicaSet, a ControllerRevision) belongs to the owner its controller reference
names. ``controlled`` is that plain reading. Controllers that adopt go further, as kube's
ControllerRefManager does: an orphan the owner's selector matches is adopted (a controller reference
added, the patch guarded by the orphan's resourceVersion, so two owners racing for it cannot both
win), and a child that stops matching is released (the reference removed). An owner being deleted
adopts nothing. ``decide`` is pure; ``execute`` makes the patches and returns the children the
owner controls afterwards, in the order they were seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from agents.controllers.base import ignore_not_found, owner_uid
from agents.controllers.podutil import controller_ref
from agents.machinery.client import ApiError, Client
from agents.machinery.objects import Object
from agents.machinery.resources import ResourceRef
from agents.machinery.selectors import LabelSelector


def controlled(owner: Object, children: Iterable[Object]) -> list[Object]:
    """The children whose controller reference names ``owner`` (by uid)."""
    uid = owner["metadata"]["uid"]
    return [child for child in children if owner_uid(child) == uid]


def _anything(_child: Object) -> bool:
    return True


@dataclass(frozen=True)
class Claim:
    """What ``decide`` found: the children the owner controls once the adoptions are made (the
    orphans to adopt among them), and the children to let go."""

    controlled: list[Object] = field(default_factory=list)
    adopt: list[Object] = field(default_factory=list)
    release: list[Object] = field(default_factory=list)


def decide(
    owner: Object,
    children: Iterable[Object],
    *,
    selector: LabelSelector,
    release: bool = True,
    adoptable: Callable[[Object], bool] = _anything,
) -> Claim:
    """Sort ``children`` for ``owner``: kept, to adopt, to release.

    A child the owner controls stays while the selector matches it or it is being deleted; otherwise
    it is released (with ``release=False`` it stays whatever its labels say). An orphan is adopted
    when the selector matches it, ``adoptable`` accepts it and the owner is not being deleted.
    Children of other owners are not looked at.
    """
    uid = owner["metadata"]["uid"]
    owner_going = bool(owner["metadata"].get("deletionTimestamp"))
    kept: list[Object] = []
    adopt: list[Object] = []
    let_go: list[Object] = []
    for child in children:
        meta = child["metadata"]
        matches = selector.matches(meta.get("labels") or {})
        controller = owner_uid(child)
        if controller == uid:
            if matches or not release or meta.get("deletionTimestamp"):
                kept.append(child)
            else:
                let_go.append(child)
        elif not controller and matches and adoptable(child) and not owner_going:
            kept.append(child)
            adopt.append(child)
    return Claim(controlled=kept, adopt=adopt, release=let_go)


async def execute(client: Client, resource: ResourceRef, owner: Object, claim: Claim) -> list[Object]:
    """Release and adopt as ``claim`` says; the children ``owner`` controls afterwards.

    A release drops the owner's reference (a child already gone is no error). An adoption that
    loses a race (the orphan changed or went meanwhile: 409 or 404) leaves that child out; the
    owner's next sync sees it afresh.
    """
    uid = owner["metadata"]["uid"]
    for child in claim.release:
        meta = child["metadata"]
        refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != uid]
        await ignore_not_found(
            partial(
                client.patch, resource, meta["name"], {"metadata": {"ownerReferences": refs or None}}, meta["namespace"]
            )
        )
    adopted: dict[str, Object | None] = {}
    for child in claim.adopt:
        meta = child["metadata"]
        refs = [*(meta.get("ownerReferences") or []), controller_ref(owner)]
        patch = {"metadata": {"ownerReferences": refs, "resourceVersion": meta["resourceVersion"]}}
        try:
            adopted[meta["uid"]] = await client.patch(resource, meta["name"], patch, meta["namespace"])
        except ApiError as exc:
            if not (exc.conflict or exc.not_found):
                raise
            adopted[meta["uid"]] = None
    out: list[Object] = []
    for child in claim.controlled:
        child_uid = child["metadata"]["uid"]
        if child_uid not in adopted:
            out.append(child)
        elif (taken := adopted[child_uid]) is not None:
            out.append(taken)
    return out
