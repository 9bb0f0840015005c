"""Decoding-time checks: JSON types, unknown fields, quantities, nulls and omitted empties."""

from __future__ import annotations

from typing import Any

from agents.apiserver.structural import Checker


def pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def test_wrong_types_are_decode_errors_naming_the_field(definitions: dict[str, Any]) -> None:
    problems = Checker(definitions).check(
        "V1Pod", pod({"containers": [{"name": "c", "image": 3}], "hostNetwork": "yes"}), drop_unknown=False
    )
    fields = sorted(e.field for e in problems.decode)
    assert fields == ["spec.containers[0].image", "spec.hostNetwork"]


def test_unknown_fields_are_reported_and_dropped_when_not_strict(definitions: dict[str, Any]) -> None:
    obj = pod({"containers": [{"name": "c", "image": "x", "colour": "red"}], "extra": 1})
    problems = Checker(definitions).check("V1Pod", obj, drop_unknown=True)
    assert sorted(problems.unknown) == ["spec.containers[0].colour", "spec.extra"]
    assert "extra" not in obj["spec"] and "colour" not in obj["spec"]["containers"][0]


def test_snake_case_names_are_unknown_fields(definitions: dict[str, Any]) -> None:
    problems = Checker(definitions).check(
        "V1Pod", pod({"containers": [{"name": "c", "image": "x", "image_pull_policy": "Always"}]}), drop_unknown=False
    )
    assert problems.unknown == ["spec.containers[0].image_pull_policy"]


def test_quantities_are_canonical_and_numbers_accepted(definitions: dict[str, Any]) -> None:
    obj = pod(
        {
            "containers": [
                {
                    "name": "c",
                    "image": "x",
                    "resources": {"limits": {"cpu": 1, "memory": "1024Mi"}, "requests": {"cpu": "500m"}},
                }
            ]
        }
    )
    problems = Checker(definitions).check("V1Pod", obj, drop_unknown=False)
    assert not problems.decode
    assert obj["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "1", "memory": "1Gi"},
        "requests": {"cpu": "500m"},
    }
    bad = pod({"containers": [{"name": "c", "image": "x", "resources": {"limits": {"cpu": "lots"}}}]})
    assert Checker(definitions).check("V1Pod", bad, drop_unknown=False).decode


def test_nulls_and_empty_maps_and_lists_are_omitted_like_go(definitions: dict[str, Any]) -> None:
    obj = pod({"containers": [{"name": "c", "image": "x", "env": []}], "nodeSelector": {}, "hostname": None})
    obj["metadata"]["labels"] = {}
    obj["metadata"]["creationTimestamp"] = None
    Checker(definitions).check("V1Pod", obj, drop_unknown=False)
    assert obj["spec"] == {"containers": [{"name": "c", "image": "x"}]}
    assert obj["metadata"] == {"name": "p"}


def test_missing_required_fields_are_reported_separately(definitions: dict[str, Any]) -> None:
    problems = Checker(definitions).check("V1Pod", pod({"containers": [{"image": "x"}]}), drop_unknown=False)
    assert [e.field for e in problems.missing] == ["spec.containers[0].name"] and not problems.decode


def test_secret_data_must_be_base64(definitions: dict[str, Any]) -> None:
    good = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "aGVsbG8="}}
    bad = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "not base64!"}}
    assert not Checker(definitions).check("V1Secret", good, drop_unknown=False).decode
    assert Checker(definitions).check("V1Secret", bad, drop_unknown=False).decode
