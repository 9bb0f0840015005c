"""The structural schema of custom resources (crdschema) and the pure planning of customresources."""

from __future__ import annotations

from typing import Any

from agents.apiserver import crdschema, customresources
from agents.apiserver.kinds.apiextensions import definition_errors
from agents.apiserver.resources import Catalog

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "maxLength": 5, "minLength": 1, "pattern": "^[a-z]+$"},
                "size": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
                "ratio": {"type": "number", "exclusiveMaximum": True, "maximum": 1},
                "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"id": {"type": "integer"}, "on": {"type": "boolean", "default": True}},
                    },
                },
            },
        },
    },
}


def rendered(obj: dict[str, Any]) -> list[str]:
    return [e.render() for e in crdschema.validate(obj, SCHEMA)]


def test_unknown_fields_and_disallowed_nulls_are_pruned_except_where_preserved() -> None:
    obj = {
        "apiVersion": "x.example.com/v1",
        "kind": "X",
        "metadata": {"name": "n"},
        "other": 1,
        "spec": {
            "name": "a",
            "bogus": True,
            "free": {"anything": {"deep": 1}},
            "items": [{"id": 1, "junk": 2}],
            "size": None,
            "note": None,
        },
    }
    crdschema.prune(obj, SCHEMA)
    assert obj == {
        "apiVersion": "x.example.com/v1",
        "kind": "X",
        "metadata": {"name": "n"},
        "spec": {"name": "a", "free": {"anything": {"deep": 1}}, "items": [{"id": 1}], "note": None},
    }


def test_defaults_fill_missing_fields_at_every_level() -> None:
    obj: dict[str, Any] = {"spec": {"name": "a", "items": [{"id": 1}, {"id": 2, "on": False}]}}
    crdschema.apply_defaults(obj, SCHEMA)
    assert obj["spec"]["size"] == 3 and obj["spec"]["mode"] == "a"
    assert obj["spec"]["items"] == [{"id": 1, "on": True}, {"id": 2, "on": False}]


def test_a_valid_object_has_no_errors() -> None:
    obj = {
        "spec": {
            "name": "abc",
            "size": 10,
            "ratio": 0.5,
            "port": "http",
            "note": None,
            "tags": ["x"],
            "labels": {"a": "b"},
        }
    }
    assert rendered(obj) == []
    assert rendered({"spec": {"name": "abc", "port": 8080, "size": 2.0}}) == []


def test_errors_name_the_schema_path_in_kube_words() -> None:
    assert rendered({"spec": {"name": "abc", "size": "big"}}) == [
        'spec.size: Invalid value: "string": spec.size in body must be of type integer: "string"'
    ]
    assert rendered({"spec": {"name": "abc", "size": 0}}) == [
        "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
    ]
    assert rendered({"spec": {"name": "abc", "size": 11}}) == [
        "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"
    ]
    assert rendered({"spec": {"name": "abc", "ratio": 1}}) == [
        "spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1"
    ]
    assert rendered({"spec": {"name": "abc", "mode": "c"}}) == [
        'spec.mode: Unsupported value: "c": supported values: "a", "b"'
    ]
    assert rendered({"spec": {"name": "toolong"}}) == ["spec.name: Too long: may not be more than 5 bytes"]
    assert rendered({"spec": {"name": "AB"}}) == [
        "spec.name: Invalid value: \"AB\": spec.name in body should match '^[a-z]+$'"
    ]
    assert rendered({"spec": {"name": "abc", "tags": ["a", "b", "c"]}}) == [
        "spec.tags: Too many: 3: must have at most 2 items"
    ]
    assert rendered({"spec": {"name": "abc", "port": True}}) == [
        'spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean"'
    ]
    assert rendered({"spec": {"name": "abc", "labels": {"a": 1}}}) == [
        'spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type string: "integer"'
    ]
    assert rendered({"spec": {"name": "abc", "items": [{"id": "x"}]}}) == [
        'spec.items[0].id: Invalid value: "string": spec.items[0].id in body must be of type integer: "string"'
    ]
    assert rendered({"spec": {}}) == ["spec.name: Required value"]
    assert rendered({}) == ["spec: Required value"]


def test_a_schema_must_be_structural() -> None:
    path = "spec.versions[0].schema.openAPIV3Schema"
    errors = crdschema.structural_errors(
        {"properties": {"spec": {"properties": {"a": {}}}, "list": {"type": "array"}}}, path
    )
    assert [e.render() for e in errors] == [
        f"{path}.type: Required value: must not be empty at the root",
        f"{path}.properties[spec].type: Required value: must not be empty for specified object fields",
        f"{path}.properties[spec].properties[a].type: Required value: must not be empty for specified object fields",
        f"{path}.properties[list].items: Required value: must be specified",
    ]
    assert crdschema.structural_errors(SCHEMA, path) == []
    bad_pattern = {"type": "object", "properties": {"name": {"type": "string", "pattern": "(a"}}}
    [error] = [e.render() for e in crdschema.structural_errors(bad_pattern, path)]
    assert error.startswith(
        f'{path}.properties[name].pattern: Invalid value: "(a": must be a valid regular expression, but isn\'t: '
    )


