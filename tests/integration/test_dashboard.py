"""The dashboard in a real browser: Debian's headless chromium, driven by selenium through Debian's
chromedriver, against the dashboard process run on this host for the session's node lab.

The page logs in with the lab admin's token (and refuses a bad one with the API server's own words),
draws the architecture map with the lab's node and its pods' IPs, shows a Deployment's ReplicaSet and
Pods as kubectl lists them, and shows kube's 403 wording to a user without rights. With
``KUBELAB_SCREENSHOTS=docs/images`` each view is saved there (CI leaves the tree alone).
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelab_testing.browser import (
    WAIT,
    headless_chromium,
    log_in,
    pods_drawn,
    running_dashboard,
    services_drawn,
    text_of,
    wait_for,
)
from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from provisioner.lab.paths import LabPaths
from provisioner.lab.pki import ADMIN, Pki
from provisioner.project import ROOT
from provisioner.system import packages
from tests.support.components import require

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def admin_token(node_lab: Lab) -> str:
    return Pki(LabPaths(node_lab.root).pki).read_tokens()[ADMIN.key]


@pytest.fixture(scope="module")
def dashboard(node_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The dashboard on the host, with the lab's kubeconfig for the API server's address and CA (never
    its credentials: the page's token is used)."""
    with running_dashboard(node_lab.kubeconfig, log=tmp_path_factory.mktemp("dashboard") / "dashboard.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(packages.CHROMIUM, packages.CHROMEDRIVER)
    with headless_chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def workload(node_kubectl: Kubectl) -> Iterator[tuple[str, str]]:
    """A namespace with a two-replica Deployment whose pods run."""
    namespace = f"dash-{uuid.uuid4().hex[:6]}"
    node_kubectl.ok("create", "namespace", namespace)
    node_kubectl.ok("create", "deployment", "web", "--image=echo", "--replicas=2", "-n", namespace)
    try:
        done = node_kubectl("rollout", "status", "deployment/web", "-n", namespace, "--timeout=90s", timeout=100)
        assert done.ok, node_kubectl.ok("get", "pods", "-n", namespace, "-o", "yaml")
        yield namespace, "web"
    finally:
        node_kubectl.ok("delete", "namespace", namespace, "--wait=false")


def screenshot(browser: Any, name: str) -> None:
    directory = os.environ.get("KUBELAB_SCREENSHOTS")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(directory) / f"dashboard-{name}.png"))


