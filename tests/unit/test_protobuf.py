"""Protobuf request bodies: as captured from kubectl 1.32's typed clients (tests/unit/data/*.pb), and
encoded here by hand for what those captures do not carry (inline structs)."""

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


# --- inline structs, in bodies encoded here by hand -------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _bytes(number: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_number(message: str, name: str, package: str = protobuf.PACKAGES["v1"]) -> int:
    fields = protobuf.table()["messages"][f"{package}.{message}"]
    return next(int(number) for number, entry in fields.items() if entry[0] == name)


def _pod_body() -> bytes:
    n = _field_number
    local_ref = _bytes(n("LocalObjectReference", "name"), "settings")
    volume_source = _bytes(
        n("VolumeSource", "configMap"),
        _bytes(n("ConfigMapVolumeSource", "localObjectReference"), local_ref)
        + _int(n("ConfigMapVolumeSource", "defaultMode"), 0o440),
    )
    volume = _bytes(n("Volume", "name"), "conf") + _bytes(n("Volume", "volumeSource"), volume_source)
    probe = _bytes(
        n("Probe", "handler"), _bytes(n("ProbeHandler", "httpGet"), _bytes(n("HTTPGetAction", "path"), "/healthz"))
    ) + _int(n("Probe", "periodSeconds"), 5)
    key_ref = _bytes(n("ConfigMapKeySelector", "localObjectReference"), local_ref) + _bytes(
        n("ConfigMapKeySelector", "key"), "level"
    )
    env = _bytes(n("EnvVar", "name"), "LEVEL") + _bytes(
        n("EnvVar", "valueFrom"), _bytes(n("EnvVarSource", "configMapKeyRef"), key_ref)
    )
    container = (
        _bytes(n("Container", "name"), "app")
        + _bytes(n("Container", "image"), "busybox:1.36")
        + _bytes(n("Container", "env"), env)
        + _bytes(n("Container", "livenessProbe"), probe)
    )
    spec = _bytes(n("PodSpec", "volumes"), volume) + _bytes(n("PodSpec", "containers"), container)
    metadata = _bytes(n("ObjectMeta", "name", protobuf.META), "web")
    pod = _bytes(n("Pod", "metadata"), metadata) + _bytes(n("Pod", "spec"), spec)
    type_meta = _bytes(1, "v1") + _bytes(2, "Pod")
    return protobuf.MAGIC + _bytes(1, type_meta) + _bytes(2, pod)


def test_inline_structs_spread_into_their_parent_as_in_json() -> None:
    pod = protobuf.decode(_pod_body())
    spec = pod["spec"]
    assert spec["volumes"] == [{"name": "conf", "configMap": {"name": "settings", "defaultMode": 0o440}}]
    container = spec["containers"][0]
    assert container["livenessProbe"] == {"httpGet": {"path": "/healthz"}, "periodSeconds": 5}
    assert container["env"] == [
        {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "level"}}}
    ]
