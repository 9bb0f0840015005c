"""Custom resources through the API server on the in-memory store: a definition in, its kind served."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp.test_utils import TestClient

Client = TestClient[Any, Any]
CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
WIDGETS = "/apis/unit.example.com/v1/namespaces/default/widgets"


def widget_crd(*, versions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["image"],
                "properties": {
                    "image": {"type": "string", "maxLength": 20},
                    "replicas": {"type": "integer", "minimum": 0, "default": 1},
                    "mode": {"type": "string", "enum": ["fast", "slow"]},
                    "port": {"x-kubernetes-int-or-string": True},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            },
            "status": {
                "type": "object",
                "properties": {"replicas": {"type": "integer"}, "selector": {"type": "string"}},
            },
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.unit.example.com"},
        "spec": {
            "group": "unit.example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
            "versions": versions
            or [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        {"name": "Image", "type": "string", "jsonPath": ".spec.image"},
                        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    ],
                }
            ],
        },
    }


async def established(http: Client, name: str, deadline: float = 5.0) -> dict[str, Any]:
    end = time.monotonic() + deadline
    while True:
        crd = await (await http.get(f"{CRDS}/{name}")).json()
        conditions = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
        if conditions.get("Established") == "True":
            return dict(crd)
        assert time.monotonic() < end, crd
        await asyncio.sleep(0.05)


async def test_a_definition_is_established_and_its_kind_served_with_discovery(http: Client) -> None:
    created = await http.post(CRDS, json=widget_crd())
    assert created.status == 201, await created.text()
    crd = await established(http, "widgets.unit.example.com")
    assert crd["status"]["acceptedNames"]["kind"] == "Widget"
    assert crd["status"]["storedVersions"] == ["v1"]
    assert "customresourcecleanup.apiextensions.k8s.io" in crd["metadata"]["finalizers"]
    groups = await (await http.get("/apis")).json()
    assert "unit.example.com" in [g["name"] for g in groups["groups"]]
    listed = await (await http.get("/apis/unit.example.com/v1")).json()
    names = {r["name"]: r for r in listed["resources"]}
    assert names["widgets"]["kind"] == "Widget" and names["widgets"]["shortNames"] == ["wd"]
    assert {"widgets/status", "widgets/scale"} <= set(names)
    root = await (await http.get("/openapi/v3")).json()
    assert "apis/unit.example.com/v1" in root["paths"]
    document = await (await http.get("/openapi/v3/apis/unit.example.com/v1")).json()
    schema = document["components"]["schemas"]["com.example.unit.v1.Widget"]
    assert schema["properties"]["spec"]["properties"]["replicas"]["type"] == "integer"


async def test_objects_are_pruned_defaulted_and_validated_by_the_schema(http: Client) -> None:
    await http.post(CRDS, json=widget_crd())
    await established(http, "widgets.unit.example.com")
    body = {
        "apiVersion": "unit.example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "one"},
        "spec": {"image": "nginx", "unknown": 1, "port": "http", "extra": {"kept": True}},
    }
    created = await http.post(WIDGETS, json=body)
    assert created.status == 201, await created.text()
    obj = await created.json()
    assert obj["spec"] == {"image": "nginx", "replicas": 1, "port": "http", "extra": {"kept": True}}
    assert obj["metadata"]["generation"] == 1
    bad = {**body, "metadata": {"name": "two"}, "spec": {"image": "x", "replicas": "string", "mode": "other"}}
    refused = await http.post(WIDGETS, json=bad)
    assert refused.status == 422
    status = await refused.json()
    assert status["reason"] == "Invalid"
    messages = {c["field"]: c["message"] for c in status["details"]["causes"]}
    assert messages["spec.replicas"] == (
        'Invalid value: "string": spec.replicas in body must be of type integer: "string"'
    )
    assert messages["spec.mode"] == 'Unsupported value: "other": supported values: "fast", "slow"'
    missing = await http.post(WIDGETS, json={**body, "metadata": {"name": "three"}, "spec": {}})
    assert "spec.image: Required value" in (await missing.json())["message"]


async def test_status_and_scale_subresources_and_generation(http: Client) -> None:
    await http.post(CRDS, json=widget_crd())
    await established(http, "widgets.unit.example.com")
    body = {"apiVersion": "unit.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"image": "a"}}
    obj = await (await http.post(WIDGETS, json={**body, "status": {"replicas": 9}})).json()
    assert "status" not in obj  # the main resource ignores status
    obj["status"] = {"replicas": 2, "selector": "app=w"}
    obj["spec"]["image"] = "changed-on-status"
    updated = await (await http.put(f"{WIDGETS}/w/status", json=obj)).json()
    assert updated["status"]["replicas"] == 2 and updated["spec"]["image"] == "a"
    assert updated["metadata"]["generation"] == 1
    scale = await (await http.get(f"{WIDGETS}/w/scale")).json()
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1
    assert scale["status"] == {"replicas": 2, "selector": "app=w"}
    patched = await http.patch(
        f"{WIDGETS}/w/scale",
        json={"spec": {"replicas": 5}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status == 200, await patched.text()
    obj = await (await http.get(f"{WIDGETS}/w")).json()
    assert obj["spec"]["replicas"] == 5 and obj["metadata"]["generation"] == 2


async def test_a_strategic_merge_patch_of_a_custom_resource_is_415_and_changes_nothing(http: Client) -> None:
    await http.post(CRDS, json=widget_crd())
    await established(http, "widgets.unit.example.com")
    body = {"apiVersion": "unit.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"image": "a"}}
    await http.post(WIDGETS, json=body)
    for path in (f"{WIDGETS}/w", f"{WIDGETS}/w/status"):
        refused = await http.patch(
            path, json={"spec": {"image": "b"}}, headers={"Content-Type": "application/strategic-merge-patch+json"}
        )
        status = await refused.json()
        assert refused.status == 415 and status["reason"] == "UnsupportedMediaType"
        assert (
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
            in status["message"]
        )
    assert (await (await http.get(f"{WIDGETS}/w")).json())["spec"]["image"] == "a"
    # the OpenAPI document says so too: kubectl's client-side apply picks a JSON merge patch from it
    document = await (await http.get("/openapi/v3/apis/unit.example.com/v1")).json()
    patches = [op["patch"] for op in document["paths"].values() if "patch" in op]
    assert patches and all(
        set(op["requestBody"]["content"])
        == {"application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"}
        for op in patches
    )


async def test_printer_columns_in_the_table(http: Client) -> None:
    await http.post(CRDS, json=widget_crd())
    await established(http, "widgets.unit.example.com")
    body = {"apiVersion": "unit.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"image": "a"}}
    await http.post(WIDGETS, json=body)
    table = await (await http.get(WIDGETS, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Image", "Replicas"]
    assert table["rows"][0]["cells"] == ["w", "a", 1]


async def test_a_second_served_version_rewrites_only_the_api_version(http: Client) -> None:
    crd = widget_crd()
    v1 = crd["spec"]["versions"][0]
    v2 = {**v1, "name": "v2", "storage": False, "subresources": {}, "additionalPrinterColumns": []}
    crd["spec"]["versions"] = [v1, v2]
    assert (await http.post(CRDS, json=crd)).status == 201
    await established(http, "widgets.unit.example.com")
    at_v2 = WIDGETS.replace("/v1/", "/v2/")
    body = {"apiVersion": "unit.example.com/v2", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"image": "a"}}
    created = await http.post(at_v2, json=body)
    assert created.status == 201, await created.text()
    assert (await created.json())["apiVersion"] == "unit.example.com/v2"
    assert (await (await http.get(f"{WIDGETS}/w")).json())["apiVersion"] == "unit.example.com/v1"
    groups = await (await http.get("/apis/unit.example.com")).json()
    assert [v["version"] for v in groups["versions"]] == ["v2", "v1"]


async def test_deleting_a_definition_deletes_its_objects_then_stops_serving(http: Client) -> None:
    await http.post(CRDS, json=widget_crd())
    await established(http, "widgets.unit.example.com")
    body = {"apiVersion": "unit.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"image": "a"}}
    assert (await http.post(WIDGETS, json=body)).status == 201
    deleting = await (await http.delete(f"{CRDS}/widgets.unit.example.com")).json()
    assert deleting["metadata"]["deletionTimestamp"]
    end = time.monotonic() + 5
    while (await http.get(f"{CRDS}/widgets.unit.example.com")).status != 404:
        assert time.monotonic() < end
        await asyncio.sleep(0.05)
    assert (await http.get(WIDGETS)).status == 404
    groups = await (await http.get("/apis")).json()
    assert "unit.example.com" not in [g["name"] for g in groups["groups"]]


async def test_an_invalid_definition_is_refused_with_kube_words(http: Client) -> None:
    crd = widget_crd()
    crd["metadata"]["name"] = "gadgets.unit.example.com"
    crd["spec"]["scope"] = "Everywhere"
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["image"] = {}
    refused = await http.post(CRDS, json=crd)
    assert refused.status == 422
    message = (await refused.json())["message"]
    assert 'metadata.name: Invalid value: "gadgets.unit.example.com": must be spec.names.plural+"."+spec.group' in (
        message
    )
    assert 'spec.scope: Unsupported value: "Everywhere"' in message
    assert (
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[image].type: Required value:"
        " must not be empty for specified object fields"
    ) in message


async def test_a_second_definition_of_the_same_kind_is_not_served_and_leaves_the_first_alone(http: Client) -> None:
    assert (await http.post(CRDS, json=widget_crd())).status == 201
    await established(http, "widgets.unit.example.com")
    twin = widget_crd()
    twin["metadata"]["name"] = "gadgets.unit.example.com"
    twin["spec"]["names"] = {"plural": "gadgets", "kind": "Widget"}
    assert (await http.post(CRDS, json=twin)).status == 201
    gadgets = "/apis/unit.example.com/v1/namespaces/default/gadgets"
    end = time.monotonic() + 5
    while True:
        crd = await (await http.get(f"{CRDS}/gadgets.unit.example.com")).json()
        conditions = {c["type"]: c for c in (crd.get("status") or {}).get("conditions") or []}
        if "NamesAccepted" in conditions:
            break
        assert time.monotonic() < end, crd
        await asyncio.sleep(0.05)
    assert conditions["NamesAccepted"]["status"] == "False"
    assert (await http.get(gadgets)).status == 404
    assert (await http.delete(f"{CRDS}/gadgets.unit.example.com")).status == 202  # its finalizer runs first
    end = time.monotonic() + 5
    while (await http.get(f"{CRDS}/gadgets.unit.example.com")).status != 404:
        assert time.monotonic() < end
        await asyncio.sleep(0.05)
    made = await http.post(
        WIDGETS,
        json={
            "apiVersion": "unit.example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"image": "x"},
        },
    )
    assert made.status == 201, await made.text()
    assert (await http.get("/openapi/v3/apis/unit.example.com/v1")).status == 200


def two_version_crd() -> dict[str, Any]:
    """v1 as ``widget_crd`` has it; v2 (served, not stored) with a schema, scale path and columns of its own."""
    crd = widget_crd()
    v1 = crd["spec"]["versions"][0]
    v2 = {
        "name": "v2",
        "served": True,
        "storage": False,
        "schema": {
            "openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["size"],
                        "properties": {
                            "image": {"type": "string"},
                            "size": {"type": "integer", "maximum": 3},
                            "count": {"type": "integer", "default": 2},
                        },
                    },
                    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                },
            }
        },
        "subresources": {
            "status": {},
            "scale": {"specReplicasPath": ".spec.count", "statusReplicasPath": ".status.replicas"},
        },
        "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
    }
    crd["spec"]["versions"] = [v1, v2]
    return crd


async def test_each_version_is_checked_by_its_own_schema_and_has_its_own_scale_and_columns(http: Client) -> None:
    assert (await http.post(CRDS, json=two_version_crd())).status == 201
    await established(http, "widgets.unit.example.com")
    at_v2 = WIDGETS.replace("/v1/", "/v2/")
    # v1 requires an image, v2 a size: a v2 body without an image is valid at v2 and defaulted by v2's schema
    body = {"apiVersion": "unit.example.com/v2", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2}}
    created = await http.post(at_v2, json=body)
    assert created.status == 201, await created.text()
    assert (await created.json())["spec"] == {"size": 2, "count": 2}
    refused = await http.post(at_v2, json={**body, "metadata": {"name": "big"}, "spec": {"size": 9}})
    assert refused.status == 422
    causes = {c["field"]: c["message"] for c in (await refused.json())["details"]["causes"]}
    assert causes == {"spec.size": "Invalid value: 9: spec.size in body should be less than or equal to 3"}
    at_v1 = await http.post(WIDGETS, json={**body, "apiVersion": "unit.example.com/v1", "metadata": {"name": "x"}})
    assert at_v1.status == 422 and "spec.image: Required value" in (await at_v1.json())["message"]
    # v2's scale subresource reads and writes v2's replica path
    scale = await (await http.get(f"{at_v2}/w/scale")).json()
    assert scale["spec"]["replicas"] == 2
    patched = await http.patch(
        f"{at_v2}/w/scale", json={"spec": {"replicas": 3}}, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert patched.status == 200, await patched.text()
    assert (await (await http.get(f"{at_v2}/w")).json())["spec"]["count"] == 3
    # and v2's columns in its tables, v1's in v1's
    accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    table = await (await http.get(at_v2, headers=accept)).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Size"]
    assert table["rows"][0]["cells"] == ["w", 2]
    table = await (await http.get(WIDGETS, headers=accept)).json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Image", "Replicas"]


async def test_unknown_nested_fields_are_warned_about_or_refused_when_strict(http: Client) -> None:
    await http.post(CRDS, json=widget_crd())
    await established(http, "widgets.unit.example.com")
    body = {
        "apiVersion": "unit.example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"image": "a", "replicaz": 3, "extra": {"free": 1}},
        "specc": {},
    }
    refused = await http.post(f"{WIDGETS}?fieldValidation=Strict", json=body)
    assert refused.status == 400
    message = (await refused.json())["message"]
    assert 'unknown field "specc"' in message and 'unknown field "spec.replicaz"' in message
    assert "spec.extra.free" not in message  # preserved: not unknown
    assert (await http.get(f"{WIDGETS}/w")).status == 404
    created = await http.post(WIDGETS, json=body)
    assert created.status == 201
    warnings = created.headers.getall("Warning", [])
    assert any('unknown field \\"spec.replicaz\\"' in w for w in warnings), warnings
    assert any('unknown field \\"specc\\"' in w for w in warnings), warnings
    assert "replicaz" not in (await created.json())["spec"]


async def test_server_side_apply_to_the_status_subresource(http: Client) -> None:
    await http.post(CRDS, json=widget_crd())
    await established(http, "widgets.unit.example.com")
    body = {"apiVersion": "unit.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"image": "a"}}
    apply = {"Content-Type": "application/apply-patch+yaml"}
    missing = await http.patch(f"{WIDGETS}/w/status?fieldManager=op", json=body, headers=apply)
    assert missing.status == 404
    assert (await http.patch(f"{WIDGETS}/w?fieldManager=user", json=body, headers=apply)).status == 201
    status = {**body, "spec": {"image": "ignored"}, "status": {"replicas": 4}}
    applied = await http.patch(f"{WIDGETS}/w/status?fieldManager=op", json=status, headers=apply)
    assert applied.status == 200, await applied.text()
    obj = await applied.json()
    assert obj["status"] == {"replicas": 4} and obj["spec"]["image"] == "a"
    entries = {(e["manager"], e.get("subresource", "")): e for e in obj["metadata"]["managedFields"]}
    assert set(entries) == {("user", ""), ("op", "status")}
    assert entries[("op", "status")]["fieldsV1"] == {"f:status": {"f:replicas": {}}}
    # another manager's different value conflicts, naming the field and its manager
    other = {**body, "status": {"replicas": 5}}
    conflict = await http.patch(f"{WIDGETS}/w/status?fieldManager=other", json=other, headers=apply)
    assert conflict.status == 409
    assert 'conflict with "op" with subresource "status"' in (await conflict.json())["message"]
    scale = await http.patch(f"{WIDGETS}/w/scale?fieldManager=op", json={"spec": {"replicas": 1}}, headers=apply)
    assert scale.status == 405
