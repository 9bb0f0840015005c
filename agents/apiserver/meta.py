"""Validation and bookkeeping of ``metadata`` common to every kind (apimachinery's ObjectMeta rules)."""

from __future__ import annotations

from typing import Any

from agents.apiserver import validation as v
from agents.apiserver.resources import Resource
from agents.apiserver.status import FieldError, invalid, required
from agents.apiserver.validation import Errors, NameCheck

SYSTEM_FIELDS = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
)


def validate(resource: Resource, meta: dict[str, Any], name_check: NameCheck) -> Errors:
    out: Errors = []
    name = meta.get("name", "")
    if not name:
        out.append(required("metadata.name", "name or generateName is required"))
    else:
        out += v.name_errors("metadata.name", name, name_check)
    if resource.namespaced:
        if not meta.get("namespace"):
            out.append(required("metadata.namespace"))
    elif meta.get("namespace"):
        out.append(FieldError("FieldValueForbidden", "metadata.namespace", "not allowed on this type"))
    out += v.label_map("metadata.labels", meta.get("labels"))
    out += v.annotation_map("metadata.annotations", meta.get("annotations"))
    for i, fin in enumerate(meta.get("finalizers") or []):
        out += v.qualified_name(f"metadata.finalizers[{i}]", fin)
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for field in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(field):
                out.append(required(f"metadata.ownerReferences[{i}].{field}"))
    controllers = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
    if len(controllers) > 1:
        out.append(
            invalid("metadata.ownerReferences", len(controllers), "Only one reference can have Controller set to true")
        )
    return out


def validate_update(new: dict[str, Any], old: dict[str, Any]) -> Errors:
    out: Errors = []
    for field in ("name", "namespace", "uid", "creationTimestamp"):
        if new.get(field) != old.get(field):
            out.append(invalid(f"metadata.{field}", new.get(field), "field is immutable"))
    return out


def keep_system_fields(new: dict[str, Any], old: dict[str, Any]) -> None:
    """What an update may not change is taken from the stored object (rest.BeforeUpdate)."""
    if not new.get("uid"):
        new["uid"] = old.get("uid")
    if old.get("creationTimestamp"):
        new["creationTimestamp"] = old["creationTimestamp"]
    for field in ("deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
        if field in old:
            new[field] = old[field]
        else:
            new.pop(field, None)
    new.pop("selfLink", None)
    if not new.get("managedFields"):  # none or [] sent: the stored ones stay (fieldmanager.py)
        new.pop("managedFields", None)
        if old.get("managedFields"):
            new["managedFields"] = old["managedFields"]
