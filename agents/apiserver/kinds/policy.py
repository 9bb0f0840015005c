"""Strategy for policy/v1 PodDisruptionBudgets: how many of a set of pods voluntary disruptions may take.

A budget names its pods by label selector and says either how many must stay available
(``minAvailable``) or how many may be unavailable (``maxUnavailable``), as a count or a percentage,
never both. The disruption controller (agents/controllers/disruption.py) writes the status; the eviction
subresource (agents/apiserver/eviction.py) spends it. Checks follow kube's ValidatePodDisruptionBudget:
counts are at least 0, percentages at most 100%, the selector well formed, and
``unhealthyPodEvictionPolicy`` one of the two policies. A new budget starts with an all-zero status
(its Go struct's counters are always written), so that no eviction passes before the controller has
looked at it (``observedGeneration`` lags ``generation``).
"""

from __future__ import annotations

from typing import Any

from agents.apiserver import validation as v
from agents.apiserver.kinds.base import Strategy
from agents.apiserver.status import invalid, not_supported
from agents.apiserver.validation import Errors
from agents.machinery.objects import Object

POLICIES = ("AlwaysAllow", "IfHealthyBudget")
COUNTERS = ("disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods")


def _percent_over_100(value: Any) -> bool:
    return isinstance(value, str) and value.endswith("%") and value[:-1].isdigit() and int(value[:-1]) > 100


def budget_value_errors(path: str, value: Any) -> Errors:
    """An int-or-percent budget: a count >= 0, or a percentage of at most 100%."""
    out = v.int_or_percent(path, value)
    if not out and _percent_over_100(value):
        out.append(invalid(path, value, "must not be greater than 100%"))
    return out


def spec_errors(spec: dict[str, Any]) -> Errors:
    """What kube's ValidatePodDisruptionBudgetSpec finds wrong."""
    out: Errors = []
    low, high = spec.get("minAvailable"), spec.get("maxUnavailable")
    if low is not None and high is not None:
        out.append(
            invalid(
                "spec",
                {"minAvailable": low, "maxUnavailable": high},
                "minAvailable and maxUnavailable cannot be both set",
            )
        )
    if low is not None:
        out += budget_value_errors("spec.minAvailable", low)
    if high is not None:
        out += budget_value_errors("spec.maxUnavailable", high)
    out += v.label_selector("spec.selector", spec.get("selector"))
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in POLICIES:
        out.append(not_supported("spec.unhealthyPodEvictionPolicy", policy, POLICIES))
    return out


def status_errors(status: dict[str, Any]) -> Errors:
    """The counters of a status are never negative; conditions have a type and a known status."""
    out: Errors = []
    for name in COUNTERS:
        out += v.non_negative(f"status.{name}", status.get(name, 0))
    for i, condition in enumerate(status.get("conditions") or []):
        out += v.one_of(f"status.conditions[{i}].status", condition.get("status"), ("False", "True", "Unknown"))
    return out


class PodDisruptionBudgetStrategy(Strategy):
    def initial_status(self, obj: Object) -> dict[str, Any] | None:
        return dict.fromkeys(COUNTERS, 0)

    def validate(self, obj: Object) -> Errors:
        return spec_errors(obj.get("spec") or {})

    def validate_status(self, new: Object, old: Object) -> Errors:
        return status_errors(new.get("status") or {})
