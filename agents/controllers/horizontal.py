"""HorizontalPodAutoscaler controller: sets a workload's replicas from its pods' resource usage.

Every sync period (15 s, kube's ``--horizontal-pod-autoscaler-sync-period``) each HPA is looked at
again: the executor reads the target's scale subresource, the pods its selector picks (from the
informer) and their usage from the resource metrics API (``metrics.k8s.io/v1beta1`` PodMetrics,
behind ``MetricsSource`` so tests hand in a fake), then ``plan`` decides, purely, as kube's
controller does: the replica calculation (:mod:`agents.controllers.replicacalculator`: usage
over requests, tolerance, missing metrics and unready pods), the stabilization window over the
recommendation history, the scaling policies over recent scale events (or, without a ``behavior``,
kube's older rule: at most double, at least 4), and the min/max clamp, with kube's conditions,
messages and events. The executor writes the scale, then the status, last.

The recommendation history and scale events live in this process, as in kube's controller: a new
leader starts them afresh.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from agents.controllers.base import Context, Controller, Event, rfc3339, write_status
from agents.controllers.replicacalculator import (
    MetricsError,
    Proposal,
    Tuning,
    pod_usage,
    raw_resource_replicas,
    resource_replicas,
)
from agents.machinery.client import ApiError, ApiUnavailableError, Client
from agents.machinery.events import NORMAL, WARNING
from agents.machinery.objects import Object, deep_copy
from agents.machinery.quantity import canonical, milli
from agents.machinery.resources import (
    DEPLOYMENTS,
    HORIZONTAL_POD_AUTOSCALERS,
    PODS,
    REPLICASETS,
    REPLICATION_CONTROLLERS,
    STATEFULSETS,
    ResourceRef,
)
from agents.machinery.selectors import LabelSelector, SelectorError, parse_labels

log = logging.getLogger(__name__)

HPAS = HORIZONTAL_POD_AUTOSCALERS
POD_METRICS = ResourceRef("metrics.k8s.io", "v1beta1", "pods", "PodMetrics")
# (group, kind) of a scale target -> its resource (kube finds it through the RESTMapper)
SCALABLE = {
    ("apps", "Deployment"): DEPLOYMENTS,
    ("apps", "ReplicaSet"): REPLICASETS,
    ("apps", "StatefulSet"): STATEFULSETS,
    ("", "ReplicationController"): REPLICATION_CONTROLLERS,
}
SCALE_UP_LIMIT_FACTOR = 2.0  # without a behavior: at most double at once...
SCALE_UP_LIMIT_MINIMUM = 4  # ...or go to 4


# --- settings and history ---------------------------------------------------------------------


@dataclass(frozen=True)
class Recommendation:
    replicas: int
    at: datetime


@dataclass(frozen=True)
class ScaleEvent:
    change: int  # replicas added (scale-up events) or removed (scale-down events)
    at: datetime


@dataclass(frozen=True)
class History:
    """What one HPA's past syncs recorded: recommendations (for stabilization), scale events (for policies)."""

    recommendations: tuple[Recommendation, ...] = ()
    scale_ups: tuple[ScaleEvent, ...] = ()
    scale_downs: tuple[ScaleEvent, ...] = ()


# --- normalization: stabilization, policies, limits ---------------------------------------------


@dataclass(frozen=True)
class Normalized:
    replicas: int
    recommendations: tuple[Recommendation, ...]
    able: tuple[str, str]  # AbleToScale reason, message
    limited: tuple[bool, str, str]  # ScalingLimited status, reason, message


def _record(
    history: tuple[Recommendation, ...], replicas: int, now: datetime, cutoff: datetime
) -> tuple[Recommendation, ...]:
    """Add a recommendation, reusing the slot of one older than ``cutoff`` as kube does."""
    entries = list(history)
    old = [i for i, r in enumerate(entries) if r.at < cutoff]
    if old:
        entries[old[-1]] = Recommendation(replicas, now)
    else:
        entries.append(Recommendation(replicas, now))
    return tuple(entries)


@dataclass(frozen=True)
class Proposed:
    """The target's replicas now, what the metrics ask for, and the HPA's bounds."""

    current: int
    desired: int
    low: int
    high: int


