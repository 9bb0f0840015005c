"""Reading Kubernetes protobuf request bodies (what kubectl's typed clients send).

kubectl 1.32 sends ``kubectl create deployment|configmap|secret|...`` bodies as
``application/vnd.kubernetes.protobuf``: the bytes ``k8s\\0`` and a ``runtime.Unknown`` message
whose ``raw`` field holds the object encoded with the messages of Kubernetes' generated.proto files.
The field table (``protobuf_fields.json``, built by tools/proto_table.py from one Kubernetes release,
see docs/apiserver.md) gives each field's number, JSON name and type; this module walks the wire
format with it and returns the object as JSON would have carried it, so the rest of the server sees
one representation. A Go struct embedded with ``json:",inline"`` is a field of its own on the wire
but spreads its fields into the enclosing object in JSON; ``INLINE`` lists those fields.

Go encodes non-pointer fields even when they hold zero values, while its JSON encoder leaves them
out (``omitempty``). Zero values are therefore dropped, except for the pointer fields listed in
``KEEP_ZERO`` where a zero is a choice the client made (``replicas: 0``, ``optional: false``, ...).
Empty messages are kept: Go's JSON encoder keeps empty structs too (``resources: {}``).
"""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, TypedDict

from agents.apiserver.status import StatusError, bad_request

MAGIC = b"k8s\x00"
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
TABLE = Path(__file__).with_name("protobuf_fields.json")

META = "k8s.io.apimachinery.pkg.apis.meta.v1"
SPECIAL = {
    f"{META}.Time": "time",
    f"{META}.MicroTime": "microtime",
    f"{META}.Duration": "duration",
    f"{META}.FieldsV1": "raw-json",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "raw-json",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "int-or-string",
    # a user's extra attributes: a message of one repeated string, a plain list of strings in JSON
    "k8s.io.api.authentication.v1.ExtraValue": "string-list",
    "k8s.io.api.authorization.v1.ExtraValue": "string-list",
    "k8s.io.api.certificates.v1.ExtraValue": "string-list",
}
# apiVersion -> the proto package of its messages
PACKAGES = {
    "v1": "k8s.io.api.core.v1",
    "apps/v1": "k8s.io.api.apps.v1",
    "batch/v1": "k8s.io.api.batch.v1",
    "autoscaling/v1": "k8s.io.api.autoscaling.v1",
    "coordination.k8s.io/v1": "k8s.io.api.coordination.v1",
    "discovery.k8s.io/v1": "k8s.io.api.discovery.v1",
    "rbac.authorization.k8s.io/v1": "k8s.io.api.rbac.v1",
    "authorization.k8s.io/v1": "k8s.io.api.authorization.v1",
    "authentication.k8s.io/v1": "k8s.io.api.authentication.v1",
    "certificates.k8s.io/v1": "k8s.io.api.certificates.v1",
    "policy/v1": "k8s.io.api.policy.v1",
    "networking.k8s.io/v1": "k8s.io.api.networking.v1",
}
# Served group/versions read from JSON only: kube-aggregator's APIService is not among k8s.io/api's
# generated.proto files the table is built from, and kubectl sends APIServices as JSON (apply, create -f).
# autoscaling/v2 likewise: the table carries autoscaling/v1 only (what kubectl autoscale sends, as protobuf).
# apiextensions.k8s.io's CustomResourceDefinition lives in its own repository, not k8s.io/api: JSON too.
# storage.k8s.io/v1's messages are not in the table either; kubectl has no generator for its kinds and
# sends them as JSON (apply, create -f).
JSON_ONLY = frozenset({"apiextensions.k8s.io/v1", "apiregistration.k8s.io/v1", "autoscaling/v2", "storage.k8s.io/v1"})

