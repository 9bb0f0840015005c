"""The schema of every served kind, derived from the official Kubernetes Python models.

The ``kubernetes`` package's models are pydantic models with each field's JSON name, type and
description. Their JSON Schema is normalized here into one flat table of definitions (one per model,
keyed by model name) in which nullable wrappers are gone, int-or-string and quantity fields are
marked, and model-docstring boilerplate is trimmed. Validation, OpenAPI and strategic merge read
this table. Building it imports every model and takes seconds, so it is cached on disk per version
of the ``kubernetes`` package.

The models type every integer as a plain ``integer``; Kubernetes' Go types say int32 or int64, and
its OpenAPI documents publish that as ``format``. The protobuf field table (``protobuf.py``, from one
tag of the same release) carries those types, so the table here is walked side by side with it from
every served kind and each integer gets its ``format``: the decoder checks ranges with it and the
OpenAPI documents publish it. The few integer fields the protobuf table is older than are in
``INTEGER_FORMATS``.

Only the host derives it: ``kubernetes`` is a host-only dependency (126 MB installed, and minutes
of import on an emulated CPU), so the nodes' venvs do not have it. The host ships the table it derived
into the API server's cache directory, and beside every table it writes, ``load`` leaves a stamp
naming the ``kubernetes`` version the table came from. Where that package cannot be imported (a
node), the stamp names the table to read: host and node agree on the file without the node importing
or even knowing the package.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from agents.apiserver import protobuf
from agents.apiserver.patchmeta import QUANTITY_FIELDS
from agents.machinery.errors import KubelabError

log = logging.getLogger(__name__)

Schema = dict[str, Any]
FORMAT_VERSION = 2  # bump when normalization changes (2: integer formats)
STAMP = "kubernetes-version"  # in a cache directory: the version of the kubernetes package last derived from


class SchemaTableError(KubelabError):
    """There is no table to serve: the kubernetes package cannot be imported here and none was shipped."""


def _clean_description(text: str) -> str:
    return text.split("\n\nAttributes:", maxsplit=1)[0].strip()


def _normalize(node: Mapping[str, Any], *, quantity: bool = False) -> Schema:
    description = node.get("description")
    out: Schema
    if "$ref" in node:
        out = {"$ref": str(node["$ref"]).rsplit("/", 1)[-1]}
    elif "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        types = {o.get("type") for o in options}
        if len(options) == 1:
            out = _normalize(options[0], quantity=quantity)
        elif types == {"integer", "string"}:
            out = {"x-kubernetes-int-or-string": True}
        elif types == {"string"}:
            out = {"type": "string", "format": "byte"}  # base64 bytes or text: the wire form is a string
        else:
            out = {}
    else:
        kind = node.get("type")
        if kind == "object":
            props = node.get("properties")
            extra = node.get("additionalProperties")
            if props is not None:
                out = {"type": "object", "properties": {k: _normalize(v) for k, v in props.items()}}
                if node.get("required"):
                    out["required"] = list(node["required"])
            elif isinstance(extra, Mapping):
                out = {"type": "object", "additionalProperties": _normalize(extra, quantity=quantity)}
            else:
                out = {"type": "object"}
        elif kind == "array":
            out = {"type": "array", "items": _normalize(node.get("items") or {})}
        elif kind in ("string", "integer", "number", "boolean"):
            out = {"type": kind}
            if node.get("format") in ("date-time", "byte", "binary"):
                out["format"] = "byte" if node["format"] == "binary" else node["format"]
            if quantity and kind == "string":
                out = {"x-kubelab-quantity": True}
        else:
            out = {}
    if description:
        out["description"] = _clean_description(str(description))
    return out


def _normalize_definition(name: str, node: Mapping[str, Any]) -> Schema:
    props = node.get("properties") or {}
    out: Schema = {"type": "object", "properties": {}}
    for field, sub in props.items():
        out["properties"][field] = _normalize(sub, quantity=(name, field) in QUANTITY_FIELDS)
    if node.get("required"):
        out["required"] = list(node["required"])
    if node.get("description"):
        out["description"] = _clean_description(str(node["description"]))
    return out


# Integer fields of the 1.37 models that the protobuf table (an earlier tag of 1.37) does not have yet,
# as Model.field -> format, from their Go types in k8s.io/api's master after that tag.
INTEGER_FORMATS = {
    "V1ClusterTrustBundleProjection.user": "int64",
    "V1ConfigMapVolumeSource.defaultUser": "int64",
    "V1DownwardAPIVolumeFile.user": "int64",
    "V1DownwardAPIVolumeSource.defaultUser": "int64",
    "V1EmptyDirVolumeSource.mode": "int32",
    "V1EvictionResponder.priority": "int32",
    "V1KeyToPath.user": "int64",
    "V1PodCertificateProjection.user": "int64",
    "V1ProjectedVolumeSource.defaultUser": "int64",
    "V1SecretVolumeSource.defaultUser": "int64",
    "V1ServiceAccountTokenProjection.user": "int64",
    "V1alpha3WorkloadPodGroupGangSchedulingPolicy.minCount": "int32",  # scheduling/v1alpha3 GangSchedulingPolicy
    # apiregistration.k8s.io/v1 (k8s.io/kube-aggregator's types, not in the table's k8s.io/api)
    "V1APIServiceSpec.groupPriorityMinimum": "int32",
    "V1APIServiceSpec.versionPriority": "int32",
    "ApiregistrationV1ServiceReference.port": "int32",
    # autoscaling/v2, whose messages the table does not carry (its HorizontalPodAutoscaler, spec and
    # status are walked with v1's, which share their integer fields)
    "V2MetricTarget.averageUtilization": "int32",
    "V2MetricValueStatus.averageUtilization": "int32",
    "V2HPAScalingRules.stabilizationWindowSeconds": "int32",
    "V2HPAScalingPolicy.value": "int32",
    "V2HPAScalingPolicy.periodSeconds": "int32",
    "V2HorizontalPodAutoscalerCondition.observedGeneration": "int64",
    # storage.k8s.io/v1, whose messages the table does not carry
    "StorageV1TokenRequest.expirationSeconds": "int64",
    "V1CSIDriverSpec.nodeAllocatableUpdatePeriodSeconds": "int64",
    "V1VolumeError.errorCode": "int32",
    "V1VolumeNodeResources.count": "int32",
    # apiextensions.k8s.io/v1 (k8s.io/apiextensions-apiserver's types, not in the table's k8s.io/api)
    "ApiextensionsV1ServiceReference.port": "int32",
    "V1CustomResourceColumnDefinition.priority": "int32",
    "V1CustomResourceDefinitionCondition.observedGeneration": "int64",
    "V1CustomResourceDefinitionStatus.observedGeneration": "int64",
    **{f"V1JSONSchemaProps.{bound}": "int64" for bound in ("maxItems", "maxLength", "maxProperties")},
    **{f"V1JSONSchemaProps.{bound}": "int64" for bound in ("minItems", "minLength", "minProperties")},
}
# The protobuf packages a model's kind is looked for in, in this order (the meta types last).
_PROTO_PACKAGES = (*dict.fromkeys(protobuf.PACKAGES.values()), protobuf.META)
_MODEL_NAME = re.compile(r"^(?:[A-Z][a-z]+)?V\d+(?:alpha\d+|beta\d+)?(?P<kind>[A-Z].*)$")


def message_of(model: str) -> str | None:
    """The protobuf message of a model (``V1Pod`` -> ``k8s.io.api.core.v1.Pod``), None if none."""
    match = _MODEL_NAME.match(model)
    if match is None:
        return None
    messages = protobuf.table()["messages"]
    for package in _PROTO_PACKAGES:
        if f"{package}.{match['kind']}" in messages:
            return f"{package}.{match['kind']}"
    return None


def _proto_fields(message: str) -> dict[str, tuple[str, bool]]:
    """A message's fields by JSON name as (type, repeated), inline structs spread as JSON has them."""
    short = message.rsplit(".", 1)[-1]
    out: dict[str, tuple[str, bool]] = {}
    for name, kind, repeated in protobuf.table()["messages"][message].values():
        if f"{short}.{name}" in protobuf.INLINE:
            out.update(_proto_fields(kind))
        else:
            out[name] = (kind, bool(repeated))
    return out


