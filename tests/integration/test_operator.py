"""An operator built with kopf, unchanged, reconciles a custom resource on the local lab.

``kopf run --standalone`` (no peering objects) watches CronTabs in one namespace; for each it creates a
ConfigMap and sets the CronTab's status (tests/support/kopf_operator.py). The test sees both happen
within a bounded time, changes the CronTab and sees the ConfigMap follow, then stops the operator with
SIGINT and sees it exit cleanly. kopf must be installed (the dev extra): a missing kopf fails the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually

OPERATOR = Path(__file__).resolve().parent.parent / "support" / "kopf_operator.py"
RECONCILE_SECONDS = 60.0
STOP_SECONDS = 30.0


def definition(group: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"crontabs.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"cronSpec": {"type": "string"}, "image": {"type": "string"}},
                                },
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture
def group(kubectl: Kubectl) -> Iterator[str]:
    name = f"op{uuid.uuid4().hex[:8]}.kubelab.test"
    kubectl.ok("apply", "-f", "-", stdin=manifest(definition(name)))
    kubectl.ok("wait", "--for=condition=Established", f"crd/crontabs.{name}", "--timeout=30s")
    yield name
    kubectl("delete", "crd", f"crontabs.{name}", "--ignore-not-found", "--wait=true", timeout=60)


@pytest.fixture
def operator(lab: Lab, namespace: str, group: str, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    try:
        import kopf  # noqa: F401, PLC0415 - only to fail plainly when the dev extra lacks it
    except ImportError:
        pytest.fail("kopf is not installed: it is in the dev extra (make venv)")
    env = {**os.environ, "KUBECONFIG": str(lab.kubeconfig), "KUBELAB_OPERATOR_GROUP": group}
    log = (tmp_path / "kopf.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "kopf", "run", "--standalone", "--namespace", namespace, str(OPERATOR)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
        print((tmp_path / "kopf.log").read_text()[-4000:])


def test_kopf_operator_reconciles_a_custom_resource(
    kubectl: Kubectl, namespace: str, group: str, operator: subprocess.Popen[str]
) -> None:
    crontab: dict[str, Any] = {
        "apiVersion": f"{group}/v1",
        "kind": "CronTab",
        "metadata": {"name": "nightly"},
        "spec": {"cronSpec": "0 3 * * *", "image": "backup:1"},
    }
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(crontab))

    def config_map() -> dict[str, Any] | None:
        found = kubectl("get", "-n", namespace, "configmap", "nightly", "-o", "json")
        return dict(json.loads(found.out)) if found.ok else None

    made = eventually(config_map, timeout=RECONCILE_SECONDS, what="the operator's ConfigMap")
    assert made["data"] == {"schedule": "0 3 * * *", "image": "backup:1"}
    assert made["metadata"]["ownerReferences"][0]["kind"] == "CronTab"

    def status() -> dict[str, Any]:
        got = kubectl.json("get", "-n", namespace, f"crontabs.{group}", "nightly")
        return dict(got.get("status") or {})

    reported = eventually(lambda: status().get("phase") == "Reconciled" and status(), timeout=RECONCILE_SECONDS)
    assert reported["configMap"] == "nightly"

    crontab["spec"]["image"] = "backup:2"
    kubectl.ok("apply", "-n", namespace, "-f", "-", stdin=manifest(crontab))
    eventually(
        lambda: (config_map() or {}).get("data", {}).get("image") == "backup:2",
        timeout=RECONCILE_SECONDS,
        what="the ConfigMap following the change",
    )

    assert operator.poll() is None, "the operator exited early"
    operator.send_signal(signal.SIGINT)
    assert operator.wait(timeout=STOP_SECONDS) == 0
