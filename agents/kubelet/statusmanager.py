"""Pod status to the API server, written only when it changes: kube's status manager.

The status is computed from what the kubelet knows of the pod (:func:`podstate.pod_status`, pure)
and compared with the status the pod object carries: an equal status costs no request. A write that
meets a newer version of the pod (409) is not retried here; the caller syncs the pod again when the
informer brings that version, and the status is computed afresh from it. A pod already gone from
the API has no status to write.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from agents.kubelet import podstate
from agents.kubelet.podcache import PodRecord
from agents.machinery.client import ApiError, Client
from agents.machinery.objects import Object
from agents.machinery.resources import PODS

log = logging.getLogger(__name__)

Outcome = Literal["unchanged", "written", "conflict", "gone"]


def status_update(pod: Object, status: dict[str, Any]) -> Object | None:
    """The pod to write with ``status``, or None when the pod already says it."""
    if status == pod.get("status"):
        return None
    return dict(pod, status=status)


class StatusManager:
    def __init__(self, client: Client, *, host_ip: str) -> None:
        self.client = client
        self.host_ip = host_ip

    def status(self, pod: Object, record: PodRecord, *, now: float) -> dict[str, Any]:
        return podstate.pod_status(pod, record.observed(), host_ip=self.host_ip, started_at=record.started_at, now=now)

    async def update(self, pod: Object, record: PodRecord) -> Outcome:
        """Write the pod's status if it changed; ``conflict``: the pod has a newer version to sync from."""
        changed = status_update(pod, self.status(pod, record, now=time.time()))
        if changed is None:
            return "unchanged"
        try:
            await self.client.update_status(PODS, changed)
        except ApiError as exc:
            if exc.conflict:
                return "conflict"
            if exc.not_found:
                return "gone"
            raise
        return "written"