# Pointer fields (Message.field) whose zero value ("", 0, false) is a choice the client made and
# must survive decoding; every other field holding a zero value is dropped, as omitempty would.
KEEP_ZERO = frozenset(
    {
        "DeploymentSpec.replicas",
        "ReplicaSetSpec.replicas",
        "ReplicationControllerSpec.replicas",
        "StatefulSetSpec.replicas",
        "ScaleSpec.replicas",
        # autoscaling/v1 (kubectl autoscale sends it as protobuf): pointers, and int32s without omitempty
        "HorizontalPodAutoscalerSpec.minReplicas",
        "HorizontalPodAutoscalerSpec.maxReplicas",
        "HorizontalPodAutoscalerSpec.targetCPUUtilizationPercentage",
        "HorizontalPodAutoscalerStatus.currentReplicas",
        "HorizontalPodAutoscalerStatus.desiredReplicas",
        "DeploymentSpec.revisionHistoryLimit",
        "DeploymentSpec.progressDeadlineSeconds",
        "StatefulSetSpec.revisionHistoryLimit",
        "DaemonSetSpec.revisionHistoryLimit",
        "RollingUpdateStatefulSetStrategy.partition",
        "JobSpec.parallelism",
        "JobSpec.completions",
        "JobSpec.activeDeadlineSeconds",
        "JobSpec.backoffLimit",
        "JobSpec.backoffLimitPerIndex",
        "JobSpec.maxFailedIndexes",
        "JobSpec.ttlSecondsAfterFinished",
        "JobSpec.manualSelector",
        "JobSpec.suspend",
        "CronJobSpec.suspend",
        "CronJobSpec.startingDeadlineSeconds",
        "CronJobSpec.successfulJobsHistoryLimit",
        "CronJobSpec.failedJobsHistoryLimit",
        "PodSpec.terminationGracePeriodSeconds",
        "PodSpec.activeDeadlineSeconds",
        "PodSpec.priority",
        "PodSpec.automountServiceAccountToken",
        "PodSpec.enableServiceLinks",
        "PodSpec.shareProcessNamespace",
        "PodSpec.hostUsers",
        "PodSpec.setHostnameAsFQDN",
        "ServiceAccount.automountServiceAccountToken",
        "Toleration.tolerationSeconds",
        "ObjectMeta.deletionGracePeriodSeconds",
        "OwnerReference.controller",
        "OwnerReference.blockOwnerDeletion",
        "SecurityContext.runAsUser",
        "SecurityContext.runAsGroup",
        "SecurityContext.runAsNonRoot",
        "SecurityContext.privileged",
        "SecurityContext.readOnlyRootFilesystem",
        "SecurityContext.allowPrivilegeEscalation",
        "PodSecurityContext.runAsUser",
        "PodSecurityContext.runAsGroup",
        "PodSecurityContext.runAsNonRoot",
        "PodSecurityContext.fsGroup",
        "ConfigMapVolumeSource.defaultMode",
        "SecretVolumeSource.defaultMode",
        "ProjectedVolumeSource.defaultMode",
        "DownwardAPIVolumeSource.defaultMode",
        "KeyToPath.mode",
        "ConfigMapVolumeSource.optional",
        "SecretVolumeSource.optional",
        "ConfigMapKeySelector.optional",
        "SecretKeySelector.optional",
        "ConfigMapEnvSource.optional",
        "SecretEnvSource.optional",
        "ConfigMap.immutable",
        "Secret.immutable",
        "ServiceSpec.allocateLoadBalancerNodePorts",
        "EndpointConditions.ready",
        "EndpointConditions.serving",
        "EndpointConditions.terminating",
        "LeaseSpec.leaseDurationSeconds",
        "LeaseSpec.leaseTransitions",
        # policy/v1: a budget of 0 is a choice (kubectl create pdb --max-unavailable=0); an eviction's grace
        # period of 0 too (kubectl drain --grace-period=0)
        "PodDisruptionBudgetSpec.minAvailable",
        "PodDisruptionBudgetSpec.maxUnavailable",
        "DeleteOptions.gracePeriodSeconds",
    }
)


