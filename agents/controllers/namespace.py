"""Namespace controller: empties a namespace that is being deleted, then lets it go.

A deleted namespace turns Terminating and keeps its ``kubernetes`` finalizer until every object in it
is gone: the controller deletes them all (pods gracefully, so their node agents stop them), reports
what remains in the namespace's conditions, and finally removes the finalizer through the
``finalize`` subresource, which lets the API server delete the namespace.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from agents.controllers.base import Context, Controller, gather_limited
from agents.machinery.objects import deep_copy, now
from agents.machinery.resources import ALL, NAMESPACES

NAMESPACED = [r for r in ALL if r.namespaced]


def content_condition(remaining: dict[str, int]) -> dict[str, Any]:
    if remaining:
        listed = ", ".join(f"{kind} has {count} resource instances" for kind, count in sorted(remaining.items()))
        return {
            "type": "NamespaceContentRemaining",
            "status": "True",
            "reason": "SomeResourcesRemain",
            "message": f"Some resources are remaining: {listed}",
            "lastTransitionTime": now(),
        }
    return {
        "type": "NamespaceContentRemaining",
        "status": "False",
        "reason": "ContentRemoved",
        "message": "All content successfully removed",
        "lastTransitionTime": now(),
    }


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
        remaining: dict[str, int] = {}
        for resource in NAMESPACED:
            items, _ = await self.client.list(resource, key)
            if not items:
                continue
            remaining[f"{resource.plural}.{resource.group}" if resource.group else resource.plural] = len(items)
            await gather_limited(
                [
                    partial(self.client.delete, resource, item["metadata"]["name"], key, propagation="Background")
                    for item in items
                    if not item["metadata"].get("deletionTimestamp")
                ]
            )
        if remaining:
            conditions = [
                c
                for c in (namespace.get("status") or {}).get("conditions") or []
                if c.get("type") != "NamespaceContentRemaining"
            ]
            conditions.append(content_condition(remaining))
            body = deep_copy(namespace)
            body.setdefault("status", {})["conditions"] = conditions
            if body["status"] != namespace.get("status"):
                await self.client.update_status(NAMESPACES, body)
            self.queue.add_after(key, 1.0)
            return
        body = deep_copy(namespace)
        body["spec"] = {
            "finalizers": [f for f in (namespace.get("spec") or {}).get("finalizers") or [] if f != "kubernetes"]
        }
        await self.client.request("PUT", NAMESPACES.path("", key, "finalize"), body=body)
