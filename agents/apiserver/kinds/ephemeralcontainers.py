"""The ``pods/NAME/ephemeralcontainers`` subresource: how a running pod is given a debugging container.

A pod's spec is immutable but for a few fields; ephemeral containers (``kubectl debug``) are added
through this subresource, which reads and writes the whole Pod yet changes nothing of it but
``spec.ephemeralContainers``, and that only by adding: kube's podEphemeralContainersStrategy. The
regular pod update may not touch them, and a pod may not be created with them.
"""

from __future__ import annotations

import json
from typing import Any

from agents.apiserver.status import forbidden
from agents.apiserver.validation import Errors
from agents.machinery.objects import Object, deep_copy

SUBRESOURCE = "ephemeralcontainers"
PATH = "spec.ephemeralContainers"


def ephemeral_containers(pod: Object) -> list[dict[str, Any]]:
    return list((pod.get("spec") or {}).get("ephemeralContainers") or [])


def updated(wanted: Object, current: Object) -> Object:
    """The stored pod with the ephemeral containers the caller sent, and nothing else of its body."""
    new = deep_copy(current)
    new.setdefault("spec", {})["ephemeralContainers"] = deep_copy(ephemeral_containers(wanted))
    return new


def validate_change(new: Object, old: Object) -> Errors:
    """Existing ephemeral containers may be neither removed nor changed (kube's wording); a static
    (mirror) pod takes none."""
    annotations = (old.get("metadata") or {}).get("annotations") or {}
    if "kubernetes.io/config.mirror" in annotations:
        return [forbidden("", "static pods do not support ephemeral containers")]
    out: Errors = []
    wanted = {c.get("name"): c for c in ephemeral_containers(new)}
    for before in ephemeral_containers(old):
        name = before.get("name")
        after = wanted.get(name)
        if after is None:
            out.append(forbidden(PATH, f'existing ephemeral containers "{name}" may not be removed\n'))
        elif after != before:
            change = json.dumps({"old": before, "new": after}, sort_keys=True)
            out.append(forbidden(PATH, f'existing ephemeral containers "{name}" may not be changed\n{change}'))
    return out


def forbidden_on_create(pod: Object) -> Errors:
    """kube's ValidatePodCreate: a new pod has no ephemeral containers."""
    if ephemeral_containers(pod):
        return [forbidden(PATH, "cannot be set on create")]
    return []
