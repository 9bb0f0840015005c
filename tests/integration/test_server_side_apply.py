"""Server-side apply on a local lab (etcd, TLS, the controllers running): what ``kubectl apply
--server-side`` does, who owns which fields afterwards, and conflicts with other writers."""

from __future__ import annotations

from typing import Any

import yaml

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.waiting import eventually


def deployment(*, image: str = "busybox:1.36", replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }


def managers(obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(e["manager"], e["operation"], e.get("subresource", "")) for e in obj["metadata"].get("managedFields", [])]


def test_apply_creates_updates_and_shares_the_object_with_the_controllers(kubectl: Kubectl, namespace: str) -> None:
    dry = kubectl.ok(
        "apply", "--server-side", "--dry-run=server", "-n", namespace, "-f", "-", stdin=manifest(deployment())
    )
    assert "deployment.apps/web serverside-applied (server dry run)" in dry
    assert not kubectl("get", "deployment", "web", "-n", namespace).ok
    created = kubectl.ok("apply", "--server-side", "-n", namespace, "-f", "-", stdin=manifest(deployment()))
    assert "deployment.apps/web serverside-applied" in created

    # the deployment controller writes the status: an Update of the status subresource, next to the apply
    def with_status_entry() -> dict[str, Any] | None:
        found: dict[str, Any] = kubectl.json("get", "deployment", "web", "-n", namespace, "--show-managed-fields")
        return found if any(sub == "status" for _, _, sub in managers(found)) else None

    obj = eventually(with_status_entry, what="the controller's status entry")
    assert ("kubectl", "Apply", "") in managers(obj)
    applied = next(e for e in obj["metadata"]["managedFields"] if e["operation"] == "Apply")
    container = applied["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"main"}']
    assert container == {".": {}, "f:image": {}, "f:name": {}}
    assert "managedFields" not in kubectl.ok("get", "deployment", "web", "-n", namespace, "-o", "yaml")
    kubectl.ok("apply", "--server-side", "-n", namespace, "-f", "-", stdin=manifest(deployment(image="busybox:1.37")))
    rs = eventually(
        lambda: [
            r
            for r in kubectl.json("get", "replicasets", "-n", namespace)["items"]
            if r["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1.37"
        ],
        what="a ReplicaSet of the new image",
    )
    assert rs[0]["metadata"]["ownerReferences"][0]["name"] == "web"


def test_a_scaled_deployment_conflicts_until_forced(kubectl: Kubectl, namespace: str) -> None:
    kubectl.ok("apply", "--server-side", "-n", namespace, "-f", "-", stdin=manifest(deployment()))
    kubectl.ok("scale", "deployment/web", "-n", namespace, "--replicas=4")
    refused = kubectl("apply", "--server-side", "-n", namespace, "-f", "-", stdin=manifest(deployment(replicas=3)))
    assert not refused.ok
    assert (
        'error: Apply failed with 1 conflict: conflict with "kubectl" with subresource "scale" using apps/v1:'
        " .spec.replicas" in refused.err
    ), refused.err
    forced = kubectl.ok(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=manifest(deployment(replicas=3)),
    )
    assert "serverside-applied" in forced
    obj = kubectl.json("get", "deployment", "web", "-n", namespace, "--show-managed-fields")
    assert obj["spec"]["replicas"] == 3
    assert ("kubectl", "Apply", "") in managers(obj)
    assert ("kubectl", "Update", "scale") not in managers(obj)


def test_a_field_dropped_from_the_configuration_goes_and_a_single_empty_entry_clears_the_fields(
    kubectl: Kubectl, namespace: str
) -> None:
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"a": "1", "b": "2"}}
    kubectl.ok("apply", "--server-side", "--field-manager=me", "-n", namespace, "-f", "-", stdin=manifest(configmap))
    kubectl.ok("patch", "configmap", "cm", "-n", namespace, "--type=merge", "-p", '{"data":{"c":"3"}}')
    configmap["data"] = {"a": "1"}
    kubectl.ok("apply", "--server-side", "--field-manager=me", "-n", namespace, "-f", "-", stdin=manifest(configmap))
    obj = kubectl.json("get", "configmap", "cm", "-n", namespace, "--show-managed-fields")
    assert obj["data"] == {"a": "1", "c": "3"}  # b dropped; c is kubectl-patch's
    assert sorted(m for m, _, _ in managers(obj)) == ["kubectl-patch", "me"]
    kubectl.ok("patch", "configmap", "cm", "-n", namespace, "--type=merge", "-p", '{"metadata":{"managedFields":[{}]}}')
    shown = yaml.safe_load(kubectl.ok("get", "configmap", "cm", "-n", namespace, "-o", "yaml", "--show-managed-fields"))
    assert "managedFields" not in shown["metadata"]
