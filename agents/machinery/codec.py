"""JSON encoding of API objects, and resourceVersion stamping without a decode.

Objects are stored with ``kind``, ``apiVersion`` and ``metadata`` as their first keys and without a
``resourceVersion`` (that is etcd's mod_revision, known only after the write). Because the first
``"metadata":{`` in such a document is the object's own metadata, the revision can be spliced into
the stored bytes directly: lists and watch streams hand out stored objects without parsing them.
"""

from __future__ import annotations

from typing import Any

import orjson

from agents.machinery.errors import KubelabError

_HEAD = ("kind", "apiVersion", "metadata")
_META = b'"metadata":{'


class DecodeError(KubelabError):
    """The bytes are not a JSON object."""


def dumps(obj: Any) -> bytes:
    """Encode any JSON-compatible value."""
    return orjson.dumps(obj)


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(str(exc)) from exc


def encode_stored(obj: dict[str, Any]) -> bytes:
    """Encode an object for storage: head keys first, no resourceVersion."""
    meta = obj.get("metadata") or {}
    if "resourceVersion" in meta:
        meta = {k: v for k, v in meta.items() if k != "resourceVersion"}
    ordered: dict[str, Any] = {}
    for key in _HEAD:
        if key in obj:
            ordered[key] = meta if key == "metadata" else obj[key]
    for key, value in obj.items():
        if key not in ordered:
            ordered[key] = value
    return orjson.dumps(ordered)


def stamp(stored: bytes, revision: int) -> bytes:
    """Return the stored document with ``metadata.resourceVersion`` set, without decoding it."""
    at = stored.find(_META)
    if at < 0:
        raise DecodeError("stored object has no metadata")
    at += len(_META)
    field = b'"resourceVersion":"%d"' % revision
    if stored[at : at + 1] == b"}":
        return stored[:at] + field + stored[at:]
    return stored[:at] + field + b"," + stored[at:]


def decode_stored(stored: bytes, revision: int) -> dict[str, Any]:
    """Decode a stored object and set its resourceVersion."""
    obj = loads(stored)
    if not isinstance(obj, dict):
        raise DecodeError("stored value is not an object")
    obj.setdefault("metadata", {})["resourceVersion"] = str(revision)
    return obj
