"""ControllerRevisions: the template history of StatefulSets and DaemonSets.

Each revision stores the pod template as a patch (``{"spec": {"template": {..., "$patch":
"replace"}}}``), which is what ``kubectl rollout undo`` applies, and is named after a hash of it.
Going back to an old template makes its revision the newest again, as with Deployments.
``revision_step`` and ``beyond_limit`` decide (pure); ``ensure`` and ``trim`` carry that out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agents.controllers import claim
from agents.controllers.base import delete_object
from agents.controllers.deployment import template_hash
from agents.controllers.podutil import controller_ref
from agents.machinery.client import ApiError, Client
from agents.machinery.objects import Object, deep_copy
from agents.machinery.resources import CONTROLLER_REVISIONS

HASH_LABEL = "controller-revision-hash"


def revision_data(owner: Object) -> dict[str, Any]:
    template = deep_copy((owner.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def owned(owner: Object, revisions: Iterable[Object]) -> list[Object]:
    """The owner's revisions, oldest (lowest ``revision``) first."""
    return sorted(claim.controlled(owner, revisions), key=lambda r: int(r.get("revision", 0)))


@dataclass(frozen=True)
class RevisionStep:
    """How the owner's current template gets its revision: it has one already (``found``), an older
    one must become the newest (``promote`` to ``revision``), or one must be created (``create``)."""

    found: Object | None = None
    promote: Object | None = None
    revision: int = 0
    create: Object | None = None


def revision_step(owner: Object, revisions: Iterable[Object]) -> RevisionStep:
    data = revision_data(owner)
    mine = owned(owner, revisions)
    highest = max((int(r.get("revision", 0)) for r in mine), default=0)
    match = next((r for r in mine if r.get("data") == data), None)
    if match is not None:
        if int(match.get("revision", 0)) < highest:
            return RevisionStep(promote=match, revision=highest + 1)
        return RevisionStep(found=match)
    digest = template_hash(data)
    labels = dict(((owner.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {})
    labels[HASH_LABEL] = digest
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": f"{owner['metadata']['name']}-{digest}",
            "namespace": owner["metadata"]["namespace"],
            "labels": labels,
            "ownerReferences": [controller_ref(owner)],
        },
        "data": data,
        "revision": highest + 1,
    }
    return RevisionStep(create=body)


async def ensure(client: Client, step: RevisionStep) -> Object:
    """The revision of the owner's current template, once ``step`` is made."""
    if step.promote is not None:
        meta = step.promote["metadata"]
        return await client.patch(CONTROLLER_REVISIONS, meta["name"], {"revision": step.revision}, meta["namespace"])
    if step.create is not None:
        meta = step.create["metadata"]
        try:
            return await client.create(CONTROLLER_REVISIONS, step.create)
        except ApiError as exc:
            if not exc.already_exists:
                raise
            return await client.get(CONTROLLER_REVISIONS, meta["name"], meta["namespace"])
    assert step.found is not None
    return step.found


def beyond_limit(owner: Object, revisions: Iterable[Object], keep: set[str]) -> list[Object]:
    """The oldest revisions beyond ``revisionHistoryLimit``, except those named in ``keep``."""
    limit = int((owner.get("spec") or {}).get("revisionHistoryLimit", 10))
    candidates = [r for r in owned(owner, revisions) if r["metadata"]["name"] not in keep]
    return candidates[: max(len(candidates) - limit, 0)]


async def trim(client: Client, revisions: list[Object]) -> None:
    """Delete ``revisions`` one after the other; one already gone is no error."""
    for revision in revisions:
        await delete_object(client, CONTROLLER_REVISIONS, revision)
