"""One Kubernetes version everywhere: what /version says, where the schemas come from (the
``kubernetes`` package's OpenAPI release) and the release the protobuf field table was built from.

The field-by-field check walks every served kind's protobuf message and its JSON schema together,
so a table or a package from another release shows up here, field by field.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient

from agents.apiserver import protobuf
from agents.apiserver.resources import Catalog
from agents.apiserver.server import KUBERNETES_VERSION, version_info

Client = TestClient[Any, Any]

# Differences between the table (k8s.io/api v0.37.0-beta.0) and the kubernetes package's 1.37 models,
# all changes k8s.io/api made after that tag, which the models (generated later) already have.
# Rebuilding the table from a later 1.37 tag should empty both sets; this test then says which
# entries to drop.
# A field only the table has: an alpha field reshaped after beta.0 (into mapping and overhead).
ONLY_IN_THE_TABLE = {"NodeAllocatableResourceClaimStatus.resources"}
# Fields only the schemas have: a protobuf body carrying them loses them (JSON bodies keep them).
ONLY_IN_THE_SCHEMAS = {
    "ClusterTrustBundleProjection.user",
    "ConfigMapVolumeSource.defaultUser",
    "DownwardAPIVolumeFile.user",
    "DownwardAPIVolumeSource.defaultUser",
    "EmptyDirVolumeSource.mode",
    "GRPCAction.mode",
    "HTTPGetAction.protocol",
    "JobSpec.scheduling",
    "KeyToPath.user",
    "NodeAllocatableResourceClaimStatus.mapping",
    "NodeAllocatableResourceClaimStatus.overhead",
    "NodeSystemInfo.runningInUserNamespace",
    "PersistentVolumeClaimStatus.healthStatus",
    "PodCertificateProjection.user",
    "PodSpec.evictionResponders",
    "PodStatus.volumeHealth",
    "ProjectedVolumeSource.defaultUser",
    "SecretVolumeSource.defaultUser",
    "ServiceAccountTokenProjection.user",
    "VolumeMount.bindMountOptions",
}

_SCALARS = {"string": "string", "bytes": "string", "bool": "boolean", "int32": "integer", "int64": "integer"}
# What the schemas say for the messages the decoder turns into JSON scalars (protobuf.SPECIAL).
_SPECIAL_SCHEMA: dict[str, dict[str, Any]] = {
    "time": {"type": "string", "format": "date-time"},
    "microtime": {"type": "string", "format": "date-time"},
    "quantity": {"x-kubelab-quantity": True},
    "int-or-string": {"x-kubernetes-int-or-string": True},
    "raw-json": {"type": "object"},
    "duration": {"type": "string"},
    "string-list": {"type": "array", "items": {"type": "string"}},
}


def _release_minor(text: str, pattern: str) -> str:
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in {text!r}"
    return found.group(1)


def test_the_served_version_is_the_release_of_the_schemas_and_of_the_protobuf_table() -> None:
    from kubernetes.client import Configuration  # noqa: PLC0415  (imports every model: slow)

    served = version_info()
    openapi_release = _release_minor(Configuration().to_debug_report(), r"Version of the API: release-1\.(\d+)\b")
    table_tag = protobuf.table()["source"]["tag"]
    table_release = _release_minor(table_tag, r"^v0\.(\d+)\.\d+")  # k8s.io/api v0.N.x is Kubernetes v1.N.x
    assert served["major"] == "1"
    assert served["minor"] == openapi_release == table_release
    assert served["gitVersion"].startswith(f"v1.{served['minor']}.")
    assert served["gitVersion"].removesuffix("+kubelab") == KUBERNETES_VERSION


async def test_every_document_the_server_answers_states_that_version(http: Client) -> None:
    assert await (await http.get("/version")).json() == version_info()
    v3 = await (await http.get("/openapi/v3/apis/apps/v1")).json()
    v2 = await (await http.get("/openapi/v2")).json()
    assert v3["info"]["version"] == v2["info"]["version"] == KUBERNETES_VERSION


@dataclass(frozen=True)
class Field:
    label: str  # Message.field, as INLINE and the sets above name it
    kind: str  # the table's type: a scalar, a message, or map:KEY:VALUE
    repeated: bool


def _json_fields(message: str, inlined: set[str]) -> dict[str, Field]:
    """The message's fields by JSON name, with inline structs spread into it as JSON has them."""
    short = message.rsplit(".", 1)[-1]
    out: dict[str, Field] = {}
    for name, kind, repeated in protobuf.table()["messages"][message].values():
        label = f"{short}.{name}"
        if label in protobuf.INLINE:
            inlined.add(label)
            out.update(_json_fields(kind, inlined))
        else:
            out[name] = Field(label, kind, repeated)
    return out


