"""HorizontalPodAutoscalers: defaults, validation, the autoscaling/v1 <-> v2 conversion, the TARGETS text.

Objects are stored as autoscaling/v2; autoscaling/v1 is served as a converted view of them
(``agents/apiserver/conversion.py`` applies the conversion around the stored resource). What v1
cannot hold (metrics other than a CPU utilization target, the current metrics, the conditions and
the scaling behavior) travels in the annotations kube uses for it, as JSON, so that a v1 client's
read-modify-write keeps it: ``autoscaling.alpha.kubernetes.io/metrics`` (in v1's older metric shape,
``targetAverageUtilization``...), ``.../current-metrics``, ``.../conditions`` and ``.../behavior``.
Defaults and validation follow kube's (``SetDefaults_HorizontalPodAutoscaler``,
``ValidateHorizontalPodAutoscaler``), wording included.
"""

from __future__ import annotations

import json
from typing import Any

from agents.apiserver import validation as v
from agents.apiserver.kinds.base import Strategy
from agents.apiserver.status import forbidden, invalid, not_supported, required
from agents.apiserver.validation import Errors
from agents.machinery import quantity
from agents.machinery.errors import KubelabError
from agents.machinery.objects import Object, deep_copy

GROUP = "autoscaling"
V1 = "autoscaling/v1"
V2 = "autoscaling/v2"
KIND = "HorizontalPodAutoscaler"

METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
BEHAVIOR_ANNOTATION = "autoscaling.alpha.kubernetes.io/behavior"

DEFAULT_CPU_UTILIZATION = 80
MAX_STABILIZATION_WINDOW_SECONDS = 3600
MAX_PERIOD_SECONDS = 1800
METRIC_SOURCE_TYPES = ("ContainerResource", "External", "Object", "Pods", "Resource")
_SOURCE_FIELD = {
    "Object": "object",
    "Pods": "pods",
    "Resource": "resource",
    "ContainerResource": "containerResource",
    "External": "external",
}
SELECT_POLICIES = ("Disabled", "Max", "Min")
POLICY_TYPES = ("Percent", "Pods")


class ConversionError(KubelabError):
    """An autoscaling/v1 object whose annotations do not hold what they must (kube fails the request)."""


# --- defaults --------------------------------------------------------------------------------------


def default_scale_up() -> dict[str, Any]:
    return {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    }


def default_scale_down() -> dict[str, Any]:
    """Its stabilization window stays unset: the controller's own setting (300 s) fills it in."""
    return {"selectPolicy": "Max", "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}


def _fill_rules(given: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    """kube's copyHPAScalingRules: each unset field of the rules from the defaults."""
    rules = dict(given) if isinstance(given, dict) else {}
    for key in ("stabilizationWindowSeconds", "selectPolicy", "policies"):
        if rules.get(key) is None and key in defaults:
            rules[key] = defaults[key]
    return rules


def cpu_utilization_metric(percent: int) -> dict[str, Any]:
    return {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}},
    }


def default_hpa(obj: Object) -> None:
    spec = obj.setdefault("spec", {})
    if spec.get("minReplicas") is None:
        spec["minReplicas"] = 1
    if not spec.get("metrics"):
        spec["metrics"] = [cpu_utilization_metric(DEFAULT_CPU_UTILIZATION)]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):  # only a behavior that is given gets its unset parts filled
        behavior["scaleUp"] = _fill_rules(behavior.get("scaleUp"), default_scale_up())
        behavior["scaleDown"] = _fill_rules(behavior.get("scaleDown"), default_scale_down())


# --- validation ------------------------------------------------------------------------------------


def _positive_quantity(path: str, value: Any) -> Errors:
    try:
        amount = quantity.value(value)
    except quantity.QuantityError as exc:
        return [invalid(path, value, str(exc))]
    return [] if amount > 0 else [invalid(path, value, "must be positive")]


def _metric_target(path: str, target: Any) -> Errors:
    target = target if isinstance(target, dict) else {}
    out: Errors = []
    kind = target.get("type") or ""
    if not kind:
        out.append(required(f"{path}.type", "must specify a metric target type"))
    if kind not in ("Utilization", "Value", "AverageValue"):
        out.append(invalid(f"{path}.type", kind, "must be either Utilization, Value, or AverageValue"))
    for name in ("value", "averageValue"):
        if target.get(name) is not None:
            out += _positive_quantity(f"{path}.{name}", target[name])
    utilization = target.get("averageUtilization")
    if isinstance(utilization, int) and utilization < 1:
        out.append(invalid(f"{path}.averageUtilization", utilization, "must be greater than 0"))
    return out


