"""The API server's audit log on a local lab, read as a user reads it: ``kubelab logs NODE audit``.

The lab's policy (templates/agents/audit-policy.yaml.j2) records changes with what was sent, reads
and secrets by who and what, and leaves heartbeats, the components' reads and health checks out.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from typing import Any

import yaml

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from provisioner.lab import kubeconfig


def audit_events(lab: Lab) -> list[dict[str, Any]]:
    read = lab.cli("logs", "localhost", "audit", "--name", lab.name, "--tail", "0")
    assert read.ok, read.err
    return [json.loads(line) for line in read.out.splitlines() if line.strip()]


def recorded(lab: Lab, **wanted: Any) -> list[dict[str, Any]]:
    """The events whose fields (``objectRef`` keys as ``ref_*``) have the wanted values."""

    def fits(event: dict[str, Any]) -> bool:
        for key, value in wanted.items():
            if key.startswith("ref_"):
                if (event.get("objectRef") or {}).get(key[4:]) != value:
                    return False
            elif event.get(key) != value:
                return False
        return True

    return [event for event in audit_events(lab) if fits(event)]


def raw_get(lab: Lab, path: str, token: str) -> tuple[int, dict[str, str]]:
    config = yaml.safe_load(lab.kubeconfig.read_text())
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    context = ssl.create_default_context(cadata=ca)
    request = urllib.request.Request(f"{lab.server}{path}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def admin_token(lab: Lab) -> str:
    return kubeconfig.bearer_token(lab.kubeconfig)


def test_a_change_is_recorded_with_who_made_it_and_what_was_sent(lab: Lab, kubectl: Kubectl, namespace: str) -> None:
    kubectl.ok("create", "deployment", "audited", "--image=busybox:1.36", "-n", namespace)

    found = eventually(
        lambda: recorded(lab, verb="create", ref_resource="deployments", ref_namespace=namespace),
        what="the deployment's create in the audit log",
    )
    (event,) = found
    assert event["apiVersion"] == "audit.k8s.io/v1" and event["kind"] == "Event"
    assert event["level"] == "Request" and event["stage"] == "ResponseComplete"
    assert event["user"]["username"] == "kubelab-admin"
    assert set(event["user"]["groups"]) == {"system:masters", "system:authenticated"}
    assert event["objectRef"]["apiGroup"] == "apps"
    assert event["responseStatus"]["code"] == 201
    assert event["requestObject"]["metadata"]["name"] == "audited"
    assert event["userAgent"].startswith("kubectl")
    assert "responseObject" not in event  # Request level: what was sent, not the answer


def test_a_secret_s_create_names_it_but_never_records_its_data(lab: Lab, kubectl: Kubectl, namespace: str) -> None:
    kubectl.ok("create", "secret", "generic", "hidden", "--from-literal=password=s3cr3t-value", "-n", namespace)

    (event,) = eventually(
        lambda: recorded(lab, verb="create", ref_resource="secrets", ref_namespace=namespace),
        what="the secret's create in the audit log",
    )
    assert event["level"] == "Metadata"
    assert "requestObject" not in event
    assert "s3cr3t" not in json.dumps(audit_events(lab))


def test_a_refused_credential_is_recorded_as_anonymous_with_401_and_every_answer_names_its_audit_id(
    lab: Lab, namespace: str
) -> None:
    code, headers = raw_get(lab, f"/api/v1/namespaces/{namespace}/pods", "not-a-token")
    assert code == 401
    audit_id = headers["Audit-Id"]

    (event,) = eventually(lambda: recorded(lab, auditID=audit_id), what="the refused request in the audit log")
    assert event["user"] == {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
    assert event["responseStatus"]["code"] == 401
    assert event["responseStatus"]["message"] == "Unauthorized"

    code, headers = raw_get(lab, f"/api/v1/namespaces/{namespace}/configmaps", admin_token(lab))
    assert code == 200
    (read,) = eventually(lambda: recorded(lab, auditID=headers["Audit-Id"]), what="the list in the audit log")
    assert (read["verb"], read["level"], read["responseStatus"]["code"]) == ("list", "Metadata", 200)


def test_a_watch_is_recorded_when_it_starts_and_when_it_ends(lab: Lab, kubectl: Kubectl, namespace: str) -> None:
    kubectl("get", "pods", "-n", namespace, "--watch", "--request-timeout=2s", timeout=30)

    def stages() -> list[str]:
        return sorted(e["stage"] for e in recorded(lab, verb="watch", ref_resource="pods", ref_namespace=namespace))

    assert eventually(lambda: stages() == ["ResponseComplete", "ResponseStarted"], what="the watch's two stages")


def test_health_checks_and_discovery_are_left_out(lab: Lab) -> None:
    code, headers = raw_get(lab, "/version", admin_token(lab))
    assert code == 200 and "Audit-Id" not in headers
    assert not [e for e in audit_events(lab) if e["requestURI"] in ("/healthz", "/readyz", "/livez", "/version")]
