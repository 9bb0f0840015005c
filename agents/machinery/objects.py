"""Helpers for API objects as plain JSON dictionaries: metadata access, time, names, references."""

from __future__ import annotations

import copy
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson

Object = dict[str, Any]
T = TypeVar("T")

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # as Kubernetes: no vowels, no look-alikes


def meta(obj: Object) -> dict[str, Any]:
    """The object's metadata, created if absent."""
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = {}
        obj["metadata"] = m
    return m


def name_of(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def namespace_of(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def labels_of(obj: Object) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def deep_copy(obj: T) -> T:
    """A copy sharing nothing with ``obj``. Objects are decoded JSON, so a JSON round trip copies
    them several times faster than ``copy.deepcopy``; anything JSON cannot carry falls back to it."""
    try:
        return orjson.loads(orjson.dumps(obj))  # type: ignore[no-any-return]
    except (TypeError, orjson.JSONEncodeError):
        return copy.deepcopy(obj)


_last_second: list[Any] = [0, ""]


def now() -> str:
    """RFC 3339 UTC timestamp with second precision, as metav1.Time serializes."""
    second = int(time.time())
    if second != _last_second[0]:
        _last_second[:] = [second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")]
    return str(_last_second[1])


def format_time(seconds: float) -> str:
    """A Unix time as kube writes a metav1.Time (RFC 3339, whole seconds, UTC)."""
    return datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """RFC 3339 UTC timestamp with microseconds, as metav1.MicroTime serializes."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset, optional fraction)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def new_uid() -> str:
    return str(uuid.uuid4())


def generated_name(prefix: str) -> str:
    """``generateName`` + 5 random characters, as the API server does."""
    return prefix + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))


def owner_reference(owner: Object, *, controller: bool = True, block: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": name_of(owner),
        "uid": (owner.get("metadata") or {}).get("uid", ""),
        "controller": controller,
        "blockOwnerDeletion": block,
    }


def failure_status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A refusal in kube's Status shape (``kind: Status``, ``status: Failure``), as servers other than the
    API server answer it too (the add-ons, the trace collector)."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
