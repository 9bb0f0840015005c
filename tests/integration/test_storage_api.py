"""The storage kinds on the local lab, driven by the real kubectl: ``apply`` of a StorageClass, a
PersistentVolume and a claim, the columns ``kubectl get pv,pvc,sc`` prints, what admission gives a new
claim (the default class, the protection finalizer), ``explain``, and kube's errors. Classes and volumes
are cluster-wide: each test names its own and removes them; the claims live in the test's namespace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from kubelab_testing.kubectl import Kubectl, manifest

DRIVER = "disk.csi.kubelab.dev"


@pytest.fixture
def suffix(kubectl: Kubectl) -> Iterator[str]:
    """A name part of this test's own; its class and volume are removed afterwards (finalizers first: no
    node uses them, and the lab may run no controller that would lift them)."""
    tag = uuid.uuid4().hex[:8]
    yield tag
    for kind, name in (("pv", f"pv-{tag}"), ("storageclass", f"sc-{tag}")):
        kubectl("patch", kind, name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        kubectl("delete", kind, name, "--ignore-not-found", "--wait=false")


def test_kubectl_apply_and_get_show_kubes_columns_and_admission(kubectl: Kubectl, namespace: str, suffix: str) -> None:
    sc, pv, pvc = f"sc-{suffix}", f"pv-{suffix}", "data"
    objects = manifest(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": sc, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": DRIVER,
            "volumeBindingMode": "WaitForFirstConsumer",
            "allowVolumeExpansion": True,
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1024Mi"},
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "manual",
                "csi": {"driver": DRIVER, "volumeHandle": "vol-0123456789abcdef"},
            },
        },
    )
    kubectl.ok("apply", "-f", "-", stdin=objects)
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": pvc, "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    kubectl.ok("apply", "-f", "-", stdin=manifest(claim))
    try:
        got = kubectl.json("get", "pvc", pvc, "-n", namespace)
        assert got["spec"]["storageClassName"] == sc  # DefaultStorageClass: the newest default class
        assert "kubernetes.io/pvc-protection" in got["metadata"]["finalizers"]
        assert got["spec"]["volumeMode"] == "Filesystem"
        volume = kubectl.json("get", "pv", pv)
        assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
        assert "kubernetes.io/pv-protection" in volume["metadata"]["finalizers"]

        table = kubectl.ok("get", "pv", pv).splitlines()
        assert table[0].split() == [
            "NAME", "CAPACITY", "ACCESS", "MODES", "RECLAIM", "POLICY", "STATUS", "CLAIM", "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS", "REASON", "AGE",
        ]  # fmt: skip
        assert table[1].split()[:4] == [pv, "1Gi", "RWO", "Retain"]
        table = kubectl.ok("get", "pvc", "-n", namespace).splitlines()
        assert table[0].split() == [
            "NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS", "MODES", "STORAGECLASS", "VOLUMEATTRIBUTESCLASS", "AGE",
        ]  # fmt: skip
        assert table[1].split()[0] == pvc and sc in table[1].split()
        table = kubectl.ok("get", "sc", sc).splitlines()
        assert table[0].split() == [
            "NAME", "PROVISIONER", "RECLAIMPOLICY", "VOLUMEBINDINGMODE", "ALLOWVOLUMEEXPANSION", "AGE",
        ]  # fmt: skip
        assert table[1].split()[:6] == [sc, "(default)", DRIVER, "Delete", "WaitForFirstConsumer", "true"]
        combined = kubectl.ok("get", "pv,pvc,sc", "-n", namespace)
        assert f"persistentvolume/{pv}" in combined and f"storageclass.storage.k8s.io/{sc}" in combined
    finally:
        kubectl("patch", "pvc", pvc, "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        kubectl("delete", "pvc", pvc, "-n", namespace, "--ignore-not-found", "--wait=false")


def test_an_invalid_volume_and_a_changed_class_are_refused_in_kubes_words(kubectl: Kubectl, suffix: str) -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": f"pv-{suffix}"},
        "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}},
    }
    result = kubectl("apply", "-f", "-", stdin=manifest(bad))
    assert not result.ok
    assert "spec: Required value: must specify a volume type" in result.err
    sc = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": f"sc-{suffix}"},
        "provisioner": DRIVER,
    }
    kubectl.ok("apply", "-f", "-", stdin=manifest(sc))
    result = kubectl("apply", "-f", "-", stdin=manifest({**sc, "provisioner": "other.example.com"}))
    assert not result.ok
    assert "provisioner: Forbidden: updates to provisioner are forbidden." in result.err


def test_kubectl_explain_describes_the_storage_kinds(kubectl: Kubectl) -> None:
    assert "accessModes" in kubectl.ok("explain", "pvc.spec")
    explained = kubectl.ok("explain", "storageclass")
    assert "GROUP:      storage.k8s.io" in explained and "volumeBindingMode" in explained
    assert "nodeName" in kubectl.ok("explain", "volumeattachment.spec")