def _resource_source(path: str, source: dict[str, Any], *, container: bool) -> Errors:
    out: Errors = []
    if not source.get("name"):
        out.append(required(f"{path}.name", "must specify a resource name"))
    if container and not source.get("container"):
        out.append(required(f"{path}.container", "must specify a container"))
    given = source.get("target")
    target: dict[str, Any] = given if isinstance(given, dict) else {}
    out += _metric_target(f"{path}.target", target)
    if target.get("averageUtilization") is None and target.get("averageValue") is None:
        out.append(
            required(f"{path}.target.averageUtilization", "must set either a target raw value or a target utilization")
        )
    if target.get("averageUtilization") is not None and target.get("averageValue") is not None:
        out.append(
            forbidden(f"{path}.target.averageValue", "may not set both a target raw value and a target utilization")
        )
    return out


def _named_source(path: str, source: dict[str, Any], *, described: bool) -> Errors:
    """Pods, Object and External sources: a metric name, a target (and the object it is about)."""
    out: Errors = []
    if described:
        ref = source.get("describedObject") or {}
        if not ref.get("kind"):
            out.append(required(f"{path}.describedObject.kind"))
        if not ref.get("name"):
            out.append(required(f"{path}.describedObject.name"))
    if not (source.get("metric") or {}).get("name"):
        out.append(required(f"{path}.metric.name", "must specify a metric name"))
    out += _metric_target(f"{path}.target", source.get("target"))
    return out


def _metric_spec(path: str, metric: Any) -> Errors:
    metric = metric if isinstance(metric, dict) else {}
    out: Errors = []
    kind = metric.get("type") or ""
    if not kind:
        out.append(required(f"{path}.type", "must specify a metric source type"))
    elif kind not in METRIC_SOURCE_TYPES:
        out.append(not_supported(f"{path}.type", kind, METRIC_SOURCE_TYPES))
    present = [field for field in _SOURCE_FIELD.values() if metric.get(field) is not None]
    expected = _SOURCE_FIELD.get(kind, "")
    if expected and metric.get(expected) is None:
        out.append(required(f"{path}.{expected}", "must populate information for the given metric source"))
    if len(present) == 1:
        field = present[0]
        source = metric[field] if isinstance(metric[field], dict) else {}
        if field in ("resource", "containerResource"):
            out += _resource_source(f"{path}.{field}", source, container=field == "containerResource")
        else:
            out += _named_source(f"{path}.{field}", source, described=field == "object")
    elif len(present) > 1:
        out += [
            forbidden(f"{path}.{f}", "must populate the given metric source only") for f in present if f != expected
        ]
    return out


def _scaling_rules(path: str, rules: Any) -> Errors:
    if not isinstance(rules, dict):
        return []
    out: Errors = []
    window = rules.get("stabilizationWindowSeconds")
    if isinstance(window, int) and window < 0:
        out.append(invalid(f"{path}.stabilizationWindowSeconds", window, "must be greater than or equal to zero"))
    if isinstance(window, int) and window > MAX_STABILIZATION_WINDOW_SECONDS:
        out.append(
            invalid(
                f"{path}.stabilizationWindowSeconds",
                window,
                f"must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}",
            )
        )
    select = rules.get("selectPolicy")
    if select is not None and select not in SELECT_POLICIES:
        out.append(not_supported(f"{path}.selectPolicy", select, SELECT_POLICIES))
    policies = rules.get("policies") or []
    if not policies:
        out.append(required(f"{path}.policies", "must specify at least one Policy"))
    for i, given in enumerate(policies):
        where = f"{path}.policies[{i}]"
        policy = given if isinstance(given, dict) else {}
        if policy.get("type") not in POLICY_TYPES:
            out.append(not_supported(f"{where}.type", policy.get("type", ""), POLICY_TYPES))
        if int(policy.get("value") or 0) <= 0:
            out.append(invalid(f"{where}.value", policy.get("value", 0), "must be greater than zero"))
        period = int(policy.get("periodSeconds") or 0)
        if period <= 0:
            out.append(invalid(f"{where}.periodSeconds", period, "must be greater than zero"))
        if period > MAX_PERIOD_SECONDS:
            out.append(invalid(f"{where}.periodSeconds", period, f"must be less than or equal to {MAX_PERIOD_SECONDS}"))
    return out


