"""A claim's whole life on the control plane and the lab's cloud on real libvirt (no VM booted).

The local lab's API server and controller-manager (the persistent volume controller, the protection
controllers) and the cloud-controller-manager's CSI controllers (provisioner, attacher, resizer) run
against the cloud API of a lab of this test's own, whose one worker domain is defined but off. A claim
of an Immediate class of the lab's driver is handed to the CSI provisioner, which has the cloud create
a qcow2 volume (``virsh vol-list`` shows it) and the PersistentVolume the controller binds; a
VolumeAttachment for the domain's node has the cloud put the disk, with the volume id as its serial,
into the domain's definition; growing the claim grows the qcow2 and leaves the filesystem to the node
(``FileSystemResizePending``); deleting the attachment takes the disk out; deleting the claim deletes
the PersistentVolume and the volume. A claim bigger than the pool fails provisioning with the pool's
figures and stays Pending.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.controllers.cloud import csi
from kubelab_testing import volumes
from kubelab_testing.commands import stop
from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from tests.integration.test_cloud_volumes import _inactive_xml, _virsh, cloud_lab  # noqa: F401

pytestmark = pytest.mark.integration

CLASS = "itest-disks"


def attachment_name(volume: str, driver: str, node: str) -> str:
    """kube's name of the VolumeAttachment of ``volume`` on ``node``."""
    return "csi-" + hashlib.sha256(f"{volume}{driver}{node}".encode()).hexdigest()


@pytest.fixture
def csi_controllers(lab: Lab, cloud_lab: dict[str, Any], tmp_path: Path) -> Iterator[subprocess.Popen[str]]:  # noqa: F811
    """The cloud-controller-manager running the lab's CSI controllers against ``cloud_lab``."""
    token = tmp_path / "ccm-token"
    token.write_text(cloud_lab["token"])
    config = tmp_path / "cloud-config.yaml"
    config.write_text(yaml.safe_dump({"url": cloud_lab["url"], "token-file": str(token), "ca-file": cloud_lab["ca"]}))
    argv = [
        sys.executable, "-m", "agents.controllers.cloud",
        "--kubeconfig", str(lab.kubeconfig), "--cloud-config", str(config), "--leader-elect=false",
        "--controllers", "csi-provisioner,csi-attacher,csi-resizer",
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield process
    finally:
        stop(process)
        print((process.stdout.read() if process.stdout else "")[-4000:])


def _storage_class() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": CLASS},
        "provisioner": csi.DRIVER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": True,
    }


def _reason(kubectl: Kubectl, namespace: str, name: str, reason: str) -> str:
    found = kubectl.json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
    return next((str(e.get("message")) for e in found["items"] if e.get("reason") == reason), "")


def test_a_claim_is_provisioned_attached_grown_detached_and_deleted_through_the_cloud(
    lab: Lab,
    kubectl: Kubectl,
    cloud_lab: dict[str, Any],  # noqa: F811
    csi_controllers: subprocess.Popen[str],
) -> None:
    namespace, machine = f"st-{uuid.uuid4().hex[:6]}", cloud_lab["machine"]
    kubectl.ok("apply", "-f", "-", stdin=manifest(_storage_class()))
    kubectl.ok("create", "namespace", namespace)
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": machine}}
    kubectl.ok("create", "-f", "-", stdin=manifest(node))
    try:
        kubectl.ok("apply", "-f", "-", stdin=manifest(volumes.claim("data", namespace, "64Mi", CLASS)))
        eventually(
            lambda: kubectl.json("get", "pvc", "data", "-n", namespace)["status"].get("phase") == "Bound",
            timeout=60,
            what="the claim to be bound to a provisioned volume",
        )
        claim = kubectl.json("get", "pvc", "data", "-n", namespace)
        pv_name = claim["spec"]["volumeName"]
        assert pv_name == f"pvc-{claim['metadata']['uid']}"
        assert claim["metadata"]["annotations"][csi.PROVISIONER_ANNOTATION] == csi.DRIVER
        pv = kubectl.json("get", "pv", pv_name)
        handle = pv["spec"]["csi"]["volumeHandle"]
        assert pv["spec"]["capacity"]["storage"] == "64Mi" and pv["status"]["phase"] == "Bound"
        assert pv_name in _virsh(cloud_lab, "vol-list", "--pool", cloud_lab["pool"])
        assert (
            _reason(kubectl, namespace, "data", "ProvisioningSucceeded") == f"Successfully provisioned volume {pv_name}"
        )

        # a pod bound to the machine's node: the attach/detach controller wants the volume there
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "user", "namespace": namespace},
            "spec": {
                "nodeName": machine,
                "containers": [{"name": "main", "image": "busybox:1.35.0", "command": ["sleep", "3600"]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
            },
        }
        kubectl.ok("apply", "-f", "-", stdin=manifest(pod))
        va = attachment_name(pv_name, csi.DRIVER, machine)

        def attached() -> bool:
            found = kubectl("get", "volumeattachment", va, "-o", "json")
            return found.ok and json.loads(found.out).get("status", {}).get("attached") is True

        eventually(attached, timeout=60, what="the volume to be attached")
        status = kubectl.json("get", "volumeattachment", va)["status"]
        assert status["attachmentMetadata"]["serial"] == handle
        assert f"<serial>{handle}</serial>" in _inactive_xml(cloud_lab)

        kubectl.ok(
            "patch", "pvc", "data", "-n", namespace, "-p", '{"spec":{"resources":{"requests":{"storage":"128Mi"}}}}'
        )
        eventually(
            lambda: kubectl.json("get", "pv", pv_name)["spec"]["capacity"]["storage"] == "128Mi",
            timeout=60,
            what="the volume to grow",
        )
        conditions = kubectl.json("get", "pvc", "data", "-n", namespace)["status"].get("conditions") or []
        assert [c["type"] for c in conditions] == ["FileSystemResizePending"]
        assert "128.00 MiB" in _virsh(cloud_lab, "vol-info", "--pool", cloud_lab["pool"], pv_name)

        # the pod goes (no kubelet runs there: at once); the node does not use the volume, so it is detached
        kubectl.ok("delete", "pod", "user", "-n", namespace, "--grace-period=0", "--force")
        eventually(lambda: not kubectl("get", "volumeattachment", va).ok, timeout=60, what="the attachment to go")
        assert handle not in _inactive_xml(cloud_lab)

        kubectl.ok("delete", "pvc", "data", "-n", namespace, "--wait=true", timeout=120)
        eventually(lambda: not kubectl("get", "pv", pv_name).ok, timeout=60, what="the PersistentVolume to go")
        assert pv_name not in _virsh(cloud_lab, "vol-list", "--pool", cloud_lab["pool"])

        kubectl.ok("apply", "-f", "-", stdin=manifest(volumes.claim("huge", namespace, "10Ti", CLASS)))
        message = eventually(
            lambda: _reason(kubectl, namespace, "huge", "ProvisioningFailed"), timeout=60, what="ProvisioningFailed"
        )
        assert f'failed to provision volume with StorageClass "{CLASS}"' in message and "available" in message
        assert kubectl.json("get", "pvc", "huge", "-n", namespace)["status"]["phase"] == "Pending"
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")
        kubectl("delete", "node", machine, "--ignore-not-found")
        kubectl("delete", "storageclass", CLASS, "--ignore-not-found")
