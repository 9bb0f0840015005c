"""Protobuf request bodies, as captured from kubectl 1.32's typed clients (tests/unit/data/*.pb)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents.apiserver import protobuf
from agents.apiserver.status import StatusError

DATA = Path(__file__).with_name("data")


def captured(resource: str) -> dict[str, Any]:
    return protobuf.decode((DATA / f"create-{resource}.pb").read_bytes())


def test_kubectl_create_deployment() -> None:
    obj = captured("deployments")
    assert (obj["apiVersion"], obj["kind"], obj["metadata"]["name"]) == ("apps/v1", "Deployment", "web")
    spec = obj["spec"]
    assert spec["replicas"] == 0  # --replicas=0 is a choice, kept although it is a zero value
    assert spec["selector"] == {"matchLabels": {"app": "web"}}
    container = spec["template"]["spec"]["containers"][0]
    assert container == {"name": "busybox", "image": "busybox:1.36", "ports": [{"containerPort": 80}], "resources": {}}


def test_kubectl_create_configmap_and_secret() -> None:
    assert captured("configmaps")["data"] == {"a": "1"}
    secret = captured("secrets")
    assert secret["data"] == {"pw": "c2VjcmV0"}  # bytes arrive base64-encoded, as in JSON


def test_kubectl_create_service_keeps_int_or_string_ports() -> None:
    spec = captured("services")["spec"]
    assert spec["type"] == "NodePort"
    assert spec["ports"] == [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}]
    assert "publishNotReadyAddresses" not in spec  # a plain bool left false is omitted, as in JSON


def test_kubectl_create_job() -> None:
    pod = captured("jobs")["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["containers"][0]["command"] == ["echo", "hi"]


def test_bodies_without_the_magic_or_of_unknown_kinds_are_refused() -> None:
    with pytest.raises(StatusError) as missing:
        protobuf.decode(b"not protobuf")
    assert missing.value.code == 400
    body = (DATA / "create-configmaps.pb").read_bytes().replace(b"ConfigMap", b"ConfigPap")
    with pytest.raises(StatusError) as unknown:
        protobuf.decode(body)
    assert unknown.value.code == 415
    with pytest.raises(StatusError) as truncated:
        protobuf.decode((DATA / "create-deployments.pb").read_bytes()[:60])
    assert truncated.value.code == 400
