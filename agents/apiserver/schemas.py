"""The schema of every served kind, derived from the official Kubernetes Python models.

The ``kubernetes`` package's models are pydantic models with each field's JSON name, type and
description. Their JSON Schema is normalized here into one flat table of definitions (one per model,
keyed by model name) in which nullable wrappers are gone, int-or-string and quantity fields are
marked, and model-docstring boilerplate is trimmed. Validation, OpenAPI and strategic merge read
this table. Building it imports every model and takes seconds, so it is cached on disk per version
of the ``kubernetes`` package.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from agents.apiserver.patchmeta import QUANTITY_FIELDS

log = logging.getLogger(__name__)

Schema = dict[str, Any]
FORMAT_VERSION = 1  # bump when normalization changes


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


def _cache_file(cache_dir: Path, models: list[str]) -> Path:
    version = importlib.metadata.version("kubernetes")
    digest = hashlib.sha256(",".join(models).encode()).hexdigest()[:12]
    return cache_dir / f"schemas-k8s{version}-f{FORMAT_VERSION}-{digest}.json"


def load(models: Iterable[str], cache_dir: Path | None) -> dict[str, Schema]:
    """Definitions from the on-disk cache, or built (and cached) when absent."""
    wanted = sorted(set(models))
    path = _cache_file(cache_dir, wanted) if cache_dir else None
    if path is not None and path.exists():
        try:
            cached = orjson.loads(path.read_bytes())
            if cached.get("models") == wanted:
                defs: dict[str, Schema] = cached["definitions"]
                return defs
        except (OSError, orjson.JSONDecodeError) as exc:
            log.warning("ignoring unreadable schema cache %s: %s", path, exc)
    defs = build(wanted)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(orjson.dumps({"models": wanted, "definitions": defs}))
            tmp.replace(path)
        except OSError as exc:
            log.warning("cannot write schema cache %s: %s", path, exc)
    return defs
