"""The real kubectl against ``kubelab up --driver local``: what a user types, and what they see."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.apiserver.server import version_info
from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.waiting import eventually


def deployment(
    name: str, *, replicas: int = 2, image: str = "busybox:1.36", containers: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": containers or [{"name": "main", "image": image}]},
            },
        },
    }


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}}, "data": data}


class TestApply:
    def test_apply_creates_then_reports_unchanged_then_configures_changes(
        self, kubectl: Kubectl, namespace: str
    ) -> None:
        first = kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(deployment("web")))
        assert "deployment.apps/web created" in first
        again = kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(deployment("web")))
        assert "deployment.apps/web unchanged" in again
        changed = deployment("web", replicas=4, image="busybox:1.37")
        changed["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "MODE", "value": "blue"}]
        third = kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(changed))
        assert "deployment.apps/web configured" in third
        obj = kubectl.json("get", "deployment", "web", "-n", namespace)
        container = obj["spec"]["template"]["spec"]["containers"][0]
        assert obj["spec"]["replicas"] == 4
        assert container["image"] == "busybox:1.37"
        assert container["env"] == [{"name": "MODE", "value": "blue"}]
        assert obj["metadata"]["generation"] == 2

    def test_reapply_without_a_field_removes_it(self, kubectl: Kubectl, namespace: str) -> None:
        with_env = deployment("web")
        with_env["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(with_env))
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(deployment("web")))
        container = kubectl.json("get", "deploy", "web", "-n", namespace)["spec"]["template"]["spec"]["containers"][0]
        assert "env" not in container

    def test_server_defaults_are_filled_in_as_kubernetes_does(self, kubectl: Kubectl, namespace: str) -> None:
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(deployment("web", image="busybox")))
        obj = kubectl.json("get", "deployment", "web", "-n", namespace)
        spec = obj["spec"]
        pod = spec["template"]["spec"]
        assert spec["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
        }
        assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (10, 600)
        assert (pod["restartPolicy"], pod["dnsPolicy"], pod["terminationGracePeriodSeconds"]) == (
            "Always",
            "ClusterFirst",
            30,
        )
        assert pod["containers"][0]["imagePullPolicy"] == "Always"  # untagged image
        assert obj["metadata"]["uid"] and obj["metadata"]["creationTimestamp"]
        assert int(obj["metadata"]["resourceVersion"]) > 0

    def test_dry_run_server_validates_but_stores_nothing(self, kubectl: Kubectl, namespace: str) -> None:
        out = kubectl.ok("apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=manifest(configmap("dry")))
        assert "(server dry run)" in out
        missing = kubectl("get", "configmap", "dry", "-n", namespace)
        assert missing.code != 0 and "NotFound" in missing.err


class TestGet:
    def test_get_prints_kubernetes_columns_and_wide_columns(self, kubectl: Kubectl, namespace: str) -> None:
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(deployment("web", replicas=3)))

        def table() -> list[str]:
            return kubectl.ok("get", "deployments", "-n", namespace).splitlines()

        assert table()[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
        # three pods made, none ready (no nodes), once the deployment controller has written its status
        eventually(
            lambda: table()[1].split()[:4] == ["web", "0/3", "3", "0"], timeout=15, what="the deployment's status"
        )
        wide = kubectl.ok("get", "deployments", "-n", namespace, "-o", "wide").splitlines()
        assert wide[0].split()[-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
        assert wide[1].split()[-3:] == ["main", "busybox:1.36", "app=web"]

    def test_get_pods_shows_ready_status_restarts_and_node_when_wide(self, kubectl: Kubectl, namespace: str) -> None:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "solo"},
            "spec": {"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}]},
        }
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(pod))
        rows = kubectl.ok("get", "pods", "-n", namespace, "-o", "wide").splitlines()
        assert rows[0].split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert rows[1].split()[:4] == ["solo", "0/2", "Pending", "0"]
        assert rows[1].split()[5:7] == ["<none>", "<none>"]  # no IP, no node yet

    def test_output_yaml_json_and_jsonpath(self, kubectl: Kubectl, namespace: str) -> None:
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(configmap("settings", color="blue")))
        assert "color: blue" in kubectl.ok("get", "cm", "settings", "-n", namespace, "-o", "yaml")
        assert kubectl.json("get", "cm", "settings", "-n", namespace)["data"] == {"color": "blue"}
        assert kubectl.ok("get", "cm", "settings", "-n", namespace, "-o", "jsonpath={.data.color}") == "blue"

    def test_chunked_lists_page_with_limit_and_continue(self, kubectl: Kubectl, namespace: str) -> None:
        kubectl.ok(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=manifest(*[configmap(f"cm-{i}", {"batch": "one"}) for i in range(7)]),
        )
        result = kubectl("get", "cm", "-n", namespace, "-l", "batch=one", "--chunk-size=2", "-o", "name", "-v=6")
        assert result.ok, result.err
        assert sorted(result.out.split()) == [f"configmap/cm-{i}" for i in range(7)]
        assert result.err.count("limit=2") >= 4  # four pages: 2+2+2+1

    def test_label_selectors_of_every_form(self, kubectl: Kubectl, namespace: str) -> None:
        kubectl.ok(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=manifest(
                configmap("a", {"tier": "front", "env": "prod"}),
                configmap("b", {"tier": "back", "env": "prod"}),
                configmap("c", {"tier": "front"}),
                configmap("d", {}),
            ),
        )

        def names(selector: str) -> list[str]:
            out = kubectl.ok("get", "cm", "-n", namespace, "-l", selector, "-o", "jsonpath={.items[*].metadata.name}")
            return sorted(n for n in out.split() if n != "kube-root-ca.crt")

        assert names("tier=front") == ["a", "c"]
        assert names("tier==front,env=prod") == ["a"]
        assert names("tier!=front") == ["b", "d"]
        assert names("tier in (front,back)") == ["a", "b", "c"]
        assert names("tier notin (front)") == ["b", "d"]
        assert names("env") == ["a", "b"]
        assert names("!env") == ["c", "d"]

    def test_field_selectors(self, kubectl: Kubectl, namespace: str) -> None:
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(configmap("one"), configmap("two")))
        out = kubectl.ok("get", "cm", "-n", namespace, "--field-selector", "metadata.name=two", "-o", "name")
        assert out.split() == ["configmap/two"]
        bad = kubectl("get", "cm", "-n", namespace, "--field-selector", "spec.color=red")
        assert bad.code != 0 and "field label not supported: spec.color" in bad.err

    def test_get_all_namespaces_shows_the_namespace_column(self, kubectl: Kubectl, namespace: str) -> None:
        out = kubectl.ok("get", "services", "-A").splitlines()
        assert out[0].split()[:3] == ["NAMESPACE", "NAME", "TYPE"]
        assert any(line.split()[:4] == ["default", "kubernetes", "ClusterIP", "10.96.0.1"] for line in out[1:])


class TestDescribeAndExplain:
    def test_describe_tells_the_story_with_events(self, kubectl: Kubectl, namespace: str) -> None:
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(deployment("web")))
        uid = kubectl.json("get", "deploy", "web", "-n", namespace)["metadata"]["uid"]
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "web.scaled"},
            "involvedObject": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "web",
                "namespace": namespace,
                "uid": uid,
            },
            "reason": "ScalingReplicaSet",
            "message": "Scaled up replica set web-1 to 2",
            "type": "Normal",
            "source": {"component": "deployment-controller"},
            "count": 1,
            "firstTimestamp": "2026-01-01T00:00:00Z",
            "lastTimestamp": "2026-01-01T00:00:00Z",
        }
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(event))
        text = kubectl.ok("describe", "deployment", "web", "-n", namespace)
        assert re.search(r"Replicas:\s+2 desired", text)
        assert re.search(r"Image:\s+busybox:1.36", text)
        assert "ScalingReplicaSet" in text and "Scaled up replica set web-1 to 2" in text
        rows = kubectl.ok("get", "events", "-n", namespace).splitlines()
        assert rows[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        assert any("deployment/web" in row for row in rows[1:])

    def test_explain_prints_field_documentation(self, kubectl: Kubectl) -> None:
        text = kubectl.ok("explain", "deployment.spec.strategy")
        assert "KIND:       Deployment" in text and "VERSION:    v1" in text
        assert "rollingUpdate" in text and "Type of deployment." in text
        pods = kubectl.ok("explain", "pods.spec.containers.ports")
        assert re.search(r"containerPort\s+<integer> -required-", pods)


class TestEdits:
    def test_strategic_merge_patch_merges_containers_by_name(self, kubectl: Kubectl, namespace: str) -> None:
        two = deployment(
            "web", containers=[{"name": "app", "image": "busybox:1.36"}, {"name": "sidecar", "image": "busybox:1.36"}]
        )
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(two))
        kubectl.ok(
            "patch",
            "deployment",
            "web",
            "-n",
            namespace,
            "-p",
            json.dumps({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "busybox:1.37"}]}}}}),
        )
        containers = kubectl.json("get", "deploy", "web", "-n", namespace)["spec"]["template"]["spec"]["containers"]
        assert [(c["name"], c["image"]) for c in containers] == [("app", "busybox:1.37"), ("sidecar", "busybox:1.36")]

    def test_json_and_merge_patches(self, kubectl: Kubectl, namespace: str) -> None:
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(deployment("web")))
        kubectl.ok(
            "patch",
            "deploy",
            "web",
            "-n",
            namespace,
            "--type=json",
            "-p",
            '[{"op":"replace","path":"/spec/replicas","value":5}]',
        )
        kubectl.ok("patch", "deploy", "web", "-n", namespace, "--type=merge", "-p", '{"metadata":{"labels":{"x":"y"}}}')
        obj = kubectl.json("get", "deploy", "web", "-n", namespace)
        assert obj["spec"]["replicas"] == 5 and obj["metadata"]["labels"] == {"app": "web", "x": "y"}
        failed = kubectl(
            "patch",
            "deploy",
            "web",
            "-n",
            namespace,
            "--type=json",
            "-p",
            '[{"op":"test","path":"/spec/replicas","value":9}]',
        )
        assert failed.code != 0

    def test_label_and_annotate(self, kubectl: Kubectl, namespace: str) -> None:
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(configmap("c")))
        kubectl.ok("label", "cm", "c", "-n", namespace, "team=blue")
        kubectl.ok("annotate", "cm", "c", "-n", namespace, "note=hello")
        meta = kubectl.json("get", "cm", "c", "-n", namespace)["metadata"]
        assert meta["labels"] == {"team": "blue"} and meta["annotations"]["note"] == "hello"
        kubectl.ok("label", "cm", "c", "-n", namespace, "team-")
        assert "labels" not in kubectl.json("get", "cm", "c", "-n", namespace)["metadata"]

    def test_scale_uses_the_scale_subresource(self, kubectl: Kubectl, namespace: str) -> None:
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(deployment("web")))
        assert "deployment.apps/web scaled" in kubectl.ok("scale", "deploy", "web", "-n", namespace, "--replicas=7")
        assert kubectl.json("get", "deploy", "web", "-n", namespace)["spec"]["replicas"] == 7
        stale = kubectl("scale", "deploy", "web", "-n", namespace, "--replicas=1", "--current-replicas=3")
        assert stale.code != 0

    def test_replace_with_a_stale_resource_version_is_a_conflict(self, kubectl: Kubectl, namespace: str) -> None:
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(configmap("c", color="red")))
        old = kubectl.json("get", "cm", "c", "-n", namespace)
        kubectl.ok("patch", "cm", "c", "-n", namespace, "-p", '{"data":{"color":"green"}}')
        old["data"]["color"] = "blue"
        result = kubectl("replace", "-f", "-", stdin=json.dumps(old))
        assert result.code != 0
        assert "Conflict" in result.err and "the object has been modified" in result.err


class TestDelete:
    def test_delete_waits_until_the_object_is_gone(self, kubectl: Kubectl, namespace: str) -> None:
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(deployment("web")))
        assert 'deployment.apps "web" deleted' in kubectl.ok("delete", "deploy", "web", "-n", namespace)
        gone = kubectl("get", "deploy", "web", "-n", namespace)
        assert gone.code != 0 and "NotFound" in gone.err

    def test_finalizers_hold_an_object_until_they_are_removed(self, kubectl: Kubectl, namespace: str) -> None:
        held = configmap("held")
        held["metadata"]["finalizers"] = ["example.com/hold"]
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(held))
        kubectl.ok("delete", "cm", "held", "-n", namespace, "--wait=false")
        meta = kubectl.json("get", "cm", "held", "-n", namespace)["metadata"]
        assert meta["deletionTimestamp"] and meta["finalizers"] == ["example.com/hold"]
        kubectl.ok(
            "patch",
            "cm",
            "held",
            "-n",
            namespace,
            "--type=json",
            "-p",
            '[{"op":"remove","path":"/metadata/finalizers"}]',
        )
        eventually(
            lambda: kubectl("get", "cm", "held", "-n", namespace).code != 0, timeout=15, what="the configmap to go"
        )

    def test_deleting_a_namespace_empties_it_then_removes_it(self, kubectl: Kubectl) -> None:
        kubectl.ok("apply", "-f", "-", stdin='{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"doomed"}}')
        held = configmap("held")
        held["metadata"]["finalizers"] = ["kubelab.io/test-hold"]  # keeps the namespace Terminating
        kubectl.ok("apply", "-n", "doomed", "-f", "-", stdin=manifest(held, configmap("plain")))
        kubectl.ok("delete", "namespace", "doomed", "--wait=false")
        assert kubectl.json("get", "namespace", "doomed")["status"]["phase"] == "Terminating"
        refused = kubectl("apply", "-n", "doomed", "-f", "-", stdin=manifest(configmap("late")))
        assert refused.code != 0 and "being terminated" in refused.err
        eventually(
            lambda: kubectl("get", "cm", "plain", "-n", "doomed").code != 0,
            timeout=15,
            what="the namespace's contents deleted",
        )
        kubectl.ok("patch", "cm", "held", "-n", "doomed", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        eventually(
            lambda: kubectl("get", "namespace", "doomed").code != 0, timeout=15, what="the empty namespace removed"
        )
        system = kubectl("delete", "namespace", "kube-system", "--wait=false")
        assert system.code != 0 and "may not be deleted" in system.err


class TestWatch:
    def test_get_watch_prints_live_changes(self, kubectl: Kubectl, namespace: str) -> None:
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(configmap("first")))
        # every namespace holds kube-root-ca.crt too (the root CA publisher's, made when the namespace was)
        watcher = kubectl.popen(
            "get",
            "cm",
            "-n",
            namespace,
            "-w",
            "--output-watch-events",
            "--request-timeout=30s",
            "--field-selector=metadata.name!=kube-root-ca.crt",
        )
        try:
            time.sleep(0)  # the watch is established by the time the first line (the list) arrives
            assert watcher.stdout is not None
            header = watcher.stdout.readline()
            assert header.split()[:2] == ["EVENT", "NAME"]
            first = watcher.stdout.readline()
            assert first.split()[:2] == ["ADDED", "first"]
            kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(configmap("second")))
            kubectl.ok("label", "cm", "second", "-n", namespace, "x=y")
            kubectl.ok("delete", "cm", "second", "-n", namespace)
            seen = [watcher.stdout.readline().split()[:2] for _ in range(3)]
            assert seen == [["ADDED", "second"], ["MODIFIED", "second"], ["DELETED", "second"]]
        finally:
            watcher.terminate()
            watcher.wait(timeout=10)


class TestErrors:
    def test_an_invalid_manifest_names_the_field_and_stores_nothing(self, kubectl: Kubectl, namespace: str) -> None:
        bad = deployment("bad")
        bad["spec"]["replicas"] = -1
        bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
        del bad["spec"]["template"]["spec"]["containers"][0]["image"]
        result = kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest(bad))
        assert result.code != 0
        assert 'The Deployment "bad" is invalid' in result.err
        assert "spec.replicas: Invalid value: -1: must be greater than or equal to 0" in result.err
        assert "spec.template.spec.containers[0].image: Required value" in result.err
        assert "`selector` does not match template `labels`" in result.err
        assert kubectl("get", "deploy", "bad", "-n", namespace).code != 0

    def test_an_unknown_field_is_refused(self, kubectl: Kubectl, namespace: str) -> None:
        doc = configmap("x")
        doc["spec"] = {"color": "red"}
        result = kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest(doc))
        assert result.code != 0 and 'strict decoding error: unknown field "spec"' in result.err

    def test_a_value_of_the_wrong_type_is_a_bad_request(self, kubectl: Kubectl, namespace: str) -> None:
        doc = deployment("typed")
        doc["spec"]["replicas"] = "three"
        result = kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            stdin=manifest(doc),
        )
        assert result.code != 0 and "BadRequest" in result.err and "spec.replicas" in result.err

    def test_an_unknown_kind_has_no_mapping(self, kubectl: Kubectl, namespace: str) -> None:
        doc = {"apiVersion": "v1", "kind": "Flurb", "metadata": {"name": "x"}}
        result = kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest(doc))
        assert result.code != 0 and 'no matches for kind "Flurb" in version "v1"' in result.err

    def test_a_missing_or_wrong_token_is_unauthorized(self, kubectl: Kubectl, tmp_path: Path) -> None:
        # the lab's kubeconfig authenticates by its client certificate: a user of the same cluster
        # with a made-up token and no certificate
        document = yaml.safe_load(kubectl.kubeconfig.read_text())
        document["users"][0]["user"] = {"token": "not-a-real-token"}
        stranger = tmp_path / "kubeconfig"
        stranger.write_text(yaml.safe_dump(document))
        # kubectl's words for a 401 answer to its first (discovery) request
        said = "error: You must be logged in to the server (the server has asked for the client to provide credentials)"
        result = Kubectl(stranger)("get", "pods")
        assert result.code != 0 and said in result.err

    def test_creating_an_existing_object_is_a_conflict(self, kubectl: Kubectl, namespace: str) -> None:
        kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(configmap("twice")))
        result = kubectl("create", "-n", namespace, "-f", "-", stdin=manifest(configmap("twice")))
        assert result.code != 0 and 'configmaps "twice" already exists' in result.err


def test_server_side_health_and_version(kubectl: Kubectl) -> None:
    assert kubectl.ok("get", "--raw", "/readyz") == "ok"
    assert "[+]etcd ok" in kubectl.ok("get", "--raw", "/readyz?verbose")
    version = json.loads(kubectl.ok("version", "-o", "json"))  # a version-skew warning goes to stderr
    served = version_info()
    assert version["serverVersion"]["major"] == served["major"] == "1"
    assert version["serverVersion"]["minor"] == served["minor"]
    assert version["serverVersion"]["gitVersion"] == served["gitVersion"]


@pytest.mark.parametrize(
    "resource",
    [
        "pods",
        "nodes",
        "services",
        "deployments",
        "replicasets",
        "statefulsets",
        "daemonsets",
        "jobs",
        "cronjobs",
        "configmaps",
        "secrets",
        "events",
        "serviceaccounts",
        "endpoints",
        "endpointslices",
        "leases",
        "namespaces",
        "controllerrevisions",
    ],
)
def test_every_served_resource_lists(kubectl: Kubectl, resource: str) -> None:
    result = kubectl("get", resource, "-A")
    assert result.ok, result.err


def test_api_resources_lists_groups_short_names_and_kinds(kubectl: Kubectl) -> None:
    out = kubectl.ok("api-resources")
    for row in (
        ["deployments", "deploy", "apps/v1", "true", "Deployment"],
        ["pods", "po", "v1", "true", "Pod"],
        ["leases", "coordination.k8s.io/v1", "true", "Lease"],
    ):
        assert any(line.split() == row for line in out.splitlines()), row


class TestCreateGenerators:
    """``kubectl create <kind>`` sends protobuf bodies (kubectl's typed clients do)."""

    def test_create_deployment_configmap_secret_service_and_job(self, kubectl: Kubectl, namespace: str) -> None:
        ns = ["-n", namespace]
        kubectl.ok("create", "deployment", "web", "--image=busybox:1.36", "--replicas=3", "--port=80", *ns)
        kubectl.ok("create", "configmap", "settings", "--from-literal=color=blue", *ns)
        kubectl.ok("create", "secret", "generic", "creds", "--from-literal=password=s3cret", *ns)
        kubectl.ok("create", "service", "nodeport", "web", "--tcp=80:8080", *ns)
        kubectl.ok("create", "job", "once", "--image=busybox", *ns, "--", "echo", "hi")
        deploy = kubectl.json("get", "deployment", "web", *ns)
        assert deploy["spec"]["replicas"] == 3
        assert deploy["spec"]["template"]["spec"]["containers"][0]["ports"] == [
            {"containerPort": 80, "protocol": "TCP"}
        ]
        assert kubectl.json("get", "configmap", "settings", *ns)["data"] == {"color": "blue"}
        assert kubectl.ok("get", "secret", "creds", *ns, "-o", "jsonpath={.data.password}") == "czNjcmV0"
        ports = kubectl.json("get", "service", "web", *ns)["spec"]["ports"][0]
        assert ports["targetPort"] == 8080 and 30000 <= ports["nodePort"] <= 32767
        job = kubectl.json("get", "job", "once", *ns)
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"

    def test_run_creates_a_pod(self, kubectl: Kubectl, namespace: str) -> None:
        kubectl.ok("run", "solo", "--image=busybox", "--restart=Never", "-n", namespace, "--", "sleep", "60")
        pod = kubectl.json("get", "pod", "solo", "-n", namespace)
        assert pod["spec"]["containers"][0]["args"] == ["sleep", "60"] and pod["status"]["phase"] == "Pending"


def test_kubectl_edit_changes_the_object(kubectl: Kubectl, namespace: str, tmp_path: Path) -> None:
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(deployment("web", replicas=2)))
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/replicas: 2/replicas: 5/' \"$1\"\n")
    editor.chmod(0o755)
    result = subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(kubectl.kubeconfig),
            "--cache-dir",
            str(kubectl.cache_dir),
            "edit",
            "deployment",
            "web",
            "-n",
            namespace,
        ],
        env={**os.environ, "KUBE_EDITOR": str(editor)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/web edited" in result.stdout
    assert kubectl.json("get", "deploy", "web", "-n", namespace)["spec"]["replicas"] == 5
