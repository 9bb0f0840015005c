"""StatefulSet controller: pods with stable names (``<set>-0``, ``<set>-1``, ...) in order.

With the OrderedReady policy a pod is created only when every lower ordinal is running and ready,
and scaling down removes the highest ordinal first, one at a time. Parallel creates and removes
them all at once. RollingUpdate replaces pods whose template revision is not the newest, from the
highest ordinal down to ``partition``, one at a time; OnDelete leaves that to the user. Pods get
``hostname``/``subdomain`` from their name and the governing ``serviceName``.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from agents.controllers import history
from agents.controllers.base import Context, Controller, ignore_not_found, owner_uid
from agents.controllers.podutil import is_available, is_ready, is_terminal, pod_from_template
from agents.machinery.client import ApiError
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.objects import Object, deep_copy
from agents.machinery.resources import CONTROLLER_REVISIONS, PODS, STATEFULSETS

POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"


def ordinal_of(set_name: str, pod_name: str) -> int | None:
    match = re.fullmatch(re.escape(set_name) + r"-(\d+)", pod_name)
    return int(match.group(1)) if match else None


def _revision(pod: Object) -> str:
    return str((pod["metadata"].get("labels") or {}).get(history.HASH_LABEL, ""))


class StatefulSetController(Controller):
    name = "statefulset"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.sets = ctx.informer(STATEFULSETS)
        self.pods = ctx.informer(PODS)
        self.revisions = ctx.informer(CONTROLLER_REVISIONS)
        self.sets.on_any(self.enqueue)
        self.pods.on_any(lambda pod: self.enqueue_owner(pod, "StatefulSet", self.sets))

    def _new_pod(self, sts: Object, ordinal: int, revision: Object) -> Object:
        template = deep_copy(sts["spec"]["template"])
        if revision.get("data"):
            template = deep_copy(revision["data"]["spec"]["template"])
            template.pop("$patch", None)
        name = f"{sts['metadata']['name']}-{ordinal}"
        pod = pod_from_template(
            template,
            sts,
            name=name,
            labels={
                POD_NAME_LABEL: name,
                POD_INDEX_LABEL: str(ordinal),
                history.HASH_LABEL: revision["metadata"]["name"],
            },
        )
        pod["spec"]["hostname"] = name
        if sts["spec"].get("serviceName"):
            pod["spec"]["subdomain"] = sts["spec"]["serviceName"]
        return pod

    async def sync(self, key: str) -> None:
        sts = self.sets.get(key)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        spec = sts["spec"]
        name, namespace = sts["metadata"]["name"], sts["metadata"]["namespace"]
        uid = sts["metadata"]["uid"]
        update = await history.ensure_revision(self.client, self.revisions, sts)
        status: dict[str, Any] = deep_copy(sts.get("status") or {})
        current_name = status.get("currentRevision") or update["metadata"]["name"]
        current = next(
            (r for r in history.owned_revisions(self.revisions, sts) if r["metadata"]["name"] == current_name), update
        )
        pods: dict[int, Object] = {}
        for candidate in self.pods.by_index("namespace", namespace):
            if owner_uid(candidate) == uid and (ordinal := ordinal_of(name, candidate["metadata"]["name"])) is not None:
                pods[ordinal] = candidate
        start = int((spec.get("ordinals") or {}).get("start", 0))
        replicas = int(spec.get("replicas", 1))
        wanted = range(start, start + replicas)
        ordered = spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady"
        partition = int(((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition", 0))

        # create (or recreate failed) pods, lowest ordinal first
        for ordinal in wanted:
            pod: Object | None = pods.get(ordinal)
            if pod is not None and is_terminal(pod) and not pod["metadata"].get("deletionTimestamp"):
                await ignore_not_found(partial(self.client.delete, PODS, pod["metadata"]["name"], namespace))
                self.recorder.record(
                    sts,
                    NORMAL,
                    "RecreatingFailedPod",
                    f"StatefulSet {key} is recreating failed Pod {pod['metadata']['name']}",
                )
                if ordered:
                    break
                continue
            if pod is None:
                revision = update if ordinal - start >= partition else current
                try:
                    pods[ordinal] = await self.client.create(PODS, self._new_pod(sts, ordinal, revision))
                    self.recorder.record(
                        sts, NORMAL, "SuccessfulCreate", f"create Pod {name}-{ordinal} in StatefulSet {name} successful"
                    )
                except ApiError as exc:
                    if not exc.already_exists:
                        self.recorder.record(sts, WARNING, "FailedCreate", f"create Pod {name}-{ordinal}: {exc}")
                        raise
                if ordered:
                    break
                continue
            if ordered and not (is_ready(pod) and not pod["metadata"].get("deletionTimestamp")):
                break  # wait for this one before going on

        # scale down: highest ordinal first
        excess = sorted((o for o in pods if o not in wanted), reverse=True)
        all_ready = all(is_ready(pods[o]) for o in wanted if o in pods) and all(o in pods for o in wanted)
        for ordinal in excess:
            extra = pods[ordinal]
            if extra["metadata"].get("deletionTimestamp"):
                if ordered:
                    break
                continue
            if ordered and not all_ready:
                break
            await ignore_not_found(partial(self.client.delete, PODS, extra["metadata"]["name"], namespace))
            self.recorder.record(
                sts,
                NORMAL,
                "SuccessfulDelete",
                f"delete Pod {extra['metadata']['name']} in StatefulSet {name} successful",
            )
            if ordered:
                break

        # rolling update: highest ordinal down to the partition, one at a time, when everything is ready
        if (
            (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") == "RollingUpdate"
            and all_ready
            and not excess
        ):
            for ordinal in sorted(wanted, reverse=True):
                old = pods.get(ordinal)
                if old is None or ordinal - start < partition:
                    continue
                if old["metadata"].get("deletionTimestamp"):
                    break
                if _revision(old) != update["metadata"]["name"]:
                    await ignore_not_found(partial(self.client.delete, PODS, old["metadata"]["name"], namespace))
                    self.recorder.record(
                        sts,
                        NORMAL,
                        "SuccessfulDelete",
                        f"delete Pod {old['metadata']['name']} in StatefulSet {name} successful",
                    )
                    break
        await self._write_status(sts, pods, wanted, current, update)
        await history.trim(self.client, self.revisions, sts, {current["metadata"]["name"], update["metadata"]["name"]})

    async def _write_status(
        self, sts: Object, pods: dict[int, Object], wanted: range, current: Object, update: Object
    ) -> None:
        live = [p for o, p in pods.items() if not p["metadata"].get("deletionTimestamp")]
        min_ready = int(sts["spec"].get("minReadySeconds") or 0)
        updated = sum(1 for p in live if _revision(p) == update["metadata"]["name"])
        at_current = sum(1 for p in live if _revision(p) == current["metadata"]["name"])
        current_name = current["metadata"]["name"]
        if updated == len(wanted) and len(live) == len(wanted):
            current_name, at_current = update["metadata"]["name"], updated
        status: dict[str, Any] = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(live),
            "readyReplicas": sum(1 for p in live if is_ready(p)),
            "availableReplicas": sum(1 for p in live if is_available(p, min_ready)),
            "currentReplicas": at_current,
            "updatedReplicas": updated,
            "currentRevision": current_name,
            "updateRevision": update["metadata"]["name"],
            "collisionCount": 0,
        }
        status = {
            k: v
            for k, v in status.items()
            if v or k in ("observedGeneration", "replicas", "availableReplicas", "collisionCount")
        }
        if status != (sts.get("status") or {}):
            body = deep_copy(self.sets.get(f"{sts['metadata']['namespace']}/{sts['metadata']['name']}") or sts)
            body["status"] = status
            await ignore_not_found(partial(self.client.update_status, STATEFULSETS, body))
