"""``kubelab dashboard``: open the dashboard add-on from this host.

It runs ``kubectl proxy`` on a free loopback port with the lab's kubeconfig, so the browser reaches
the dashboard exactly as a cluster's users do: through the API server's service proxy
(``/api/v1/namespaces/kube-system/services/http:dashboard:http/proxy/``), authenticated as the
admin by kubectl. The page itself then asks for a bearer token, with which it acts; the one printed
is the lab's admin static token (``kubelab-admin``, in ``system:masters``: the same identity as the
lab's kubeconfig), so no ServiceAccount is made for it. It runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import time

import yaml

from provisioner.cli.lab import existing, say
from provisioner.errors import ProvisionError
from provisioner.lab.apiclient import LabApi
from provisioner.lab.paths import LabPaths
from provisioner.lab.pki import ADMIN, Pki

SERVICE = "/api/v1/namespaces/kube-system/services/dashboard"
PROXY_PATH = "/api/v1/namespaces/kube-system/services/http:dashboard:http/proxy/"
STARTED = re.compile(r"Starting to serve on (\S+):(\d+)")
START_TIMEOUT = 15.0


class DashboardError(ProvisionError):
    """The dashboard cannot be opened: not enabled, no kubectl, no admin token."""


def server_of(kubeconfig: str, fallback: str) -> str:
    """The API server's URL in the lab's kubeconfig (the admin's), else ``fallback``."""
    try:
        with open(kubeconfig) as handle:
            return str(yaml.safe_load(handle)["clusters"][0]["cluster"]["server"])
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return fallback


def admin_token(paths: LabPaths) -> str:
    token = Pki(paths.pki).read_tokens().get(ADMIN.key, "")
    if not token:
        raise DashboardError(f"the lab has no admin token in {Pki(paths.pki).tokens}: run kubelab up again")
    return token


def url_of(host: str, port: int) -> str:
    return f"http://{host}:{port}{PROXY_PATH}"


def start_proxy(kubeconfig: str) -> tuple[subprocess.Popen[str], str]:
    """``kubectl proxy`` on a free port (kubectl picks it: ``--port=0``) and the dashboard's URL under it."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise DashboardError("kubectl is not installed: the dashboard is reached through kubectl proxy")
    process = subprocess.Popen(
        [kubectl, "--kubeconfig", kubeconfig, "proxy", "--address=127.0.0.1", "--port=0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        found = STARTED.search(line)
        if found:
            return process, url_of(found.group(1), int(found.group(2)))
    process.kill()
    process.wait()
    raise DashboardError("kubectl proxy did not start serving (see: kubectl proxy --port=0)")


def run(args: argparse.Namespace) -> int:
    driver = existing(args.name)
    kubeconfig = str(driver.paths.kubeconfig)
    api = LabApi(server_of(kubeconfig, f"https://127.0.0.1:{driver.spec.api_port}"), driver.paths)
    found = api.ask("GET", SERVICE, timeout=10)
    if found.code == 404:
        raise DashboardError("the dashboard add-on is not enabled: kubelab addons enable dashboard")
    if found.code != 200:
        raise DashboardError(f"the lab's API server did not answer: {found.error}")
    token = admin_token(driver.paths)
    process, url = start_proxy(kubeconfig)
    try:
        say(f"the dashboard: {url}")
        say(f"log in with the lab admin's token ({ADMIN.user}):")
        say(token)
        say("(kubectl proxy forwards it; Ctrl-C stops)")
        process.wait()
        raise DashboardError(f"kubectl proxy stopped (exit code {process.returncode})")
    except KeyboardInterrupt:
        return 0
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)
