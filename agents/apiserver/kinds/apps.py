"""Strategies for apps/v1: Deployments, ReplicaSets, StatefulSets, DaemonSets, ControllerRevisions."""

from __future__ import annotations

from typing import Any

from agents.apiserver import validation as v
from agents.apiserver.kinds.base import Strategy
from agents.apiserver.kinds.podspec import default_pod_spec, validate_template
from agents.apiserver.status import forbidden, invalid, required
from agents.apiserver.validation import Errors
from agents.machinery.objects import Object


def _default_template(spec: dict[str, Any]) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        default_pod_spec(template.setdefault("spec", {}))


def _selector_and_template(spec: dict[str, Any], kind: str) -> Errors:
    out: Errors = []
    selector = spec.get("selector")
    if selector is None:
        out.append(required("spec.selector"))
    elif not selector.get("matchLabels") and not selector.get("matchExpressions"):
        out.append(invalid("spec.selector", selector, f"empty selector is invalid for {kind}"))
    else:
        out += v.label_selector("spec.selector", selector)
    out += validate_template("spec.template", spec.get("template"), selector=selector, restart_policies=("Always",))
    return out


def _selector_immutable(new: Object, old: Object) -> Errors:
    new_sel = (new.get("spec") or {}).get("selector")
    old_sel = (old.get("spec") or {}).get("selector")
    return [invalid("spec.selector", new_sel, "field is immutable")] if new_sel != old_sel else []


def _counts(spec: dict[str, Any], *names: str) -> Errors:
    out: Errors = []
    for name in names:
        out += v.non_negative(f"spec.{name}", spec.get(name))
    return out


