"""The cluster DNS add-on on a local lab's real node: kube-dns pods answer pods' lookups of Services,
headless endpoints, StatefulSet pods, SRV and PTR records through the kube-dns Service, and the add-on
manager enables, disables and refuses add-ons."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from provisioner.addons.catalog import ADDONS
from provisioner.system import packages
from tests.integration.conftest import running_lab
from tests.support.components import require


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    require(packages.CONTAINERD, packages.RUNC, packages.CNI_BRIDGE, packages.NFT)
    with running_lab(tmp_path_factory.mktemp("dns-home"), "dns", "--nodes", "1") as running:
        yield running


@pytest.fixture(scope="module")
def k(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    kubectl = Kubectl(lab.kubeconfig, cache_dir=tmp_path_factory.mktemp("dns-kubectl"))
    eventually(lambda: ready_replicas(kubectl) == 2, timeout=120, what="both kube-dns replicas to be ready")
    return kubectl


def ready_replicas(k: Kubectl) -> int:
    found = k("get", "deployment", "kube-dns", "-n", "kube-system", "-o", "json")
    return (
        int(k.json("get", "deployment", "kube-dns", "-n", "kube-system")["status"].get("readyReplicas", 0))
        if found.ok
        else 0
    )


def run_pod(k: Kubectl, name: str, script: str, **spec: Any) -> str:
    """A busybox pod that runs ``script`` once; its output."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", script]}],
            **spec,
        },
    }
    k.ok("apply", "-f", "-", stdin=manifest(body))
    eventually(
        lambda: k.json("get", "pod", name)["status"].get("phase") in ("Succeeded", "Failed"),
        timeout=90,
        what=f"{name} to finish",
    )
    return k.ok("logs", name)


def test_pods_resolve_services_by_short_and_full_name(k: Kubectl) -> None:
    k.ok("create", "deployment", "web", "--image=nginx:1.14.2", "--port=80")
    k.ok("expose", "deployment", "web", "--port=80", "--name=web")
    ip = k.json("get", "service", "web")["spec"]["clusterIP"]
    eventually(lambda: k.json("get", "deployment", "web")["status"].get("readyReplicas") == 1, timeout=90, what="web")
    out = run_pod(
        k,
        "lookup",
        "nslookup web.default.svc.cluster.local; echo ==; nslookup kubernetes; echo ==;"
        " wget -qO- http://web.default/ | grep -o -m1 'Welcome to nginx' | head -1; echo ==;"
        f" nslookup deb.debian.org; echo ==; nslookup {ip}",
    )
    full, short, page, outside, reverse = out.split("==")
    assert f"Address: {ip}" in full and "Server:\t\t10.96.0.10" in full
    assert "Address: 10.96.0.1" in short  # the search path: kubernetes.default.svc.cluster.local
    # busybox's wget resolves through the C library and the pod's resolv.conf (search path, ndots:5)
    assert page.strip() == "Welcome to nginx"
    assert "NXDOMAIN" in outside  # no upstream: the lab is offline
    assert "web.default.svc.cluster.local" in reverse


def test_statefulset_pods_have_names_under_their_headless_service_and_srv_lists_them(k: Kubectl) -> None:
    # (busybox's nslookup tries the search path only for names without a dot: dotted ones are given whole)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"name": "redis", "port": 6379}]},
    }
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "serviceName": "db",
            "replicas": 2,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {
                    "containers": [
                        {"name": "redis", "image": "redis:7", "ports": [{"name": "redis", "containerPort": 6379}]}
                    ]
                },
            },
        },
    }
    k.ok("apply", "-f", "-", stdin=manifest(service) + "---\n" + manifest(sts))
    eventually(lambda: k.json("get", "statefulset", "db")["status"].get("readyReplicas") == 2, timeout=120, what="db")
    pod_ips = {p["metadata"]["name"]: p["status"]["podIP"] for p in k.json("get", "pods", "-l", "app=db")["items"]}
    out = run_pod(
        k,
        "sts-lookup",
        "nslookup db-0.db.default.svc.cluster.local; echo ==; nslookup db; echo ==;"
        " nslookup -type=srv _redis._tcp.db.default.svc.cluster.local",
    )
    first, both, srv = out.split("==")
    assert f"Address: {pod_ips['db-0']}" in first
    assert all(f"Address: {ip}" in both for ip in pod_ips.values())
    assert "db-0.db.default.svc.cluster.local" in srv and "db-1.db.default.svc.cluster.local" in srv and "6379" in srv