def normalize_legacy(proposed: Proposed, *, history: History, now: datetime, tuning: Tuning) -> Normalized:
    """Without a ``behavior``: scale-down stabilization over the downscale window, and kube's
    scale-up limit (double, or 4), then [min, max]."""
    current, desired, low, high = proposed.current, proposed.desired, proposed.low, proposed.high
    cutoff = now - timedelta(seconds=tuning.downscale_stabilization)
    stabilized = max([desired, *(r.replicas for r in history.recommendations if r.at >= cutoff)])
    recommendations = _record(history.recommendations, desired, now, cutoff)
    able = (
        (
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
        if stabilized != desired
        else ("ReadyForNewScale", "recommended size matches current size")
    )
    up_limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    if high > up_limit:
        ceiling, reason, message = (
            up_limit,
            "ScaleUpLimit",
            "the desired replica count is increasing faster than the maximum scale rate",
        )
    else:
        ceiling, reason, message = (
            high,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    result = stabilized
    if stabilized < low:
        result, reason, message = (
            low,
            "TooFewReplicas",
            "the desired replica count is less than the minimum replica count",
        )
    elif stabilized > ceiling:
        result = ceiling
    else:
        reason, message = "DesiredWithinRange", "the desired count is within the acceptable range"
    return Normalized(result, recommendations, able, (result != stabilized, reason, message))


def _changed_within(period: int, events: tuple[ScaleEvent, ...], now: datetime) -> int:
    cutoff = now - timedelta(seconds=period)
    return sum(e.change for e in events if e.at > cutoff)


def _policy_limits(current: int, rules: Mapping[str, Any], history: History, now: datetime, *, up: bool) -> list[int]:
    """What each scaling policy allows now, counted from the replicas there were at the start of its
    period (the changes made within the period taken back)."""
    limits = []
    for policy in rules.get("policies") or []:
        period = int(policy.get("periodSeconds") or 0)
        start = (
            current
            - _changed_within(period, history.scale_ups, now)
            + _changed_within(period, history.scale_downs, now)
        )
        value = int(policy.get("value") or 0)
        if policy.get("type") == "Pods":
            limits.append(start + value if up else start - value)
        elif up:
            limits.append(math.ceil(start * (1 + value / 100)))
        else:
            limits.append(int(start * (1 - value / 100)))
    return limits


def scale_up_limit(current: int, rules: Mapping[str, Any], history: History, now: datetime) -> int:
    """The most replicas the scale-up policies allow now (kube's calculateScaleUpLimitWithScalingRules):
    selectPolicy Max takes the policy allowing the biggest change."""
    select = rules.get("selectPolicy") or "Max"
    limits = [] if select == "Disabled" else _policy_limits(current, rules, history, now, up=True)
    if not limits:
        return current
    return min(limits) if select == "Min" else max(limits)


def scale_down_limit(current: int, rules: Mapping[str, Any], history: History, now: datetime) -> int:
    """The fewest replicas the scale-down policies allow now (kube's calculateScaleDownLimitWithBehaviors)."""
    select = rules.get("selectPolicy") or "Max"
    limits = [] if select == "Disabled" else _policy_limits(current, rules, history, now, up=False)
    if not limits:
        return current
    return max(limits) if select == "Min" else min(limits)


def normalize_with_behavior(
    proposed: Proposed, behavior: Mapping[str, Any], *, history: History, now: datetime, tuning: Tuning
) -> Normalized:
    """Stabilization (scale-up: the lowest recommendation of its window; scale-down: the highest of
    its), then the scaling policies' rate and [min, max] (kube's normalizeDesiredReplicasWithBehaviors)."""
    current, desired, low, high = proposed.current, proposed.desired, proposed.low, proposed.high
    up = behavior.get("scaleUp") or {}
    down = behavior.get("scaleDown") or {}
    up_window = int(up.get("stabilizationWindowSeconds") or 0)
    down_window = down.get("stabilizationWindowSeconds")
    down_seconds = tuning.downscale_stabilization if down_window is None else int(down_window)
    up_cutoff, down_cutoff = now - timedelta(seconds=up_window), now - timedelta(seconds=down_seconds)
    up_rec = min([desired, *(r.replicas for r in history.recommendations if r.at > up_cutoff)])
    down_rec = max([desired, *(r.replicas for r in history.recommendations if r.at > down_cutoff)])
    stabilized = min(max(current, up_rec), down_rec)
    recommendations = _record(history.recommendations, desired, now, min(up_cutoff, down_cutoff))
    if stabilized != desired:
        able = (
            (
                "ScaleUpStabilized",
                "recent recommendations were lower than current one, applying the lowest recent recommendation",
            )
            if desired >= current
            else (
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation",
            )
        )
    else:
        able = ("ReadyForNewScale", "recommended size matches current size")
    result, reason, message = stabilized, "DesiredWithinRange", "the desired count is within the acceptable range"
    if stabilized > current:
        limit = max(scale_up_limit(current, up, history, now), current)
        if high > limit:
            ceiling, why, text = (
                limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        else:
            ceiling, why, text = (
                high,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        if stabilized > ceiling:
            result, reason, message = ceiling, why, text
    elif stabilized < current:
        limit = min(scale_down_limit(current, down, history, now), current)
        if low < limit:
            floor, why, text = (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        else:
            floor, why, text = low, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
        if stabilized < floor:
            result, reason, message = floor, why, text
    return Normalized(result, recommendations, able, (result != stabilized, reason, message))


def record_scale_event(
    history: History, behavior: Mapping[str, Any] | None, *, before: int, after: int, now: datetime
) -> History:
    """Remember a rescale for the policies (only when a behavior uses them), forgetting events older
    than the longest policy period."""
    if behavior is None or before == after:
        return history
    rules = behavior.get("scaleUp" if after > before else "scaleDown") or {}
    longest = max([int(p.get("periodSeconds") or 0) for p in rules.get("policies") or []] or [0])
    cutoff = now - timedelta(seconds=longest)
    event = ScaleEvent(abs(after - before), now)
    if after > before:
        return replace(history, scale_ups=(*(e for e in history.scale_ups if e.at > cutoff), event))
    return replace(history, scale_downs=(*(e for e in history.scale_downs if e.at > cutoff), event))


# --- conditions and the plan --------------------------------------------------------------------


def set_condition(
    conditions: list[Object], kind: str, status: str, reason: str, message: str, *, now: datetime
) -> None:
    """Set a condition in place, its transition time moving only when its status does (kube's setConditionInList)."""
    found = next((c for c in conditions if c.get("type") == kind), None)
    if found is None:
        found = {"type": kind}
        conditions.append(found)
    if found.get("status") != status:
        found["lastTransitionTime"] = rfc3339(now)
    found.update(status=status, reason=reason, message=message)


@dataclass(frozen=True)
class Observed:
    """What the executor read for one HPA: the target's scale (or why not), the pods its selector
    picks, and their PodMetrics (or the error reading them)."""

    scale: Object | None = None
    scale_error: str = ""
    pods: list[Object] = field(default_factory=list)
    pod_metrics: list[Object] | None = None
    metrics_error: str = ""


@dataclass
class Plan:
    status: dict[str, Any]
    scale_to: int | None = None  # write this many replicas to the target's scale
    reason: str = ""  # why (the SuccessfulRescale / FailedRescale wording)
    events: list[Event] = field(default_factory=list)
    history: History = field(default_factory=History)


def _metric_value(current: Proposal, *, utilization: bool) -> dict[str, Any]:
    average = canonical(f"{current.average}m")
    if utilization:
        return {"averageValue": average, "averageUtilization": current.utilization}
    return {"averageValue": average}


def _compute_metric(
    metric: Object, *, current: int, observed: Observed, now: datetime, tuning: Tuning
) -> tuple[Proposal, str, Object]:
    """One metric's proposal, its name in messages and its status; ``_Failed`` when it cannot be had."""
    kind = metric.get("type", "")
    if kind not in ("Resource", "ContainerResource"):
        if kind in ("Pods", "Object", "External"):
            what = str(kind).lower()
            raise _Failed(
                f"FailedGet{kind}Metric",
                f"unable to get {what} metric: no custom or external metrics API is served here",
                f"failed to get {what} metric value: ",
            )
        raise _Failed("InvalidMetricSourceType", f'unknown metric source type "{kind}"')
    key = "resource" if kind == "Resource" else "containerResource"
    source = metric.get(key) or {}
    name = str(source.get("name", ""))
    container = str(source.get("container", "")) if kind == "ContainerResource" else ""
    target = source.get("target") or {}
    reason = "FailedGetResourceMetric" if kind == "Resource" else "FailedGetContainerResourceMetric"
    prefix = (
        f"failed to get {name} resource metric value: "
        if kind == "Resource"
        else f"failed to get {container} container metric value: "
    )
    try:
        if target.get("averageValue") is not None:
            wanted = milli(target["averageValue"])
            what = "usage"
        elif target.get("averageUtilization") is not None:
            wanted = int(target["averageUtilization"])
            what = "utilization"
        else:
            raise _Failed(reason, NEITHER_TARGET, prefix)
        if observed.pod_metrics is None:
            raise MetricsError(
                f"unable to get metrics for resource {name}: unable to fetch metrics from resource metrics API:"
                f" {observed.metrics_error}"
            )
        usage = pod_usage(observed.pod_metrics, name, container)
        if not usage:
            raise MetricsError(
                f"unable to get metrics for resource {name}: no metrics returned from resource metrics API"
            )
        if what == "usage":
            proposal = raw_resource_replicas(
                current, wanted, name, pods=observed.pods, metrics=usage, now=now, tuning=tuning
            )
            label = f"{name} resource" if kind == "Resource" else f"{name} container resource"
        else:
            proposal = resource_replicas(
                current, wanted, name, pods=observed.pods, metrics=usage, now=now, tuning=tuning, container=container
            )
            label = (
                f"{name} resource utilization (percentage of request)"
                if kind == "Resource"
                else f"{name} container resource utilization (percentage of request)"
            )
    except MetricsError as exc:
        raise _Failed(reason, f"failed to get {name} {what}: {exc}", prefix) from exc
    status_source: Object = {"name": name, "current": _metric_value(proposal, utilization=what == "utilization")}
    if container:
        status_source["container"] = container
    return proposal, label, {"type": kind, key: status_source}


class _Failed(Exception):
    """A metric that yields no proposal: the reason of its condition and event, their message, and the
    words kube puts before it where it reports the metric among the others."""

    def __init__(self, reason: str, message: str, prefix: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.prefix = prefix


NEITHER_TARGET = (
    "invalid resource metric source: neither an average utilization target nor an average value (usage) target was set"
)


def plan(hpa: Object, observed: Observed, *, history: History, now: datetime, tuning: Tuning) -> Plan:
    """What to do for ``hpa``: the replicas to scale its target to (if any), its new status, the
    events to record and the history to keep (kube's reconcileAutoscaler)."""
    spec, old_status = hpa.get("spec") or {}, hpa.get("status") or {}
    conditions = deep_copy(old_status.get("conditions") or [])
    status: dict[str, Any] = deep_copy(old_status)
    status.setdefault("desiredReplicas", 0)
    result = Plan(status=status, history=history)

    def finish(current: int, metric_statuses: list[Object] | None) -> Plan:
        """The status kube's setStatus writes: replicas, metrics, last scale time, conditions."""
        fresh = {"currentReplicas": current, "desiredReplicas": status["desiredReplicas"]}
        if "lastScaleTime" in status:
            fresh["lastScaleTime"] = status["lastScaleTime"]
        if metric_statuses:
            fresh["currentMetrics"] = metric_statuses
        fresh["conditions"] = conditions
        if not current:
            del fresh["currentReplicas"]  # omitted when zero, as v2 writes it
        result.status = fresh
        return result

    if observed.scale is None:
        message = observed.scale_error
        result.events.append(Event(WARNING, "FailedGetScale", message))
        set_condition(
            conditions,
            "AbleToScale",
            "False",
            "FailedGetScale",
            f"the HPA controller was unable to get the target's current scale: {message}",
            now=now,
        )
        status["conditions"] = conditions
        return result
    set_condition(
        conditions,
        "AbleToScale",
        "True",
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
        now=now,
    )
    current = int((observed.scale.get("spec") or {}).get("replicas") or 0)
    if not history.recommendations:  # kube's recordInitialRecommendation
        history = replace(history, recommendations=(Recommendation(current, now),))
    result.history = history
    low = int(spec.get("minReplicas") or 1)
    high = int(spec.get("maxReplicas") or 0)
    metric_statuses: list[Object] = []
    if current == 0 and low != 0:
        set_condition(
            conditions,
            "ScalingActive",
            "False",
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
            now=now,
        )
        status["desiredReplicas"] = 0
        return finish(current, None)
    if current > high:
        desired, reason = high, "Current number of replicas above Spec.MaxReplicas"
    elif current < low:
        desired, reason = low, "Current number of replicas below Spec.MinReplicas"
    else:
        selector_text = str((observed.scale.get("status") or {}).get("selector") or "")
        if not selector_text:
            result.events.append(Event(WARNING, "SelectorRequired", "selector is required"))
            set_condition(
                conditions,
                "ScalingActive",
                "False",
                "InvalidSelector",
                "the HPA target's scale is missing a selector",
                now=now,
            )
            result.events.append(Event(WARNING, "FailedComputeMetricsReplicas", "selector is required"))
            return finish(current, None)
        metrics = [m for m in spec.get("metrics") or [] if isinstance(m, dict)]
        best, best_name, failures = 0, "", []
        # one entry per metric, a failed one left empty ({"type": ""}) as kube leaves it
        metric_statuses = [{"type": ""} for _ in metrics]
        for i, metric in enumerate(metrics):
            try:
                proposal, label, metric_status = _compute_metric(
                    metric, current=current, observed=observed, now=now, tuning=tuning
                )
            except _Failed as failed:
                result.events.append(Event(WARNING, failed.reason, failed.message))
                failures.append(failed)
                continue
            metric_statuses[i] = metric_status
            if best == 0 or proposal.replicas > best:
                best, best_name = proposal.replicas, label
        if failures and (len(failures) >= len(metrics) or best < current):
            first = failures[0]
            set_condition(
                conditions,
                "ScalingActive",
                "False",
                first.reason,
                f"the HPA was unable to compute the replica count: {first.message}",
                now=now,
            )
            text = (
                f"invalid metrics ({len(failures)} invalid out of {len(metrics)}), first error is:"
                f" {first.prefix}{first.message}"
            )
            result.events.append(Event(WARNING, "FailedComputeMetricsReplicas", text))
            return finish(current, metric_statuses)
        set_condition(
            conditions,
            "ScalingActive",
            "True",
            "ValidMetricFound",
            f"the HPA was able to successfully calculate a replica count from {best_name}",
            now=now,
        )
        desired = best
        reason = (
            f"{best_name} above target"
            if desired > current
            else "All metrics below target"
            if desired < current
            else ""
        )
        proposed = Proposed(current=current, desired=desired, low=low, high=high)
        behavior = spec.get("behavior")
        normalized = (
            normalize_with_behavior(proposed, behavior, history=history, now=now, tuning=tuning)
            if isinstance(behavior, dict)
            else normalize_legacy(proposed, history=history, now=now, tuning=tuning)
        )
        set_condition(conditions, "AbleToScale", "True", *normalized.able, now=now)
        limited, why, text = normalized.limited
        set_condition(conditions, "ScalingLimited", "True" if limited else "False", why, text, now=now)
        desired = normalized.replicas
        history = replace(history, recommendations=normalized.recommendations)
        result.history = history
    if desired != current:
        result.scale_to, result.reason = desired, reason
        status["desiredReplicas"] = desired
        status["lastScaleTime"] = rfc3339(now)
        set_condition(
            conditions,
            "AbleToScale",
            "True",
            "SucceededRescale",
            f"the HPA controller was able to update the target scale to {desired}",
            now=now,
        )
        result.events.append(Event(NORMAL, "SuccessfulRescale", f"New size: {desired}; reason: {reason}"))
        result.history = record_scale_event(
            history,
            spec.get("behavior") if isinstance(spec.get("behavior"), dict) else None,
            before=current,
            after=desired,
            now=now,
        )
    else:
        status["desiredReplicas"] = current
    return finish(current, metric_statuses)


def failed_rescale(done: Plan, hpa: Object, error: str, *, now: datetime) -> Plan:
    """The plan once writing the scale failed: no rescale, kube's FailedRescale event and condition."""
    status = deep_copy(done.status)
    conditions = status.setdefault("conditions", [])
    set_condition(
        conditions,
        "AbleToScale",
        "False",
        "FailedUpdateScale",
        f"the HPA controller was unable to update the target scale: {error}",
        now=now,
    )
    status["desiredReplicas"] = (hpa.get("status") or {}).get("desiredReplicas", 0)
    if "lastScaleTime" in (hpa.get("status") or {}):
        status["lastScaleTime"] = hpa["status"]["lastScaleTime"]
    else:
        status.pop("lastScaleTime", None)
    events = [e for e in done.events if e.reason != "SuccessfulRescale"]
    events.append(Event(WARNING, "FailedRescale", f"New size: {done.scale_to}; reason: {done.reason}; error: {error}"))
    return Plan(status=status, events=events, history=done.history)


# --- the metrics source and the executor --------------------------------------------------------


class MetricsSource(Protocol):
    """Where PodMetrics come from (the resource metrics API; a fake in tests)."""

    async def pod_metrics(self, namespace: str, selector: str) -> list[Object]: ...


def _api_message(exc: ApiError | ApiUnavailableError, what: str) -> str:
    if isinstance(exc, ApiUnavailableError):
        return str(exc)
    message = str(exc.status.get("message") or exc.reason or exc.code)
    if exc.code in (404, 503) and "(" not in message:  # client-go names the request after its generic messages
        message = f"{message} (get {what})"
    return message


class ResourceMetricsApi:
    """PodMetrics from ``/apis/metrics.k8s.io/v1beta1`` through the controller-manager's client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def pod_metrics(self, namespace: str, selector: str) -> list[Object]:
        items, _ = await self.client.list(POD_METRICS, namespace, label_selector=selector)
        return items


class HorizontalPodAutoscalerController(Controller):
    name = "horizontalpodautoscaling"
    source = "horizontal-pod-autoscaler"
    workers = 2

    def __init__(self, ctx: Context, *, metrics: MetricsSource | None = None) -> None:
        super().__init__(ctx)
        self.tuning = Tuning.from_settings(ctx.settings)
        self.metrics: MetricsSource = metrics if metrics is not None else ResourceMetricsApi(ctx.client)
        self.hpas = ctx.informer(HPAS)
        self.pods = ctx.informer(PODS)
        self.histories: dict[str, History] = {}
        self.hpas.on(add=self.enqueue, update=lambda _o, n: self.enqueue(n), delete=self._deleted)

    def _deleted(self, hpa: Object) -> None:
        key = f"{hpa['metadata'].get('namespace', '')}/{hpa['metadata'].get('name', '')}"
        self.histories.pop(key, None)

    async def observe(self, hpa: Object) -> Observed:
        """Read the target's scale, its pods and their metrics (errors kept as kube words them)."""
        namespace = str(hpa["metadata"].get("namespace", ""))
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        api_version, kind = str(ref.get("apiVersion", "")), str(ref.get("kind", ""))
        group = api_version.split("/", maxsplit=1)[0] if "/" in api_version else ""
        target = SCALABLE.get((group, kind))
        if target is None:
            return Observed(scale_error=f'no matches for kind "{kind}" in group "{group}"')
        try:
            scale = await self.client.get(target, str(ref.get("name", "")), namespace, subresource="scale")
        except (ApiError, ApiUnavailableError) as exc:
            return Observed(scale_error=_api_message(exc, f"{target.plural}.{target.group}".rstrip(".")))
        text = str((scale.get("status") or {}).get("selector") or "")
        try:
            selector: LabelSelector | None = parse_labels(text) if text else None
        except SelectorError:
            selector = None
        if selector is None:
            return Observed(scale=scale)
        pods = [
            p
            for p in self.pods.by_index("namespace", namespace)
            if selector.matches((p.get("metadata") or {}).get("labels") or {})
        ]
        try:
            items = await self.metrics.pod_metrics(namespace, text)
        except (ApiError, ApiUnavailableError) as exc:
            return Observed(scale=scale, pods=pods, metrics_error=_api_message(exc, "pods.metrics.k8s.io"))
        return Observed(scale=scale, pods=pods, pod_metrics=items)

    async def sync(self, key: str) -> None:
        hpa = self.hpas.get(key)
        if hpa is None:
            self.histories.pop(key, None)
            return
        observed = await self.observe(hpa)
        now = self.now()
        decided = plan(hpa, observed, history=self.histories.get(key, History()), now=now, tuning=self.tuning)
        if decided.scale_to is not None and observed.scale is not None:
            body = deep_copy(observed.scale)
            body.setdefault("spec", {})["replicas"] = decided.scale_to
            ref = hpa["spec"]["scaleTargetRef"]
            group = ref["apiVersion"].split("/")[0] if "/" in ref["apiVersion"] else ""
            try:
                await self.client.update(SCALABLE[(group, ref["kind"])], body, subresource="scale")
                log.info(
                    "%s: rescaled %s/%s to %d (%s)", key, ref["kind"], ref["name"], decided.scale_to, decided.reason
                )
            except (ApiError, ApiUnavailableError) as exc:
                decided = failed_rescale(decided, hpa, _api_message(exc, "scale"), now=now)
        self.histories[key] = decided.history
        self.record(hpa, *decided.events)
        await write_status(self.client, HPAS, hpa, decided.status)
        self.queue.add_after(key, self.tuning.sync_period)