def _integer_formats(defs: dict[str, Schema], roots: Iterable[str]) -> None:
    """Give every integer reachable from ``roots`` the format (int32, int64) of its protobuf field."""
    messages = protobuf.table()["messages"]
    seen: set[tuple[str, str]] = set()

    def mark(node: Schema, kind: str, repeated: bool) -> None:
        if repeated:
            node = node.get("items") or {}
        if kind.startswith("map:"):
            node, kind = node.get("additionalProperties") or {}, kind.split(":")[2]
        if kind in ("int32", "int64") and node.get("type") == "integer":
            node["format"] = kind
        elif kind in messages and kind not in protobuf.SPECIAL and "$ref" in node:
            walk(kind, node["$ref"])

    def walk(message: str, model: str) -> None:
        if (message, model) in seen or model not in defs:
            return
        seen.add((message, model))
        properties = defs[model].get("properties") or {}
        for name, (kind, repeated) in _proto_fields(message).items():
            if name in properties:
                mark(properties[name], kind, repeated)

    for model in roots:
        message = message_of(model)
        if message is not None:
            walk(message, model)
    for label, kind in INTEGER_FORMATS.items():
        model, name = label.split(".")
        node = (defs.get(model) or {}).get("properties", {}).get(name)
        if node is not None and node.get("type") == "integer":
            node["format"] = kind