class DeploymentStrategy(Strategy):
    def default(self, obj: Object) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        strategy = spec.setdefault("strategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            rolling = strategy.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        _default_template(spec)

    def initial_status(self, obj: Object) -> dict[str, Any]:
        return {}

    def validate(self, obj: Object) -> Errors:
        spec = obj.get("spec") or {}
        out = _selector_and_template(spec, "deployment")
        out += _counts(spec, "replicas", "minReadySeconds", "revisionHistoryLimit")
        strategy = spec.get("strategy") or {}
        kind = strategy.get("type", "RollingUpdate")
        out += v.one_of("spec.strategy.type", kind, ("Recreate", "RollingUpdate"))
        rolling = strategy.get("rollingUpdate")
        if kind == "Recreate" and rolling is not None:
            out.append(
                forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")
            )
        if kind == "RollingUpdate" and rolling:
            surge, unavailable = rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%")
            out += v.int_or_percent("spec.strategy.rollingUpdate.maxSurge", surge)
            out += v.int_or_percent("spec.strategy.rollingUpdate.maxUnavailable", unavailable)
            if (
                isinstance(unavailable, str)
                and unavailable.endswith("%")
                and unavailable[:-1].isdigit()
                and int(unavailable[:-1]) > 100
            ):
                out.append(
                    invalid(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        unavailable,
                        "must not be greater than 100%",
                    )
                )
            if v.scaled(surge, 100, round_up=True) == 0 and v.scaled(unavailable, 100, round_up=False) == 0:
                out.append(
                    invalid(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        unavailable,
                        "may not be 0 when `maxSurge` is 0",
                    )
                )
        deadline = spec.get("progressDeadlineSeconds")
        if isinstance(deadline, int) and deadline <= spec.get("minReadySeconds", 0):
            out.append(invalid("spec.progressDeadlineSeconds", deadline, "must be greater than minReadySeconds"))
        return out

    def validate_update(self, new: Object, old: Object) -> Errors:
        return self.validate(new) + _selector_immutable(new, old)


class ReplicaSetStrategy(Strategy):
    def default(self, obj: Object) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        _default_template(spec)

    def initial_status(self, obj: Object) -> dict[str, Any]:
        return {"replicas": 0}

    def validate(self, obj: Object) -> Errors:
        spec = obj.get("spec") or {}
        return _selector_and_template(spec, "replicaset") + _counts(spec, "replicas", "minReadySeconds")

    def validate_update(self, new: Object, old: Object) -> Errors:
        return self.validate(new) + _selector_immutable(new, old)


_STS_MUTABLE = (
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
)


class StatefulSetStrategy(Strategy):
    def default(self, obj: Object) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        update = spec.setdefault("updateStrategy", {})
        update.setdefault("type", "RollingUpdate")
        if update["type"] == "RollingUpdate":
            update.setdefault("rollingUpdate", {}).setdefault("partition", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        retention = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
        retention.setdefault("whenDeleted", "Retain")
        retention.setdefault("whenScaled", "Retain")
        _default_template(spec)
        for claim in spec.get("volumeClaimTemplates") or []:
            claim.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")

    def initial_status(self, obj: Object) -> dict[str, Any]:
        return {"replicas": 0, "availableReplicas": 0}

    def validate(self, obj: Object) -> Errors:
        spec = obj.get("spec") or {}
        out = _selector_and_template(_with_claim_volumes(spec), "statefulset")
        out += _counts(spec, "replicas", "minReadySeconds", "revisionHistoryLimit")
        out += v.one_of(
            "spec.podManagementPolicy",
            spec.get("podManagementPolicy", "OrderedReady"),
            ("OrderedReady", "Parallel"),
        )
        update = spec.get("updateStrategy") or {}
        out += v.one_of("spec.updateStrategy.type", update.get("type", "RollingUpdate"), ("OnDelete", "RollingUpdate"))
        out += v.non_negative(
            "spec.updateStrategy.rollingUpdate.partition",
            (update.get("rollingUpdate") or {}).get("partition"),
        )
        if spec.get("serviceName"):
            out += v.name_errors("spec.serviceName", spec["serviceName"], v.dns_label)
        return out

    def validate_update(self, new: Object, old: Object) -> Errors:
        out = self.validate(new)
        new_spec = {k: val for k, val in (new.get("spec") or {}).items() if k not in _STS_MUTABLE}
        old_spec = {k: val for k, val in (old.get("spec") or {}).items() if k not in _STS_MUTABLE}
        if new_spec != old_spec:
            out.append(
                forbidden(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals',"
                    " 'template', 'updateStrategy', 'revisionHistoryLimit',"
                    " 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                )
            )
        return out


def _with_claim_volumes(spec: dict[str, Any]) -> dict[str, Any]:
    """The StatefulSet's spec as its pods will have it for validation: each of its volumeClaimTemplates
    becomes a claim volume of the template, so that containers may mount it by the template's name (the
    controller adds the same volume to every pod)."""
    template, claims = spec.get("template"), spec.get("volumeClaimTemplates") or []
    if not isinstance(template, dict) or not isinstance(template.get("spec"), dict) or not claims:
        return spec
    named = [c["metadata"]["name"] for c in claims if isinstance(c, dict) and (c.get("metadata") or {}).get("name")]
    volumes = list(template["spec"].get("volumes") or [])
    have = {vol.get("name") for vol in volumes if isinstance(vol, dict)}
    volumes += [{"name": n, "persistentVolumeClaim": {"claimName": n}} for n in named if n not in have]
    return {**spec, "template": {**template, "spec": {**template["spec"], "volumes": volumes}}}


class DaemonSetStrategy(Strategy):
    def default(self, obj: Object) -> None:
        spec = obj.setdefault("spec", {})
        update = spec.setdefault("updateStrategy", {})
        update.setdefault("type", "RollingUpdate")
        if update["type"] == "RollingUpdate":
            rolling = update.setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", 1)
            rolling.setdefault("maxSurge", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        _default_template(spec)

    def initial_status(self, obj: Object) -> dict[str, Any]:
        return {
            "currentNumberScheduled": 0,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": 0,
            "numberReady": 0,
        }

    def validate(self, obj: Object) -> Errors:
        spec = obj.get("spec") or {}
        out = _selector_and_template(spec, "daemonset")
        out += _counts(spec, "minReadySeconds", "revisionHistoryLimit")
        update = spec.get("updateStrategy") or {}
        out += v.one_of("spec.updateStrategy.type", update.get("type", "RollingUpdate"), ("OnDelete", "RollingUpdate"))
        rolling = update.get("rollingUpdate") or {}
        for name in ("maxUnavailable", "maxSurge"):
            if name in rolling:
                out += v.int_or_percent(f"spec.updateStrategy.rollingUpdate.{name}", rolling[name])
        return out

    def validate_update(self, new: Object, old: Object) -> Errors:
        return self.validate(new) + _selector_immutable(new, old)


class ControllerRevisionStrategy(Strategy):
    def validate(self, obj: Object) -> Errors:
        return v.non_negative("revision", obj.get("revision"))

    def validate_update(self, new: Object, old: Object) -> Errors:
        out = self.validate(new)
        if new.get("data") != old.get("data"):
            out.append(invalid("data", "<omitted>", "field is immutable"))
        return out
