"""ReplicationController controller: the ReplicaSet controller's loop, run over core/v1 ReplicationControllers.

A ReplicationController is the older form of a ReplicaSet: the same replicas, minReadySeconds,
template and status fields, but a selector that is a plain label map (every pair must match) rather
than a LabelSelector. Kube runs its ReplicaSet controller for them through an adapter; so does this
module. ``plan`` and ``replica_status`` (agents/controllers/replicaset.py) read the object as it is;
only the selector is read differently (``label_map_selector``), and the resource differs, so the
pods it creates and adopts name ``v1/ReplicationController`` as their controller and its events and
status go to the ReplicationController.
"""

from __future__ import annotations

from typing import Any

from agents.controllers.replicaset import ReplicaSetController
from agents.machinery.objects import Object
from agents.machinery.resources import REPLICATION_CONTROLLERS
from agents.machinery.selectors import LabelSelector, from_structured


def label_map_selector(selector: dict[str, Any] | None) -> LabelSelector:
    """A ReplicationController's ``spec.selector`` (a label map) as the LabelSelector it stands for,
    as kube's adapter reads it (``matchLabels``). The API server never stores an empty one: it
    defaults to the template's labels, and a ReplicationController left without any is invalid."""
    return from_structured({"matchLabels": selector or {}})


class ReplicationControllerController(ReplicaSetController):
    name = "replicationcontroller"
    resource = REPLICATION_CONTROLLERS

    @staticmethod
    def selector_of(owner: Object) -> LabelSelector:
        return label_map_selector((owner.get("spec") or {}).get("selector"))
