"""Stored objects: metadata first, no resourceVersion, which is stamped on without a decode."""

from __future__ import annotations

import orjson

from agents.machinery import codec


def test_stored_objects_lead_with_kind_version_and_metadata() -> None:
    stored = codec.encode_stored(
        {"spec": {"a": 1}, "metadata": {"name": "x", "resourceVersion": "9"}, "kind": "Pod", "apiVersion": "v1"}
    )
    assert stored.startswith(b'{"kind":"Pod","apiVersion":"v1","metadata":{"name":"x"}')
    stamped = codec.stamp(stored, 42)
    assert orjson.loads(stamped)["metadata"] == {"resourceVersion": "42", "name": "x"}
    assert codec.decode_stored(stored, 42)["metadata"]["resourceVersion"] == "42"


def test_stamping_empty_metadata_and_nested_metadata() -> None:
    stored = codec.encode_stored(
        {"kind": "X", "apiVersion": "v1", "metadata": {}, "spec": {"template": {"metadata": {"name": "inner"}}}}
    )
    obj = orjson.loads(codec.stamp(stored, 7))
    assert obj["metadata"] == {"resourceVersion": "7"}
    assert obj["spec"]["template"]["metadata"] == {"name": "inner"}
