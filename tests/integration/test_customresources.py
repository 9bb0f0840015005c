"""CustomResourceDefinitions on the local lab, driven by the real kubectl and the official Python client.

Each test defines a kind in a group of its own (so tests and runs never share one), works in a
namespace of its own, and deletes its definition at the end, which also deletes its objects.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["cronSpec"],
            "properties": {
                "cronSpec": {"type": "string", "pattern": r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$"},
                "image": {"type": "string"},
                "replicas": {"type": "integer", "minimum": 0, "default": 1},
            },
        },
        "status": {
            "type": "object",
            "properties": {"replicas": {"type": "integer"}, "phase": {"type": "string"}},
        },
    },
}


def definition(group: str, *, second_version: bool = False) -> dict[str, Any]:
    v1: dict[str, Any] = {
        "name": "v1",
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": SCHEMA},
        "subresources": {
            "status": {},
            "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"},
        },
        "additionalPrinterColumns": [
            {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        ],
    }
    versions = [v1]
    if second_version:
        versions.append({**v1, "name": "v1beta1", "storage": False})
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"crontabs.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]},
            "versions": versions,
        },
    }


def crontab(group: str, name: str, *, version: str = "v1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{group}/{version}",
        "kind": "CronTab",
        "metadata": {"name": name},
        "spec": {"cronSpec": "* * * * */5", "image": "my-awesome-cron-image", **spec},
    }


@pytest.fixture
def group(kubectl: Kubectl) -> Iterator[str]:
    """A group of this test's own; its definition (and so its objects) is deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:8]}.kubelab.test"
    yield name
    kubectl("delete", "crd", f"crontabs.{name}", "--ignore-not-found", "--wait=true", timeout=60)


def establish(kubectl: Kubectl, crd: dict[str, Any]) -> None:
    kubectl.ok("apply", "-f", "-", stdin=manifest(crd))
    kubectl.ok("wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}", "--timeout=30s")


def test_a_definition_applied_with_kubectl_serves_its_kind(kubectl: Kubectl, namespace: str, group: str) -> None:
    establish(kubectl, definition(group))
    crd = kubectl.json("get", "crd", f"crontabs.{group}")
    assert crd["status"]["acceptedNames"]["kind"] == "CronTab"
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["NamesAccepted"] == "True"
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(crontab(group, "nightly")))
    got = kubectl.json("get", "-n", namespace, f"crontabs.{group}", "nightly")
    assert got["spec"]["replicas"] == 1  # the schema's default
    assert got["metadata"]["generation"] == 1
    listed = kubectl.json("get", "-n", namespace, f"ct.{group}")
    assert [item["metadata"]["name"] for item in listed["items"]] == ["nightly"]
    resources = kubectl.ok("api-resources", "--api-group", group)
    assert "crontabs" in resources and "CronTab" in resources and "ct" in resources
    explained = kubectl.ok("explain", f"crontabs.{group}.spec")
    assert "cronSpec" in explained and "replicas" in explained
    # client-side apply of a change (a patch computed from the last applied configuration)
    changed = crontab(group, "nightly", image="other-image")
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(changed))
    got = kubectl.json("get", "-n", namespace, f"crontabs.{group}", "nightly")
    assert got["spec"]["image"] == "other-image" and got["metadata"]["generation"] == 2


def test_printer_columns_and_kubectl_scale(kubectl: Kubectl, namespace: str, group: str) -> None:
    establish(kubectl, definition(group))
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(crontab(group, "nightly", replicas=2)))
    table = kubectl.ok("get", "-n", namespace, f"crontabs.{group}")
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "SPEC", "REPLICAS", "AGE"]
    assert row.split()[:7] == ["nightly", "*", "*", "*", "*", "*/5", "2"]
    kubectl.ok("scale", "-n", namespace, f"crontabs.{group}/nightly", "--replicas=4")
    got = kubectl.json("get", "-n", namespace, f"crontabs.{group}", "nightly")
    assert got["spec"]["replicas"] == 4


def test_status_subresource_keeps_spec_and_status_apart(kubectl: Kubectl, namespace: str, group: str) -> None:
    establish(kubectl, definition(group))
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(crontab(group, "nightly")))
    patch = json.dumps({"spec": {"image": "ignored"}, "status": {"phase": "Ready", "replicas": 1}})
    kubectl.ok(
        "patch", "-n", namespace, f"crontabs.{group}", "nightly", "--subresource=status", "--type=merge", "-p", patch
    )
    got = kubectl.json("get", "-n", namespace, f"crontabs.{group}", "nightly")
    assert got["status"] == {"phase": "Ready", "replicas": 1}
    assert got["spec"]["image"] == "my-awesome-cron-image" and got["metadata"]["generation"] == 1
    kubectl.ok(
        "patch", "-n", namespace, f"crontabs.{group}", "nightly", "--type=merge", "-p", '{"status":{"phase":"x"}}'
    )
    assert kubectl.json("get", "-n", namespace, f"crontabs.{group}", "nightly")["status"]["phase"] == "Ready"


