"""The fuzz run's own parts that need no lab: the documents it feeds the fuzzer, the hook that keeps the
fuzzer away from the namespaces it must leave alone, and how it reads the fuzzer's report."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from kubelab_testing import fuzzhooks, fuzzing

Client = TestClient[Any, Any]
OWN = ("fuzz-x-a", "fuzz-x-b")


async def test_the_documents_lose_the_streams_and_name_only_the_runs_own_namespaces(http: Client) -> None:
    core = fuzzing.narrowed(await (await http.get("/openapi/v3/api/v1")).json(), OWN)
    paths = core["paths"]
    pods = paths["/api/v1/namespaces/{namespace}/pods"]
    names = {p["name"] for p in pods["get"]["parameters"]}
    assert "watch" not in names and {"limit", "labelSelector"} <= names
    log = paths["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"]
    assert "follow" not in {p["name"] for p in log["parameters"]} and "tailLines" in {
        p["name"] for p in log["parameters"]
    }
    namespace = next(p for p in pods["parameters"] if p["name"] == "namespace")
    assert namespace["schema"] == {
        "anyOf": [{"type": "string", "enum": list(OWN)}, {"type": "string", "pattern": "^fuzz-"}]
    }
    for item in ("/api/v1/namespaces/{name}", "/api/v1/namespaces/{name}/status", "/api/v1/nodes/{name}"):
        name = next(p for p in paths[item]["parameters"] if p["name"] == "name")
        assert name["schema"] == namespace["schema"], item
    pod_name = next(p for p in paths["/api/v1/namespaces/{namespace}/pods/{name}"]["parameters"] if p["name"] == "name")
    assert pod_name["schema"] == {"type": "string"}  # names inside the run's namespaces stay free
    assert "delete" not in paths["/api/v1/namespaces"] and "delete" not in paths["/api/v1/nodes"]
    assert "delete" in paths["/api/v1/namespaces/{namespace}/pods"] and "post" in paths["/api/v1/namespaces"]


async def test_a_definitions_recursive_schema_reaches_the_fuzzer_as_a_free_form_object(http: Client) -> None:
    served = await (await http.get("/openapi/v3/apis/apiextensions.k8s.io/v1")).json()
    assert "properties" in served["components"]["schemas"]["v1.JSONSchemaProps"]
    schemas = fuzzing.narrowed(served, OWN)["components"]["schemas"]
    assert schemas["v1.JSONSchemaProps"]["type"] == "object" and "properties" not in schemas["v1.JSONSchemaProps"]
    assert "properties" in schemas["v1.CustomResourceDefinitionSpec"]


def test_the_hook_replaces_any_path_parameter_holding_a_protected_namespace() -> None:
    protected = ("default", "sentinel-x")
    given = {"namespace": "sentinel-x", "name": "../../namespaces/default/leases/kept", "other": "web"}
    assert fuzzhooks.kept_away(given, protected, OWN) == {
        "namespace": "fuzz-x-a",
        "name": "fuzz-name",
        "other": "web",
    }
    assert fuzzhooks.kept_away({"namespace": 7}, protected, OWN) == {"namespace": 7}


def test_a_groups_figures_come_from_schemathesis_json_report() -> None:
    report = {
        "test_cases": {"generated": 1234},
        "failures": [
            {"code": "ST101", "title": "Server error", "count": 2},
            {"code": "ST108", "title": "Response violates schema", "count": 1},
        ],
        "errors": [{"title": "Network Error", "count": 1}, {"title": "Runtime Error", "count": 1}],
    }
    text = "the run's preamble\n" + "." * 100 + "\n" + "=" * 10 + " FAILURES " + "=" * 10 + "\n" + "x" * 1000 + "\n"
    result = fuzzing.result_of("api/v1", report, 30.0, text)
    assert (result.requests, result.server_errors, result.schema_mismatches) == (1234, 2, 1)
    assert (result.hangs, result.other_errors, result.clean) == (1, 1, False)
    assert "FAILURES" in result.findings and "preamble" not in result.findings
    assert max(len(line) for line in result.findings.splitlines()) == 300  # tracebacks quote whole files
    quiet = fuzzing.result_of(
        "api/v1", {"test_cases": {"generated": 5}, "errors": [{"title": "Runtime Error"}]}, 1.0, ""
    )
    assert quiet.clean and quiet.other_errors == 1  # the fuzzer's own trouble is reported, not held against the server


def test_changes_in_untouched_namespaces_are_listed_one_by_one() -> None:
    before = {"leases/kube-system/a": "u1", "configmaps/sentinel/kept": "u2@5"}
    after = {"leases/kube-system/a": "u1", "configmaps/sentinel/kept": "u2@9", "pods/sentinel/new": "u3@10"}
    assert fuzzing.differences(before, after) == [
        "configmaps/sentinel/kept: u2@5 -> u2@9",
        "pods/sentinel/new: absent -> u3@10",
    ]
    assert fuzzing.differences(before, dict(before)) == []


def test_the_resident_memory_of_a_process_tree_is_summed(tmp_path: Any) -> None:
    for pid, parent, rss in ((10, 1, 100), (11, 10, 50), (12, 11, 25), (20, 1, 999)):
        entry = tmp_path / str(pid)
        entry.mkdir()
        (entry / "stat").write_text(f"{pid} (python3) S {parent} 0 0")
        (entry / "status").write_text(f"Name:\tpython3\nVmRSS:\t{rss} kB\n")
    assert fuzzing.tree_rss(10, proc=tmp_path) == (100 + 50 + 25) * 1024
