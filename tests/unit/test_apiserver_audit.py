"""Audit: the policy's first matching rule gives the level; events as audit.k8s.io/v1 writes them;
the log written in batches and rotated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.apiserver import audit
from agents.apiserver.audit import AuditLog, AuditPolicyError, Policy
from agents.apiserver.requestinfo import request_info
from provisioner.lab import render

ADMIN = ("kubelab-admin", ["system:masters", "system:authenticated"])
NODE = ("system:node:w1", ["system:nodes", "system:authenticated"])


def policy(*rules: dict[str, Any], **top: Any) -> Policy:
    return Policy.parse({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": list(rules), **top})


def level(p: Policy, method: str, path: str, who: tuple[str, list[str]] = ADMIN, **query: str) -> str:
    return p.level(request_info(method, path, query), who[0], who[1])[0]


def test_the_first_matching_rule_gives_the_level_and_no_match_records_nothing() -> None:
    p = policy(
        {
            "level": "RequestResponse",
            "verbs": ["create"],
            "resources": [{"group": "apps", "resources": ["deployments"]}],
        },
        {"level": "Metadata", "namespaces": ["kube-system"]},
    )
    assert level(p, "POST", "/apis/apps/v1/namespaces/ns/deployments") == "RequestResponse"
    assert level(p, "GET", "/apis/apps/v1/namespaces/ns/deployments") == "None"
    assert level(p, "GET", "/api/v1/namespaces/kube-system/pods") == "Metadata"


def test_users_groups_and_verbs_must_all_hold() -> None:
    p = policy(
        {"level": "None", "userGroups": ["system:nodes"], "verbs": ["get", "list", "watch"]},
        {"level": "Request", "users": ["kubelab-admin"]},
    )
    assert level(p, "GET", "/api/v1/pods", NODE, watch="true") == "None"
    assert level(p, "POST", "/api/v1/namespaces/ns/pods", NODE) == "None"  # no rule for a node's writes
    assert level(p, "GET", "/api/v1/pods") == "Request"


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("pods", "/api/v1/namespaces/ns/pods/web", True),
        ("pods", "/api/v1/namespaces/ns/pods/web/log", False),
        ("pods/log", "/api/v1/namespaces/ns/pods/web/log", True),
        ("pods/*", "/api/v1/namespaces/ns/pods/web/exec", True),
        ("*/status", "/api/v1/namespaces/ns/pods/web/status", True),
        ("*/status", "/api/v1/namespaces/ns/pods/web", False),
        ("*", "/api/v1/namespaces/ns/pods/web/status", True),
    ],
)
def test_resource_patterns_name_subresources_as_kube_does(pattern: str, path: str, matches: bool) -> None:
    p = policy({"level": "Metadata", "resources": [{"group": "", "resources": [pattern]}]})
    assert level(p, "GET", path) == ("Metadata" if matches else "None")


def test_resource_names_the_core_group_and_cluster_scope() -> None:
    p = policy(
        {"level": "Request", "resources": [{"group": "", "resources": ["configmaps"], "resourceNames": ["cfg"]}]},
        {"level": "Metadata", "namespaces": [""]},
    )
    assert level(p, "GET", "/api/v1/namespaces/ns/configmaps/cfg") == "Request"
    assert level(p, "GET", "/api/v1/namespaces/ns/configmaps/other") == "None"
    assert level(p, "GET", "/apis/apps/v1/namespaces/ns/configmaps/cfg") == "None"  # another group
    assert level(p, "GET", "/api/v1/nodes/n1") == "Metadata"  # cluster-scoped: namespace ""


def test_non_resource_urls_match_paths_and_prefixes_and_never_resources() -> None:
    p = policy({"level": "None", "nonResourceURLs": ["/healthz*", "/version"]}, {"level": "Metadata"})
    assert level(p, "GET", "/healthz") == "None"
    assert level(p, "GET", "/healthz/etcd") == "None"
    assert level(p, "GET", "/version") == "None"
    assert level(p, "GET", "/versions") == "Metadata"
    assert level(p, "GET", "/api/v1/pods") == "Metadata"


def test_omitted_stages_of_the_policy_and_the_rule_add_up() -> None:
    p = policy({"level": "Metadata", "omitStages": ["ResponseStarted"]}, omitStages=["RequestReceived"])
    assert p.level(request_info("GET", "/api/v1/pods", {}), *ADMIN) == (
        "Metadata",
        frozenset({"RequestReceived", "ResponseStarted"}),
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "not a Policy object"),
        ({"apiVersion": "audit.k8s.io/v1beta1", "kind": "Policy", "rules": [{"level": "None"}]}, "apiVersion and kind"),
        ({"apiVersion": "audit.k8s.io/v1", "kind": "Policy"}, "rules: Required value"),
        (
            {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "All"}]},
            'rules[0].level: Unsupported value: "All"',
        ),
        (
            {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "None", "verb": ["get"]}]},
            'unknown field "verb"',
        ),
        (
            {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "None", "verbs": "get"}]},
            "verbs: must be a list",
        ),
        (
            {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "None", "omitStages": ["Later"]}]},
            'omitStages: Unsupported value: "Later"',
        ),
        (
            {
                "apiVersion": "audit.k8s.io/v1",
                "kind": "Policy",
                "rules": [{"level": "None", "nonResourceURLs": ["/x"], "resources": [{"group": ""}]}],
            },
            "both regular resources and non-resource URLs",
        ),
    ],
)
def test_a_bad_policy_is_one_error_naming_the_field(document: Any, message: str) -> None:
    with pytest.raises(AuditPolicyError) as raised:
        Policy.parse(document, where="policy.yaml")
    assert message in str(raised.value)
    assert str(raised.value).startswith("policy.yaml")


def test_a_missing_or_unparsable_policy_file_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(AuditPolicyError, match="cannot read audit policy"):
        Policy.from_file(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("rules: [\n")
    with pytest.raises(AuditPolicyError, match="is not YAML"):
        Policy.from_file(tmp_path / "bad.yaml")


def test_the_lab_s_policy_records_changes_with_bodies_and_leaves_heartbeats_and_component_reads_out() -> None:
    p = Policy.parse(yaml.safe_load(render.render("agents/audit-policy.yaml.j2")))
    scheduler = ("system:kube-scheduler", ["system:authenticated"])
    assert level(p, "POST", "/apis/apps/v1/namespaces/ns/deployments") == "Request"
    assert level(p, "DELETE", "/api/v1/namespaces/ns/pods/web") == "Request"
    assert level(p, "GET", "/api/v1/namespaces/ns/pods") == "Metadata"
    assert level(p, "POST", "/api/v1/namespaces/ns/secrets") == "Metadata"  # never a secret's data
    assert level(p, "GET", "/healthz") == "None"
    assert level(p, "GET", "/apis/apps/v1") == "None"
    assert level(p, "PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/w1", NODE) == "None"
    assert level(p, "GET", "/api/v1/pods", NODE, watch="true") == "None"
    assert level(p, "GET", "/api/v1/pods", scheduler, watch="true") == "None"
    assert level(p, "POST", "/api/v1/namespaces/ns/pods/web/binding", scheduler) == "Request"
    assert level(p, "PATCH", "/api/v1/namespaces/ns/pods/web/status", NODE) == "Request"
    assert p.omit_stages == frozenset({"RequestReceived"})


def request(level: str, method: str = "POST", path: str = "/api/v1/namespaces/ns/configmaps") -> audit.Request:
    return audit.Request(
        audit_id="0f0e6b1c-1d9a-4c55-a3b4-6f4b1f9e2a10",
        info=request_info(method, path, {}),
        level=level,
        omit_stages=frozenset(),
        request_uri=path + "?fieldManager=kubectl-create",
        user={"username": "kubelab-admin", "groups": ["system:masters", "system:authenticated"]},
        source_ips=("127.0.0.1",),
        user_agent="kubectl/v1.31.0",
        received=1765000000.25,
        request_object={"kind": "ConfigMap", "data": {"a": "1"}},
    )


def test_a_metadata_event_says_who_what_and_the_outcome_but_no_bodies() -> None:
    ev = audit.event(
        request("Metadata"), "ResponseComplete", 1765000000.5, code=201, response_object={"kind": "ConfigMap"}
    )
    assert ev == {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": "0f0e6b1c-1d9a-4c55-a3b4-6f4b1f9e2a10",
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/ns/configmaps?fieldManager=kubectl-create",
        "verb": "create",
        "user": {"username": "kubelab-admin", "groups": ["system:masters", "system:authenticated"]},
        "sourceIPs": ["127.0.0.1"],
        "userAgent": "kubectl/v1.31.0",
        "objectRef": {"resource": "configmaps", "namespace": "ns", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestReceivedTimestamp": "2025-12-06T05:46:40.250000Z",
        "stageTimestamp": "2025-12-06T05:46:40.500000Z",
    }


def test_request_and_request_response_levels_add_the_bodies_and_a_failure_its_message() -> None:
    with_request = audit.event(request("Request"), "ResponseComplete", 1765000001.0, code=201, response_object={"x": 1})
    assert with_request["requestObject"] == {"kind": "ConfigMap", "data": {"a": "1"}}
    assert "responseObject" not in with_request
    both = audit.event(request("RequestResponse"), "ResponseComplete", 1765000001.0, code=201, response_object={"x": 1})
    assert both["responseObject"] == {"x": 1}
    failed = audit.event(
        request("Metadata"), "ResponseComplete", 1765000001.0, code=409, message='configmaps "a" already exists'
    )
    assert failed["responseStatus"] == {
        "metadata": {},
        "code": 409,
        "status": "Failure",
        "message": 'configmaps "a" already exists',
    }


def test_a_non_resource_request_has_no_object_reference_and_long_running_ones_are_known() -> None:
    ev = audit.event(request("Metadata", "GET", "/version"), "ResponseComplete", 1765000001.0, code=200)
    assert "objectRef" not in ev and ev["verb"] == "get"
    assert audit.long_running(request_info("GET", "/api/v1/pods", {"watch": "true"}))
    assert audit.long_running(request_info("GET", "/api/v1/namespaces/ns/pods/web/log", {}))
    assert not audit.long_running(request_info("GET", "/api/v1/namespaces/ns/pods/web", {}))


async def test_the_log_writes_json_lines_in_batches_and_rotates_keeping_the_newest_backups(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.log"
    log = AuditLog(path, max_size_mb=0, max_backups=2, flush_seconds=0.0)
    log.max_size = 400  # bytes, for the test
    await log.start()
    for i in range(3):
        log.record({"n": i, "pad": "x" * 150})
    await log.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["n"] for line in lines] == [0, 1, 2]
    for batch in range(3, 6):
        log.record({"n": batch, "pad": "x" * 150})
        log._write()  # one batch at a time
    backups = sorted(p.name for p in path.parent.iterdir())
    assert backups == ["audit.log", "audit.log.1", "audit.log.2"]
    newest = [json.loads(line)["n"] for line in path.read_text().splitlines()]
    assert newest == [5]
    older = [
        [json.loads(line)["n"] for line in (path.parent / f"audit.log.{i}").read_text().splitlines()] for i in (1, 2)
    ]
    assert older == [[3, 4], [0, 1, 2]]
    assert oct(path.stat().st_mode & 0o777) == "0o600"