# Fields (Message.field) holding a Go struct embedded with `json:",inline"`: in JSON its fields are
# the enclosing object's own. tests/unit/test_api_version.py proves the list complete for the served
# kinds against their JSON schemas.
INLINE = frozenset(
    {
        "Volume.volumeSource",
        "PersistentVolumeSpec.persistentVolumeSource",
        "Probe.handler",
        "EphemeralContainer.ephemeralContainerCommon",
        "ConfigMapEnvSource.localObjectReference",
        "SecretEnvSource.localObjectReference",
        "ConfigMapKeySelector.localObjectReference",
        "SecretKeySelector.localObjectReference",
        "ConfigMapVolumeSource.localObjectReference",
        "ConfigMapProjection.localObjectReference",
        "SecretProjection.localObjectReference",
        "IngressRule.ingressRuleValue",  # networking/v1: host and http side by side in JSON
    }
)


class ProtobufError(ValueError):
    """The bytes are not a valid message of the expected type."""


MAX_DEPTH = 100  # nested messages in one body (the kinds' messages nest about 15 deep)
_LENGTH_DELIMITED = 2


def _bytes(value: Any) -> bytes:
    """A length-delimited field's payload (a varint where a payload belongs is an error, never a size)."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ProtobufError("a number where a length-delimited field was expected")
    return bytes(value)


def _int(value: Any) -> int:
    if not isinstance(value, int):
        raise ProtobufError("a length-delimited field where a number was expected")
    return value


class Source(TypedDict):
    """Where the table's facts come from (tools/proto_table.py writes it)."""

    tag: str  # the k8s.io/api and k8s.io/apimachinery tag, e.g. v0.37.0-beta.0 for Kubernetes v1.37.0-beta.0
    commits: dict[str, str]  # module -> the commit the tag names there
    files: list[str]


class Table(TypedDict):
    source: Source
    messages: dict[str, dict[str, list[Any]]]  # message -> field number -> [JSON name, type, repeated]


@cache
def table() -> Table:
    data: Table = json.loads(TABLE.read_text())
    return data


def _messages() -> dict[str, dict[str, list[Any]]]:
    return table()["messages"]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise ProtobufError("varint too long")


