"""A pod's volumes on the node, and its containers' environment.

Volumes are directories: ``emptyDir`` under the pod's own directory, ``hostPath`` on the node, a
``persistentVolumeClaim`` where the volume manager (:mod:`agents.kubelet.volumemanager`) mounted its disk,
``configMap`` and ``secret`` written as one file per key (secrets with mode 0400 unless the pod says
otherwise), ``projected`` the files of its sources together (a ServiceAccount token the kubelet
requests for the pod, ConfigMap and Secret keys, the pod's own fields); each container mounts them with
bind mounts. Environment variables resolve ``value``,
``fieldRef``, ``configMapKeyRef`` and ``secretKeyRef`` (and ``$(VAR)`` references to earlier ones,
as kube expands them). The readers of ConfigMaps and Secrets are passed in, so the planning is pure.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from agents.kubelet.containers import Mount

Reader = Callable[[str, str], Awaitable[dict[str, Any] | None]]  # (namespace, name) -> object or None
# (pod, a projected serviceAccountToken source) -> a token for the pod's ServiceAccount, bound to the pod
TokenReader = Callable[[Mapping[str, Any], Mapping[str, Any]], Awaitable[str]]
_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class VolumeError(Exception):
    """A volume or variable refers to something missing; ``reason`` is kube's word for it."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class VolumeFiles:
    """What a volume needs on disk: a directory, and for configMap/secret its files."""

    name: str
    path: Path
    files: Mapping[str, bytes]  # relative path -> content
    mode: int
    create: bool  # make the directory (emptyDir, configMap, secret, hostPath DirectoryOrCreate)
    read_only: bool = False  # every mount of it read-only (a claim the pod mounts readOnly)


def _items(volume: Mapping[str, Any], data: Mapping[str, bytes]) -> dict[str, bytes]:
    items = volume.get("items")
    if not items:
        return dict(data)
    return {str(item["path"]): data[item["key"]] for item in items if item.get("key") in data}


def _configmap_data(found: Mapping[str, Any]) -> dict[str, bytes]:
    data = {k: v.encode() for k, v in (found.get("data") or {}).items()}
    return data | {k: base64.b64decode(v) for k, v in (found.get("binaryData") or {}).items()}


def _secret_data(found: Mapping[str, Any]) -> dict[str, bytes]:
    data = {k: base64.b64decode(v) for k, v in (found.get("data") or {}).items()}
    return data | {k: v.encode() for k, v in (found.get("stringData") or {}).items()}


# kind -> (file mode by default, mode of the empty directory an optional missing source leaves)
_MODES = {"configmap": (0o644, 0o755), "secret": (0o400, 0o700)}


def _keyed(
    name: str,
    source: Mapping[str, Any],
    *,
    found: Mapping[str, Any] | None,
    object_name: str,
    kind: str,
    directory: Path,
    data_of: Callable[[Mapping[str, Any]], dict[str, bytes]],
) -> VolumeFiles:
    """A configMap or secret volume: one file per key (or per item), or an empty directory for an
    optional source that does not exist."""
    file_mode, empty_mode = _MODES[kind]
    if found is None:
        if source.get("optional"):
            return VolumeFiles(name, directory, {}, empty_mode, True)
        raise VolumeError("FailedMount", f'{kind} "{object_name}" not found')
    mode = int(source.get("defaultMode", file_mode))
    return VolumeFiles(name, directory, _items(source, data_of(found)), mode, True)


