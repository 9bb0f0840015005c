"""PodDisruptionBudgets and the pods/eviction subresource on an in-process API server (memory store):
validation in kube's words, the budget spent in one write before the pod goes, kube's 429 and 500, the
table ``kubectl get pdb`` prints, and the real ``kubectl drain`` evicting a node's pods."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from agents.apiserver import eviction
from agents.apiserver.status import StatusError
from agents.apiserver.tables import table
from tests.support.kubectlrun import run_kubectl

Client = TestClient[Any, Any]
PODS = "/api/v1/namespaces/default/pods"
PDBS = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def pod(name: str, *, app: str = "web", node: str = "n1", owner: str = "web-rs") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": app},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": owner,
                    "uid": f"uid-{owner}",
                    "controller": True,
                }
            ],
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "busybox"}],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }


def budget(name: str, app: str = "web", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": app}}, **spec},
    }


def evicting(name: str, **delete_options: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}}
    if delete_options:
        body["deleteOptions"] = delete_options
    return body


async def post(http: Client, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = await http.post(path, json=body)
    answer: dict[str, Any] = await response.json()
    return response.status, answer


async def running_pod(http: Client, name: str, *, ready: bool = True, **kw: Any) -> dict[str, Any]:
    status, created = await post(http, PODS, pod(name, **kw))
    assert status == 201, created
    created["status"] = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    response = await http.put(f"{PODS}/{name}/status", json=created)
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def budget_with(http: Client, name: str, *, allowed: int, healthy: int = 2, desired: int = 2) -> dict[str, Any]:
    status, created = await post(http, PDBS, budget(name, minAvailable=desired))
    assert status == 201, created
    created["status"] = {
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": healthy,
        "observedGeneration": created["metadata"]["generation"],
    }
    response = await http.put(f"{PDBS}/{name}/status", json=created)
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


async def fetch(http: Client, path: str) -> dict[str, Any]:
    response = await http.get(path)
    assert response.status == 200, await response.text()
    result: dict[str, Any] = await response.json()
    return result


# --- validation ------------------------------------------------------------------------------------


async def test_a_budget_starts_with_zero_counters_and_generation_one(http: Client) -> None:
    status, created = await post(http, PDBS, budget("b", maxUnavailable="25%"))
    assert status == 201, created
    assert created["metadata"]["generation"] == 1
    assert created["status"] == {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}


async def test_min_available_and_max_unavailable_cannot_both_be_set(http: Client) -> None:
    status, answer = await post(http, PDBS, budget("both", minAvailable=1, maxUnavailable=1))
    assert status == 422 and answer["reason"] == "Invalid"
    assert answer["message"].startswith('PodDisruptionBudget.policy "both" is invalid: spec: Invalid value: ')
    assert answer["message"].endswith("minAvailable and maxUnavailable cannot be both set")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"minAvailable": -1}, "spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"),
        ({"maxUnavailable": "120%"}, 'spec.maxUnavailable: Invalid value: "120%": must not be greater than 100%'),
        (
            {"minAvailable": "half"},
            'spec.minAvailable: Invalid value: "half": a valid percent string must be a numeric string followed'
            " by an ending '%'",
        ),
        (
            {"minAvailable": 1, "unhealthyPodEvictionPolicy": "Sometimes"},
            'spec.unhealthyPodEvictionPolicy: Unsupported value: "Sometimes": supported values:'
            ' "AlwaysAllow", "IfHealthyBudget"',
        ),
    ],
)
async def test_budget_values_are_checked_in_kubes_words(http: Client, spec: dict[str, Any], message: str) -> None:
    status, answer = await post(http, PDBS, budget("bad", **spec))
    assert status == 422, answer
    assert answer["message"] == f'PodDisruptionBudget.policy "bad" is invalid: {message}'


async def test_a_malformed_selector_is_refused(http: Client) -> None:
    body = budget("sel", minAvailable=1)
    body["spec"]["selector"] = {"matchExpressions": [{"key": "app", "operator": "In", "values": []}]}
    status, answer = await post(http, PDBS, body)
    assert status == 422 and answer["details"]["causes"][0]["field"] == "spec.selector.matchExpressions[0].values"


async def test_a_negative_status_counter_is_refused(http: Client) -> None:
    created = await budget_with(http, "neg", allowed=1)
    created["status"]["currentHealthy"] = -1
    response = await http.put(f"{PDBS}/neg/status", json=created)
    assert response.status == 422
    assert "status.currentHealthy: Invalid value: -1" in (await response.json())["message"]


def test_kubectl_get_pdb_prints_the_budget_and_na_where_unset() -> None:
    obj = budget("web", minAvailable="50%")
    obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    obj["status"] = {"disruptionsAllowed": 2}
    printed = table("poddisruptionbudgets.policy", [obj])
    names = [c["name"] for c in printed["columnDefinitions"]]
    assert names == ["Name", "Min Available", "Max Unavailable", "Allowed Disruptions", "Age"]
    assert printed["rows"][0]["cells"][:4] == ["web", "50%", "N/A", 2]


async def test_discovery_names_the_eviction_kind_kubectl_drain_looks_for(http: Client) -> None:
    resources = (await fetch(http, "/api/v1"))["resources"]
    entry = next(r for r in resources if r["name"] == "pods/eviction")
    assert (entry["group"], entry["version"], entry["kind"], entry["verbs"]) == ("policy", "v1", "Eviction", ["create"])
    policy = (await fetch(http, "/apis/policy/v1"))["resources"]
    assert {r["name"] for r in policy} == {"poddisruptionbudgets", "poddisruptionbudgets/status"}
    assert next(r for r in policy if r["name"] == "poddisruptionbudgets")["shortNames"] == ["pdb"]


# --- the eviction decision (pure) ------------------------------------------------------------------


def test_spending_takes_one_disruption_names_the_pod_and_flips_the_condition_at_zero() -> None:
    pdb = budget("b", minAvailable=1)
    pdb["metadata"]["generation"] = 1
    pdb["status"] = {"disruptionsAllowed": 1, "currentHealthy": 2, "desiredHealthy": 1, "observedGeneration": 1}
    spent = eviction.spend(pdb, "p1", now=NOW, dry_run=False)["status"]
    assert spent["disruptionsAllowed"] == 0 and spent["disruptedPods"] == {"p1": "2026-01-01T00:00:00Z"}
    assert [(c["type"], c["status"], c["reason"]) for c in spent["conditions"]] == [
        ("DisruptionAllowed", "False", "InsufficientPods")
    ]
    assert "disruptedPods" not in eviction.spend(pdb, "p1", now=NOW, dry_run=True)["status"]


def test_a_budget_the_controller_has_not_seen_yet_refuses() -> None:
    pdb = budget("b", minAvailable=1)
    pdb["metadata"]["generation"] = 2
    pdb["status"] = {"disruptionsAllowed": 3, "observedGeneration": 1}
    with pytest.raises(StatusError) as caught:
        eviction.spend(pdb, "p1", now=NOW, dry_run=False)
    assert caught.value.code == 429
    assert caught.value.details == {
        "causes": [
            {"reason": "DisruptionBudget", "message": "The disruption budget b is still being processed by the server."}
        ]
    }


def test_pods_not_running_or_going_already_ignore_budgets_and_unready_ones_may_go_when_enough_are_healthy() -> None:
    pdb = budget("b", minAvailable=2)
    pdb["status"] = {"currentHealthy": 2, "desiredHealthy": 2}
    pending = {"metadata": {"labels": {"app": "web"}}, "status": {"phase": "Pending"}}
    assert eviction.plan(pending, [pdb]) == eviction.Plan(pin_version=True)
    done = {"metadata": {"labels": {"app": "web"}}, "status": {"phase": "Succeeded"}}
    assert eviction.plan(done, [pdb]) == eviction.Plan()
    unready = {"metadata": {"labels": {"app": "web"}}, "status": {"phase": "Running"}}
    assert eviction.plan(unready, [pdb]) == eviction.Plan(budget=pdb, pin_version=True)
    ready = {**unready, "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    assert eviction.plan(ready, [pdb]) == eviction.Plan(budget=pdb, spend=True)
    assert eviction.plan(ready, [budget("other", app="db")]) == eviction.Plan()
    nil_selector = {**budget("nil"), "spec": {"minAvailable": 1}}
    assert eviction.plan(ready, [nil_selector]) == eviction.Plan()


# --- evictions over HTTP ---------------------------------------------------------------------------


async def test_a_pod_no_budget_selects_is_deleted(http: Client) -> None:
    await running_pod(http, "free")
    status, answer = await post(http, f"{PODS}/free/eviction", evicting("free"))
    assert status == 201 and answer["status"] == "Success"
    assert (await fetch(http, f"{PODS}/free"))["metadata"]["deletionTimestamp"]  # graceful, as a delete


async def test_the_evictions_delete_options_are_honoured(http: Client) -> None:
    await running_pod(http, "now")
    status, _ = await post(http, f"{PODS}/now/eviction", evicting("now", gracePeriodSeconds=0))
    assert status == 201
    assert (await http.get(f"{PODS}/now")).status == 404


async def test_a_budget_with_no_disruption_left_answers_429_and_the_pod_stays(http: Client) -> None:
    await running_pod(http, "kept")
    await budget_with(http, "web-pdb", allowed=0, healthy=1, desired=2)
    status, answer = await post(http, f"{PODS}/kept/eviction", evicting("kept"))
    assert status == 429 and answer["reason"] == "TooManyRequests"
    assert answer["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert answer["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget web-pdb needs 2 healthy pods and has 1 currently",
        }
    ]
    assert "deletionTimestamp" not in (await fetch(http, f"{PODS}/kept"))["metadata"]


async def test_an_allowed_eviction_spends_the_budget_then_deletes_the_pod(http: Client) -> None:
    await running_pod(http, "goes")
    await budget_with(http, "web-pdb", allowed=1, healthy=3, desired=2)
    status, answer = await post(http, f"{PODS}/goes/eviction", evicting("goes"))
    assert status == 201 and answer["status"] == "Success"
    assert (await fetch(http, f"{PODS}/goes"))["metadata"]["deletionTimestamp"]
    pdb = (await fetch(http, f"{PDBS}/web-pdb"))["status"]
    assert pdb["disruptionsAllowed"] == 0 and list(pdb["disruptedPods"]) == ["goes"]
    again_status, _ = await post(http, f"{PODS}/goes/eviction", evicting("goes"))
    assert again_status == 201  # already going: nothing more to spend


async def test_a_pod_two_budgets_select_cannot_be_evicted(http: Client) -> None:
    await running_pod(http, "twice")
    await budget_with(http, "one", allowed=1)
    await budget_with(http, "two", allowed=1)
    status, answer = await post(http, f"{PODS}/twice/eviction", evicting("twice"))
    assert status == 500 and answer["message"] == eviction.MANY_BUDGETS
    assert answer["status"] == "Failure" and "reason" not in answer  # kube's answer, not an error
    assert "deletionTimestamp" not in (await fetch(http, f"{PODS}/twice"))["metadata"]


async def test_the_name_in_the_body_must_be_the_pods(http: Client) -> None:
    await running_pod(http, "named")
    status, answer = await post(http, f"{PODS}/named/eviction", evicting("other"))
    assert status == 400 and answer["message"] == "name in URL does not match name in Eviction object"


async def test_a_dry_run_eviction_spends_and_deletes_nothing(http: Client) -> None:
    await running_pod(http, "dry")
    await budget_with(http, "web-pdb", allowed=1)
    response = await http.post(f"{PODS}/dry/eviction?dryRun=All", json=evicting("dry"))
    assert response.status == 201
    assert "deletionTimestamp" not in (await fetch(http, f"{PODS}/dry"))["metadata"]
    assert (await fetch(http, f"{PDBS}/web-pdb"))["status"]["disruptionsAllowed"] == 1


# --- kubectl drain ---------------------------------------------------------------------------------


async def _kubelet_finishing_deletions(http: Client) -> None:
    """A fake kubelet, declared as such: pods being deleted are removed at once."""
    while True:
        listed = await fetch(http, "/api/v1/pods")
        for item in listed["items"]:
            meta = item["metadata"]
            if meta.get("deletionTimestamp"):
                await http.delete(
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                    json={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0},
                )
        await asyncio.sleep(0.1)


async def test_kubectl_drain_evicts_within_the_budget_and_retries_what_it_forbids(http: Client, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    server = f"http://{http.host}:{http.port}"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    for node in ("n1", "n2"):
        status, _ = await post(http, "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
        assert status == 201
    for name, node in (("a", "n1"), ("b", "n1"), ("c", "n2")):
        await running_pod(http, name, node=node)
    await budget_with(http, "web-pdb", allowed=2, healthy=3, desired=1)
    kubelet = asyncio.create_task(_kubelet_finishing_deletions(http))
    try:
        drained, out = await run_kubectl(
            kubeconfig, "drain", "n1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=20s"
        )
        assert drained == 0, out
        assert "node/n1 cordoned" in out and "pod/a evicted" in out and "pod/b evicted" in out, out
        assert "node/n1 drained" in out
        pdb = (await fetch(http, f"{PDBS}/web-pdb"))["status"]
        assert pdb["disruptionsAllowed"] == 0 and sorted(pdb["disruptedPods"]) == ["a", "b"]
        # the budget is spent: kubectl is answered 429 and retries until its timeout
        refused, out = await run_kubectl(
            kubeconfig, "drain", "n2", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=3s"
        )
    finally:
        kubelet.cancel()
    assert refused != 0, out
    assert "Cannot evict pod as it would violate the pod's disruption budget." in out, out
    assert [p["metadata"]["name"] for p in (await fetch(http, PODS))["items"]] == ["c"]
    assert (await fetch(http, "/api/v1/nodes/n1"))["spec"]["unschedulable"] is True