def test_an_invalid_object_is_refused_with_its_schema_path(kubectl: Kubectl, namespace: str, group: str) -> None:
    establish(kubectl, definition(group))
    result = kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest(crontab(group, "bad", replicas="many")))
    assert not result.ok
    assert 'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"' in (
        result.err
    )
    result = kubectl("create", "-n", namespace, "-f", "-", stdin=manifest(crontab(group, "bad", cronSpec="often")))
    assert not result.ok and "spec.cronSpec in body should match" in result.err
    # kubectl validates strictly by default: a field the schema does not have is refused, at any depth
    typo = crontab(group, "typo", replicaz=2)
    result = kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest(typo))
    assert not result.ok
    assert 'CronTab in version "v1" cannot be handled as a CronTab: strict decoding error: unknown field' in result.err
    assert '"spec.replicaz"' in result.err
    result = kubectl("apply", "--validate=warn", "-n", namespace, "-f", "-", stdin=manifest(typo))
    assert result.ok and 'unknown field "spec.replicaz"' in result.err


def test_deleting_the_definition_deletes_its_objects(kubectl: Kubectl, namespace: str, group: str) -> None:
    establish(kubectl, definition(group))
    for name in ("a", "b"):
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(crontab(group, name)))
    kubectl.ok("delete", "crd", f"crontabs.{group}", "--timeout=60s")
    assert not kubectl("get", "crd", f"crontabs.{group}").ok
    eventually(lambda: group not in kubectl.ok("api-versions"), timeout=30, what="the group leaves discovery")
    assert not kubectl("get", "-n", namespace, f"crontabs.{group}").ok


def test_a_second_served_version_and_the_python_client(lab: Lab, kubectl: Kubectl, namespace: str, group: str) -> None:
    establish(kubectl, definition(group, second_version=True))
    api_client = config.new_client_from_config(config_file=str(lab.kubeconfig))
    try:
        custom = client.CustomObjectsApi(api_client)
        created = custom.create_namespaced_custom_object(
            group, "v1beta1", namespace, "crontabs", crontab(group, "old", version="v1beta1")
        )
        assert created["apiVersion"] == f"{group}/v1beta1"
        stored = custom.get_namespaced_custom_object(group, "v1", namespace, "crontabs", "old")
        assert stored["apiVersion"] == f"{group}/v1" and stored["spec"]["replicas"] == 1
        listed = custom.list_namespaced_custom_object(group, "v1beta1", namespace, "crontabs")
        assert [i["apiVersion"] for i in listed["items"]] == [f"{group}/v1beta1"]
        patched = custom.patch_namespaced_custom_object(
            group, "v1", namespace, "crontabs", "old", {"spec": {"replicas": 3}}
        )
        assert patched["spec"]["replicas"] == 3
        status = custom.patch_namespaced_custom_object_status(
            group, "v1", namespace, "crontabs", "old", {"status": {"phase": "Done"}}
        )
        assert status["status"]["phase"] == "Done"
        with pytest.raises(ApiException) as refused:
            custom.create_namespaced_custom_object(
                group, "v1", namespace, "crontabs", crontab(group, "bad", replicas=-1)
            )
        assert refused.value.status == 422
        assert "spec.replicas in body should be greater than or equal to 0" in refused.value.body
        custom.delete_namespaced_custom_object(group, "v1", namespace, "crontabs", "old")
        assert custom.list_namespaced_custom_object(group, "v1", namespace, "crontabs")["items"] == []
    finally:
        api_client.close()


def test_server_side_apply_of_a_custom_resource(kubectl: Kubectl, namespace: str, group: str) -> None:
    establish(kubectl, definition(group))
    first = crontab(group, "nightly", replicas=2)
    kubectl.ok("apply", "--server-side", "-n", namespace, "-f", "-", stdin=manifest(first))
    got = kubectl.json("get", "-n", namespace, f"crontabs.{group}", "nightly", "--show-managed-fields")
    assert [(e["manager"], e["operation"]) for e in got["metadata"]["managedFields"]] == [("kubectl", "Apply")]
    kubectl.ok("scale", "-n", namespace, f"crontabs.{group}/nightly", "--replicas=3")
    again = kubectl("apply", "--server-side", "-n", namespace, "-f", "-", stdin=manifest(first))
    assert not again.ok and "conflict" in again.err and ".spec.replicas" in again.err
    kubectl.ok("apply", "--server-side", "--force-conflicts", "-n", namespace, "-f", "-", stdin=manifest(first))
    assert kubectl.json("get", "-n", namespace, f"crontabs.{group}", "nightly")["spec"]["replicas"] == 2
    # the status subresource by apply, as an operator's status writer does: spec untouched, its own entry
    status = {**crontab(group, "nightly", replicas=9), "status": {"phase": "Running"}}
    kubectl.ok(
        "apply",
        "--server-side",
        "--subresource=status",
        "--field-manager=crontab-operator",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=manifest(status),
    )
    got = kubectl.json("get", "-n", namespace, f"crontabs.{group}", "nightly", "--show-managed-fields")
    assert got["status"] == {"phase": "Running"} and got["spec"]["replicas"] == 2
    owners = {(e["manager"], e.get("subresource", "")) for e in got["metadata"]["managedFields"]}
    assert ("crontab-operator", "status") in owners