async def plan_volumes(
    pod: Mapping[str, Any],
    pod_dir: Path,
    *,
    configmaps: Reader,
    secrets: Reader,
    tokens: TokenReader | None = None,
    only: str = "",
    published: Mapping[str, Path] | None = None,
) -> list[VolumeFiles]:
    """What the pod's volumes need on disk; ``only``: just the volumes of that kind (``projected``: the
    token refresh rewrites them); ``published``: where the volume manager mounted each claim volume."""
    namespace = pod["metadata"]["namespace"]
    planned = []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        name = volume["name"]
        if only and only not in volume:
            continue
        if "emptyDir" in volume:
            planned.append(VolumeFiles(name, pod_dir / "volumes" / "empty-dir" / name, {}, 0o777, True))
        elif "hostPath" in volume:
            source = volume["hostPath"]
            create = source.get("type") == "DirectoryOrCreate"
            planned.append(VolumeFiles(name, Path(source["path"]), {}, 0o755, create))
        elif "configMap" in volume:
            source = volume["configMap"]
            found = await configmaps(namespace, source["name"])
            directory = pod_dir / "volumes" / "configmap" / name
            planned.append(
                _keyed(
                    name,
                    source,
                    found=found,
                    object_name=source["name"],
                    kind="configmap",
                    directory=directory,
                    data_of=_configmap_data,
                )
            )
        elif "secret" in volume:
            source = volume["secret"]
            found = await secrets(namespace, source["secretName"])
            directory = pod_dir / "volumes" / "secret" / name
            planned.append(
                _keyed(
                    name,
                    source,
                    found=found,
                    object_name=source["secretName"],
                    kind="secret",
                    directory=directory,
                    data_of=_secret_data,
                )
            )
        elif "persistentVolumeClaim" in volume:
            path = (published or {}).get(name)
            if path is None:
                raise VolumeError("FailedMount", f"volume {name}: its claim's disk is not mounted yet")
            read_only = bool(volume["persistentVolumeClaim"].get("readOnly"))
            planned.append(VolumeFiles(name, path, {}, 0o755, False, read_only))
        elif "projected" in volume:
            directory = pod_dir / "volumes" / "projected" / name
            planned.append(
                await _projected(
                    pod, name, volume["projected"], directory, configmaps=configmaps, secrets=secrets, tokens=tokens
                )
            )
        else:
            kinds = sorted(k for k in volume if k != "name")
            raise VolumeError("FailedMount", f"volume {name}: {', '.join(kinds) or 'its kind'} is not supported here")
    return planned


async def _projected(
    pod: Mapping[str, Any],
    name: str,
    projected: Mapping[str, Any],
    directory: Path,
    *,
    configmaps: Reader,
    secrets: Reader,
    tokens: TokenReader | None,
) -> VolumeFiles:
    """A projected volume: the files of its sources in one directory (a ServiceAccount token, keys
    of ConfigMaps and Secrets, the pod's own fields)."""
    namespace = pod["metadata"]["namespace"]
    files: dict[str, bytes] = {}
    for source in projected.get("sources") or []:
        if "serviceAccountToken" in source:
            if tokens is None:
                raise VolumeError("FailedMount", f"volume {name}: this kubelet requests no tokens")
            files[str(source["serviceAccountToken"]["path"])] = (
                await tokens(pod, source["serviceAccountToken"])
            ).encode()
        elif "configMap" in source or "secret" in source:
            kind = "configmap" if "configMap" in source else "secret"
            ref = source["configMap" if kind == "configmap" else "secret"]
            found = await (configmaps if kind == "configmap" else secrets)(namespace, ref["name"])
            if found is None:
                if ref.get("optional"):
                    continue
                raise VolumeError("FailedMount", f'{kind} "{ref["name"]}" not found')
            files.update(_items(ref, (_configmap_data if kind == "configmap" else _secret_data)(found)))
        elif "downwardAPI" in source:
            for item in source["downwardAPI"].get("items") or []:
                files[str(item["path"])] = _field(pod, item["fieldRef"]["fieldPath"], "", "").encode()
    return VolumeFiles(name, directory, files, int(projected.get("defaultMode", 0o644)), True)


def write_volumes(volumes: list[VolumeFiles]) -> None:
    """Make the directories and (re)write configMap and secret files; what the node refuses (a
    hostPath to create where a file is, say) is a VolumeError with the system's words."""
    for volume in volumes:
        try:
            _write(volume)
        except OSError as exc:
            raise VolumeError("FailedMount", f"volume {volume.name}: {volume.path}: {exc.strerror or exc}") from exc


def _write(volume: VolumeFiles) -> None:
    if volume.create:
        volume.path.mkdir(parents=True, exist_ok=True)
        if not volume.files and volume.mode == 0o777:
            volume.path.chmod(0o777)
    elif not volume.path.exists():
        raise VolumeError("FailedMount", f"hostPath {volume.path} does not exist on the node")
    for relative, content in volume.files.items():
        target = volume.path / PurePosixPath(relative)
        if ".." in PurePosixPath(relative).parts:
            raise VolumeError("FailedMount", f"volume {volume.name}: item path {relative!r} leaves the volume")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(volume.mode)


