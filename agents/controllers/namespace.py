"""Namespace controller: empties a namespace that is being deleted, then lets it go.

A deleted namespace turns Terminating and keeps its ``kubernetes`` finalizer until every object in it
is gone: the controller deletes them all (pods gracefully, so their node agents stop them), reports
what remains in the namespace's conditions, and finally removes the finalizer through the
``finalize`` subresource, which lets the API server delete the namespace. ``sync`` lists what the
namespace holds (straight from the API server: nothing may be missed); ``plan`` (pure) decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from agents.controllers.base import Context, Controller, gather_limited, rfc3339
from agents.machinery.objects import Object, deep_copy
from agents.machinery.resources import ALL, NAMESPACES, ResourceRef

NAMESPACED = [r for r in ALL if r.namespaced]
RECHECK = 1.0  # seconds between looks at a namespace that is not empty yet


def content_condition(remaining: dict[str, int], *, now: datetime) -> dict[str, Any]:
    if remaining:
        listed = ", ".join(f"{kind} has {count} resource instances" for kind, count in sorted(remaining.items()))
        return {
            "type": "NamespaceContentRemaining",
            "status": "True",
            "reason": "SomeResourcesRemain",
            "message": f"Some resources are remaining: {listed}",
            "lastTransitionTime": rfc3339(now),
        }
    return {
        "type": "NamespaceContentRemaining",
        "status": "False",
        "reason": "ContentRemoved",
        "message": "All content successfully removed",
        "lastTransitionTime": rfc3339(now),
    }


@dataclass
class Plan:
    delete: list[tuple[ResourceRef, Object]] = field(default_factory=list)  # in the background
    status: dict[str, Any] | None = None  # says what remains
    finalize: Object | None = None  # the namespace without its ``kubernetes`` finalizer
    requeue_after: float | None = None


def plan(namespace: Object, contents: dict[ResourceRef, list[Object]], *, now: datetime) -> Plan:
    """What to do for a namespace being deleted, given every object still in it, by resource."""
    remaining: dict[str, int] = {}
    result = Plan()
    for resource, items in contents.items():
        if not items:
            continue
        remaining[f"{resource.plural}.{resource.group}" if resource.group else resource.plural] = len(items)
        result.delete += [(resource, item) for item in items if not item["metadata"].get("deletionTimestamp")]
    if remaining:
        conditions = [
            c
            for c in (namespace.get("status") or {}).get("conditions") or []
            if c.get("type") != "NamespaceContentRemaining"
        ]
        conditions.append(content_condition(remaining, now=now))
        result.status = {**(namespace.get("status") or {}), "conditions": conditions}
        result.requeue_after = RECHECK
        return result
    body = deep_copy(namespace)
    body["spec"] = {
        "finalizers": [f for f in (namespace.get("spec") or {}).get("finalizers") or [] if f != "kubernetes"]
    }
    result.finalize = body
    return result


class NamespaceController(Controller):
    name = "namespace"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.namespaces = ctx.informer(NAMESPACES)
        self.namespaces.on_any(self.enqueue)

    async def sync(self, key: str) -> None:
        namespace = self.namespaces.get(key)
        if namespace is None or not namespace["metadata"].get("deletionTimestamp"):
            return
        contents = {resource: (await self.client.list(resource, key))[0] for resource in NAMESPACED}
        decided = plan(namespace, contents, now=self.now())
        await gather_limited(
            [
                partial(self.client.delete, resource, item["metadata"]["name"], key, propagation="Background")
                for resource, item in decided.delete
            ]
        )
        if decided.status is not None and decided.status != namespace.get("status"):
            body = deep_copy(namespace)
            body["status"] = decided.status
            await self.client.update_status(NAMESPACES, body)
        if decided.finalize is not None:
            await self.client.request("PUT", NAMESPACES.path("", key, "finalize"), body=decided.finalize)
        if decided.requeue_after is not None:
            self.queue.add_after(key, decided.requeue_after)
