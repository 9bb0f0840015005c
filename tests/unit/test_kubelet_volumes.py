"""A pod's volumes and environment as the kubelet prepares them: files per key, modes, items,
optional sources, downward API fields, $(VAR) expansion, and clear reasons for what is missing."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from agents.kubelet.containers import Mount
from agents.kubelet.volumes import VolumeError, VolumeFiles, environment, expand, mounts, plan_volumes, write_volumes

CONFIGMAPS = {("app", "cfg"): {"data": {"color": "blue", "size": "L"}}}
SECRETS = {("app", "sec"): {"data": {"token": base64.b64encode(b"s3cret").decode()}}}


async def configmaps(namespace: str, name: str) -> dict[str, Any] | None:
    return CONFIGMAPS.get((namespace, name))


async def secrets(namespace: str, name: str) -> dict[str, Any] | None:
    return SECRETS.get((namespace, name))


def pod(*volumes: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-1", "namespace": "app", "uid": "u-1", "labels": {"tier": "front"}},
        "spec": {"nodeName": "node-1", "volumes": list(volumes), "containers": []},
    }


async def test_config_map_and_secret_volumes_become_files_with_their_modes(tmp_path: Path) -> None:
    planned = await plan_volumes(
        pod(
            {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "color", "path": "sub/colour"}]}},
            {"name": "sec", "secret": {"secretName": "sec"}},
            {"name": "tmp", "emptyDir": {}},
        ),
        tmp_path,
        configmaps=configmaps,
        secrets=secrets,
    )
    write_volumes(planned)
    by_name = {v.name: v for v in planned}
    assert (by_name["cfg"].path / "sub" / "colour").read_text() == "blue"
    assert not (by_name["cfg"].path / "size").exists()  # items pick the keys
    token = by_name["sec"].path / "token"
    assert token.read_bytes() == b"s3cret" and token.stat().st_mode & 0o777 == 0o400
    assert by_name["tmp"].path.is_dir() and by_name["tmp"].path.stat().st_mode & 0o777 == 0o777


async def test_a_missing_source_fails_unless_optional(tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match='configmap "gone" not found') as caught:
        await plan_volumes(
            pod({"name": "v", "configMap": {"name": "gone"}}), tmp_path, configmaps=configmaps, secrets=secrets
        )
    assert caught.value.reason == "FailedMount"
    optional = await plan_volumes(
        pod({"name": "v", "secret": {"secretName": "gone", "optional": True}}),
        tmp_path,
        configmaps=configmaps,
        secrets=secrets,
    )
    assert optional[0].files == {}


def test_mounts_follow_volume_mounts_with_sub_path_and_read_only(tmp_path: Path) -> None:
    volumes = [VolumeFiles("data", tmp_path / "data", {}, 0o755, True)]
    container = {"volumeMounts": [{"name": "data", "mountPath": "/d", "subPath": "x", "readOnly": True}]}
    assert mounts(container, volumes) == (Mount(str(tmp_path / "data" / "x"), "/d", read_only=True),)
    with pytest.raises(VolumeError, match="names no volume"):
        mounts({"volumeMounts": [{"name": "other", "mountPath": "/o"}]}, volumes)


async def test_the_environment_resolves_values_fields_and_references_in_order() -> None:
    container = {
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "token"}}},
            {"name": "URL", "value": "http://$(IP):80/$(NAME)/$(UNKNOWN)/$$(NAME)"},
        ],
    }
    env = await environment(
        pod(),
        container,
        image_env=["PATH=/bin", "NAME=image"],
        host_ip="10.0.0.2",
        pod_ip="10.244.0.7",
        configmaps=configmaps,
        secrets=secrets,
    )
    assert env["PATH"] == "/bin" and env["NAME"] == "web-1"  # the container's value wins over the image's
    assert (env["CFG_color"], env["TIER"], env["TOKEN"]) == ("blue", "front", "s3cret")
    assert env["URL"] == "http://10.244.0.7:80/web-1/$(UNKNOWN)/$(NAME)"


async def test_a_missing_key_is_a_create_container_config_error_unless_optional() -> None:
    missing = {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope"}}}]}
    with pytest.raises(VolumeError, match="couldn't find key nope in configmap app/cfg") as caught:
        await environment(pod(), missing, image_env=[], host_ip="", pod_ip="", configmaps=configmaps, secrets=secrets)
    assert caught.value.reason == "CreateContainerConfigError"
    optional = {
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": True}}}]
    }
    env = await environment(
        pod(), optional, image_env=[], host_ip="", pod_ip="", configmaps=configmaps, secrets=secrets
    )
    assert "X" not in env


def test_expansion_keeps_unknown_references_and_unescapes_double_dollars() -> None:
    assert expand("$(A)-$(B)-$$(A)", {"A": "1"}) == "1-$(B)-$(A)"