def crd(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "group": "x.example.com",
        "scope": "Namespaced",
        "names": {"plural": "things", "kind": "Thing", "listKind": "ThingList", "singular": "thing"},
        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": SCHEMA}}],
    }
    return {"metadata": {"name": "things.x.example.com"}, "spec": {**base, **spec}}


def test_definition_checks() -> None:
    assert definition_errors(crd()) == []
    two_storage = [
        {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": SCHEMA}},
        {"name": "v2", "served": False, "storage": True, "schema": {"openAPIV3Schema": SCHEMA}},
    ]
    rendered_errors = [e.render() for e in definition_errors(crd(versions=two_storage, scope="Both", group="x"))]
    assert (
        rendered_errors[0]
        == 'metadata.name: Invalid value: "things.x.example.com": must be spec.names.plural+"."+spec.group'
    )
    assert 'spec.group: Invalid value: "x": should be a domain with at least one dot' in rendered_errors
    assert 'spec.scope: Unsupported value: "Both": supported values: "Cluster", "Namespaced"' in rendered_errors
    assert any("must have exactly one version marked as storage version" in e for e in rendered_errors)
    no_schema = [{"name": "v1", "served": True, "storage": True}]
    assert [e.render() for e in definition_errors(crd(versions=no_schema))] == [
        "spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required"
    ]


def test_served_resources_prefer_the_highest_version_and_point_at_storage() -> None:
    versions = [
        {"name": name, "served": True, "storage": name == "v1", "schema": {"openAPIV3Schema": SCHEMA}}
        for name in ("v1beta1", "v1", "v2alpha1", "v2")
    ]
    served = customresources.resources_of(crd(versions=versions))
    assert [r.version for r in served] == ["v2", "v1", "v1beta1", "v2alpha1"]
    assert [r.storage_version for r in served] == ["v1", "", "v1", "v1"]
    assert served[0].model == "com.example.x.v2.Thing" and served[0].namespaced


def test_conditions_accept_names_unless_another_kind_of_the_group_has_them() -> None:
    mine = crd()
    status = customresources.plan_status(mine, [], list(Catalog()), "2026-01-01T00:00:00Z")
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"NamesAccepted": "True", "Established": "True"}
    assert status["acceptedNames"]["kind"] == "Thing"
    other: dict[str, Any] = {"metadata": {"name": "others.x.example.com"}, "spec": {"group": "x.example.com"}}
    other["status"] = {"acceptedNames": {"plural": "others", "kind": "Thing"}}
    status = customresources.plan_status(mine, [other], [], "2026-01-01T00:00:00Z")
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["NamesAccepted"]["status"] == "False"
    assert conditions["NamesAccepted"]["message"] == '"Thing" is already in use'
    assert conditions["Established"]["reason"] == "NotAccepted"
    deleting = {**mine, "metadata": {**mine["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    status = customresources.plan_status(deleting, [], [], "2026-01-01T00:00:00Z")
    assert status["conditions"][-1]["type"] == "Terminating"


def test_printer_columns_read_json_paths() -> None:
    printer = customresources.printer_of(
        {
            "additionalPrinterColumns": [
                {"name": "Name0", "type": "string", "jsonPath": ".spec.items[0].id"},
                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                {"name": "Missing", "type": "string", "jsonPath": ".status.none"},
            ]
        }
    )
    assert [c.name for c in printer.columns] == ["Name", "Name0", "Size", "Missing"]
    obj = {"metadata": {"name": "n"}, "spec": {"items": [{"id": 7}], "size": 3}}
    assert printer.row(obj) == ["n", "7", 3, None]
    default = customresources.printer_of({})
    assert [c.name for c in default.columns] == ["Name", "Age"]


def test_scale_paths_are_dotted_field_paths_under_spec_and_status() -> None:
    def scale_errors(spec_path: str, status_path: str = ".status.replicas") -> list[str]:
        scale = {"specReplicasPath": spec_path, "statusReplicasPath": status_path}
        version = {
            "name": "v1",
            "served": True,
            "storage": True,
            "schema": {"openAPIV3Schema": SCHEMA},
            "subresources": {"scale": scale},
        }
        return [e.render() for e in definition_errors(crd(versions=[version]))]

    assert scale_errors(".spec.replicas") == []
    for bad in (".spec.", ".spec.items[0]", ".status.replicas"):
        assert scale_errors(bad) == [
            f'spec.versions[0].subresources.scale.specReplicasPath: Invalid value: "{bad}": '
            "should be a json path under .spec"
        ], bad
