"""Pod facts the workload controllers share: active, ready, available; which to delete first; making
pods from templates; and expectations, which keep a controller from acting twice on the same gap
while its informer has not yet seen the pods it just created or deleted."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from agents.machinery.objects import Object, deep_copy, parse_time

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"

EXPECTATIONS_TIMEOUT = 300.0


def is_terminal(pod: Object) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_active(pod: Object) -> bool:
    return not is_terminal(pod) and not (pod.get("metadata") or {}).get("deletionTimestamp")


def ready_since(pod: Object, now: datetime | None = None) -> datetime | None:
    """When the pod became ready (``now``, or the clock when not given, if its condition has no
    time), or None when it is not ready. Plans pass ``now``; the clock fallback serves callers
    outside a plan."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            if condition.get("status") != "True":
                return None
            stamp = condition.get("lastTransitionTime")
            return parse_time(stamp) if stamp else (now or datetime.now(UTC))
    return None


def is_ready(pod: Object) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def is_available(pod: Object, min_ready_seconds: int, now: datetime | None = None) -> bool:
    since = ready_since(pod, now)
    if since is None:
        return False
    return min_ready_seconds <= 0 or ((now or datetime.now(UTC)) - since).total_seconds() > min_ready_seconds


def seconds_until_available(pod: Object, min_ready_seconds: int, now: datetime | None = None) -> float | None:
    since = ready_since(pod, now)
    if since is None or min_ready_seconds <= 0:
        return None
    left = min_ready_seconds - ((now or datetime.now(UTC)) - since).total_seconds()
    return left if left > 0 else None


def _descending(text: str) -> str:
    """A key that sorts strings (RFC 3339 times) in reverse order."""
    return "".join(chr(0x10FFFF - ord(ch)) for ch in text)


def deletion_rank(
    pod: Object, colocated: Mapping[str, int] | None = None, *, now: datetime | None = None
) -> tuple[Any, ...]:
    """Sorts the pods to delete first to the front, in kube's order (ActivePodsWithRanks):
    unassigned before assigned; pending, unknown, then running; not ready before ready; lower
    ``controller.kubernetes.io/pod-deletion-cost`` first; pods on nodes that hold more of the set
    first (``colocated``: node name -> pods of the set there); ready more recently first; more
    restarts first; newer first."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    phase_order = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", "Pending"), 0)
    restarts = sum(c.get("restartCount", 0) for c in status.get("containerStatuses") or [])
    try:
        cost = int((meta.get("annotations") or {}).get(DELETION_COST, 0))
    except ValueError:
        cost = 0
    node = spec.get("nodeName") or ""
    since = ready_since(pod, now)
    return (
        1 if node else 0,
        phase_order,
        1 if since is not None else 0,
        cost,
        -(colocated or {}).get(node, 0) if node else 0,
        _descending(since.isoformat()) if since is not None else "",
        -restarts,
        _descending(meta.get("creationTimestamp") or ""),
    )


def controller_ref(owner: Object, *, block: bool = True) -> dict[str, Any]:
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": block,
    }


def pod_from_template(
    template: Object,
    owner: Object,
    *,
    name: str = "",
    generate_name: str = "",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> Object:
    tmeta = template.get("metadata") or {}
    meta: dict[str, Any] = {"namespace": owner["metadata"]["namespace"], "ownerReferences": [controller_ref(owner)]}
    if name:
        meta["name"] = name
    else:
        meta["generateName"] = generate_name or owner["metadata"]["name"] + "-"
    pod_labels = {**(tmeta.get("labels") or {}), **(labels or {})}
    if pod_labels:
        meta["labels"] = pod_labels
    pod_annotations = {**(tmeta.get("annotations") or {}), **(annotations or {})}
    if pod_annotations:
        meta["annotations"] = pod_annotations
    if tmeta.get("finalizers"):
        meta["finalizers"] = list(tmeta["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": deep_copy(template.get("spec") or {})}


class Expectations:
    """Creates and deletes a controller is waiting to see, per controller key.

    Creates are counted (the new pods' names are not known until they exist); deletes are the UIDs
    of the pods asked to go. A delete is seen once the pod has a deletionTimestamp, not only when the
    object is gone: a pod on an unreachable node stays Terminating until its node returns, and a
    controller waiting for the object to go would stop replacing pods for that long."""

    def __init__(self) -> None:
        self._adds: dict[str, int] = {}
        self._deletes: dict[str, set[str]] = {}
        self._since: dict[str, float] = {}

    def expect(self, key: str, *, adds: int = 0, deletes: Iterable[str] = ()) -> None:
        self._adds[key] = self._adds.get(key, 0) + adds
        self._deletes.setdefault(key, set()).update(deletes)
        self._since[key] = time.monotonic()

    def observed_add(self, key: str) -> None:
        if key in self._adds:
            self._adds[key] = max(self._adds[key] - 1, 0)

    def observed_delete(self, key: str, uid: str) -> None:
        """The pod ``uid`` is going (deletionTimestamp set) or gone; seeing it twice is harmless."""
        self._deletes.get(key, set()).discard(uid)

    def lower(self, key: str, *, adds: int = 0, deletes: Iterable[str] = ()) -> None:
        """Requests that failed will never be observed."""
        if key in self._since:
            self._adds[key] = self._adds.get(key, 0) - adds
            self._deletes.get(key, set()).difference_update(deletes)

    def satisfied(self, key: str) -> bool:
        if key not in self._since:
            return True
        done = self._adds.get(key, 0) <= 0 and not self._deletes.get(key)
        if done or time.monotonic() - self._since[key] > EXPECTATIONS_TIMEOUT:
            self.forget(key)
            return True
        return False

    def forget(self, key: str) -> None:
        self._adds.pop(key, None)
        self._deletes.pop(key, None)
        self._since.pop(key, None)