def api_message(lab: Lab, token: str) -> str:
    """What the API server says to a SelfSubjectReview with ``token`` (as the login does)."""
    context = ssl.create_default_context(cafile=str(LabPaths(lab.root).pki / "ca.crt"))
    request = urllib.request.Request(
        f"https://127.0.0.1:{lab.api_port}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        data=json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=10):
            return ""
    except urllib.error.HTTPError as exc:
        return str(json.loads(exc.read())["message"])


def test_a_bad_token_shows_the_login_page_with_the_api_servers_message(
    browser: Any, dashboard: str, node_lab: Lab
) -> None:
    expected = api_message(node_lab, "not-a-token")
    assert expected
    log_in(browser, dashboard, "not-a-token")
    eventually(lambda: text_of(browser, "#login-error") == expected, timeout=WAIT, what="the API server's message")
    screenshot(browser, "login")


def test_the_map_names_the_node_with_its_pods_and_their_ips(
    browser: Any, dashboard: str, admin_token: str, node_kubectl: Kubectl, workload: tuple[str, str]
) -> None:
    log_in(browser, dashboard, admin_token)
    nodes = [n["metadata"]["name"] for n in node_kubectl.json("get", "nodes")["items"]]
    assert nodes
    for node in nodes:
        wait_for(browser, f'svg#architecture g.node[data-node="{node}"]')
    pods = node_kubectl.json("get", "pods", "-A")["items"]
    expected = {
        (p["spec"]["nodeName"], f"{p['metadata']['namespace']}/{p['metadata']['name']}", p["status"]["podIP"])
        for p in pods
        if p["spec"].get("nodeName") and p["status"].get("podIP")
    }
    assert any(ns == workload[0] for _node, ns_name, _ip in expected for ns in [ns_name.split("/")[0]])

    eventually(lambda: expected <= pods_drawn(browser), timeout=WAIT, what="every pod with its IP on the map")
    assert text_of(browser, "#apiserver").startswith("API server")
    assert "revision" in text_of(browser, "#etcd")
    screenshot(browser, "map")


def test_a_deployments_page_shows_its_replicaset_and_pods_as_kubectl_lists_them(
    browser: Any, dashboard: str, admin_token: str, node_kubectl: Kubectl, workload: tuple[str, str]
) -> None:
    from selenium.webdriver.common.by import By  # noqa: PLC0415

    namespace, name = workload
    browser.get(f"{dashboard}#/workloads")
    wait_for(browser, f'#deployments tr[data-deployment="{namespace}/{name}"] a').click()
    uid = node_kubectl.json("get", "deployment", name, "-n", namespace)["metadata"]["uid"]
    replicasets = [
        rs
        for rs in node_kubectl.json("get", "replicasets", "-n", namespace)["items"]
        if any(ref["uid"] == uid for ref in rs["metadata"].get("ownerReferences", []))
    ]
    wait_for(browser, "[data-replicaset]")
    shown = {e.get_attribute("data-replicaset") for e in browser.find_elements(By.CSS_SELECTOR, "[data-replicaset]")}
    assert shown == {rs["metadata"]["name"] for rs in replicasets}
    rs_uids = {rs["metadata"]["uid"] for rs in replicasets}
    pods = {
        p["metadata"]["name"]
        for p in node_kubectl.json("get", "pods", "-n", namespace)["items"]
        if any(ref["uid"] in rs_uids for ref in p["metadata"].get("ownerReferences", []))
    }
    rows = {
        e.get_attribute("data-pod") for e in browser.find_elements(By.CSS_SELECTOR, "[data-replicaset] tr[data-pod]")
    }
    assert rows == pods and len(pods) == 2
    screenshot(browser, "deployment")
    wait_for(browser, "tr[data-pod] a").click()
    wait_for(browser, "#logs")
    screenshot(browser, "pod")
    for view in ("services", "nodes", "events"):
        browser.get(f"{dashboard}#/{view}")
        wait_for(browser, f"table#{view}")
        screenshot(browser, view)


def test_a_deployments_trace_is_drawn_with_every_components_spans(
    browser: Any, dashboard: str, admin_token: str, node_kubectl: Kubectl, workload: tuple[str, str]
) -> None:
    namespace, name = workload
    annotations = node_kubectl.json("get", "deployment", name, "-n", namespace)["metadata"].get("annotations") or {}
    assert "tracing.kubelab.dev/traceparent" in annotations  # every lab traces a user's writes
    log_in(browser, dashboard, admin_token)
    wait_for(browser, "#nav:not([hidden])")
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"
    browser.get(f"{dashboard}#/trace?path={urllib.parse.quote(path, safe='')}")
    wait_for(browser, 'svg#timeline g.span[data-service="apiserver"]')
    wanted = {"apiserver", "controller-manager", "scheduler", "kubelet"}
    eventually(lambda: wanted <= services_drawn(browser), timeout=WAIT, what=f"spans of {sorted(wanted)}")
    screenshot(browser, "trace")


def test_a_user_without_rights_sees_kubes_forbidden_wording(
    browser: Any, dashboard: str, node_kubectl: Kubectl, workload: tuple[str, str]
) -> None:
    namespace, _name = workload
    node_kubectl.ok("create", "serviceaccount", "nobody", "-n", namespace)
    token = node_kubectl.ok("create", "token", "nobody", "-n", namespace).strip()
    log_in(browser, dashboard, token)
    wait_for(browser, "#nav:not([hidden])")
    browser.get(f"{dashboard}#/workloads")
    message = text_of(browser, ".status-box[data-code='403'] .status-message")
    assert message == (
        f'deployments.apps is forbidden: User "system:serviceaccount:{namespace}:nobody" cannot list resource'
        ' "deployments" in API group "apps" at the cluster scope'
    )


def test_kubelab_dashboard_opens_the_addon_through_the_api_servers_service_proxy(
    browser: Any, node_lab: Lab, node_kubectl: Kubectl
) -> None:
    """The add-on in its pod, reached as users reach it: ``kubelab dashboard``'s kubectl proxy, the API
    server's service proxy; the token cookie is scoped to the proxy's prefix."""
    enabled = node_lab.cli("addons", "enable", "dashboard", "--name", node_lab.name)
    assert enabled.ok, enabled.err
    try:
        rollout = ("rollout", "status", "deployment/dashboard", "-n", "kube-system", "--timeout=90s")
        node_kubectl.ok(*rollout, timeout=100)
        process = subprocess.Popen(
            [sys.executable, "-m", "provisioner.cli", "dashboard", "--name", node_lab.name],
            env={**os.environ, "KUBELAB_HOME": str(node_lab.home)},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            lines = [process.stdout.readline().strip() for _ in range(3)]
            assert lines[0].startswith("the dashboard: http://127.0.0.1:"), lines
            url, token = lines[0].removeprefix("the dashboard: "), lines[2]
            assert url.endswith("/api/v1/namespaces/kube-system/services/http:dashboard:http/proxy/")
            log_in(browser, url, token)
            wait_for(browser, "svg#architecture g.node")
            cookie = browser.get_cookie("kubelab-dashboard-token")
            assert cookie is not None and cookie["path"] == urllib.parse.urlsplit(url).path.rstrip("/")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=15) == 0
    finally:
        disabled = node_lab.cli("addons", "disable", "dashboard", "--name", node_lab.name)
        assert disabled.ok, disabled.err
