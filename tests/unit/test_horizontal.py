"""HorizontalPodAutoscalers: the API (v2 stored, v1 converted, defaults, validation, the table) and the
controller's pure parts (kube's replica calculation, stabilization, scaling policies, the limits)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from agents.apiserver.kinds import autoscaling
from agents.apiserver.tables import table
from agents.controllers.base import rfc3339
from agents.controllers.horizontal import (
    History,
    Observed,
    Plan,
    Proposed,
    Recommendation,
    failed_rescale,
    normalize_legacy,
    normalize_with_behavior,
    plan,
    record_scale_event,
)
from agents.controllers.replicacalculator import (
    MetricsError,
    Proposal,
    Tuning,
    pod_usage,
    raw_resource_replicas,
    resource_replicas,
)
from agents.machinery.quantity import milli

Client = TestClient[Any, Any]
V2 = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"
V1 = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers"


def hpa_v1(name: str = "web", *, low: int = 1, high: int = 3, cpu: int | None = 50) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "minReplicas": low,
        "maxReplicas": high,
    }
    if cpu is not None:
        spec["targetCPUUtilizationPercentage"] = cpu
    return {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name}, "spec": spec}


def hpa_v2(name: str = "web", *, high: int = 3, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "maxReplicas": high,
            **spec,
        },
    }


def memory_metric(value: str) -> dict[str, Any]:
    return {
        "type": "Resource",
        "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": value}},
    }


# --- conversion ----------------------------------------------------------------------------------


def test_a_v1_cpu_target_becomes_a_v2_resource_metric_and_back() -> None:
    v2 = autoscaling.to_v2(hpa_v1(cpu=50))
    assert v2["apiVersion"] == "autoscaling/v2"
    assert v2["spec"]["metrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}
    ]
    back = autoscaling.to_v1(v2)
    assert back["spec"]["targetCPUUtilizationPercentage"] == 50
    assert "annotations" not in back["metadata"]


def test_v1_without_a_target_gets_the_implicit_80_percent() -> None:
    assert autoscaling.to_v2(hpa_v1(cpu=None))["spec"]["metrics"] == [autoscaling.cpu_utilization_metric(80)]


def test_what_v1_cannot_hold_travels_in_kube_annotations_and_comes_back() -> None:
    behavior = {
        "scaleDown": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}]}
    }
    conditions = [{"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale", "message": "ok"}]
    current = [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12, "averageValue": "24m"}}},
        {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "10Mi"}}},
    ]
    v2 = hpa_v2(
        metrics=[autoscaling.cpu_utilization_metric(50), memory_metric("100Mi")], behavior=behavior, minReplicas=1
    )
    v2["status"] = {"currentReplicas": 2, "desiredReplicas": 2, "currentMetrics": current, "conditions": conditions}
    v1 = autoscaling.to_v1(v2)
    notes = v1["metadata"]["annotations"]
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 50
    assert v1["status"]["currentCPUUtilizationPercentage"] == 12
    assert json.loads(notes[autoscaling.METRICS_ANNOTATION]) == [
        {"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}}
    ]
    assert json.loads(notes[autoscaling.CURRENT_METRICS_ANNOTATION])[1] == {
        "type": "Resource",
        "resource": {"name": "memory", "currentAverageValue": "10Mi"},
    }
    assert json.loads(notes[autoscaling.CONDITIONS_ANNOTATION]) == conditions
    assert json.loads(notes[autoscaling.BEHAVIOR_ANNOTATION]) == behavior
    again = autoscaling.to_v2(v1)
    assert again["spec"]["metrics"] == [memory_metric("100Mi"), autoscaling.cpu_utilization_metric(50)]
    assert again["spec"]["behavior"] == behavior
    assert again["status"]["currentMetrics"] == current and again["status"]["conditions"] == conditions
    assert "annotations" not in again["metadata"]


def test_a_malformed_annotation_fails_the_conversion() -> None:
    v1 = hpa_v1()
    v1["metadata"]["annotations"] = {autoscaling.METRICS_ANNOTATION: "{not json"}
    try:
        autoscaling.to_v2(v1)
    except autoscaling.ConversionError as exc:
        assert autoscaling.METRICS_ANNOTATION in str(exc)
    else:
        raise AssertionError("a malformed annotation converted")


# --- defaults, validation, printing --------------------------------------------------------------


def test_defaults_are_kubes() -> None:
    obj = hpa_v2(behavior={"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}})
    autoscaling.default_hpa(obj)
    spec = obj["spec"]
    assert spec["minReplicas"] == 1 and spec["metrics"] == [autoscaling.cpu_utilization_metric(80)]
    assert spec["behavior"]["scaleUp"] == autoscaling.default_scale_up()
    down = spec["behavior"]["scaleDown"]
    assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}] and down["selectPolicy"] == "Max"
    assert "stabilizationWindowSeconds" not in down  # the controller's setting fills it in
    plain = hpa_v2()
    autoscaling.default_hpa(plain)
    assert "behavior" not in plain["spec"]


def _rendered(obj: dict[str, Any]) -> list[str]:
    return [e.render() for e in autoscaling.validate_hpa(obj)]


def test_validation_speaks_kubes_words() -> None:
    assert _rendered(hpa_v2(high=0, minReplicas=2)) == [
        "spec.maxReplicas: Invalid value: 0: must be greater than 0",
        "spec.maxReplicas: Invalid value: 0: must be greater than or equal to `minReplicas`",
    ]
    assert _rendered(hpa_v2(minReplicas=0)) == [
        "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1"
    ]
    no_ref = hpa_v2()
    no_ref["spec"]["scaleTargetRef"] = {}
    assert _rendered(no_ref) == ["spec.scaleTargetRef.kind: Required value", "spec.scaleTargetRef.name: Required value"]
    zero = hpa_v2(metrics=[autoscaling.cpu_utilization_metric(0)])
    assert _rendered(zero) == [
        "spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0"
    ]
    assert _rendered(hpa_v2(metrics=[memory_metric("-1")])) == [
        'spec.metrics[0].resource.target.averageValue: Invalid value: "-1": must be positive'
    ]
    neither = hpa_v2(metrics=[{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}}])
    assert _rendered(neither) == [
        "spec.metrics[0].resource.target.averageUtilization: Required value: must set either a target raw value or a"
        " target utilization"
    ]
    wrong = hpa_v2(metrics=[{"type": "Nope"}])
    assert _rendered(wrong) == [
        'spec.metrics[0].type: Unsupported value: "Nope": supported values: "ContainerResource", "External",'
        ' "Object", "Pods", "Resource"'
    ]
    policies = hpa_v2(behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 0, "periodSeconds": 1801}]}})
    assert _rendered(policies) == [
        "spec.behavior.scaleUp.policies[0].value: Invalid value: 0: must be greater than zero",
        "spec.behavior.scaleUp.policies[0].periodSeconds: Invalid value: 1801: must be less than or equal to 1800",
    ]


def test_the_table_prints_kubectl_columns_and_targets() -> None:
    obj = hpa_v2(minReplicas=1, metrics=[autoscaling.cpu_utilization_metric(50)])
    obj["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    printed = table("horizontalpodautoscalers.autoscaling", [obj])
    names = [c["name"] for c in printed["columnDefinitions"]]
    assert names == ["Name", "Reference", "Targets", "MinPods", "MaxPods", "Replicas", "Age"]
    assert printed["rows"][0]["cells"][:6] == ["web", "Deployment/web", "cpu: <unknown>/50%", "1", 3, 0]
    obj["status"] = {
        "currentReplicas": 2,
        "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12}}}],
    }
    assert autoscaling.targets(obj) == "cpu: 12%/50%"
    assert table("horizontalpodautoscalers.autoscaling", [autoscaling.to_v1(obj)])["rows"][0]["cells"][2:6] == [
        "cpu: 12%/50%",
        "1",
        3,
        2,
    ]
    obj["spec"]["metrics"] = [memory_metric("100Mi")] * 3
    assert autoscaling.targets(obj) == "memory: <unknown>/100Mi, memory: <unknown>/100Mi + 1 more..."


# --- over HTTP -----------------------------------------------------------------------------------


async def test_v1_and_v2_are_two_views_of_one_object(http: Client) -> None:
    created = await http.post(V1, json=hpa_v1())
    assert created.status == 201, await created.text()
    body = await created.json()
    assert body["apiVersion"] == "autoscaling/v1" and body["spec"]["targetCPUUtilizationPercentage"] == 50
    stored = await (await http.get(f"{V2}/web")).json()
    assert stored["apiVersion"] == "autoscaling/v2" and stored["spec"]["minReplicas"] == 1
    assert stored["spec"]["metrics"] == [autoscaling.cpu_utilization_metric(50)]
    assert stored["status"] == {"desiredReplicas": 0}
    listed = await (await http.get(V1)).json()
    assert listed["kind"] == "HorizontalPodAutoscalerList" and listed["apiVersion"] == "autoscaling/v1"
    assert [i["apiVersion"] for i in listed["items"]] == ["autoscaling/v1"]
    # a patch at v1 applies to v1's fields; v2's memory metric, kept in the annotation, survives it
    stored["spec"]["metrics"].append(memory_metric("100Mi"))
    assert (await http.put(f"{V2}/web", json=stored)).status == 200
    patched = await http.patch(
        f"{V1}/web",
        data=json.dumps({"spec": {"targetCPUUtilizationPercentage": 70}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status == 200, await patched.text()
    after = await (await http.get(f"{V2}/web")).json()
    assert after["spec"]["metrics"] == [memory_metric("100Mi"), autoscaling.cpu_utilization_metric(70)]
    assert after["metadata"]["generation"] == 3 and "annotations" not in after["metadata"]
    # status written at v1 reaches v2's currentMetrics
    current = await (await http.get(f"{V1}/web")).json()
    current["status"] = {"currentReplicas": 2, "desiredReplicas": 2, "currentCPUUtilizationPercentage": 33}
    assert (await http.put(f"{V1}/web/status", json=current)).status == 200
    status = (await (await http.get(f"{V2}/web")).json())["status"]
    assert status["currentMetrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 33}}}
    ]
    deleted = await http.delete(f"{V1}/web")
    assert deleted.status == 200 and (await deleted.json())["apiVersion"] == "autoscaling/v1"
    assert (await http.get(f"{V2}/web")).status == 404


async def test_an_invalid_autoscaler_is_refused_with_kubes_status(http: Client) -> None:
    response = await http.post(V1, json=hpa_v1(low=5, high=0))
    assert response.status == 422
    status = await response.json()
    assert status["reason"] == "Invalid"
    assert status["message"] == (
        'HorizontalPodAutoscaler.autoscaling "web" is invalid: [spec.maxReplicas: Invalid value: 0: must be greater'
        " than 0, spec.maxReplicas: Invalid value: 0: must be greater than or equal to `minReplicas`]"
    )
    assert (await http.get(f"{V2}/web")).status == 404


async def test_a_v1_watch_sees_converted_events(http: Client) -> None:
    listed = await (await http.get(V1)).json()
    rv = listed["metadata"]["resourceVersion"]
    await http.post(V2, json=hpa_v2(metrics=[autoscaling.cpu_utilization_metric(40)]))
    response = await http.get(V1, params={"watch": "1", "resourceVersion": rv, "timeoutSeconds": "1"})
    line = await response.content.readline()
    event = json.loads(line)
    assert event["type"] == "ADDED"
    assert event["object"]["apiVersion"] == "autoscaling/v1"
    assert event["object"]["spec"]["targetCPUUtilizationPercentage"] == 40


async def test_discovery_prefers_v2(http: Client) -> None:
    group = await (await http.get("/apis/autoscaling")).json()
    assert group["preferredVersion"]["version"] == "v2"
    assert [v["version"] for v in group["versions"]] == ["v2", "v1"]
    for version in ("v1", "v2"):
        resources = (await (await http.get(f"/apis/autoscaling/{version}")).json())["resources"]
        hpa = next(r for r in resources if r["name"] == "horizontalpodautoscalers")
        assert hpa["shortNames"] == ["hpa"] and hpa["categories"] == ["all"]
        assert any(r["name"] == "horizontalpodautoscalers/status" for r in resources)


# --- the controller's replica calculation (kube's replica_calculator cases) ------------------------

NOW = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(minutes=30)
TUNING = Tuning()


def pod(
    name: str,
    *,
    request: str | None = "1000m",
    ready: str = "True",
    phase: str = "Running",
    started: datetime = LONG_AGO,
    changed: datetime | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    resources = {"requests": {"cpu": request, "memory": "100Mi"}} if request is not None else {}
    meta: dict[str, Any] = {"name": name, "namespace": "default", "labels": {"app": "web"}}
    if deleting:
        meta["deletionTimestamp"] = rfc3339(NOW)
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "resources": resources}]},
        "status": {
            "phase": phase,
            "startTime": rfc3339(started),
            "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": rfc3339(changed or started)}],
        },
    }


def usage(name: str, cpu: str, memory: str = "50Mi", *, at: datetime = NOW) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "timestamp": rfc3339(at),
        "window": "15.011s",
        "containers": [{"name": "c", "usage": {"cpu": cpu, "memory": memory}}],
    }


def cpu_replicas(current: int, target: int, pods: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> Proposal:
    return resource_replicas(
        current, target, "cpu", pods=pods, metrics=pod_usage(metrics, "cpu"), now=NOW, tuning=TUNING
    )


def test_usage_over_requests_scales_up_by_the_ratio() -> None:
    pods = [pod(f"p{i}") for i in range(3)]
    found = cpu_replicas(3, 30, pods, [usage("p0", "300m"), usage("p1", "500m"), usage("p2", "700m")])
    assert found == Proposal(5, 50, 500)  # 50% of request against 30%: ceil(50/30 * 3)


def test_a_change_within_the_tolerance_keeps_the_replicas() -> None:
    pods = [pod("p0", request="900m"), pod("p1"), pod("p2", request="1100m")]
    found = cpu_replicas(3, 100, pods, [usage("p0", "1010m"), usage("p1", "1030m"), usage("p2", "1020m")])
    assert found.replicas == 3 and found.utilization == 102


def test_scale_down_uses_the_truncated_utilization() -> None:
    pods = [pod(f"p{i}") for i in range(5)]
    levels = ["100m", "300m", "500m", "250m", "250m"]
    found = cpu_replicas(5, 50, pods, [usage(f"p{i}", v) for i, v in enumerate(levels)])
    assert found.replicas == 3 and found.utilization == 28


def test_a_pod_without_metrics_counts_as_idle_on_scale_up() -> None:
    pods = [pod(f"p{i}") for i in range(3)]
    found = cpu_replicas(3, 100, pods, [usage("p0", "1900m"), usage("p1", "1900m")])
    assert found.replicas == 4  # (1900+1900+0)/3000 = 126%: ceil(1.26 * 3)


def test_a_pod_without_metrics_counts_as_fully_used_on_scale_down() -> None:
    pods = [pod(f"p{i}") for i in range(3)]
    found = cpu_replicas(3, 50, pods, [usage("p0", "200m"), usage("p1", "200m")])
    assert found.replicas == 3  # (200+200+1000)/3000 = 46% of a 50% target: within tolerance


def test_unready_pods_count_as_idle_when_scaling_up_on_cpu() -> None:
    never_ready = pod("p2", ready="False", changed=LONG_AGO + timedelta(seconds=5))
    pods = [pod("p0"), pod("p1"), never_ready]
    found = cpu_replicas(3, 50, pods, [usage("p0", "900m"), usage("p1", "900m"), usage("p2", "2000m")])
    assert found.replicas == 4  # 1800/3000 = 60%: its 2000m would have asked for 8


def test_deleted_and_failed_pods_are_left_out() -> None:
    pods = [pod("p0"), pod("p1", deleting=True), pod("p2", phase="Failed")]
    found = cpu_replicas(1, 50, pods, [usage("p0", "1000m"), usage("p1", "0"), usage("p2", "0")])
    assert found.replicas == 2 and found.utilization == 100


def test_a_container_without_a_request_is_an_error() -> None:
    with pytest.raises(MetricsError, match="missing request for cpu in container c of Pod p0"):
        cpu_replicas(1, 50, [pod("p0", request=None)], [usage("p0", "100m")])


def test_an_average_value_target_divides_the_average_usage() -> None:
    pods = [pod("p0"), pod("p1")]
    metrics = pod_usage([usage("p0", "1m", "150Mi"), usage("p1", "1m", "250Mi")], "memory")
    found = raw_resource_replicas(2, milli("100Mi"), "memory", pods=pods, metrics=metrics, now=NOW, tuning=TUNING)
    assert found.replicas == 4 and found.average == milli("200Mi")


# --- stabilization, policies, limits -----------------------------------------------------------------


def test_scale_down_is_held_for_the_window_then_allowed() -> None:
    proposed = Proposed(current=5, desired=2, low=1, high=10)
    recent = History(recommendations=(Recommendation(5, NOW - timedelta(seconds=60)),))
    held = normalize_legacy(proposed, history=recent, now=NOW, tuning=TUNING)
    assert held.replicas == 5 and held.able[0] == "ScaleDownStabilized"
    old = History(recommendations=(Recommendation(5, NOW - timedelta(seconds=301)),))
    allowed = normalize_legacy(proposed, history=old, now=NOW, tuning=TUNING)
    assert allowed.replicas == 2 and allowed.able[0] == "ReadyForNewScale"
    assert allowed.recommendations == (Recommendation(2, NOW),)  # the old slot reused


def test_without_behavior_scale_up_at_most_doubles_and_max_clamps() -> None:
    fast = normalize_legacy(Proposed(current=3, desired=20, low=1, high=10), history=History(), now=NOW, tuning=TUNING)
    assert fast.replicas == 6 and fast.limited == (
        True,
        "ScaleUpLimit",
        "the desired replica count is increasing faster than the maximum scale rate",
    )
    capped = normalize_legacy(Proposed(current=3, desired=9, low=1, high=5), history=History(), now=NOW, tuning=TUNING)
    assert capped.replicas == 5 and capped.limited[:2] == (True, "TooManyReplicas")
    floor = normalize_legacy(Proposed(current=3, desired=1, low=2, high=5), history=History(), now=NOW, tuning=TUNING)
    assert floor.replicas == 2 and floor.limited[:2] == (True, "TooFewReplicas")
    within = normalize_legacy(Proposed(current=3, desired=4, low=1, high=5), history=History(), now=NOW, tuning=TUNING)
    assert within.limited == (False, "DesiredWithinRange", "the desired count is within the acceptable range")


def test_behavior_policies_limit_the_rate_over_their_periods() -> None:
    behavior = {"scaleUp": autoscaling.default_scale_up(), "scaleDown": autoscaling.default_scale_down()}
    up = Proposed(current=2, desired=20, low=1, high=30)
    first = normalize_with_behavior(up, behavior, history=History(), now=NOW, tuning=TUNING)
    assert first.replicas == 6 and first.limited[1] == "ScaleUpLimit"  # Max(2 + 4 pods, 2 * 200%)
    after = record_scale_event(History(), behavior, before=2, after=6, now=NOW - timedelta(seconds=5))
    again = normalize_with_behavior(
        Proposed(current=6, desired=20, low=1, high=30), behavior, history=after, now=NOW, tuning=TUNING
    )
    assert again.replicas == 6  # the period started at 2 replicas: the policies allow 6 until it passes
    later = normalize_with_behavior(
        Proposed(current=6, desired=20, low=1, high=30),
        behavior,
        history=after,
        now=NOW + timedelta(seconds=15),
        tuning=TUNING,
    )
    assert later.replicas == 12
    slow_down = {
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        },
        "scaleUp": autoscaling.default_scale_up(),
    }
    down = normalize_with_behavior(
        Proposed(current=5, desired=1, low=1, high=10), slow_down, history=History(), now=NOW, tuning=TUNING
    )
    assert down.replicas == 4 and down.limited[1] == "ScaleDownLimit"


def test_behavior_stabilizes_scale_down_by_the_highest_recent_recommendation() -> None:
    behavior = {"scaleUp": autoscaling.default_scale_up(), "scaleDown": autoscaling.default_scale_down()}
    recent = History(recommendations=(Recommendation(4, NOW - timedelta(seconds=100)),))
    held = normalize_with_behavior(
        Proposed(current=5, desired=1, low=1, high=10), behavior, history=recent, now=NOW, tuning=TUNING
    )
    assert held.replicas == 4 and held.able[0] == "ScaleDownStabilized"


# --- the plan -----------------------------------------------------------------------------------------


def stored_hpa(**spec: Any) -> dict[str, Any]:
    obj = hpa_v2(minReplicas=1, metrics=[autoscaling.cpu_utilization_metric(50)], **spec)
    obj["metadata"]["namespace"] = "default"
    obj["status"] = {"desiredReplicas": 0}
    return obj


def scale(replicas: int, selector: str = "app=web") -> dict[str, Any]:
    return {"kind": "Scale", "spec": {"replicas": replicas}, "status": {"replicas": replicas, "selector": selector}}


def conditions_of(decided: Plan) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in decided.status["conditions"]}


def test_without_the_metrics_api_scaling_is_inactive_with_kubes_words() -> None:
    missing = "the server could not find the requested resource (get pods.metrics.k8s.io)"
    observed = Observed(scale=scale(1), pods=[pod("p0")], metrics_error=missing)
    decided = plan(stored_hpa(), observed, history=History(), now=NOW, tuning=TUNING)
    cause = (
        "failed to get cpu utilization: unable to get metrics for resource cpu: unable to fetch metrics from"
        f" resource metrics API: {missing}"
    )
    assert decided.scale_to is None
    assert conditions_of(decided)["ScalingActive"] == (
        "False",
        "FailedGetResourceMetric",
        f"the HPA was unable to compute the replica count: {cause}",
    )
    assert conditions_of(decided)["AbleToScale"][1] == "SucceededGetScale"
    assert [(e.reason, e.message) for e in decided.events] == [
        ("FailedGetResourceMetric", cause),
        (
            "FailedComputeMetricsReplicas",
            f"invalid metrics (1 invalid out of 1), first error is: failed to get cpu resource metric value: {cause}",
        ),
    ]
    assert decided.status["currentReplicas"] == 1 and decided.status["currentMetrics"] == [{"type": ""}]
    assert autoscaling.targets({**stored_hpa(), "status": decided.status}) == "cpu: <unknown>/50%"


def test_a_busy_target_is_scaled_up_with_kubes_event() -> None:
    pods = [pod("p0"), pod("p1")]
    observed = Observed(scale=scale(2), pods=pods, pod_metrics=[usage("p0", "900m"), usage("p1", "700m")])
    decided = plan(stored_hpa(), observed, history=History(), now=NOW, tuning=TUNING)
    assert decided.scale_to == 3  # 80% of a 50% target: ceil(1.6 * 2) = 4, at most max 3
    reason = "cpu resource utilization (percentage of request) above target"
    assert [(e.reason, e.message) for e in decided.events] == [("SuccessfulRescale", f"New size: 3; reason: {reason}")]
    status = decided.status
    assert status["desiredReplicas"] == 3 and status["currentReplicas"] == 2
    assert status["lastScaleTime"] == rfc3339(NOW)
    assert status["currentMetrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageValue": "800m", "averageUtilization": 80}}}
    ]
    found = conditions_of(decided)
    assert found["AbleToScale"][:2] == ("True", "SucceededRescale")
    assert found["ScalingActive"] == (
        "True",
        "ValidMetricFound",
        f"the HPA was able to successfully calculate a replica count from {reason.removesuffix(' above target')}",
    )
    assert found["ScalingLimited"][:2] == ("True", "TooManyReplicas")
    failed = failed_rescale(decided, stored_hpa(), "conflict", now=NOW)
    assert failed.events[-1].reason == "FailedRescale" and "lastScaleTime" not in failed.status
    assert conditions_of(failed)["AbleToScale"][:2] == ("False", "FailedUpdateScale")


def test_zero_replicas_disable_scaling_and_a_missing_target_cannot_be_scaled() -> None:
    disabled = plan(stored_hpa(), Observed(scale=scale(0)), history=History(), now=NOW, tuning=TUNING)
    assert conditions_of(disabled)["ScalingActive"] == (
        "False",
        "ScalingDisabled",
        "scaling is disabled since the replica count of the target is zero",
    )
    assert disabled.scale_to is None and "currentReplicas" not in disabled.status
    gone = plan(
        stored_hpa(),
        Observed(scale_error='deployments.apps "web" not found'),
        history=History(),
        now=NOW,
        tuning=TUNING,
    )
    assert conditions_of(gone)["AbleToScale"] == (
        "False",
        "FailedGetScale",
        'the HPA controller was unable to get the target\'s current scale: deployments.apps "web" not found',
    )
    assert [e.reason for e in gone.events] == ["FailedGetScale"]


def test_replicas_outside_the_bounds_are_brought_inside_without_metrics() -> None:
    above = plan(stored_hpa(), Observed(scale=scale(7)), history=History(), now=NOW, tuning=TUNING)
    assert above.scale_to == 3 and above.events[0].message == (
        "New size: 3; reason: Current number of replicas above Spec.MaxReplicas"
    )
