"""Field ownership and server-side apply: the pure field manager (FieldsV1, ownership, conflicts, removal
of unapplied fields, keyed list items), then the API server on the memory store driven over HTTP, by
the real ``kubectl apply --server-side`` and by the official Python client."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from agents.apiserver import fieldmanager as fm
from agents.apiserver.status import StatusError
from tests.support.kubectlrun import run_kubectl

Client = TestClient[Any, Any]
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
CM = "/api/v1/namespaces/default/configmaps"
APPLY = "application/apply-patch+yaml"
NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:01:00Z"


def deployment(*, image: str = "nginx:1.27", replicas: int | None = 2, **extra_labels: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80}]}]},
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", **extra_labels}},
        "spec": spec,
    }


@pytest.fixture
def scope(definitions: dict[str, Any]) -> fm.Scope:
    return fm.Scope(fm.Schema(definitions), "V1Deployment")


APPLIER = fm.Owner("deployer", "Apply", "apps/v1")
SCALER = fm.Owner("kubectl", "Update", "apps/v1", "scale")


def owned(obj: dict[str, Any], manager: str) -> dict[str, Any]:
    for entry in obj["metadata"].get("managedFields") or []:
        if entry["manager"] == manager:
            result: dict[str, Any] = entry["fieldsV1"]
            return result
    raise AssertionError(f"{manager} owns nothing")


# --- the field manager, pure --------------------------------------------------------------------------


def test_fieldsv1_encodes_a_set_as_kube_does_and_decodes_back(scope: fm.Scope) -> None:
    fields = scope.fields(deployment())
    tree = fm.encode(fields)
    assert tree["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}
    container = tree["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"nginx"}']
    assert container == {
        ".": {},
        "f:image": {},
        "f:name": {},
        "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}}},
    }
    assert tree["f:spec"]["f:selector"] == {}  # a LabelSelector is atomic
    assert fm.decode(json.loads(json.dumps(tree))) == fields


def test_status_and_identity_fields_are_not_tracked(scope: fm.Scope) -> None:
    obj = deployment()
    obj["metadata"] |= {"uid": "u", "resourceVersion": "5", "namespace": "default", "generation": 3}
    obj["status"] = {"replicas": 2}
    tree = fm.encode(scope.fields(obj))
    assert set(tree) == {"f:metadata", "f:spec"} and set(tree["f:metadata"]) == {"f:labels"}
    status = fm.Scope(scope.schema, "V1Deployment", "status")
    assert fm.encode(status.fields(obj)) == {"f:status": {"f:replicas": {}}}


def test_an_apply_creates_and_its_manager_owns_exactly_the_applied_fields(scope: fm.Scope) -> None:
    obj = fm.apply(None, deployment(), scope=scope, owner=APPLIER, force=False, now=NOW)
    assert obj["spec"]["replicas"] == 2
    [entry] = obj["metadata"]["managedFields"]
    assert entry["manager"] == "deployer" and entry["operation"] == "Apply" and entry["time"] == NOW
    assert entry["fieldsType"] == "FieldsV1" and "subresource" not in entry
    assert fm.decode(entry["fieldsV1"]) == scope.fields(deployment(), maps=False)
    assert entry["fieldsV1"]["f:metadata"] == {"f:labels": {"f:app": {}}}  # an Apply names no map itself


def test_an_update_takes_the_fields_it_changes_from_their_owner(scope: fm.Scope) -> None:
    live = fm.apply(None, deployment(), scope=scope, owner=APPLIER, force=False, now=NOW)
    scaled = json.loads(json.dumps(live))
    scaled["spec"]["replicas"] = 5
    fm.record_update(live, scaled, scope=fm.Scope(scope.schema, "V1Deployment", "scale"), owner=SCALER, now=LATER)
    assert owned(scaled, "kubectl") == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in owned(scaled, "deployer")["f:spec"]
    scaler = next(e for e in scaled["metadata"]["managedFields"] if e["manager"] == "kubectl")
    assert scaler["subresource"] == "scale" and scaler["operation"] == "Update"


def test_applying_a_field_another_manager_set_differently_conflicts_unless_forced(scope: fm.Scope) -> None:
    live = fm.apply(None, deployment(), scope=scope, owner=APPLIER, force=False, now=NOW)
    scaled = json.loads(json.dumps(live))
    scaled["spec"]["replicas"] = 5
    fm.record_update(live, scaled, scope=fm.Scope(scope.schema, "V1Deployment", "scale"), owner=SCALER, now=LATER)
    with pytest.raises(StatusError) as caught:
        fm.apply(scaled, deployment(replicas=3), scope=scope, owner=APPLIER, force=False, now=LATER)
    error = caught.value
    assert error.code == 409 and error.reason == "Conflict"
    assert error.message == (
        'Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas'
    )
    assert error.details == {
        "causes": [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "kubectl" with subresource "scale" using apps/v1',
                "field": ".spec.replicas",
            }
        ]
    }
    # the same value is no conflict: both own it
    shared = fm.apply(scaled, deployment(replicas=5), scope=scope, owner=APPLIER, force=False, now=LATER)
    assert owned(shared, "kubectl") == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" in owned(shared, "deployer")["f:spec"]
    forced = fm.apply(scaled, deployment(replicas=3), scope=scope, owner=APPLIER, force=True, now=LATER)
    assert forced["spec"]["replicas"] == 3
    assert "kubectl" not in [e["manager"] for e in forced["metadata"]["managedFields"]]


def test_conflicts_on_keyed_list_items_name_the_item(scope: fm.Scope) -> None:
    live = fm.apply(None, deployment(), scope=scope, owner=APPLIER, force=False, now=NOW)
    other = fm.Owner("ops", "Apply", "apps/v1")
    with pytest.raises(StatusError) as caught:
        fm.apply(live, deployment(image="nginx:1.28", replicas=1), scope=scope, owner=other, force=False, now=LATER)
    assert caught.value.message == (
        'Apply failed with 2 conflicts: conflict with "deployer":\n'
        '- .spec.replicas\n- .spec.template.spec.containers[name="nginx"].image'
    )


def test_a_field_dropped_from_the_applied_configuration_is_removed_unless_another_manager_owns_it(
    scope: fm.Scope,
) -> None:
    live = fm.apply(None, deployment(tier="front"), scope=scope, owner=APPLIER, force=False, now=NOW)
    labelled = json.loads(json.dumps(live))
    labelled["metadata"]["labels"]["team"] = "a"
    fm.record_update(live, labelled, scope=scope, owner=fm.Owner("kubectl-label", "Update", "apps/v1"), now=NOW)
    again = fm.apply(labelled, deployment(replicas=None), scope=scope, owner=APPLIER, force=False, now=LATER)
    assert again["metadata"]["labels"] == {"app": "web", "team": "a"}  # tier dropped, team kept
    assert "replicas" not in again["spec"]  # no one owns it any more: gone (defaulting puts 1 back)
    assert "f:replicas" not in owned(again, "deployer")["f:spec"]


def test_list_items_merge_by_key_and_an_item_no_longer_applied_goes(scope: fm.Scope) -> None:
    two = deployment()
    two["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    live = fm.apply(None, two, scope=scope, owner=APPLIER, force=False, now=NOW)
    changed = json.loads(json.dumps(live))
    changed["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Always"  # another writer's field
    fm.record_update(live, changed, scope=scope, owner=fm.Owner("kubectl-edit", "Update", "apps/v1"), now=NOW)
    again = fm.apply(changed, deployment(image="nginx:1.28"), scope=scope, owner=APPLIER, force=False, now=LATER)
    containers = again["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["nginx"]
    assert containers[0]["image"] == "nginx:1.28" and containers[0]["imagePullPolicy"] == "Always"


def test_ports_are_told_apart_by_number_and_protocol_tcp_when_left_out(definitions: dict[str, Any]) -> None:
    scope = fm.Scope(fm.Schema(definitions), "V1Service")

    def service(*ports: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns"}, "spec": {"ports": list(ports)}}

    both = service({"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53})
    live = fm.apply(None, both, scope=scope, owner=APPLIER, force=False, now=NOW)
    assert [p["name"] for p in live["spec"]["ports"]] == ["dns", "dns-tcp"]  # one port number, two items
    assert set(owned(live, "deployer")["f:spec"]["f:ports"]) == {
        'k:{"port":53,"protocol":"UDP"}',
        'k:{"port":53,"protocol":"TCP"}',
    }
    udp_only = fm.apply(
        live,
        service({"name": "dns", "port": 53, "protocol": "UDP"}),
        scope=scope,
        owner=APPLIER,
        force=False,
        now=LATER,
    )
    assert udp_only["spec"]["ports"] == [{"name": "dns", "port": 53, "protocol": "UDP"}]  # the TCP item goes


def test_an_entry_naming_a_port_by_its_number_alone_keeps_the_port_on_the_next_apply(scope: fm.Scope) -> None:
    live = fm.apply(None, deployment(), scope=scope, owner=APPLIER, force=False, now=NOW)
    older = json.loads(
        json.dumps(live).replace(
            '"k:{\\"containerPort\\":80,\\"protocol\\":\\"TCP\\"}"', '"k:{\\"containerPort\\":80}"'
        )
    )
    nginx = owned(older, "deployer")["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"nginx"}']
    assert list(nginx["f:ports"]) == ['k:{"containerPort":80}']  # as entries were written before
    again = fm.apply(older, deployment(image="nginx:1.28"), scope=scope, owner=APPLIER, force=False, now=LATER)
    container = again["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:1.28" and container["ports"] == [{"containerPort": 80}]


def test_an_unchanged_update_keeps_its_time_and_a_single_empty_entry_clears_the_fields(scope: fm.Scope) -> None:
    live = fm.apply(None, deployment(), scope=scope, owner=APPLIER, force=False, now=NOW)
    same = fm.apply(live, deployment(), scope=scope, owner=APPLIER, force=False, now=LATER)
    assert same["metadata"]["managedFields"] == live["metadata"]["managedFields"]
    cleared = json.loads(json.dumps(live))
    cleared["metadata"]["managedFields"] = [{}]
    fm.record_update(live, cleared, scope=scope, owner=fm.Owner("x", "Update", "apps/v1"), now=LATER)
    assert "managedFields" not in cleared["metadata"]


def test_the_manager_of_a_write_comes_from_field_manager_or_the_user_agent() -> None:
    assert fm.manager_name("kubectl-edit", "kubectl/v1.32.0 (linux/amd64)") == "kubectl-edit"
    assert fm.manager_name("", "kubectl/v1.32.0 (linux/amd64) kubernetes/abc") == "kubectl"
    assert fm.manager_name("", "OpenAPI-Generator/31.0.0/python") == "OpenAPI-Generator"
    assert len(fm.manager_name("m" * 300, "")) == 128


# --- over HTTP ---------------------------------------------------------------------------------------


async def test_an_apply_needs_a_field_manager_and_creates_then_updates(http: Client) -> None:
    body = yaml.safe_dump(deployment())
    headers = {"Content-Type": APPLY}
    missing = await http.patch(f"{DEPLOY}/web", data=body, headers=headers)
    status = await missing.json()
    assert missing.status == 422, status
    assert (
        status["message"]
        == 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
    )
    created = await http.patch(f"{DEPLOY}/web?fieldManager=deployer", data=body, headers=headers)
    assert created.status == 201, await created.text()
    obj = await created.json()
    assert obj["spec"]["revisionHistoryLimit"] == 10  # defaulted, as any create
    assert [e["manager"] for e in obj["metadata"]["managedFields"]] == ["deployer"]
    updated = await http.patch(
        f"{DEPLOY}/web?fieldManager=deployer", data=json.dumps(deployment(image="nginx:1.28")), headers=headers
    )
    assert updated.status == 200
    assert (await updated.json())["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    dry = await http.patch(
        f"{DEPLOY}/web?fieldManager=deployer&dryRun=All", data=yaml.safe_dump(deployment(replicas=7)), headers=headers
    )
    assert dry.status == 200 and (await dry.json())["spec"]["replicas"] == 7
    assert (await (await http.get(f"{DEPLOY}/web")).json())["spec"]["replicas"] == 2


async def test_ordinary_writes_record_updates_and_force_is_only_for_apply(http: Client) -> None:
    created = await http.post(
        f"{CM}?fieldManager=maker",
        json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}},
    )
    obj = await created.json()
    [entry] = obj["metadata"]["managedFields"]
    assert entry["manager"] == "maker" and entry["operation"] == "Update" and entry["apiVersion"] == "v1"
    assert entry["fieldsV1"] == {"f:data": {".": {}, "f:a": {}}}
    patched = await http.patch(
        f"{CM}/c",
        json={"data": {"b": "2"}},
        headers={"Content-Type": "application/merge-patch+json", "User-Agent": "tool/1.0"},
    )
    assert owned(await patched.json(), "tool") == {"f:data": {"f:b": {}}}
    forced = await http.patch(
        f"{CM}/c?force=true", json={"data": {"b": "3"}}, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert forced.status == 422
    assert "force: Forbidden: may not be specified for non-apply patch" in (await forced.json())["message"]
    conflicting = await http.patch(
        f"{CM}/c?fieldManager=applier",
        data=yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "9"}}),
        headers={"Content-Type": APPLY},
    )
    answer = await conflicting.json()
    assert conflicting.status == 409 and answer["reason"] == "Conflict", answer
    assert answer["message"] == 'Apply failed with 1 conflict: conflict with "maker" using v1: .data.a'


# --- kubectl and the Python client -----------------------------------------------------------------


def _kubeconfig(http: Client, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    server = f"http://{http.host}:{http.port}"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "default"}}],
                "current-context": "x",
            }
        )
    )
    return path


async def test_kubectl_server_side_apply_scale_conflict_and_force(http: Client, tmp_path: Path) -> None:
    config = _kubeconfig(http, tmp_path)
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(yaml.safe_dump(deployment()))
    code, out = await run_kubectl(config, "apply", "--server-side", "-f", str(manifest))
    assert code == 0 and "deployment.apps/web serverside-applied" in out, out
    manifest.write_text(yaml.safe_dump(deployment(image="nginx:1.28")))
    code, out = await run_kubectl(config, "apply", "--server-side", "-f", str(manifest))
    assert code == 0 and "deployment.apps/web serverside-applied" in out, out
    code, out = await run_kubectl(config, "scale", "deployment/web", "--replicas=4")
    assert code == 0, out
    manifest.write_text(yaml.safe_dump(deployment(image="nginx:1.28", replicas=3)))
    code, out = await run_kubectl(config, "apply", "--server-side", "-f", str(manifest))
    assert code != 0, out
    assert 'error: Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1:' in out
    assert ".spec.replicas" in out, out
    code, out = await run_kubectl(config, "apply", "--server-side", "--force-conflicts", "-f", str(manifest))
    assert code == 0, out
    code, out = await run_kubectl(config, "get", "deployment", "web", "-o", "yaml", "--show-managed-fields")
    shown = yaml.safe_load(out)
    assert shown["spec"]["replicas"] == 3
    assert [(e["manager"], e["operation"]) for e in shown["metadata"]["managedFields"]] == [("kubectl", "Apply")]
    code, out = await run_kubectl(config, "get", "deployment", "web", "-o", "yaml")
    assert "managedFields" not in out  # kubectl hides them unless asked
    # client-side apply keeps working on the same object, as an Update by its own manager
    manifest.write_text(yaml.safe_dump(deployment(image="nginx:1.29", replicas=3)))
    code, out = await run_kubectl(config, "apply", "-f", str(manifest))
    assert code == 0, out
    fetched = await (await http.get(f"{DEPLOY}/web")).json()
    assert fetched["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.29"
    managers = {(e["manager"], e["operation"]) for e in fetched["metadata"]["managedFields"]}
    assert ("kubectl-client-side-apply", "Update") in managers, managers


async def test_the_python_clients_server_side_apply(http: Client) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://{http.host}:{http.port}"

    def run() -> tuple[Any, Any]:
        with kubernetes.client.ApiClient(configuration) as api_client:
            apps = kubernetes.client.AppsV1Api(api_client)
            first = apps.patch_namespaced_deployment(
                "web", "default", deployment(), field_manager="py", _content_type=APPLY
            )
            second = apps.patch_namespaced_deployment(
                "web", "default", deployment(replicas=6), field_manager="py", force=True, _content_type=APPLY
            )
            return first, second

    first, second = await asyncio.to_thread(run)
    assert first.spec.replicas == 2 and second.spec.replicas == 6
    assert [(m.manager, m.operation) for m in second.metadata.managed_fields] == [("py", "Apply")]


async def test_kubectl_applies_a_pod_a_service_and_a_configmap_and_reapplying_is_a_no_op(
    http: Client, tmp_path: Path
) -> None:
    config = _kubeconfig(http, tmp_path)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"app": "p"}},
        "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 8080}]}]},
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"selector": {"app": "p"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1", "b": "2"}}
    manifest = tmp_path / "all.yaml"
    manifest.write_text(yaml.safe_dump_all([pod, service, configmap]))
    code, out = await run_kubectl(config, "apply", "--server-side", "--dry-run=server", "-f", str(manifest))
    assert code == 0 and "pod/p serverside-applied (server dry run)" in out, out
    assert (await http.get("/api/v1/namespaces/default/pods/p")).status == 404
    code, out = await run_kubectl(config, "apply", "--server-side", "-f", str(manifest))
    assert code == 0, out
    before = await (await http.get("/api/v1/namespaces/default/services/s")).json()
    assert before["spec"]["clusterIP"]  # allocated, owned by no one: re-applying leaves it alone
    code, out = await run_kubectl(config, "apply", "--server-side", "-f", str(manifest))
    assert code == 0, out
    after = await (await http.get("/api/v1/namespaces/default/services/s")).json()
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    configmap["data"] = {"a": "1"}
    manifest.write_text(yaml.safe_dump(configmap))
    code, out = await run_kubectl(config, "apply", "--server-side", "-f", str(manifest))
    assert code == 0, out
    assert (await (await http.get(f"{CM}/cm")).json())["data"] == {"a": "1"}


async def test_the_python_dynamic_clients_server_side_apply(http: Client) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    dynamic = pytest.importorskip("kubernetes.dynamic")
    configuration = kubernetes.client.Configuration()
    configuration.host = f"http://{http.host}:{http.port}"
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dyn"}, "data": {"a": "1"}}

    def run() -> tuple[Any, str]:
        with kubernetes.client.ApiClient(configuration) as api_client:
            client = dynamic.DynamicClient(api_client)
            configmaps = client.resources.get(api_version="v1", kind="ConfigMap")
            client.server_side_apply(configmaps, body=configmap, namespace="default", field_manager="one")
            try:
                client.server_side_apply(
                    configmaps, body={**configmap, "data": {"a": "2"}}, namespace="default", field_manager="two"
                )
            except dynamic.exceptions.ConflictError as exc:
                refused = str(exc.summary())
            else:
                refused = ""
            won = client.server_side_apply(
                configmaps,
                body={**configmap, "data": {"a": "2"}},
                namespace="default",
                field_manager="two",
                force_conflicts=True,
            )
            return won, refused

    won, refused = await asyncio.to_thread(run)
    assert 'Apply failed with 1 conflict: conflict with "one": .data.a' in refused
    assert won.data.a == "2"
    assert [entry.manager for entry in won.metadata.managedFields] == ["two"]


def test_entries_a_client_filled_with_anything_are_read_without_failing(scope: fm.Scope) -> None:
    live = deployment()
    live["metadata"]["managedFields"] = [
        {"manager": "deployer", "operation": "Apply", "fieldsV1": {"f:spec": {"k:{not json": {".": {}, "f:x": {}}}}},
        {"manager": "other", "operation": "Update", "fieldsV1": {"f:big": 123456789012345678901234567890}},
        {"operation": "Update"},
        "not an entry",
    ]
    applied = fm.apply(live, deployment(replicas=1), scope=scope, owner=APPLIER, force=False, now=NOW)
    assert applied["spec"]["replicas"] == 1
    assert [e["manager"] for e in applied["metadata"]["managedFields"]] == ["deployer", "other"]
    assert fm.path_text(("f:spec", "k:{not json", "f:x")) == ".spec[{not json].x"


async def test_kubectl_moves_from_client_side_to_server_side_apply_without_conflicts(
    http: Client, tmp_path: Path
) -> None:
    config = _kubeconfig(http, tmp_path)
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text(yaml.safe_dump(deployment()))
    code, out = await run_kubectl(config, "apply", "-f", str(manifest))
    assert code == 0, out
    code, out = await run_kubectl(config, "scale", "deployment/web", "--replicas=5")
    assert code == 0, out
    code, out = await run_kubectl(config, "label", "deployment/web", "team=a")
    assert code == 0, out
    # fields of the last client-side applied configuration are taken over (the replicas too, as kube);
    # the label set since by another manager is a conflict
    manifest.write_text(yaml.safe_dump(deployment(image="nginx:1.28", team="b")))
    code, out = await run_kubectl(config, "apply", "--server-side", "-f", str(manifest))
    assert code != 0 and 'conflict with "kubectl-label" using apps/v1: .metadata.labels.team' in out, out
    manifest.write_text(yaml.safe_dump(deployment(image="nginx:1.28")))
    code, out = await run_kubectl(config, "apply", "--server-side", "-f", str(manifest))
    assert code == 0 and "deployment.apps/web serverside-applied" in out, out
    fetched = await (await http.get(f"{DEPLOY}/web")).json()
    assert fetched["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert fetched["spec"]["replicas"] == 2
    assert fetched["metadata"]["labels"] == {"app": "web", "team": "a"}


async def test_a_status_write_is_recorded_for_the_status_subresource_only(http: Client) -> None:
    created = await http.patch(
        f"{DEPLOY}/web?fieldManager=deployer", data=yaml.safe_dump(deployment()), headers={"Content-Type": APPLY}
    )
    obj = await created.json()
    obj["status"] = {"replicas": 2, "observedGeneration": 1}
    written = await http.put(f"{DEPLOY}/web/status", json=obj, headers={"User-Agent": "controller/1.0 (linux)"})
    assert written.status == 200, await written.text()
    entries = (await written.json())["metadata"]["managedFields"]
    assert [(e["manager"], e["operation"], e.get("subresource")) for e in entries] == [
        ("deployer", "Apply", None),
        ("controller", "Update", "status"),
    ]
    assert entries[1]["fieldsV1"] == {"f:status": {"f:observedGeneration": {}, "f:replicas": {}}}
    again = await http.put(f"{DEPLOY}/web/status", json=await written.json())
    assert (await again.json())["metadata"]["resourceVersion"] == (await written.json())["metadata"]["resourceVersion"]
