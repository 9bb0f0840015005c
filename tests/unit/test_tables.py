"""Server-side printing: what ``kubectl get`` shows for each resource."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.apiserver.tables import human_duration, printer_for, table


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (59, "59s"),
        (119, "119s"),
        (120, "2m"),
        (330, "5m30s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 600, "3h10m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (50 * 3600, "2d2h"),
        (8 * 86400, "8d"),
        (800 * 86400, "2y70d"),
        (3000 * 86400, "8y"),
    ],
)
def test_durations_print_as_kubectl_prints_them(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def _ago(seconds: int) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(status: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "creationTimestamp": _ago(30), **meta},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
        "status": status,
    }


def cells(resource: str, obj: dict[str, Any]) -> list[Any]:
    return printer_for(resource).row(obj)


def test_pod_rows_show_ready_status_and_restarts() -> None:
    running = pod(
        {
            "phase": "Running",
            "podIP": "10.1.0.5",
            "containerStatuses": [
                {"name": "a", "ready": True, "restartCount": 0, "state": {"running": {}}},
                {
                    "name": "b",
                    "ready": False,
                    "restartCount": 3,
                    "lastState": {"terminated": {"finishedAt": _ago(65)}},
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                },
            ],
        }
    )
    row = cells("pods", running)
    assert row[:3] == ["p", "1/2", "CrashLoopBackOff"]
    assert row[3] in ("3 (65s ago)", "3 (66s ago)")  # the clock may tick between the two readings
    assert row[5:7] == ["10.1.0.5", "n1"]
    assert cells("pods", pod({"phase": "Running"}, deletionTimestamp=_ago(0)))[2] == "Terminating"
    init = pod(
        {"phase": "Pending", "initContainerStatuses": [{"name": "i", "restartCount": 0, "state": {"running": {}}}]}
    )
    init["spec"]["initContainers"] = [{"name": "i"}]
    assert cells("pods", init)[2] == "Init:0/1"
    done = pod(
        {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": "a",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                }
            ],
        }
    )
    assert cells("pods", done)[2] == "Completed"


def test_a_started_sidecar_counts_with_the_apps_containers_and_does_not_hold_the_pod_in_init() -> None:
    running: dict[str, Any] = {"running": {}}
    with_sidecar = pod(
        {
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [
                {"name": "setup", "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "log", "restartCount": 1, "started": True, "ready": True, "state": running},
            ],
            "containerStatuses": [
                {"name": "a", "ready": True, "restartCount": 0, "state": running},
                {"name": "b", "ready": True, "restartCount": 0, "state": running},
            ],
        }
    )
    with_sidecar["spec"]["initContainers"] = [{"name": "setup"}, {"name": "log", "restartPolicy": "Always"}]
    row = cells("pods", with_sidecar)
    assert row[1:3] == ["3/3", "Running"]
    assert row[3].startswith("1")  # the sidecar's restarts are the pod's
    starting = pod({"phase": "Pending", "initContainerStatuses": [{"name": "log", "started": False, "state": running}]})
    starting["spec"]["initContainers"] = [{"name": "log", "restartPolicy": "Always"}]
    assert cells("pods", starting)[1:3] == ["0/3", "Init:0/1"]


def test_node_rows_show_readiness_roles_and_version() -> None:
    node = {
        "metadata": {
            "name": "m",
            "labels": {"node-role.kubernetes.io/control-plane": ""},
            "creationTimestamp": _ago(90),
        },
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "192.168.122.10"}],
            "nodeInfo": {"kubeletVersion": "v1.37.0-kubelab", "osImage": "Debian GNU/Linux 12"},
        },
    }
    row = cells("nodes", node)
    assert row[:5] == ["m", "Ready,SchedulingDisabled", "control-plane", "90s", "v1.37.0-kubelab"]
    assert row[5:8] == ["192.168.122.10", "<none>", "Debian GNU/Linux 12"]


def test_service_rows_show_ports_and_external_addresses() -> None:
    svc: dict[str, Any] = {
        "metadata": {"name": "web", "creationTimestamp": _ago(1)},
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.4.2",
            "selector": {"app": "web"},
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
        },
    }
    assert cells("services", svc) == ["web", "NodePort", "10.96.4.2", "<none>", "80:30080/TCP,53/UDP", "1s", "app=web"]
    svc["spec"]["type"] = "LoadBalancer"
    assert cells("services", svc)[3] == "<pending>"


def test_tables_carry_headers_and_partial_metadata() -> None:
    doc = table("configmaps", [{"metadata": {"name": "c", "creationTimestamp": _ago(5)}, "data": {"a": "1"}}])
    assert [c["name"] for c in doc["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert doc["rows"][0]["cells"] == ["c", 1, "5s"]
    assert doc["rows"][0]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"name": "c", "creationTimestamp": _ago(5)},
    }
    assert table("configmaps", [], headers=False)["columnDefinitions"] == []
