"""Claims and the pods that use them, for the e2e scenario and the benchmark of persistent volumes.

``Mover`` follows one claim through what a user does with it: a pod pinned to one worker writes a
token on the claim's disk (the claim provisioned, attached, formatted and mounted on the way), the pod
is deleted and one pinned to the other worker reads the token back (the disk detached and attached
again), and the claim grows. Each step's time is kept, as the clock of this process sees kubectl's
answers: a step ends when kubectl first shows its result.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.waiting import eventually

IMAGE = "busybox:1.35.0"
TOKEN_PATH = "/data/token"


def claim(name: str, namespace: str, size: str, storage_class: str | None = None) -> dict[str, Any]:
    """A ReadWriteOnce claim of ``size`` (the default class unless ``storage_class`` names one)."""
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def pod(name: str, namespace: str, node: str, command: str, claim_name: str = "data") -> dict[str, Any]:
    """A pod on ``node`` (by its hostname label: the scheduler still chooses) mounting the claim at /data."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": IMAGE,
                    "command": ["sh", "-c", command],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
        },
    }


def running(kubectl: Kubectl, namespace: str, name: str) -> bool:
    found = kubectl("get", "pod", name, "-n", namespace, "-o", "json")
    return found.ok and json.loads(found.out)["status"].get("phase") == "Running"


def attachments_of(kubectl: Kubectl, volume: str) -> list[dict[str, Any]]:
    """The VolumeAttachments of PersistentVolume ``volume``."""
    found = kubectl.json("get", "volumeattachments")["items"]
    return [a for a in found if (a["spec"].get("source") or {}).get("persistentVolumeName") == volume]


@dataclass
class Mover:
    """One claim in a namespace of its own, moved from worker ``first`` to worker ``second``."""

    kubectl: Kubectl
    first: str
    second: str
    size: str = "64Mi"
    namespace: str = field(default_factory=lambda: f"vol-{uuid.uuid4().hex[:6]}")
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    figures: dict[str, float] = field(default_factory=dict)
    timeout: float = 300.0

    def create(self) -> None:
        """The claim and the writer pod on ``first``; returns once the pod runs (``claim_to_running_s``)."""
        self.kubectl.ok("create", "namespace", self.namespace)
        started = time.monotonic()
        self.kubectl.ok("apply", "-f", "-", stdin=manifest(claim("data", self.namespace, self.size)))
        writer = f"echo {self.token} > {TOKEN_PATH} && sync && exec sleep 3600"
        self.kubectl.ok("apply", "-f", "-", stdin=manifest(pod("writer", self.namespace, self.first, writer)))
        eventually(
            lambda: running(self.kubectl, self.namespace, "writer"), timeout=self.timeout, what="the writer to run"
        )
        self.figures["claim_to_running_s"] = time.monotonic() - started

    def claim(self) -> dict[str, Any]:
        found: dict[str, Any] = self.kubectl.json("get", "pvc", "data", "-n", self.namespace)
        return found

    def read(self, pod_name: str) -> str:
        return self.kubectl.ok("exec", pod_name, "-n", self.namespace, "--", "cat", TOKEN_PATH).strip()

    def move(self) -> None:
        """The writer deleted, a reader on ``second`` running (``move_s``: the delete to Running)."""
        moved = time.monotonic()
        self.kubectl.ok("delete", "pod", "writer", "-n", self.namespace, "--wait=true", timeout=self.timeout)
        self.kubectl.ok(
            "apply", "-f", "-", stdin=manifest(pod("reader", self.namespace, self.second, "exec sleep 3600"))
        )
        eventually(
            lambda: running(self.kubectl, self.namespace, "reader"), timeout=self.timeout, what="the reader to run"
        )
        self.figures["move_s"] = time.monotonic() - moved

    def grow(self, size: str) -> None:
        """The claim's request raised to ``size``; returns once its status says so (``expand_s``)."""
        grown = time.monotonic()
        body = json.dumps({"spec": {"resources": {"requests": {"storage": size}}}})
        self.kubectl.ok("patch", "pvc", "data", "-n", self.namespace, "-p", body)
        eventually(
            lambda: self.claim()["status"].get("capacity", {}).get("storage") == size,
            timeout=self.timeout,
            what=f"the claim's capacity to become {size}",
        )
        self.figures["expand_s"] = time.monotonic() - grown

    def delete(self, *, wait_for: str = "") -> None:
        """The namespace deleted; with ``wait_for`` (a PV's name), until that PV is gone (``delete_s``)."""
        gone = time.monotonic()
        self.kubectl("delete", "namespace", self.namespace, "--wait=false")
        if wait_for:
            eventually(
                lambda: not self.kubectl("get", "pv", wait_for).ok,
                timeout=self.timeout,
                what=f"PersistentVolume {wait_for} to be deleted",
            )
            self.figures["delete_s"] = time.monotonic() - gone