def validate_hpa(obj: Object) -> Errors:
    """kube's validateHorizontalPodAutoscalerSpec over an autoscaling/v2 object (the lower bound of
    minReplicas is 1: scaling to zero is behind a feature gate kube leaves off)."""
    spec = obj.get("spec") or {}
    out: Errors = []
    low, high = spec.get("minReplicas"), spec.get("maxReplicas", 0)
    if isinstance(low, int) and low < 1:
        out.append(invalid("spec.minReplicas", low, "must be greater than or equal to 1"))
    if not isinstance(high, int) or high < 1:
        out.append(invalid("spec.maxReplicas", high, "must be greater than 0"))
    if isinstance(low, int) and isinstance(high, int) and high < low:
        out.append(invalid("spec.maxReplicas", high, "must be greater than or equal to `minReplicas`"))
    ref = spec.get("scaleTargetRef") or {}
    for name in ("kind", "name"):
        value = ref.get(name) or ""
        if not value:
            out.append(required(f"spec.scaleTargetRef.{name}"))
        else:
            out += [invalid(f"spec.scaleTargetRef.{name}", value, msg) for msg in v.path_segment(value)]
    for i, metric in enumerate(spec.get("metrics") or []):
        out += _metric_spec(f"spec.metrics[{i}]", metric)
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        out += _scaling_rules("spec.behavior.scaleUp", behavior.get("scaleUp"))
        out += _scaling_rules("spec.behavior.scaleDown", behavior.get("scaleDown"))
    return out


class HorizontalPodAutoscalerStrategy(Strategy):
    def default(self, obj: Object) -> None:
        default_hpa(obj)

    def initial_status(self, obj: Object) -> dict[str, Any]:
        return {"desiredReplicas": 0}  # kube resets the status to its zero value on create

    def validate(self, obj: Object) -> Errors:
        return validate_hpa(obj)

    def validate_status(self, new: Object, old: Object) -> Errors:
        status = new.get("status") or {}
        out: Errors = []
        for name in ("currentReplicas", "desiredReplicas"):
            out += v.non_negative(f"status.{name}", status.get(name))
        return out


# --- conversion: metric shapes ---------------------------------------------------------------------


def _some(**fields: Any) -> dict[str, Any]:
    """The fields that are set (Go's omitempty), in the order given."""
    return {k: value for k, value in fields.items() if value is not None}


def _metric_id(name: Any, selector: Any) -> dict[str, Any]:
    return _some(name=name, selector=selector)


def metric_spec_to_v1(metric: dict[str, Any]) -> dict[str, Any]:
    """A v2 MetricSpec in autoscaling/v1's annotation shape (targetAverageUtilization, metricName...)."""
    kind = metric.get("type", "")
    out: dict[str, Any] = {"type": kind}
    if isinstance(metric.get("resource"), dict):
        src = metric["resource"]
        target = src.get("target") or {}
        out["resource"] = _some(
            name=src.get("name"),
            targetAverageUtilization=target.get("averageUtilization"),
            targetAverageValue=target.get("averageValue"),
        )
    if isinstance(metric.get("containerResource"), dict):
        src = metric["containerResource"]
        target = src.get("target") or {}
        out["containerResource"] = _some(
            name=src.get("name"),
            targetAverageUtilization=target.get("averageUtilization"),
            targetAverageValue=target.get("averageValue"),
            container=src.get("container"),
        )
    if isinstance(metric.get("pods"), dict):
        src = metric["pods"]
        ident, target = src.get("metric") or {}, src.get("target") or {}
        out["pods"] = _some(
            metricName=ident.get("name"), targetAverageValue=target.get("averageValue"), selector=ident.get("selector")
        )
    if isinstance(metric.get("object"), dict):
        src = metric["object"]
        ident, target = src.get("metric") or {}, src.get("target") or {}
        out["object"] = _some(
            target=src.get("describedObject"),
            metricName=ident.get("name"),
            targetValue=target.get("value"),
            selector=ident.get("selector"),
            averageValue=target.get("averageValue"),
        )
    if isinstance(metric.get("external"), dict):
        src = metric["external"]
        ident, target = src.get("metric") or {}, src.get("target") or {}
        out["external"] = _some(
            metricName=ident.get("name"),
            metricSelector=ident.get("selector"),
            targetValue=target.get("value"),
            targetAverageValue=target.get("averageValue"),
        )
    return out


