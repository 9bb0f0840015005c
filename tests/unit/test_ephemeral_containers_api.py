"""The pods/ephemeralcontainers subresource on an in-process API server (memory store), as kube's:
it reads and writes the whole Pod but changes only spec.ephemeralContainers, and only by adding
valid ones (kube's 422s and words); a pod is not created with them nor changed to have them by a
regular update; the real ``kubectl debug`` adds one through it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from agents.apiserver.kubeletclient import container_for_logs
from agents.apiserver.status import StatusError
from tests.support.kubectlrun import run_kubectl

Client = TestClient[Any, Any]
PODS = "/api/v1/namespaces/default/pods"
SUB = f"{PODS}/p/ephemeralcontainers"
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}


def pod(name: str = "p", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "main", "image": "busybox"}], **spec},
    }


def debugger(name: str = "debugger", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", "ps"], "targetContainerName": "main", **extra}


async def created(http: Client) -> dict[str, Any]:
    response = await http.post(PODS, json=pod())
    assert response.status == 201, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def add(http: Client, *containers: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    patch = {"spec": {"ephemeralContainers": list(containers)}}
    response = await http.patch(SUB, data=json.dumps(patch), headers=STRATEGIC)
    return response.status, await response.json()


def causes(status: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["field"], c["message"]) for c in status["details"]["causes"]]


async def test_a_debugging_container_is_added_with_kube_s_defaults(http: Client) -> None:
    await created(http)
    code, body = await add(http, debugger())
    assert code == 200, body
    (added,) = body["spec"]["ephemeralContainers"]
    assert added["name"] == "debugger" and added["targetContainerName"] == "main"
    assert added["terminationMessagePolicy"] == "File" and added["imagePullPolicy"] == "Always"
    got = await (await http.get(SUB)).json()
    assert got["kind"] == "Pod" and got["spec"]["ephemeralContainers"] == body["spec"]["ephemeralContainers"]
    code, body = await add(http, debugger("second"))  # strategic merge by name: the first one stays
    assert code == 200 and [c["name"] for c in body["spec"]["ephemeralContainers"]] == ["debugger", "second"]


async def test_only_ephemeral_containers_change_through_the_subresource(http: Client) -> None:
    before = await created(http)
    wanted = json.loads(json.dumps(before))
    wanted["metadata"]["labels"] = {"sneaked": "in"}
    wanted["spec"]["containers"][0]["image"] = "nginx"
    wanted["spec"]["ephemeralContainers"] = [debugger()]
    response = await http.put(SUB, json=wanted)
    assert response.status == 200, await response.text()
    after = await response.json()
    assert "labels" not in after["metadata"] and after["spec"]["containers"][0]["image"] == "busybox"
    assert [c["name"] for c in after["spec"]["ephemeralContainers"]] == ["debugger"]


async def test_existing_ephemeral_containers_may_be_neither_removed_nor_changed(http: Client) -> None:
    await created(http)
    assert (await add(http, debugger()))[0] == 200
    current = await (await http.get(SUB)).json()
    removed = json.loads(json.dumps(current))
    removed["spec"]["ephemeralContainers"] = []
    response = await http.put(SUB, json=removed)
    status = await response.json()
    assert response.status == 422 and status["reason"] == "Invalid"
    assert causes(status)[0][0] == "spec.ephemeralContainers"
    assert 'existing ephemeral containers "debugger" may not be removed' in causes(status)[0][1]
    changed = json.loads(json.dumps(current))
    changed["spec"]["ephemeralContainers"][0]["image"] = "nginx"
    response = await http.put(SUB, json=changed)
    status = await response.json()
    assert response.status == 422
    assert 'existing ephemeral containers "debugger" may not be changed' in causes(status)[0][1]


@pytest.mark.parametrize(
    ("extra", "field", "message"),
    [
        ({"ports": [{"containerPort": 80}]}, "ports", "Forbidden: cannot be set for an Ephemeral Container"),
        ({"readinessProbe": {"exec": {"command": ["true"]}}}, "readinessProbe", "cannot be set for an Ephemeral"),
        ({"lifecycle": {"preStop": {"exec": {"command": ["true"]}}}}, "lifecycle", "cannot be set for an Ephemeral"),
        ({"resources": {"limits": {"cpu": "1"}}}, "resources", "cannot be set for an Ephemeral Container"),
        ({"targetContainerName": "nope"}, "targetContainerName", 'Not found: "nope"'),
    ],
)
async def test_an_invalid_ephemeral_container_is_refused_with_kube_s_message(
    http: Client, extra: dict[str, Any], field: str, message: str
) -> None:
    await created(http)
    code, status = await add(http, debugger(**extra))
    assert code == 422 and status["reason"] == "Invalid", status
    assert f"spec.ephemeralContainers[0].{field}: " in status["message"] and message in status["message"]


async def test_an_ephemeral_container_needs_a_name_no_other_container_has(http: Client) -> None:
    await created(http)
    code, status = await add(http, debugger("main"))
    assert code == 422
    assert causes(status) == [("spec.ephemeralContainers[0].name", 'Duplicate value: "main"')]


async def test_a_pod_is_not_created_with_ephemeral_containers_nor_given_them_by_an_update(http: Client) -> None:
    response = await http.post(PODS, json=pod("born", ephemeralContainers=[debugger()]))
    status = await response.json()
    assert response.status == 422
    assert ("spec.ephemeralContainers", "Forbidden: cannot be set on create") in causes(status)
    current = await created(http)
    current["spec"]["ephemeralContainers"] = [debugger()]
    response = await http.put(f"{PODS}/p", json=current)
    assert response.status == 422
    assert "pod updates may not change fields other than" in (await response.json())["message"]


async def test_a_pod_with_ephemeral_containers_still_takes_regular_updates(http: Client) -> None:
    await created(http)
    assert (await add(http, debugger()))[0] == 200
    patch = {"metadata": {"labels": {"seen": "yes"}}}
    response = await http.patch(f"{PODS}/p", data=json.dumps(patch), headers=STRATEGIC)
    assert response.status == 200, await response.text()


async def test_discovery_lists_the_subresource(http: Client) -> None:
    resources = (await (await http.get("/api/v1")).json())["resources"]
    entry = next(r for r in resources if r["name"] == "pods/ephemeralcontainers")
    assert entry["kind"] == "Pod" and sorted(entry["verbs"]) == ["get", "patch", "update"]


async def test_kubectl_debug_adds_an_ephemeral_container_targeting_a_container(http: Client, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://{http.host}:{http.port}"}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "x",
    }
    kubeconfig.write_text(json.dumps(config))
    await created(http)
    code, out = await run_kubectl(kubeconfig, "debug", "p", "--image=busybox", "--target=main", "--", "ps")
    assert code == 0, out
    got = await (await http.get(f"{PODS}/p")).json()
    (added,) = got["spec"]["ephemeralContainers"]
    assert added["name"].startswith("debugger-") and added["name"] in out
    assert added["targetContainerName"] == "main" and added["command"] == ["ps"] and added["image"] == "busybox"


def test_the_log_of_an_ephemeral_or_init_container_may_be_asked_for_by_name() -> None:
    with_debugger = pod(initContainers=[{"name": "setup", "image": "busybox"}], ephemeralContainers=[debugger()])
    assert container_for_logs(with_debugger, "debugger") == "debugger"
    assert container_for_logs(with_debugger, "setup") == "setup"
    assert container_for_logs(with_debugger, "") == "main"  # the default stays the only app container
    with pytest.raises(StatusError, match="container nope is not valid for pod p"):
        container_for_logs(with_debugger, "nope")
