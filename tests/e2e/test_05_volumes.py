"""Scenario 5v: persistent volumes on the lab's virtual disks, on the VMs.

A claim of the default class (``standard``: WaitForFirstConsumer) and a pod pinned to one worker: the
scheduler chooses the node, the CSI provisioner has the cloud create a qcow2 volume in the lab's pool
(``virsh vol-list`` shows it, named after the PV), the attach/detach controller's VolumeAttachment
has the cloud hot-plug it into that worker (a virtio disk whose serial is the volume id), the kubelet
makes an ext4 filesystem, mounts it and bind-mounts it into the pod, which writes a token. The pod is
deleted and a new one pinned to the other worker reads the token back: the disk was detached from the
first machine and attached to the second. The claim then grows (the qcow2 and the filesystem); a
StatefulSet gets one claim per ordinal from its volumeClaimTemplates, kept when it scales to zero;
a claim of an unknown class and one bigger than the pool stay Pending with events saying why. Deleting
the namespace deletes the claims, so the PersistentVolumes and the cloud volumes go too. The figures
(claim -> pod Running, the move from one worker to the other) are printed as a JSON line.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

from kubelab_testing import volumes
from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from provisioner.drivers.libvirt import daemon as libvirthost


def _virsh(lab: Lab, *args: str) -> str:
    daemon = libvirthost.current()
    assert daemon is not None, "the lab's libvirt daemon is not running"
    argv = ["virsh", "-c", daemon.uri, *args]
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


def _cloud_volumes(lab: Lab, pool: str) -> str:
    return _virsh(lab, "vol-list", "--pool", pool)


def _events(kubectl: Kubectl, namespace: str, name: str) -> list[dict[str, Any]]:
    found = kubectl.json("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
    return list(found["items"])


def _event(kubectl: Kubectl, namespace: str, name: str, reason: str) -> str:
    for event in _events(kubectl, namespace, name):
        if event.get("reason") == reason:
            return str(event.get("message") or "")
    return ""


def test_a_claim_s_disk_follows_its_pod_from_one_worker_to_the_other(
    kubelab_lab: Lab, kubelab_kubectl: Kubectl
) -> None:
    lab, kubectl = kubelab_lab, kubelab_kubectl
    first, second = (w.name for w in lab.workers[:2])
    mover = volumes.Mover(kubectl, first, second)
    try:
        mover.create()
        claim = mover.claim()
        assert claim["status"]["phase"] == "Bound" and claim["spec"]["storageClassName"] == "standard"
        pv = kubectl.json("get", "pv", claim["spec"]["volumeName"])
        name, handle = pv["metadata"]["name"], pv["spec"]["csi"]["volumeHandle"]
        assert name == f"pvc-{claim['metadata']['uid']}" and pv["status"]["phase"] == "Bound"
        attached = [(a["spec"]["nodeName"], a["status"]["attached"]) for a in volumes.attachments_of(kubectl, name)]
        assert attached == [(first, True)]
        on_node = lab.ssh(first, f"findmnt -n -o SOURCE,FSTYPE --source $(readlink -f /dev/disk/by-id/virtio-{handle})")
        assert on_node.ok and "ext4" in on_node.out, (on_node.out, on_node.err)
        assert mover.read("writer") == mover.token

        mover.move()
        assert mover.read("reader") == mover.token
        assert [a["spec"]["nodeName"] for a in volumes.attachments_of(kubectl, name)] == [second]
        assert lab.ssh(first, f"test ! -e /dev/disk/by-id/virtio-{handle}").ok

        # growing the claim grows the disk and the filesystem the pod sees
        mover.grow("128Mi")
        df = kubectl.ok("exec", "reader", "-n", mover.namespace, "--", "df", "-k", "/data")
        size_kib = int(df.splitlines()[-1].split()[1])
        assert size_kib > 100 * 1024, size_kib
        pool = _pool_of(lab, name)

        # the claim goes with its namespace: the pod, the attachment, the PV and the cloud volume follow
        mover.delete(wait_for=name)
        assert name not in _cloud_volumes(lab, pool)
        print(json.dumps({"benchmark": "volumes", **{k: round(v, 1) for k, v in mover.figures.items()}}))
    finally:
        kubectl("delete", "namespace", mover.namespace, "--wait=false")


def _pool_of(lab: Lab, volume: str) -> str:
    """The libvirt pool holding the lab's cloud volume ``volume`` (named after its PV)."""
    for pool in _virsh(lab, "pool-list", "--name").split():
        if volume in _cloud_volumes(lab, pool):
            return pool
    raise AssertionError(f"no libvirt pool holds a volume named {volume}")


def test_a_stateful_set_gets_a_claim_per_ordinal_kept_when_it_scales_down(
    kubelab_lab: Lab, kubelab_kubectl: Kubectl
) -> None:
    kubectl = kubelab_kubectl
    namespace = f"vol-{uuid.uuid4().hex[:6]}"
    kubectl.ok("create", "namespace", namespace)
    try:
        set_ = {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": namespace},
            "spec": {
                "serviceName": "db",
                "replicas": 1,
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [
                            {
                                "name": "main",
                                "image": "busybox:1.35.0",
                                "command": ["sh", "-c", "hostname > /data/owner && exec sleep 3600"],
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            }
                        ],
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "32Mi"}}},
                    }
                ],
            },
        }
        kubectl.ok("apply", "-f", "-", stdin=manifest(set_))
        eventually(lambda: volumes.running(kubectl, namespace, "db-0"), timeout=300, what="pod db-0 to run")
        claim = kubectl.json("get", "pvc", "data-db-0", "-n", namespace)
        assert claim["status"]["phase"] == "Bound" and claim["metadata"]["labels"] == {"app": "db"}
        assert kubectl.ok("exec", "db-0", "-n", namespace, "--", "cat", "/data/owner").strip() == "db-0"
        kubectl.ok("scale", "statefulset", "db", "-n", namespace, "--replicas=0")
        eventually(lambda: kubectl("get", "pod", "db-0", "-n", namespace).code != 0, timeout=120, what="db-0 to go")
        assert kubectl.json("get", "pvc", "data-db-0", "-n", namespace)["status"]["phase"] == "Bound"
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")


def test_claims_nothing_can_satisfy_say_why(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    lab, kubectl = kubelab_lab, kubelab_kubectl
    namespace = f"vol-{uuid.uuid4().hex[:6]}"
    kubectl.ok("create", "namespace", namespace)
    try:
        kubectl.ok("apply", "-f", "-", stdin=manifest(volumes.claim("nowhere", namespace, "1Gi", "no-such-class")))
        eventually(
            lambda: (
                "no-such-class" in _event(kubectl, namespace, "nowhere", "ProvisioningFailed")
                or "no-such-class" in _event(kubectl, namespace, "nowhere", "FailedBinding")
            ),
            timeout=60,
            what="an event saying the class is missing",
        )
        kubectl.ok("apply", "-f", "-", stdin=manifest(volumes.claim("huge", namespace, "10Ti")))
        kubectl.ok(
            "apply",
            "-f",
            "-",
            stdin=manifest(volumes.pod("hungry", namespace, lab.workers[0].name, "sleep 3600", "huge")),
        )
        message = eventually(
            lambda: _event(kubectl, namespace, "huge", "ProvisioningFailed"), timeout=180, what="ProvisioningFailed"
        )
        assert "available" in message, message
        for name in ("nowhere", "huge"):
            assert kubectl.json("get", "pvc", name, "-n", namespace)["status"]["phase"] == "Pending"
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")