def _wire(data: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, raw value) for every field of a message."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, kind = key >> 3, key & 7
        value: int | bytes
        if kind == 0:
            value, pos = _varint(data, pos)
        elif kind == 1:
            value, pos = data[pos : pos + 8], pos + 8
        elif kind == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif kind == 5:
            value, pos = data[pos : pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {kind}")
        if pos > len(data):
            raise ProtobufError("truncated field")
        out.append((number, kind, value))
    return out


def _signed(value: int) -> int:
    """A varint as a signed 64-bit integer (negative int32/int64 values use ten bytes)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _scalar(kind: str, wire: int, raw: Any) -> Any:
    if kind == "string":
        return _bytes(raw).decode("utf-8")
    if kind == "bytes":
        return base64.b64encode(_bytes(raw)).decode()
    if kind == "bool":
        return bool(_int(raw))
    if kind in ("int32", "int64", "uint32", "uint64"):
        return _signed(_int(raw)) if kind in ("int32", "int64") else _int(raw)
    if kind == "double":
        return struct.unpack("<d", _bytes(raw))[0]
    if kind == "float":
        return struct.unpack("<f", _bytes(raw))[0]
    raise ProtobufError(f"unsupported scalar type {kind} (wire type {wire})")


def _timestamp(fields: dict[int, Any], micro: bool) -> str | None:
    seconds, nanos = _signed(_int(fields.get(1, 0))), _int(fields.get(2, 0))
    if not seconds and not nanos:
        return None
    when = datetime.fromtimestamp(seconds + nanos / 1e9, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def _special(kind: str, data: bytes) -> Any:
    if kind == "string-list":
        return [_bytes(value).decode() for number, _, value in _wire(data) if number == 1]
    fields = {number: value for number, _, value in _wire(data)}
    if kind in ("time", "microtime"):
        return _timestamp(fields, kind == "microtime")
    if kind == "quantity":
        return _bytes(fields.get(1, b"")).decode()
    if kind == "int-or-string":
        if _int(fields.get(1, 0)) == 1:
            return _bytes(fields.get(3, b"")).decode()
        return _signed(_int(fields.get(2, 0)))
    if kind == "duration":
        return f"{_signed(_int(fields.get(1, 0))) / 1e9:g}s"
    raw = _bytes(fields.get(1, b""))
    return json.loads(raw) if raw else {}


def _is_zero(value: Any) -> bool:
    return value is None or (not isinstance(value, dict) and value in ("", 0, False, [], {}))


def decode_message(name: str, data: bytes, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise ProtobufError("messages nested too deep")
    special = SPECIAL.get(name)
    if special is not None:
        return _special(special, data)
    schema = _messages().get(name)
    if schema is None:
        raise ProtobufError(f"unknown message type {name}")
    short = name.rsplit(".", 1)[-1]
    out: dict[str, Any] = {}
    inlined: dict[str, Any] = {}
    for number, wire, raw in _wire(data):
        entry = schema.get(str(number))
        if entry is None:
            continue  # a field newer than the table: ignored, as an old server would
        field_name, kind, repeated = entry
        if f"{short}.{field_name}" in INLINE:
            inlined.update(decode_message(kind, _bytes(raw), depth + 1))
            continue
        if kind.startswith("map:"):
            _, _, value_kind = kind.split(":")
            pair = {n: v for n, _, v in _wire(_bytes(raw))}
            key = _bytes(pair.get(1, b"")).decode()
            value_raw = _bytes(pair.get(2, b""))
            out.setdefault(field_name, {})[key] = (
                _scalar(value_kind, 2, value_raw)
                if value_kind in ("string", "bytes")
                else decode_message(value_kind, value_raw, depth + 1)
            )
            continue
        if kind in _messages() or kind in SPECIAL:
            value = decode_message(kind, _bytes(raw), depth + 1)
        elif wire == _LENGTH_DELIMITED and repeated and kind not in ("string", "bytes"):
            packed, pos, values = _bytes(raw), 0, []
            while pos < len(packed):
                item, pos = _varint(packed, pos)
                values.append(_scalar(kind, 0, item))
            out.setdefault(field_name, []).extend(values)
            continue
        else:
            value = _scalar(kind, wire, raw)
        if repeated:
            out.setdefault(field_name, []).append(value)
        else:
            out[field_name] = value
    kept = {k: v for k, v in out.items() if (f"{short}.{k}" in KEEP_ZERO and v is not None) or not _is_zero(v)}
    return {**kept, **inlined}


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf request body as the JSON object it stands for."""
    if not body.startswith(MAGIC):
        raise bad_request("the protobuf body does not start with the Kubernetes magic number")
    try:
        envelope = {number: value for number, _, value in _wire(body[len(MAGIC) :])}
        type_meta = {number: _bytes(value).decode() for number, _, value in _wire(_bytes(envelope.get(1, b"")))}
        api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
        package = PACKAGES.get(api_version)
        if package is None or f"{package}.{kind}" not in _messages():
            raise StatusError(
                415,
                "UnsupportedMediaType",
                f"{kind} in {api_version} cannot be read from protobuf; send it as application/json",
            )
        obj = decode_message(f"{package}.{kind}", _bytes(envelope.get(2, b"")))
    except (ProtobufError, ValueError, OverflowError, OSError, struct.error) as exc:
        # ValueError: text that is not UTF-8, raw JSON that is not JSON, times out of range
        raise bad_request(f"the protobuf body is not valid: {exc}") from exc
    return {"apiVersion": api_version, "kind": kind, **obj}