@dataclass
class Walk:
    """Every served kind's message and schema side by side, with what does not match."""

    definitions: dict[str, Any]
    only_in_table: set[str]
    only_in_schemas: set[str]
    wrong_type: list[str]
    inline: dict[str, dict[str, Any]]  # inline label -> the schema it was spread into
    seen: set[tuple[str, str]]

    def kind(self, message: str, model: str) -> None:
        if (message, model) in self.seen:
            return
        self.seen.add((message, model))
        schema = self.definitions[model]
        properties: dict[str, Any] = schema["properties"]
        inlined: set[str] = set()
        fields = _json_fields(message, inlined)
        self.inline.update(dict.fromkeys(inlined, schema))
        for name, field in fields.items():
            if name in properties:
                self.field(field, properties[name])
            else:
                self.only_in_table.add(field.label)
        short = message.rsplit(".", 1)[-1]
        self.only_in_schemas |= {
            f"{short}.{p}" for p in properties if p not in fields and p not in ("apiVersion", "kind")
        }

    def field(self, field: Field, node: dict[str, Any]) -> None:
        kind = field.kind
        if field.repeated:
            if node.get("type") != "array":
                self.wrong_type.append(f"{field.label}: repeated, schema {node}")
                return
            node = node["items"]
        if kind.startswith("map:"):
            if not isinstance(node.get("additionalProperties"), dict):
                self.wrong_type.append(f"{field.label}: a map, schema {node}")
                return
            kind, node = kind.split(":")[2], node["additionalProperties"]
        if kind in protobuf.SPECIAL:
            expected = _SPECIAL_SCHEMA[protobuf.SPECIAL[kind]]
            if {k: node.get(k) for k in expected} != expected:
                self.wrong_type.append(f"{field.label}: {kind}, schema {node}")
        elif kind in protobuf.table()["messages"]:
            if "$ref" not in node:
                self.wrong_type.append(f"{field.label}: message {kind}, schema {node}")
            else:
                self.kind(kind, node["$ref"])
        elif _SCALARS.get(kind) != node.get("type"):
            self.wrong_type.append(f"{field.label}: {kind}, schema {node}")


def _served_kinds() -> Iterator[tuple[str, str]]:
    """(protobuf message, model) of every served kind, and of Scale (the scale subresource's kind)."""
    for resource in Catalog():
        if resource.api_version not in protobuf.JSON_ONLY:
            yield f"{protobuf.PACKAGES[resource.api_version]}.{resource.kind}", resource.model
    yield f"{protobuf.PACKAGES['autoscaling/v1']}.Scale", "V1Scale"


def _walk(definitions: dict[str, Any]) -> Walk:
    walk = Walk(definitions, set(), set(), [], {}, set())
    for message, model in _served_kinds():
        assert message in protobuf.table()["messages"], f"{message} is not in the protobuf table"
        walk.kind(message, model)
    return walk


def test_the_table_comes_from_one_tag_of_both_repositories() -> None:
    source = protobuf.table()["source"]
    assert set(source["commits"]) == {"k8s.io/api", "k8s.io/apimachinery"}
    assert all(re.fullmatch(r"[0-9a-f]{40}", commit) for commit in source["commits"].values())
    assert "k8s.io/api/core/v1/generated.proto" in source["files"]


def test_every_served_group_has_its_messages_in_the_table() -> None:
    packages = {message.rsplit(".", 1)[0] for message in protobuf.table()["messages"]}
    assert set(protobuf.PACKAGES.values()) <= packages
    assert {r.api_version for r in Catalog()} - protobuf.JSON_ONLY <= set(protobuf.PACKAGES)


def test_every_field_the_protobuf_table_knows_is_in_the_served_kinds_schemas(definitions: dict[str, Any]) -> None:
    walk = _walk(definitions)
    assert walk.only_in_table == ONLY_IN_THE_TABLE
    assert walk.wrong_type == []
    assert len(walk.seen) > 200  # the walk reached the nested messages, not only the kinds


def test_the_fields_only_the_schemas_know_are_the_known_ones(definitions: dict[str, Any]) -> None:
    assert _walk(definitions).only_in_schemas == ONLY_IN_THE_SCHEMAS


def test_inline_fields_are_exactly_the_embedded_structs(definitions: dict[str, Any]) -> None:
    walk = _walk(definitions)
    assert set(walk.inline) == protobuf.INLINE  # every listed field is reached by a served kind
    for label, schema in walk.inline.items():
        assert label.split(".")[1] not in schema["properties"], f"{label} is a field of its own in JSON"
