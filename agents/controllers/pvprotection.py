"""The ``pv-protection`` controller: a PersistentVolume bound to a claim is not deleted while it is.

The API server gives every new PersistentVolume the ``kubernetes.io/pv-protection`` finalizer; this
controller removes it from a deleted volume once the volume is no longer Bound (its claim was
released), and adds it to a live volume that lacks it, as kube's controller does. ``plan`` is pure.
"""

from __future__ import annotations

import logging
from functools import partial

from agents.controllers import volumeutil as vu
from agents.controllers.base import Context, Controller, ignore_not_found
from agents.controllers.pvcprotection import Action, with_finalizer
from agents.machinery.objects import Object
from agents.machinery.resources import PERSISTENT_VOLUMES

log = logging.getLogger(__name__)


def plan(volume: Object) -> Action:
    """What to do with the volume's finalizer: kept while the volume is Bound."""
    protected = vu.has_finalizer(volume, vu.PV_PROTECTION)
    if volume["metadata"].get("deletionTimestamp"):
        bound = (volume.get("status") or {}).get("phase") == "Bound"
        return "remove-finalizer" if protected and not bound else None
    return None if protected else "add-finalizer"


class PvProtectionController(Controller):
    name = "pv-protection"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.volumes = ctx.informer(PERSISTENT_VOLUMES)
        self.volumes.on(add=self.enqueue, update=lambda _o, n: self.enqueue(n))

    async def sync(self, key: str) -> None:
        volume = self.volumes.get(key)
        if volume is None:
            return
        action = plan(volume)
        if action is None:
            return
        body = with_finalizer(volume, vu.PV_PROTECTION, present=action == "add-finalizer")
        await ignore_not_found(partial(self.client.update, PERSISTENT_VOLUMES, body))
        if action == "remove-finalizer":
            log.info("volume %s is not bound: its %s finalizer removed", key, vu.PV_PROTECTION)
