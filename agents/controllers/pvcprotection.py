"""The ``pvc-protection`` controller: a claim in use is not deleted until no pod uses it any more.

The API server gives every new claim the ``kubernetes.io/pvc-protection`` finalizer; a deleted claim
therefore lingers (Terminating) until this controller removes the finalizer, which it does once no
scheduled pod that is still running or about to run uses the claim. It also adds the finalizer to a
live claim that lacks it, as kube's controller does for claims older than the admission plugin.
``plan`` is pure; the executor asks the API server for the namespace's pods once more before it lets
a claim go, so a pod the cache has not seen yet cannot lose its volume.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial
from typing import Literal

from agents.controllers import volumeutil as vu
from agents.controllers.base import Context, Controller, ignore_not_found
from agents.machinery.objects import Object, deep_copy
from agents.machinery.resources import PERSISTENT_VOLUME_CLAIMS, PODS

log = logging.getLogger(__name__)

Action = Literal["add-finalizer", "remove-finalizer"] | None


def uses(pod: Object, claim: Object) -> bool:
    """The pod needs the claim: it is scheduled, not finished (Succeeded/Failed) nor shut down
    (deleted with a grace of 0), and one of its volumes is the claim."""
    if not (pod.get("spec") or {}).get("nodeName") or vu.is_shut_down(pod):
        return False
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return False
    return claim["metadata"]["name"] in vu.claim_names(pod)


def plan(claim: Object, pods: Iterable[Object]) -> Action:
    """What to do with the claim's finalizer given the pods of its namespace."""
    meta = claim["metadata"]
    protected = vu.has_finalizer(claim, vu.PVC_PROTECTION)
    if meta.get("deletionTimestamp"):
        if protected and not any(uses(p, claim) for p in pods):
            return "remove-finalizer"
        return None
    return None if protected else "add-finalizer"


def with_finalizer(obj: Object, finalizer: str, *, present: bool) -> Object:
    """A copy of ``obj`` with ``finalizer`` added or removed."""
    body = deep_copy(obj)
    finalizers = [f for f in body["metadata"].get("finalizers") or [] if f != finalizer]
    if present:
        finalizers.append(finalizer)
    body["metadata"]["finalizers"] = finalizers
    return body


class PvcProtectionController(Controller):
    name = "pvc-protection"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.claims = ctx.informer(PERSISTENT_VOLUME_CLAIMS)
        self.pods = ctx.informer(PODS)
        self.pods.add_index("claims", vu.claim_keys)
        self.claims.on(add=self.enqueue, update=lambda _o, n: self.enqueue(n))
        self.pods.on(add=self._pod_changed, update=lambda _o, n: self._pod_changed(n), delete=self._pod_changed)

    def _pod_changed(self, pod: Object) -> None:
        for key in vu.claim_keys(pod):
            claim = self.claims.get(key)
            if claim is not None and claim["metadata"].get("deletionTimestamp"):
                self.queue.add(key)

    async def sync(self, key: str) -> None:
        claim = self.claims.get(key)
        if claim is None:
            return
        action = plan(claim, self.pods.by_index("claims", key))
        if action == "remove-finalizer":
            live, _ = await self.client.list(PODS, claim["metadata"]["namespace"])
            if plan(claim, live) != "remove-finalizer":
                return  # a pod the cache has not seen yet uses it; its event brings the claim back
            body = with_finalizer(claim, vu.PVC_PROTECTION, present=False)
            await ignore_not_found(partial(self.client.update, PERSISTENT_VOLUME_CLAIMS, body))
            log.info("claim %s is used by no pod: its %s finalizer removed", key, vu.PVC_PROTECTION)
        elif action == "add-finalizer":
            body = with_finalizer(claim, vu.PVC_PROTECTION, present=True)
            await ignore_not_found(partial(self.client.update, PERSISTENT_VOLUME_CLAIMS, body))
