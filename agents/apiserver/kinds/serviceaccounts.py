"""ServiceAccount admission for pods (kube's ServiceAccount admission plugin).

A pod runs as ``spec.serviceAccountName`` (``default`` when it names none). One naming another account
is refused while that account does not exist; ``default`` is not looked for (the serviceaccount
controller makes it in every new namespace, a moment after the namespace; the kubelet waits for it).
Unless the pod or its account sets ``automountServiceAccountToken: false``, the pod gets the projected
volume ``kube-api-access-XXXXX`` (a token for its account, bound to the pod, the cluster's CA from the
``kube-root-ca.crt`` ConfigMap, and its namespace), mounted read-only at
``/var/run/secrets/kubernetes.io/serviceaccount`` in every container: what in-cluster clients read.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from agents.apiserver.kinds.base import Admission
from agents.apiserver.status import StatusError
from agents.machinery.objects import Object

MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
VOLUME_PREFIX = "kube-api-access-"
ROOT_CA = "kube-root-ca.crt"
TOKEN_SECONDS = 3607  # kube's: an hour and a little, so that a refreshed token is told apart
_SUFFIX = string.ascii_lowercase + string.digits


def projected_volume() -> dict[str, Any]:
    suffix = "".join(secrets.choice(_SUFFIX) for _ in range(5))
    return {
        "name": f"{VOLUME_PREFIX}{suffix}",
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_SECONDS, "path": "token"}},
                {"configMap": {"name": ROOT_CA, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                        ]
                    }
                },
            ],
        },
    }


async def admit_pod(admission: Admission, pod: Object) -> None:
    spec = pod["spec"]
    name = spec.get("serviceAccountName") or "default"
    namespace = pod["metadata"].get("namespace", "")
    account = await admission.service_account(namespace, name)
    if account is None and name != "default":
        raise StatusError(
            403,
            "Forbidden",
            f'pods "{pod["metadata"].get("name", "")}" is forbidden: error looking up service account'
            f' {namespace}/{name}: serviceaccount "{name}" not found',
            details={"name": pod["metadata"].get("name", ""), "kind": "pods"},
        )
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = (account or {}).get("automountServiceAccountToken")
    if automount is False:
        return
    containers = [c for group in ("initContainers", "containers") for c in spec.get(group) or []]
    if any(m.get("mountPath") == MOUNT_PATH for c in containers for m in c.get("volumeMounts") or []):
        return  # the pod mounts something of its own there
    volume = projected_volume()
    spec.setdefault("volumes", []).append(volume)
    for container in containers:
        container.setdefault("volumeMounts", []).append(
            {"name": volume["name"], "readOnly": True, "mountPath": MOUNT_PATH}
        )
