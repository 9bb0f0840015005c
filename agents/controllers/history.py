"""ControllerRevisions: the template history of StatefulSets and DaemonSets.

Each revision stores the pod template as a patch (``{"spec": {"template": {..., "$patch":
"replace"}}}``), which is what ``kubectl rollout undo`` applies, and is named after a hash of it.
Going back to an old template makes its revision the newest again, as with Deployments.
"""

from __future__ import annotations

from typing import Any

from agents.controllers.base import owner_uid
from agents.controllers.deployment import template_hash
from agents.controllers.podutil import controller_ref
from agents.machinery.client import ApiError, Client
from agents.machinery.informer import Informer
from agents.machinery.objects import Object, deep_copy
from agents.machinery.resources import CONTROLLER_REVISIONS

HASH_LABEL = "controller-revision-hash"


def revision_data(owner: Object) -> dict[str, Any]:
    template = deep_copy((owner.get("spec") or {}).get("template") or {})
    template["$patch"] = "replace"
    return {"spec": {"template": template}}


def owned_revisions(informer: Informer, owner: Object) -> list[Object]:
    uid = owner["metadata"]["uid"]
    return sorted(
        (r for r in informer.by_index("namespace", owner["metadata"]["namespace"]) if owner_uid(r) == uid),
        key=lambda r: int(r.get("revision", 0)),
    )


async def ensure_revision(client: Client, informer: Informer, owner: Object) -> Object:
    """The revision of the owner's current template, created or promoted as needed."""
    data = revision_data(owner)
    revisions = owned_revisions(informer, owner)
    highest = max((int(r.get("revision", 0)) for r in revisions), default=0)
    match = next((r for r in revisions if r.get("data") == data), None)
    if match is not None:
        if int(match.get("revision", 0)) < highest:
            return await client.patch(
                CONTROLLER_REVISIONS,
                match["metadata"]["name"],
                {"revision": highest + 1},
                match["metadata"]["namespace"],
            )
        return match
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
    try:
        return await client.create(CONTROLLER_REVISIONS, body)
    except ApiError as exc:
        if not exc.already_exists:
            raise
        return await client.get(CONTROLLER_REVISIONS, body["metadata"]["name"], owner["metadata"]["namespace"])


async def trim(client: Client, informer: Informer, owner: Object, keep: set[str]) -> None:
    """Delete the oldest revisions beyond revisionHistoryLimit, except those named in ``keep``."""
    limit = int((owner.get("spec") or {}).get("revisionHistoryLimit", 10))
    revisions = [r for r in owned_revisions(informer, owner) if r["metadata"]["name"] not in keep]
    for revision in revisions[: max(len(revisions) - limit, 0)]:
        try:
            await client.delete(CONTROLLER_REVISIONS, revision["metadata"]["name"], revision["metadata"]["namespace"])
        except ApiError as exc:
            if not exc.not_found:
                raise
