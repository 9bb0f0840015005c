"""The lab's cloud on real libvirt, and the cloud-controller-manager on a local lab's API server.

A domain of a lab of this test's own is defined in libvirt (not started: a cloud's instance may be
off); the cloud API (``python -m provisioner.drivers.libvirt.cloud``) serves it over TLS with its
token; the cloud-controller-manager (``python -m agents.controllers.cloud``) initializes the Node
named after it, which a kubelet under ``--cloud-provider=external`` would have registered with the
uninitialized taint; and once the domain is undefined by hand, deletes that Node when it is not Ready.
"""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelab_testing.commands import stop
from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab, free_port
from kubelab_testing.waiting import eventually
from provisioner.drivers.libvirt.hypervisor import Hypervisor
from provisioner.lab.pki import Pki
from tests.support.libvirtdomains import define_worker, undefine_all

UNINITIALIZED = "node.cloudprovider.kubernetes.io/uninitialized"


@pytest.fixture
def domain(libvirt_uri: str, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """(lab, domain name, domain UUID): a worker domain of a lab of this test's own, defined only."""
    lab = f"ccm{uuid.uuid4().hex[:6]}"
    machine, uid = define_worker(libvirt_uri, lab, subnet="192.168.211", bridge="klbrtest", files=tmp_path)
    try:
        yield lab, machine.name, uid
    finally:
        undefine_all(libvirt_uri, lab)


@pytest.fixture
def cloud(domain: tuple[str, str, str], libvirt_uri: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The cloud API of the test's lab on 127.0.0.1, and the files a client needs."""
    lab = domain[0]
    pki = Pki(tmp_path / "pki")
    pki.ensure_ca()
    pki.ensure_serving(dns_names=["localhost"], ips=["127.0.0.1"], name="cloud", common_name="kubelab-cloud")
    token = tmp_path / "cloud-token"
    token.write_text(secrets.token_hex(16))
    port = free_port()
    argv = [
        sys.executable, "-m", "provisioner.drivers.libvirt.cloud",
        "--lab", lab, "--uri", libvirt_uri, "--network-cidr", "192.168.211.0/24",
        "--address", "127.0.0.1", "--port", str(port),
        "--cert", str(pki.serving_cert("cloud")), "--key", str(pki.serving_key("cloud")), "--token-file", str(token),
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    config = tmp_path / "cloud.yaml"
    config.write_text(
        json.dumps({"url": f"https://127.0.0.1:{port}", "token-file": str(token), "ca-file": str(pki.ca_cert)})
    )
    found = {"url": f"https://127.0.0.1:{port}", "token": token.read_text(), "ca": str(pki.ca_cert), "config": config}
    try:
        eventually(lambda: _ask(found, "/v1/instances")[0] == 200, timeout=30, what="the cloud API to answer")
        yield found
    finally:
        stop(process)


def _ask(cloud: dict[str, Any], path: str, *, token: str | None = None) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=cloud["ca"])
    request = urllib.request.Request(
        cloud["url"] + path, headers={"Authorization": f"Bearer {cloud['token'] if token is None else token}"}
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except (urllib.error.URLError, ConnectionError):
        return 0, None


def test_the_cloud_api_describes_the_labs_domains_from_libvirt(
    cloud: dict[str, Any], domain: tuple[str, str, str]
) -> None:
    _lab, name, uid = domain
    code, listed = _ask(cloud, "/v1/instances")
    assert code == 200 and [i["name"] for i in listed["items"]] == [name]
    one = listed["items"][0]
    assert one["providerID"] == f"libvirt://{uid}" and one["state"] == "stopped"
    assert one["instanceType"] == "kubelab.1cpu.512mib" and one["region"] == "kubelab" and one["zone"]
    assert {"type": "InternalIP", "address": "192.168.211.11"} in one["addresses"]
    assert _ask(cloud, f"/v1/instances?providerID=libvirt://{uid}") == (200, one)
    assert _ask(cloud, "/v1/instances/nothing-here")[0] == 404
    assert _ask(cloud, "/v1/instances", token="wrong")[0] == 401


def test_the_cloud_controller_manager_initializes_a_node_and_deletes_it_when_its_machine_goes(
    lab: Lab, kubectl: Kubectl, cloud: dict[str, Any], domain: tuple[str, str, str], libvirt_uri: str
) -> None:
    lab_name, name, uid = domain
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": [{"key": UNINITIALIZED, "value": "true", "effect": "NoSchedule"}]},
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]},
    }
    kubectl.ok("create", "-f", "-", stdin=manifest(node))
    argv = [
        sys.executable, "-m", "agents.controllers.cloud",
        "--kubeconfig", str(lab.kubeconfig), "--cloud-config", str(cloud["config"]),
        "--leader-elect=false", "--node-monitor-period", "1",
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        eventually(
            lambda: kubectl.json("get", "node", name)["spec"].get("providerID") == f"libvirt://{uid}",
            timeout=60,
            what="the node initialized from the cloud",
        )
        got = kubectl.json("get", "node", name)
        assert not any(t["key"] == UNINITIALIZED for t in got["spec"].get("taints") or [])
        labels = got["metadata"]["labels"]
        assert labels["node.kubernetes.io/instance-type"] == "kubelab.1cpu.512mib"
        assert labels["topology.kubernetes.io/region"] == "kubelab" and labels["topology.kubernetes.io/zone"]
        assert {"type": "InternalIP", "address": "192.168.211.11"} in got["status"]["addresses"]
        # the machine is stopped and the node not Ready: it gets the shutdown taint
        eventually(
            lambda: any(
                t["key"] == "node.cloudprovider.kubernetes.io/shutdown"
                for t in kubectl.json("get", "node", name)["spec"].get("taints") or []
            ),
            timeout=30,
            what="the shutdown taint",
        )
        # the machine removed by hand: its Node goes
        with Hypervisor.open(libvirt_uri, lab_name) as hv:
            hv.domain(name).undefine()
        eventually(lambda: not kubectl("get", "node", name).ok, timeout=30, what="the node to be deleted")
        events = kubectl.ok("get", "events", "-A", "--field-selector", f"involvedObject.name={name}")
        assert "DeletingNode" in events and "Synced" in events
    finally:
        stop(process)
        kubectl("delete", "node", name, "--ignore-not-found")
        output = process.stdout.read() if process.stdout else ""
        print(output[-3000:])
