"""PATCH semantics: strategic merge by the kind's merge keys, JSON merge patch, JSON patch."""

from __future__ import annotations

from typing import Any

import pytest

from agents.apiserver.patch import json_patch, merge_patch, strategic_merge
from agents.apiserver.status import StatusError


def pod(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}}, "spec": spec}


CONTAINERS = [
    {
        "name": "app",
        "image": "app:1",
        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
        "ports": [{"containerPort": 80}],
    },
    {"name": "side", "image": "side:1"},
]


def test_containers_merge_by_name_and_env_by_name(definitions: dict[str, Any]) -> None:
    patched = strategic_merge(
        definitions,
        "V1Pod",
        pod(containers=CONTAINERS),
        {
            "spec": {
                "containers": [
                    {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "3"}, {"name": "C", "value": "4"}]}
                ]
            }
        },
    )
    app, side = patched["spec"]["containers"]
    assert app["image"] == "app:2" and side == CONTAINERS[1]
    assert app["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"}, {"name": "C", "value": "4"}]
    assert app["ports"] == [{"containerPort": 80}]


def test_delete_and_replace_directives(definitions: dict[str, Any]) -> None:
    removed = strategic_merge(
        definitions,
        "V1Pod",
        pod(containers=CONTAINERS),
        {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}},
    )
    assert [c["name"] for c in removed["spec"]["containers"]] == ["app"]
    replaced = strategic_merge(
        definitions,
        "V1Pod",
        pod(containers=CONTAINERS),
        {"spec": {"containers": [{"name": "only", "image": "x"}, {"$patch": "replace"}]}},
    )
    assert replaced["spec"]["containers"] == [{"name": "only", "image": "x"}]
    cleared = strategic_merge(
        definitions, "V1Pod", pod(containers=CONTAINERS), {"metadata": {"$patch": "replace", "name": "q"}}
    )
    assert cleared["metadata"] == {"name": "q"}


def test_lists_without_a_merge_strategy_are_replaced(definitions: dict[str, Any]) -> None:
    original = pod(containers=CONTAINERS, tolerations=[{"key": "a", "operator": "Exists"}])
    patched = strategic_merge(
        definitions, "V1Pod", original, {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}
    )
    assert patched["spec"]["tolerations"] == [{"key": "b", "operator": "Exists"}]


def test_primitive_sets_merge_and_delete_from_primitive_list(definitions: dict[str, Any]) -> None:
    original = pod(containers=CONTAINERS)
    original["metadata"]["finalizers"] = ["a", "b"]
    merged = strategic_merge(definitions, "V1Pod", original, {"metadata": {"finalizers": ["b", "c"]}})
    assert merged["metadata"]["finalizers"] == ["a", "b", "c"]
    deleted = strategic_merge(
        definitions, "V1Pod", original, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}
    )
    assert deleted["metadata"]["finalizers"] == ["b"]


def test_set_element_order_and_retain_keys(definitions: dict[str, Any]) -> None:
    ordered = strategic_merge(
        definitions,
        "V1Pod",
        pod(containers=CONTAINERS),
        {"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "app"}]}},
    )
    assert [c["name"] for c in ordered["spec"]["containers"]] == ["side", "app"]
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}},
    }
    recreate = strategic_merge(
        definitions, "V1Deployment", deployment, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    )
    assert recreate["spec"]["strategy"] == {"type": "Recreate"}


def test_null_removes_a_field(definitions: dict[str, Any]) -> None:
    patched = strategic_merge(definitions, "V1Pod", pod(containers=CONTAINERS), {"metadata": {"labels": None}})
    assert "labels" not in patched["metadata"]


def test_a_merge_list_item_without_its_key_is_refused(definitions: dict[str, Any]) -> None:
    with pytest.raises(StatusError) as caught:
        strategic_merge(definitions, "V1Pod", pod(containers=CONTAINERS), {"spec": {"containers": [{"image": "x"}]}})
    assert caught.value.code == 400 and "merge key: name" in caught.value.message


def test_merge_patch_replaces_lists_and_deletes_nulls() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "l": [1, 2]}, {"a": {"b": None, "d": 3}, "l": [3]}) == {
        "a": {"c": 2, "d": 3},
        "l": [3],
    }


def test_json_patch_operations_and_failures() -> None:
    doc = {"spec": {"replicas": 1, "items": ["a"]}}
    assert json_patch(
        doc,
        [{"op": "replace", "path": "/spec/replicas", "value": 3}, {"op": "add", "path": "/spec/items/-", "value": "b"}],
    ) == {"spec": {"replicas": 3, "items": ["a", "b"]}}
    with pytest.raises(StatusError) as failed_test:
        json_patch(doc, [{"op": "test", "path": "/spec/replicas", "value": 9}])
    assert failed_test.value.code == 422
    with pytest.raises(StatusError) as malformed:
        json_patch(doc, {"op": "add"})
    assert malformed.value.code == 400