def mounts(container: Mapping[str, Any], volumes: list[VolumeFiles]) -> tuple[Mount, ...]:
    by_name = {v.name: v for v in volumes}
    found = []
    for mount in container.get("volumeMounts") or []:
        volume = by_name.get(mount["name"])
        if volume is None:
            raise VolumeError("CreateContainerConfigError", f'volumeMount "{mount["name"]}" names no volume')
        source = volume.path / mount["subPath"] if mount.get("subPath") else volume.path
        found.append(Mount(str(source), mount["mountPath"], bool(mount.get("readOnly")) or volume.read_only))
    return tuple(found)


def _field(pod: Mapping[str, Any], path: str, host_ip: str, pod_ip: str) -> str:
    meta = pod.get("metadata") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName", ""),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", ""),
        "status.hostIP": host_ip,
        "status.podIP": pod_ip,
    }
    if path in simple:
        return str(simple[path])
    found = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if found:
        return str((meta.get(found.group(1)) or {}).get(found.group(2), ""))
    raise VolumeError("CreateContainerConfigError", f"fieldRef {path} is not supported")


def expand(text: str, known: Mapping[str, str]) -> str:
    """kube's ``$(VAR)`` expansion: known names are replaced, unknown ones kept, ``$$`` escapes."""

    def replace(found: re.Match[str]) -> str:
        if found.group(0) == "$$":
            return "$"
        return known.get(found.group(1), found.group(0))

    return _REFERENCE.sub(replace, text)


async def environment(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    image_env: list[str],
    host_ip: str,
    pod_ip: str,
    configmaps: Reader,
    secrets: Reader,
    service_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's variables: the image's, the Services' (``serviceenv.py``), then the container's
    in order (later ones see earlier ones and the Services')."""
    env: dict[str, str] = {}
    for item in image_env:
        key, _, value = item.partition("=")
        env[key] = value
    services = dict(service_env or {})
    env.update(services)
    namespace = pod["metadata"]["namespace"]
    declared: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            found = await configmaps(namespace, source["configMapRef"]["name"])
            values = (found or {}).get("data") or {}
            if found is None and not source["configMapRef"].get("optional"):
                raise VolumeError(
                    "CreateContainerConfigError", f'configmap "{source["configMapRef"]["name"]}" not found'
                )
        else:
            found = await secrets(namespace, source["secretRef"]["name"])
            data = (found or {}).get("data") or {}
            values = {k: base64.b64decode(v).decode(errors="replace") for k, v in data.items()}
            if found is None and not source["secretRef"].get("optional"):
                raise VolumeError("CreateContainerConfigError", f'secret "{source["secretRef"]["name"]}" not found')
        for key, value in values.items():
            declared[prefix + key] = str(value)
    for item in container.get("env") or []:
        name = item["name"]
        source = item.get("valueFrom")
        if source is None:
            declared[name] = expand(str(item.get("value", "")), {**services, **declared})
        elif "fieldRef" in source:
            declared[name] = _field(pod, source["fieldRef"]["fieldPath"], host_ip, pod_ip)
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            secret = "secretKeyRef" in source
            ref = source["secretKeyRef" if secret else "configMapKeyRef"]
            found = await (secrets if secret else configmaps)(namespace, ref["name"])
            data = (found or {}).get("data") or {}
            if found is None or ref["key"] not in data:
                if ref.get("optional"):
                    continue
                what = "secret" if secret else "configmap"
                missing = (
                    f'{what} "{ref["name"]}" not found'
                    if found is None
                    else f"couldn't find key {ref['key']} in {what} {namespace}/{ref['name']}"
                )
                raise VolumeError("CreateContainerConfigError", missing)
            value = data[ref["key"]]
            declared[name] = base64.b64decode(value).decode(errors="replace") if secret else str(value)
        else:
            raise VolumeError("CreateContainerConfigError", f"env {name}: resourceFieldRef is not supported")
    env.update(declared)
    return env