def metric_spec_to_v2(metric: dict[str, Any]) -> dict[str, Any]:
    """The reverse of :func:`metric_spec_to_v1` (the target's type worked out as kube does)."""
    out: dict[str, Any] = {"type": metric.get("type", "")}
    for field in ("resource", "containerResource"):
        if isinstance(metric.get(field), dict):
            src = metric[field]
            utilization = src.get("targetAverageUtilization")
            target = _some(
                type="AverageValue" if utilization is None else "Utilization",
                averageValue=src.get("targetAverageValue"),
                averageUtilization=utilization,
            )
            out[field] = _some(name=src.get("name"), target=target, container=src.get("container"))
    if isinstance(metric.get("pods"), dict):
        src = metric["pods"]
        out["pods"] = {
            "metric": _metric_id(src.get("metricName"), src.get("selector")),
            "target": _some(type="AverageValue", averageValue=src.get("targetAverageValue")),
        }
    if isinstance(metric.get("object"), dict):
        src = metric["object"]
        average = src.get("averageValue")
        out["object"] = _some(
            describedObject=src.get("target"),
            target=_some(
                type="Value" if average is None else "AverageValue", value=src.get("targetValue"), averageValue=average
            ),
            metric=_metric_id(src.get("metricName"), src.get("selector")),
        )
    if isinstance(metric.get("external"), dict):
        src = metric["external"]
        value = src.get("targetValue")
        out["external"] = {
            "metric": _metric_id(src.get("metricName"), src.get("metricSelector")),
            "target": _some(
                type="AverageValue" if value is None else "Value",
                value=value,
                averageValue=src.get("targetAverageValue"),
            ),
        }
    return out


