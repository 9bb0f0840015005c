"""A small operator built with kopf, run by tests/integration/test_operator.py with ``kopf run``.

For every CronTab of the group named by ``KUBELAB_OPERATOR_GROUP`` it keeps a ConfigMap of the same
name holding the CronTab's schedule and image (owned by the CronTab), and reports in the CronTab's
status: ``phase: Reconciled`` and the ConfigMap's name. It is what an operator author writes; nothing
in it knows about kubelab. The kubeconfig comes from ``KUBECONFIG`` (the official client reads it).
"""

from __future__ import annotations

import os
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.rest import ApiException

GROUP = os.environ.get("KUBELAB_OPERATOR_GROUP", "kopf.kubelab.test")


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.watching.server_timeout = 60
    settings.posting.level = 40  # only errors become Events
    config.load_kube_config()


def _config_map(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {"schedule": str(spec.get("cronSpec", "")), "image": str(spec.get("image", ""))},
    }


@kopf.on.create(GROUP, "v1", "crontabs")
@kopf.on.update(GROUP, "v1", "crontabs")
@kopf.on.resume(GROUP, "v1", "crontabs")
def reconcile(spec: dict[str, Any], name: str, namespace: str, patch: kopf.Patch, **_: Any) -> None:
    wanted = _config_map(name, dict(spec))
    kopf.adopt(wanted)  # owned by the CronTab: the garbage collector removes it with it
    core = client.CoreV1Api()
    try:
        core.create_namespaced_config_map(namespace, wanted)
    except ApiException as exc:
        if exc.status != 409:
            raise
        core.replace_namespaced_config_map(name, namespace, wanted)
    patch.status["phase"] = "Reconciled"
    patch.status["configMap"] = name
