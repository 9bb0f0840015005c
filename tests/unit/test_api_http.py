"""The API over HTTP on the in-memory store: verbs, subresources, watches, discovery and OpenAPI."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp.test_utils import TestClient

from agents.apiserver.server import ApiServer

Client = TestClient[Any, Any]
CM = "/api/v1/namespaces/default/configmaps"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}}, "data": data}


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }


async def create(http: Client, path: str, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = await http.post(path, json=body)
    assert response.status == status, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def test_create_get_and_a_conflicting_update(http: Client) -> None:
    created = await create(http, CM, configmap("c", a="1"))
    rv = created["metadata"]["resourceVersion"]
    fetched = await (await http.get(f"{CM}/c")).json()
    assert fetched == created
    created["data"]["a"] = "2"
    updated = await http.put(f"{CM}/c", json=created)
    assert updated.status == 200
    created["metadata"]["resourceVersion"] = rv
    stale = await http.put(f"{CM}/c", json=created)
    status = await stale.json()
    assert stale.status == 409 and status["reason"] == "Conflict" and status["kind"] == "Status"
    again = await http.post(CM, json=configmap("c"))
    assert again.status == 409 and (await again.json())["reason"] == "AlreadyExists"


async def test_a_no_op_update_keeps_the_resource_version(http: Client) -> None:
    created = await create(http, CM, configmap("same", a="1"))
    response = await http.put(f"{CM}/same", json=created)
    assert (await response.json())["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


async def test_generation_moves_with_spec_not_with_status(http: Client) -> None:
    created = await create(http, DEPLOY, deployment("d"))
    assert created["metadata"]["generation"] == 1 and created["status"] == {}
    patched = await http.patch(
        f"{DEPLOY}/d",
        data=json.dumps({"spec": {"replicas": 3}}),
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert (await patched.json())["metadata"]["generation"] == 2
    status = await http.patch(
        f"{DEPLOY}/d/status",
        data=json.dumps({"status": {"replicas": 3}, "spec": {"replicas": 9}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    body = await status.json()
    assert body["status"] == {"replicas": 3} and body["spec"]["replicas"] == 3 and body["metadata"]["generation"] == 2
    sneaky = await http.patch(
        f"{DEPLOY}/d",
        data=json.dumps({"status": {"replicas": 7}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert (await sneaky.json())["status"] == {"replicas": 3}


async def test_a_pod_template_change_after_creation_is_checked(http: Client) -> None:
    await create(http, DEPLOY, deployment("d"))
    response = await http.patch(
        f"{DEPLOY}/d",
        data=json.dumps({"spec": {"selector": {"matchLabels": {"x": "y"}}}}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    status = await response.json()
    assert response.status == 422
    assert {c["field"] for c in status["details"]["causes"]} >= {"spec.selector", "spec.template.metadata.labels"}


async def test_dry_run_creates_nothing(http: Client) -> None:
    response = await http.post(f"{CM}?dryRun=All", json=configmap("dry"))
    assert response.status == 201
    assert (await http.get(f"{CM}/dry")).status == 404
    bad = await http.post(f"{CM}?dryRun=Some", json=configmap("dry"))
    assert bad.status == 400


async def test_unknown_fields_per_field_validation(http: Client) -> None:
    body = configmap("u")
    body["colour"] = "red"
    strict = await http.post(f"{CM}?fieldValidation=Strict", json=body)
    assert strict.status == 400 and 'unknown field "colour"' in (await strict.json())["message"]
    warned = await http.post(f"{CM}?fieldValidation=Warn", json=body)
    assert warned.status == 201 and 'unknown field \\"colour\\"' in warned.headers["Warning"]
    assert "colour" not in await warned.json()


async def test_generate_name_and_system_fields(http: Client) -> None:
    created = await create(
        http, CM, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "web-", "uid": "mine"}}
    )
    name = created["metadata"]["name"]
    assert name.startswith("web-") and len(name) == 9 and created["metadata"]["uid"] != "mine"


async def test_list_pages_with_continue_and_counts_the_rest(http: Client) -> None:
    for i in range(5):
        await create(http, CM, configmap(f"p{i}"))
    first = await (await http.get(f"{CM}?limit=2")).json()
    assert [i["metadata"]["name"] for i in first["items"]] == ["p0", "p1"]
    assert first["metadata"]["remainingItemCount"] == 3
    rest = await (await http.get(f"{CM}?limit=10&continue={first['metadata']['continue']}")).json()
    assert [i["metadata"]["name"] for i in rest["items"]] == ["p2", "p3", "p4"]
    assert "continue" not in rest["metadata"]
    broken = await http.get(f"{CM}?continue=garbage")
    assert broken.status == 400


async def test_a_continue_token_past_compaction_is_gone(http: Client, server: ApiServer) -> None:
    for i in range(3):
        await create(http, CM, configmap(f"k{i}"))
    first = await (await http.get(f"{CM}?limit=1")).json()
    await create(http, CM, configmap("later"))
    await server.store.compact(await server.store.current_revision())
    response = await http.get(f"{CM}?limit=1&continue={first['metadata']['continue']}")
    assert response.status == 410 and (await response.json())["reason"] == "Expired"


async def test_tables_and_partial_metadata(http: Client) -> None:
    await create(http, CM, configmap("t", a="1", b="2"))
    table = await (await http.get(CM, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})).json()
    assert table["kind"] == "Table" and table["rows"][0]["cells"][:2] == ["t", 2]
    partial = await (
        await http.get(CM, headers={"Accept": "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"})
    ).json()
    assert partial["kind"] == "PartialObjectMetadataList" and "data" not in partial["items"][0]
    refused = await http.get(CM, headers={"Accept": "application/vnd.kubernetes.protobuf"})
    assert refused.status == 406


async def _watch_lines(http: Client, path: str, count: int, action: Any) -> list[dict[str, Any]]:
    response = await http.get(path)
    assert response.status == 200
    await action()
    lines: list[dict[str, Any]] = []
    while len(lines) < count:
        raw = await asyncio.wait_for(response.content.readline(), 5)
        assert raw, f"stream ended after {lines}"
        lines.append(json.loads(raw))
    response.close()
    return lines


async def test_watch_with_a_selector_sees_objects_enter_and_leave(http: Client) -> None:
    start = (await (await http.get(CM)).json())["metadata"]["resourceVersion"]

    async def act() -> None:
        await create(http, CM, configmap("w", {"team": "blue"}))
        await http.patch(
            f"{CM}/w",
            data='{"metadata":{"labels":{"team":"red"}}}',
            headers={"Content-Type": "application/merge-patch+json"},
        )
        await http.patch(
            f"{CM}/w",
            data='{"metadata":{"labels":{"team":"blue"}}}',
            headers={"Content-Type": "application/merge-patch+json"},
        )
        await http.delete(f"{CM}/w")

    events = await _watch_lines(http, f"{CM}?watch=1&resourceVersion={start}&labelSelector=team%3Dblue", 3, act)
    assert [(e["type"], e["object"]["metadata"]["labels"]["team"]) for e in events] == [
        ("ADDED", "blue"),
        ("DELETED", "blue"),
        ("ADDED", "blue"),
    ]
    revisions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert revisions == sorted(revisions)


async def test_watch_without_a_version_starts_with_the_current_objects(http: Client) -> None:
    await create(http, CM, configmap("existing"))

    async def act() -> None:
        await create(http, CM, configmap("new"))

    events = await _watch_lines(http, f"{CM}?watch=true", 2, act)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "existing"), ("ADDED", "new")]


async def test_idle_watches_get_bookmarks_and_initial_events_end(http: Client) -> None:
    await create(http, CM, configmap("b"))

    async def nothing() -> None:
        return None

    events = await _watch_lines(
        http,
        f"{CM}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
        "&resourceVersion=0&allowWatchBookmarks=true",
        3,
        nothing,
    )
    assert events[0]["type"] == "ADDED"
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert events[2]["type"] == "BOOKMARK" and int(events[2]["object"]["metadata"]["resourceVersion"]) >= int(
        events[0]["object"]["metadata"]["resourceVersion"]
    )


async def test_a_watch_older_than_the_window_is_expired(http: Client) -> None:
    for i in range(60):  # the test server keeps 50 events
        await create(http, CM, configmap(f"x{i}"))
    response = await http.get(f"{CM}?watch=1&resourceVersion=2")
    event = json.loads(await asyncio.wait_for(response.content.readline(), 5))
    assert event["type"] == "ERROR" and event["object"]["code"] == 410
    assert event["object"]["message"].startswith("too old resource version")


async def test_watch_as_a_table_sends_headers_once(http: Client) -> None:
    start = (await (await http.get(CM)).json())["metadata"]["resourceVersion"]

    async def act() -> None:
        await create(http, CM, configmap("one"))
        await create(http, CM, configmap("two"))

    response = await http.get(
        f"{CM}?watch=1&resourceVersion={start}", headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    )
    await act()
    first = json.loads(await asyncio.wait_for(response.content.readline(), 5))
    second = json.loads(await asyncio.wait_for(response.content.readline(), 5))
    response.close()
    assert first["object"]["kind"] == "Table" and first["object"]["columnDefinitions"]
    assert second["object"]["columnDefinitions"] == [] and second["object"]["rows"][0]["cells"][0] == "two"


async def test_finalizers_delay_deletion_until_removed(http: Client) -> None:
    body = configmap("f")
    body["metadata"]["finalizers"] = ["example.com/keep"]
    await create(http, CM, body)
    response = await http.delete(f"{CM}/f")
    assert response.status == 202 and (await response.json())["metadata"]["deletionTimestamp"]
    await http.patch(
        f"{CM}/f", data='{"metadata":{"finalizers":null}}', headers={"Content-Type": "application/merge-patch+json"}
    )
    assert (await http.get(f"{CM}/f")).status == 404


async def test_delete_preconditions(http: Client) -> None:
    created = await create(http, CM, configmap("pre"))
    wrong = await http.delete(f"{CM}/pre", json={"preconditions": {"uid": "someone-else"}})
    assert wrong.status == 409 and "Precondition failed" in (await wrong.json())["message"]
    right = await http.delete(f"{CM}/pre", json={"preconditions": {"uid": created["metadata"]["uid"]}})
    assert right.status == 200


async def test_leases_are_created_by_put(http: Client) -> None:
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "l"},
        "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15},
    }
    response = await http.put("/apis/coordination.k8s.io/v1/namespaces/default/leases/l", json=lease)
    assert response.status == 201


async def test_namespace_deletion_waits_for_finalize(http: Client) -> None:
    await create(http, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}})
    deleted = await (await http.delete("/api/v1/namespaces/n")).json()
    assert deleted["status"]["phase"] == "Terminating" and deleted["spec"]["finalizers"] == ["kubernetes"]
    refused = await http.post("/api/v1/namespaces/n/configmaps", json=configmap("x"))
    assert refused.status == 403
    deleted["spec"]["finalizers"] = []
    finalized = await http.put("/api/v1/namespaces/n/finalize", json=deleted)
    assert finalized.status == 200
    assert (await http.get("/api/v1/namespaces/n")).status == 404


async def test_service_ips_are_released_with_their_service(http: Client) -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"clusterIP": "10.96.0.50", "ports": [{"port": 80}]},
    }
    await create(http, "/api/v1/namespaces/default/services", svc)
    clash = await http.post("/api/v1/namespaces/default/services", json={**svc, "metadata": {"name": "t"}})
    assert clash.status == 422 and "already allocated" in (await clash.json())["message"]
    await http.delete("/api/v1/namespaces/default/services/s")
    await create(http, "/api/v1/namespaces/default/services", {**svc, "metadata": {"name": "t"}})


async def test_aggregated_and_legacy_discovery(http: Client) -> None:
    aggregated = await http.get(
        "/apis",
        headers={"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"},
    )
    assert "as=APIGroupDiscoveryList" in aggregated.headers["Content-Type"]
    groups = {g["metadata"]["name"]: g for g in (await aggregated.json())["items"]}
    apps = groups["apps"]["versions"][0]["resources"]
    deployments = next(r for r in apps if r["resource"] == "deployments")
    assert deployments["shortNames"] == ["deploy"] and deployments["categories"] == ["all"]
    assert {s["subresource"] for s in deployments["subresources"]} == {"status", "scale"}
    legacy = await (await http.get("/api/v1")).json()
    names = {r["name"] for r in legacy["resources"]}
    assert {"pods", "pods/status", "pods/binding", "namespaces/finalize"} <= names
    assert (await http.get("/apis/nope/v1")).status == 404


async def test_openapi_v3_serves_what_kubectl_looks_for(http: Client) -> None:
    root = await (await http.get("/openapi/v3")).json()
    url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
    document = await (await http.get(url)).json()
    patch = document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert any(p["name"] == "fieldValidation" for p in patch["parameters"])
    assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]
    schemas = document["components"]["schemas"]
    pod_spec = schemas["v1.PodSpec"]["properties"]["containers"]
    assert pod_spec["x-kubernetes-patch-merge-key"] == "name" and pod_spec["x-kubernetes-patch-strategy"] == "merge"
    assert schemas["v1.Deployment"]["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}
    ]
    v2 = await http.get("/openapi/v2", headers={"Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"})
    assert v2.status == 200 and (await v2.read()).startswith(b"\n\x032.0")


async def test_paths_and_methods_that_do_not_exist(http: Client) -> None:
    assert (await http.get("/api/v1/flurbs")).status == 404
    assert (await http.get("/api/v1/pods/orphan")).status == 404  # namespaced, but no namespace
    assert (await http.post(f"{CM}/c/status", json={})).status == 404
    assert (await http.delete(CM.replace("/default", "/default") + "/x/status")).status == 404
    body = await http.post(CM, data=b"{not json", headers={"Content-Type": "application/json"})
    assert body.status == 400
    media = await http.post(CM, data=b"\x00", headers={"Content-Type": "text/plain"})
    assert media.status == 415
    garbage = await http.post(CM, data=b"\x00", headers={"Content-Type": "application/vnd.kubernetes.protobuf"})
    assert garbage.status == 400


async def test_the_all_namespaces_path_only_lists_and_subresources_answer_their_own_verbs(http: Client) -> None:
    await create(http, CM, configmap("kept"))
    assert (await http.get("/api/v1/configmaps")).status == 200
    for method in ("DELETE", "POST", "PUT", "PATCH"):
        refused = await http.request(method, "/api/v1/configmaps", json={})
        assert refused.status == 405, method
    assert (await http.get(f"{CM}/kept")).status == 200  # nothing was deleted across namespaces
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    await create(http, "/api/v1/namespaces/default/pods", pod)
    assert (await http.put("/api/v1/namespaces/default/pods/p/log", json={})).status == 405
    assert (await http.get("/api/v1/namespaces/default/pods/p/binding")).status == 405
    assert (await http.post("/api/v1/namespaces/default/pods/p", json={})).status == 405


async def test_an_empty_segment_in_a_path_names_nothing(http: Client) -> None:
    await create(http, CM, configmap("kept"))
    assert (await http.get("/api/v1/namespaces//configmaps")).status == 404
    assert (await http.delete("/api/v1/namespaces/default//configmaps/kept")).status == 404
    assert (await http.get(f"{CM}/")).status == 200  # a trailing slash is allowed
    assert (await http.get(f"{CM}/kept")).status == 200
