"""The schema of every served kind, derived from the official Kubernetes Python models.

The ``kubernetes`` package's models are pydantic models with each field's JSON name, type and
description. Their JSON Schema is normalized here into one flat table of definitions (one per model,
keyed by model name) in which nullable wrappers are gone, int-or-string and quantity fields are
marked, and model-docstring boilerplate is trimmed. Validation, OpenAPI and strategic merge read
this table. Building it imports every model and takes seconds, so it is cached on disk per version
of the ``kubernetes`` package.

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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from agents.apiserver.patchmeta import QUANTITY_FIELDS
from agents.machinery.errors import KubelabError

log = logging.getLogger(__name__)

Schema = dict[str, Any]
FORMAT_VERSION = 1  # bump when normalization changes
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


def build(models: Iterable[str]) -> dict[str, Schema]:
    """Normalized definitions for the given models and everything they reference."""
    import kubernetes.client as k8s  # noqa: PLC0415  (slow import, only when the cache is cold)

    raw: dict[str, Any] = {}
    for model in models:
        document = getattr(k8s, model).model_json_schema(by_alias=True)
        raw.update(document.pop("$defs", {}))
        raw[model] = document
    return {name: _normalize_definition(name, node) for name, node in sorted(raw.items())}


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
