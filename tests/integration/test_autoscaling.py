"""HorizontalPodAutoscalers on a local lab: ``kubectl autoscale`` (autoscaling/v1) read back at v2 with the
official client, ``kubectl get hpa``'s columns, kube's validation, and the controller's verdict when no
resource metrics API is served."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client import exceptions

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually


@pytest.fixture(scope="module")
def api(lab: Lab) -> Iterator[Any]:
    """The official client (its objects used untyped here: their fields are all Optional)."""
    connect: Any = config.new_client_from_config
    api_client = connect(config_file=str(lab.kubeconfig))
    yield api_client
    api_client.close()


def autoscaling_v2(api: Any) -> Any:
    return client.AutoscalingV2Api(api)


def web(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [{"name": "web", "image": "busybox:1.36", "resources": {"requests": {"cpu": "100m"}}}]
                },
            },
        },
    }


def test_kubectl_autoscale_creates_a_v1_autoscaler_read_at_v2_and_v1(
    kubectl: Kubectl, api: Any, namespace: str
) -> None:
    kubectl.ok("apply", "-f", "-", stdin=manifest(web(namespace)))
    made = kubectl("autoscale", "deployment", "web", "--min=1", "--max=3", "--cpu-percent=50", "-n", namespace, "-v=6")
    assert made.ok, made.err
    assert "horizontalpodautoscaler.autoscaling/web autoscaled" in made.out
    assert "POST https://" in made.err  # kubectl 1.32 creates autoscaling/v1 objects
    assert f"/apis/autoscaling/v1/namespaces/{namespace}/horizontalpodautoscalers" in made.err

    v2 = autoscaling_v2(api).read_namespaced_horizontal_pod_autoscaler("web", namespace)
    assert v2.api_version == "autoscaling/v2"
    assert (v2.spec.min_replicas, v2.spec.max_replicas) == (1, 3)
    assert v2.spec.scale_target_ref.kind == "Deployment" and v2.spec.scale_target_ref.name == "web"
    (metric,) = v2.spec.metrics
    assert metric.type == "Resource" and metric.resource.name == "cpu"
    assert metric.resource.target.type == "Utilization" and metric.resource.target.average_utilization == 50

    v1: Any = client.AutoscalingV1Api(api).read_namespaced_horizontal_pod_autoscaler("web", namespace)
    assert v1.api_version == "autoscaling/v1" and v1.spec.target_cpu_utilization_percentage == 50
    listed = autoscaling_v2(api).list_namespaced_horizontal_pod_autoscaler(namespace)
    assert [h.metadata.name for h in listed.items] == ["web"]

    table = kubectl.ok("get", "hpa", "-n", namespace).splitlines()
    assert table[0].split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
    row = table[1].split()  # TARGETS holds a space: "cpu: <unknown>/50%" before any metric is read
    assert row[:6] == ["web", "Deployment/web", "cpu:", "<unknown>/50%", "1", "3"]
    assert row[6] in ("0", "1")  # REPLICAS: 1 once the controller has looked at the deployment


def test_an_invalid_autoscaler_is_refused_and_not_stored(kubectl: Kubectl, api: Any, namespace: str) -> None:
    body = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "bad"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 5,
            "maxReplicas": 0,
        },
    }
    with pytest.raises(exceptions.ApiException) as refused:
        autoscaling_v2(api).create_namespaced_horizontal_pod_autoscaler(namespace, body)
    assert refused.value.status == 422
    status = json.loads(refused.value.body or "{}")
    assert status["reason"] == "Invalid" and status["message"] == (
        'HorizontalPodAutoscaler.autoscaling "bad" is invalid: [spec.maxReplicas: Invalid value: 0: must be greater'
        " than 0, spec.maxReplicas: Invalid value: 0: must be greater than or equal to `minReplicas`]"
    )
    assert kubectl.ok("get", "hpa", "-n", namespace, "-o", "name") == ""


def test_without_a_metrics_api_the_controller_says_it_cannot_compute(kubectl: Kubectl, namespace: str) -> None:
    kubectl.ok("apply", "-f", "-", stdin=manifest(web(namespace)))
    kubectl.ok("autoscale", "deployment", "web", "--min=1", "--max=3", "--cpu-percent=50", "-n", namespace)

    def inactive() -> dict[str, Any] | None:
        hpa = kubectl.json("get", "hpa.v2.autoscaling", "web", "-n", namespace)
        found = {c["type"]: c for c in (hpa.get("status") or {}).get("conditions") or []}
        active = found.get("ScalingActive")
        return found if active is not None and active["status"] == "False" else None

    conditions = eventually(inactive, timeout=60, what="ScalingActive False on the autoscaler")
    assert conditions["AbleToScale"]["reason"] == "SucceededGetScale"
    active = conditions["ScalingActive"]
    assert active["reason"] == "FailedGetResourceMetric"
    assert active["message"].startswith(
        "the HPA was unable to compute the replica count: failed to get cpu utilization: unable to get metrics for"
        " resource cpu: unable to fetch metrics from resource metrics API: "
    )

    def reasons() -> set[str]:
        events = kubectl.json("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=web")
        return {
            e["reason"]
            for e in events["items"]
            if e["involvedObject"]["kind"] == "HorizontalPodAutoscaler"
            and e["source"]["component"] == "horizontal-pod-autoscaler"
        }

    eventually(
        lambda: {"FailedGetResourceMetric", "FailedComputeMetricsReplicas"} <= reasons(),
        timeout=30,
        what="the autoscaler's warning events",
    )
    described = kubectl.ok("describe", "hpa", "web", "-n", namespace)
    assert "ScalingActive" in described and "FailedGetResourceMetric" in described