def metric_status_to_v1(status: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": status.get("type", "")}
    for field in ("resource", "containerResource"):
        if isinstance(status.get(field), dict):
            src = status[field]
            current = src.get("current") or {}
            out[field] = _some(
                name=src.get("name"),
                currentAverageUtilization=current.get("averageUtilization"),
                currentAverageValue=current.get("averageValue", "0"),
                container=src.get("container"),
            )
    if isinstance(status.get("pods"), dict):
        src = status["pods"]
        ident = src.get("metric") or {}
        out["pods"] = _some(
            metricName=ident.get("name"),
            currentAverageValue=(src.get("current") or {}).get("averageValue", "0"),
            selector=ident.get("selector"),
        )
    if isinstance(status.get("object"), dict):
        src = status["object"]
        ident, current = src.get("metric") or {}, src.get("current") or {}
        out["object"] = _some(
            target=src.get("describedObject"),
            metricName=ident.get("name"),
            currentValue=current.get("value", "0"),
            selector=ident.get("selector"),
            averageValue=current.get("averageValue"),
        )
    if isinstance(status.get("external"), dict):
        src = status["external"]
        ident, current = src.get("metric") or {}, src.get("current") or {}
        out["external"] = _some(
            metricName=ident.get("name"),
            metricSelector=ident.get("selector"),
            currentValue=current.get("value", "0"),
            currentAverageValue=current.get("averageValue"),
        )
    return out


def metric_status_to_v2(status: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": status.get("type", "")}
    for field in ("resource", "containerResource"):
        if isinstance(status.get(field), dict):
            src = status[field]
            current = _some(
                averageValue=src.get("currentAverageValue"), averageUtilization=src.get("currentAverageUtilization")
            )
            out[field] = _some(name=src.get("name"), current=current, container=src.get("container"))
    if isinstance(status.get("pods"), dict):
        src = status["pods"]
        out["pods"] = {
            "metric": _metric_id(src.get("metricName"), src.get("selector")),
            "current": _some(averageValue=src.get("currentAverageValue")),
        }
    if isinstance(status.get("object"), dict):
        src = status["object"]
        out["object"] = _some(
            metric=_metric_id(src.get("metricName"), src.get("selector")),
            current=_some(value=src.get("currentValue"), averageValue=src.get("averageValue")),
            describedObject=src.get("target"),
        )
    if isinstance(status.get("external"), dict):
        src = status["external"]
        out["external"] = {
            "metric": _metric_id(src.get("metricName"), src.get("metricSelector")),
            "current": _some(value=src.get("currentValue"), averageValue=src.get("currentAverageValue")),
        }
    return out


# --- conversion: whole objects ---------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _is_cpu_utilization(metric: dict[str, Any], which: str) -> bool:
    source = metric.get("resource") if metric.get("type") == "Resource" else None
    return (
        isinstance(source, dict)
        and source.get("name") == "cpu"
        and (source.get(which) or {}).get("averageUtilization") is not None
    )


def to_v1(obj: Object) -> Object:
    """An autoscaling/v2 HorizontalPodAutoscaler as autoscaling/v1 (kube's conversion; a new object)."""
    src = deep_copy(obj)
    spec, status = src.get("spec") or {}, src.get("status")
    metrics = [m for m in spec.get("metrics") or [] if isinstance(m, dict)]
    out_spec = _some(
        scaleTargetRef=spec.get("scaleTargetRef"),
        minReplicas=spec.get("minReplicas"),
        maxReplicas=spec.get("maxReplicas", 0),
    )
    cpu = next((m for m in metrics if _is_cpu_utilization(m, "target")), None)
    if cpu is not None:
        out_spec["targetCPUUtilizationPercentage"] = cpu["resource"]["target"]["averageUtilization"]
    others = [metric_spec_to_v1(m) for m in metrics if not _is_cpu_utilization(m, "target")]
    meta = dict(src.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    for name in (METRICS_ANNOTATION, CURRENT_METRICS_ANNOTATION, CONDITIONS_ANNOTATION, BEHAVIOR_ANNOTATION):
        annotations.pop(name, None)
    if others:
        annotations[METRICS_ANNOTATION] = _json(others)
    out: Object = {"kind": KIND, "apiVersion": V1, "metadata": meta, "spec": out_spec}
    if spec.get("behavior") is not None:
        annotations[BEHAVIOR_ANNOTATION] = _json(spec["behavior"])
    if isinstance(status, dict):
        current = [m for m in status.get("currentMetrics") or [] if isinstance(m, dict)]
        out_status = _some(
            observedGeneration=status.get("observedGeneration"),
            lastScaleTime=status.get("lastScaleTime"),
            currentReplicas=status.get("currentReplicas", 0),
            desiredReplicas=status.get("desiredReplicas", 0),
        )
        used = next((m for m in current if _is_cpu_utilization(m, "current")), None)
        if used is not None:
            out_status["currentCPUUtilizationPercentage"] = used["resource"]["current"]["averageUtilization"]
        if current:
            annotations[CURRENT_METRICS_ANNOTATION] = _json([metric_status_to_v1(m) for m in current])
        if status.get("conditions"):
            annotations[CONDITIONS_ANNOTATION] = _json(status["conditions"])
        out["status"] = out_status
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return out


def _annotation(annotations: dict[str, Any], name: str) -> Any:
    text = annotations.pop(name, None)
    if text is None:
        return None
    try:
        return json.loads(str(text))
    except ValueError as exc:
        raise ConversionError(f"annotation {name} is not valid JSON: {exc}") from exc


def _dicts(value: Any, name: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(i, dict) for i in value):
        raise ConversionError(f"annotation {name} must hold a JSON list of objects")
    return value


def to_v2(obj: Object) -> Object:
    """An autoscaling/v1 HorizontalPodAutoscaler as autoscaling/v2, the annotations' content restored
    to its fields (kube's conversion, the implicit CPU target of v1 included; a new object)."""
    src = deep_copy(obj)
    spec, status = src.get("spec") or {}, src.get("status")
    meta = dict(src.get("metadata") or {})
    annotations = dict(meta.get("annotations") or {})
    others = _dicts(_annotation(annotations, METRICS_ANNOTATION), METRICS_ANNOTATION)
    behavior = _annotation(annotations, BEHAVIOR_ANNOTATION)
    current = _dicts(_annotation(annotations, CURRENT_METRICS_ANNOTATION), CURRENT_METRICS_ANNOTATION)
    conditions = _dicts(_annotation(annotations, CONDITIONS_ANNOTATION), CONDITIONS_ANNOTATION)
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    metrics = [metric_spec_to_v2(m) for m in others]
    if spec.get("targetCPUUtilizationPercentage") is not None:
        metrics.append(cpu_utilization_metric(spec["targetCPUUtilizationPercentage"]))
    if not metrics:  # v1's implicit target, made explicit as kube's conversion does
        metrics = [cpu_utilization_metric(DEFAULT_CPU_UTILIZATION)]
    out_spec = _some(
        scaleTargetRef=spec.get("scaleTargetRef"),
        minReplicas=spec.get("minReplicas"),
        maxReplicas=spec.get("maxReplicas", 0),
        metrics=metrics,
        behavior=behavior if isinstance(behavior, dict) else None,
    )
    out: Object = {"kind": KIND, "apiVersion": V2, "metadata": meta, "spec": out_spec}
    if isinstance(status, dict):
        out_status = _some(
            observedGeneration=status.get("observedGeneration"),
            lastScaleTime=status.get("lastScaleTime"),
            currentReplicas=status.get("currentReplicas") or None,
            desiredReplicas=status.get("desiredReplicas", 0),
        )
        if current:
            out_status["currentMetrics"] = [metric_status_to_v2(m) for m in current]
        elif status.get("currentCPUUtilizationPercentage") is not None:
            used = status["currentCPUUtilizationPercentage"]
            out_status["currentMetrics"] = [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": used}}}
            ]
        if conditions:
            out_status["conditions"] = conditions
        out["status"] = out_status
    return out


# --- printing --------------------------------------------------------------------------------------


def _quantity_text(value: Any) -> str:
    try:
        return quantity.canonical(value)
    except quantity.QuantityError:
        return str(value)


def _metric_text(spec: dict[str, Any], status: dict[str, Any] | None) -> str:
    """One metric as kubectl 1.32's TARGETS prints it: ``cpu: 12%/50%``, ``<unknown>/50%`` parts."""
    kind = spec.get("type")
    field = _SOURCE_FIELD.get(str(kind))
    source = spec.get(field) if field else None
    if not isinstance(source, dict):
        return "<unknown type>"
    found = (status or {}).get(field) if field else None
    current_of = (found.get("current") or {}) if isinstance(found, dict) else None
    target = source.get("target") or {}
    if kind in ("Resource", "ContainerResource"):
        name = str(source.get("name", ""))
        if target.get("averageValue") is not None:
            current = "<unknown>"
            if current_of is not None and current_of.get("averageValue") is not None:
                current = _quantity_text(current_of["averageValue"])
            return f"{name}: {current}/{_quantity_text(target['averageValue'])}"
        current = "<unknown>"
        if current_of is not None and current_of.get("averageUtilization") is not None:
            current = f"{current_of['averageUtilization']}%"
        goal = f"{target['averageUtilization']}%" if target.get("averageUtilization") is not None else "<auto>"
        return f"{name}: {current}/{goal}"
    wanted = target.get("averageValue") if target.get("averageValue") is not None else target.get("value")
    current = "<unknown>"
    if current_of is not None:
        have = current_of.get("averageValue") if target.get("averageValue") is not None else current_of.get("value")
        if have is not None:
            current = _quantity_text(have)
    suffix = " (avg)" if kind in ("Object", "External") and target.get("averageValue") is not None else ""
    return f"{current}/{_quantity_text(wanted) if wanted is not None else '<unset>'}{suffix}"


def targets(obj: Object) -> str:
    """The TARGETS column of ``kubectl get hpa``: at most two metrics, then "+ N more..."."""
    if obj.get("apiVersion") == V1:
        obj = to_v2(obj)
    specs = [m for m in (obj.get("spec") or {}).get("metrics") or [] if isinstance(m, dict)]
    if not specs:
        return "<none>"
    statuses = (obj.get("status") or {}).get("currentMetrics") or []
    texts = [_metric_text(m, statuses[i] if i < len(statuses) else None) for i, m in enumerate(specs)]
    if len(texts) > 2:
        return f"{', '.join(texts[:2])} + {len(texts) - 2} more..."
    return ", ".join(texts)