def test_a_new_service_answers_once_its_watch_event_arrived(k: Kubectl) -> None:
    k.ok("create", "service", "clusterip", "fresh", "--tcp=80:80")
    ip = k.json("get", "service", "fresh")["spec"]["clusterIP"]
    out = run_pod(k, "fresh-lookup", "nslookup fresh")
    assert f"Address: {ip}" in out
    k.ok("create", "service", "externalname", "alias", "--external-name=fresh.default.svc.cluster.local")
    out = run_pod(k, "alias-lookup", "nslookup alias")
    assert "canonical name = fresh.default.svc.cluster.local" in out and f"Address: {ip}" in out


def test_disable_leaves_nothing_behind_and_enable_brings_it_back(lab: Lab, k: Kubectl) -> None:
    off = lab.cli("addons", "disable", "dns", "--name", lab.name)
    assert off.ok, off.err
    assert "dns: disabled" in off.out

    def gone() -> bool:
        what = "all,serviceaccounts,endpointslices"
        return not k.ok("get", what, "-n", "kube-system", "-l", "k8s-app=kube-dns", "-o", "name").strip()

    eventually(gone, timeout=60, what="every kube-dns object to be gone")
    assert not k("get", "clusterrole", "system:kube-dns").ok
    listed = lab.cli("addons", "list", "--name", lab.name)
    assert listed.ok and any(line.split()[:3] == ["dns", "no", "not"] for line in listed.out.splitlines())
    on = lab.cli("addons", "enable", "dns", "--name", lab.name)
    assert on.ok, on.err
    eventually(lambda: ready_replicas(k) == 2, timeout=120, what="kube-dns to be back")
    listed = lab.cli("addons", "list", "--name", lab.name)
    assert "deployment/kube-dns 2/2 ready" in listed.out
    unknown = lab.cli("addons", "enable", "dsn", "--name", lab.name)
    assert not unknown.ok and unknown.err.strip().splitlines() == [
        "kubelab: no add-on named 'dsn'; known: dashboard, dns, ingress-nginx, metrics-server, storage"
        " (kubelab addons list)"
    ]


def test_disabling_metrics_server_takes_the_metrics_api_away(lab: Lab, k: Kubectl) -> None:
    off = lab.cli("addons", "disable", "metrics-server", "--name", lab.name)
    assert off.ok, off.err

    def gone() -> bool:
        what = "all,serviceaccounts,rolebindings"
        left = k.ok("get", what, "-n", "kube-system", "-l", "k8s-app=metrics-server", "-o", "name").strip()
        return not left and not k("get", "apiservice", "v1beta1.metrics.k8s.io").ok

    eventually(gone, timeout=60, what="every metrics-server object to be gone")
    for role in ("system:metrics-server", "system:aggregated-metrics-reader"):
        assert not k("get", "clusterrole", role).ok
    refused = k("top", "nodes")
    assert not refused.ok and "Metrics API not available" in refused.err
    assert k("get", "pods", "-A").ok  # the rest of the API is unaffected


def test_an_addon_manifest_the_api_server_refuses_stops_up_and_changes_nothing(
    lab: Lab, k: Kubectl, tmp_path: Path
) -> None:
    addons = tmp_path / "addons"
    shutil.copytree(ADDONS, addons)
    bad = addons / "broken"
    bad.mkdir()
    (bad / "addon.yaml").write_text("description: a broken add-on\ndefault: true\nimages: []\n")
    (bad / "a-config.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first-of-broken, namespace: kube-system}\ndata: {a: b}\n"
    )
    (bad / "b-deploy.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: broken, namespace: kube-system}\n"
        "spec: {replicas: -1, selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}},"
        " spec: {containers: [{name: c, image: busybox}]}}}\n"
    )
    up = lab.cli("up", "--name", lab.name, env={"KUBELAB_ADDONS_DIR": str(addons)})
    assert not up.ok
    last = up.err.strip().splitlines()[-1]
    assert last.startswith("kubelab: addons/broken/b-deploy.yaml (Deployment broken): ") and "spec.replicas" in last, (
        last
    )
    assert not k("get", "configmap", "first-of-broken", "-n", "kube-system").ok  # checked before anything was written