def integers_without_format(defs: Mapping[str, Schema]) -> list[str]:
    """``Model.field`` of every integer that has no format (the decoder would not know its range)."""
    out: list[str] = []

    def visit(label: str, node: Mapping[str, Any]) -> None:
        if node.get("type") == "integer" and "format" not in node:
            out.append(label)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), Mapping):
                visit(label, node[key])

    for model, schema in defs.items():
        for name, node in (schema.get("properties") or {}).items():
            visit(f"{model}.{name}", node)
    return sorted(out)


def build(models: Iterable[str]) -> dict[str, Schema]:
    """Normalized definitions for the given models and everything they reference."""
    import kubernetes.client as k8s  # noqa: PLC0415  (slow import, only when the cache is cold)

    wanted = list(models)
    raw: dict[str, Any] = {}
    for model in wanted:
        document = getattr(k8s, model).model_json_schema(by_alias=True)
        raw.update(document.pop("$defs", {}))
        raw[model] = document
    defs = {name: _normalize_definition(name, node) for name, node in sorted(raw.items())}
    _integer_formats(defs, wanted)
    return defs


def models_version() -> str | None:
    """The version of the kubernetes package whose models the table is derived from, or None where
    that package cannot be imported (a node). Neither answer imports it."""
    if importlib.util.find_spec("kubernetes") is None:
        return None
    return importlib.metadata.version("kubernetes")


def _cache_file(cache_dir: Path, models: list[str], version: str) -> Path:
    digest = hashlib.sha256(",".join(models).encode()).hexdigest()[:12]
    return cache_dir / f"schemas-k8s{version}-f{FORMAT_VERSION}-{digest}.json"


def _read(path: Path, models: list[str]) -> dict[str, Schema] | None:
    """The cached table at ``path`` when it is there, readable and made for these models."""
    if not path.exists():
        return None
    try:
        cached = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        log.warning("ignoring unreadable schema cache %s: %s", path, exc)
        return None
    if not isinstance(cached, dict) or cached.get("models") != models:
        return None
    defs: dict[str, Schema] = cached["definitions"]
    return defs


def _write(path: Path, content: bytes) -> None:
    """Whole or not at all: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(content)
    tmp.replace(path)


def load(models: Iterable[str], cache_dir: Path | None) -> dict[str, Schema]:
    """Definitions for these models: from the on-disk cache, or built (and cached, with the stamp)
    when absent. Without the kubernetes package, the table the stamp in ``cache_dir`` names."""
    wanted = sorted(set(models))
    version = models_version()
    if version is None:
        return _shipped(wanted, cache_dir)
    path = _cache_file(cache_dir, wanted, version) if cache_dir else None
    if path is not None and (cached := _read(path, wanted)) is not None:
        return cached
    defs = build(wanted)
    if cache_dir is not None and path is not None:
        try:
            _write(path, orjson.dumps({"models": wanted, "definitions": defs}))
            _write(cache_dir / STAMP, f"{version}\n".encode())
        except OSError as exc:
            log.warning("cannot write schema cache %s: %s", path, exc)
    return defs


def _shipped(models: list[str], cache_dir: Path | None) -> dict[str, Schema]:
    """The table derived on another machine (the host) and put into ``cache_dir`` with its stamp."""
    where = f"the schema cache directory {cache_dir}" if cache_dir else "no schema cache directory"
    advice = (
        "the kubernetes package cannot be imported here, so the API schemas must come from a table "
        "derived where it can (the host ships one with the agents' code, in the code bundle's schemas/)"
    )
    if cache_dir is None:
        raise SchemaTableError(f"{advice}; there is {where}")
    try:
        version = (cache_dir / STAMP).read_text().strip()
    except OSError as exc:
        raise SchemaTableError(f"{advice}; {where} has no readable {STAMP} stamp ({exc.strerror})") from exc
    path = _cache_file(cache_dir, models, version)
    defs = _read(path, models)
    if defs is None:
        raise SchemaTableError(
            f"{advice}; {where} names kubernetes {version} in its stamp, but holds no readable table of "
            f"these models in format {FORMAT_VERSION} ({path.name})"
        )
    log.info("schema table derived from kubernetes %s elsewhere: %s", version, path)
    return defs
