"""The dashboard add-on and the request trace on the VMs, in a real browser (the long tier for now: it
belongs in the e2e tier once its two minutes fit the ladder's budget).

The dashboard add-on is enabled on the session's lab, opened as users open it (``kubelab dashboard``:
kubectl proxy, the API server's service proxy, the pod on a worker) in Debian's headless chromium,
and checked against the cluster: the map draws every VM node with the pods it runs and their IPs,
and the trace of a Deployment created here holds the steps of the API server, the controllers, the
scheduler, the kubelet that started its pod, and the proxies that programmed its Service; ``kubelab
trace`` prints the same trace in the terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kubelab_testing.browser import headless_chromium, log_in, pods_drawn, services_drawn, wait_for
from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from provisioner.project import ROOT
from provisioner.system import packages
from tests.support.components import require

WAIT = 60.0  # seconds a page may take on the VMs (the dashboard's pod and the API server on TCG)


@pytest.fixture(scope="module")
def dashboard(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> Iterator[tuple[str, str]]:
    """The add-on enabled and opened through ``kubelab dashboard``: its URL and the token it prints."""
    enabled = kubelab_lab.cli("addons", "enable", "dashboard", "--name", kubelab_lab.name)
    assert enabled.ok, enabled.err
    process: subprocess.Popen[str] | None = None
    try:
        kubelab_kubectl.ok(
            "rollout", "status", "deployment/dashboard", "-n", "kube-system", "--timeout=240s", timeout=250
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "provisioner.cli", "dashboard", "--name", kubelab_lab.name],
            env={**os.environ, "KUBELAB_HOME": str(kubelab_lab.home)},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(3)]
        assert lines[0].startswith("the dashboard: http://127.0.0.1:"), lines
        yield lines[0].removeprefix("the dashboard: "), lines[2]
    finally:
        if process is not None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=15)
        disabled = kubelab_lab.cli("addons", "disable", "dashboard", "--name", kubelab_lab.name)
        assert disabled.ok, disabled.err


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require(packages.CHROMIUM, packages.CHROMEDRIVER)
    with headless_chromium() as driver:
        yield driver


@pytest.fixture(scope="module")
def web(kubelab_kubectl: Kubectl) -> Iterator[str]:
    """A namespace with a two-replica Deployment behind a Service, its pods running."""
    namespace = f"dash-{uuid.uuid4().hex[:6]}"
    kubectl = kubelab_kubectl
    kubectl.ok("create", "namespace", namespace)
    try:
        kubectl.ok("create", "deployment", "web", "--image=echo:1.0", "--replicas=2", "--port=8080", "-n", namespace)
        kubectl.ok("expose", "deployment", "web", "--port=80", "--target-port=8080", "-n", namespace)
        kubectl.ok("rollout", "status", "deployment/web", "-n", namespace, "--timeout=240s", timeout=250)
        yield namespace
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")


def test_the_map_draws_every_vm_node_with_its_pods(
    browser: Any, dashboard: tuple[str, str], kubelab_lab: Lab, kubelab_kubectl: Kubectl, web: str
) -> None:
    url, token = dashboard
    log_in(browser, url, token)
    for node in kubelab_lab.nodes:
        wait_for(browser, f'svg#architecture g.node[data-node="{node.name}"]', timeout=WAIT)
    pods = kubelab_kubectl.json("get", "pods", "-n", web)["items"]
    expected = {(p["spec"]["nodeName"], f"{web}/{p['metadata']['name']}", p["status"]["podIP"]) for p in pods}

    eventually(
        lambda: expected <= pods_drawn(browser), timeout=WAIT, what="the Deployment's pods with their IPs on the map"
    )


def test_the_trace_holds_every_components_steps_in_the_browser_and_the_terminal(
    browser: Any, dashboard: tuple[str, str], kubelab_lab: Lab, web: str
) -> None:
    url, token = dashboard
    log_in(browser, url, token)
    wait_for(browser, "#nav:not([hidden])", timeout=WAIT)
    path = f"/apis/apps/v1/namespaces/{web}/deployments/web"
    browser.get(f"{url}#/trace?path={urllib.parse.quote(path, safe='')}")
    wanted = {"apiserver", "controller-manager", "scheduler", "kubelet"}
    eventually(lambda: wanted <= services_drawn(browser), timeout=WAIT, what=f"spans of {sorted(wanted)}")

    def printed() -> str:
        traced = kubelab_lab.cli("trace", "deployment/web", "-n", web, "--name", kubelab_lab.name)
        return traced.out if traced.ok and "proxy@" in traced.out else ""

    # the proxies' steps arrive once the endpoints are published: every node's proxy programs them
    timeline = eventually(printed, timeout=WAIT, what="the proxies' steps in kubelab trace")
    for step in ("create deployments", "schedule pod", "sync pod", "sync endpointslices", "nft apply"):
        assert step in timeline, timeline
