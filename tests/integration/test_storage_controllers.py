"""The controller-manager's storage controllers in a running lab (control plane only), driven by kubectl:
binding a static volume, releasing it, the protection finalizers, and the events a claim gets when
nothing can serve it. The attach/detach path needs nodes and disks: the VM lab's e2e tests cover it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.volumes import claim
from kubelab_testing.waiting import eventually
from tests.integration.conftest import running_lab


@pytest.fixture(scope="module")
def storage_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("kubelab-storage"), "sttest") as running:
        yield running


@pytest.fixture(scope="module")
def kubectl(storage_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(storage_lab.kubeconfig, cache_dir=tmp_path_factory.mktemp("kubectl-storage"))


@pytest.fixture
def ns(kubectl: Kubectl) -> str:
    name = f"st-{uuid.uuid4().hex[:8]}"
    kubectl.ok("create", "namespace", name)
    return name


def volume(name: str, size: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": f"/tmp/{name}"},
        },
    }


def events_of(kubectl: Kubectl, namespace: str, name: str) -> list[tuple[str, str]]:
    items = kubectl.json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["reason"], e["message"]) for e in items]


def test_a_claim_binds_the_smallest_fitting_volume_which_is_released_and_deleted_after_it(
    kubectl: Kubectl, ns: str
) -> None:
    small, fits = f"{ns}-small", f"{ns}-fits"
    kubectl.ok("apply", "-f", "-", stdin=manifest(volume(small, "1Gi")))
    kubectl.ok("apply", "-f", "-", stdin=manifest(volume(fits, "3Gi")))
    kubectl.ok("apply", "-f", "-", stdin=manifest(claim("data", ns, "2Gi", storage_class="")))

    def bound() -> Any:
        found = kubectl.json("get", "pvc", "data", "-n", ns)
        return found if found["status"].get("phase") == "Bound" else None

    found = eventually(bound, timeout=30, what="claim Bound")
    assert found["spec"]["volumeName"] == fits
    assert found["metadata"]["annotations"]["pv.kubernetes.io/bind-completed"] == "yes"
    assert kubectl.json("get", "pv", fits)["status"]["phase"] == "Bound"
    assert kubectl.json("get", "pv", small)["status"]["phase"] == "Available"

    kubectl.ok("delete", "pvc", "data", "-n", ns, "--wait=true", timeout=60)  # no pod uses it: the finalizer goes
    eventually(lambda: kubectl.json("get", "pv", fits)["status"]["phase"] == "Released", timeout=30, what="Released")
    kubectl.ok("delete", "pv", fits, small, "--wait=true", timeout=60)  # not bound: pv-protection lets go


def test_a_claim_nothing_can_serve_says_why(kubectl: Kubectl, ns: str) -> None:
    kubectl.ok("apply", "-f", "-", stdin=manifest(claim("gold", ns, "1Gi", storage_class="gold")))
    kubectl.ok("apply", "-f", "-", stdin=manifest(claim("none", ns, "50Ti", storage_class="")))
    missing = ("ProvisioningFailed", 'storageclass.storage.k8s.io "gold" not found')
    eventually(lambda: missing in events_of(kubectl, ns, "gold"), timeout=30, what="ProvisioningFailed")
    no_class = ("FailedBinding", "no persistent volumes available for this claim and no storage class is set")
    eventually(lambda: no_class in events_of(kubectl, ns, "none"), timeout=30, what="FailedBinding")
    assert kubectl.json("get", "pvc", "gold", "-n", ns)["status"]["phase"] == "Pending"


def test_an_external_provisioner_is_asked_through_the_claim(kubectl: Kubectl, ns: str) -> None:
    cls = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": f"{ns}-ext"},
        "provisioner": "example.com/nobody",
        "volumeBindingMode": "Immediate",
    }
    kubectl.ok("apply", "-f", "-", stdin=manifest(cls))
    kubectl.ok("apply", "-f", "-", stdin=manifest(claim("data", ns, "1Gi", storage_class=f"{ns}-ext")))

    def annotated() -> Any:
        found = kubectl.json("get", "pvc", "data", "-n", ns)
        return (found["metadata"].get("annotations") or {}).get("volume.kubernetes.io/storage-provisioner")

    assert eventually(annotated, timeout=30, what="storage-provisioner annotation") == "example.com/nobody"

    def told() -> bool:
        return any(reason == "ExternalProvisioning" for reason, _ in events_of(kubectl, ns, "data"))

    eventually(told, timeout=30, what="ExternalProvisioning")
    kubectl.ok("delete", "storageclass", f"{ns}-ext")
