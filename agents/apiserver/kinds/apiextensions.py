"""Strategy for apiextensions.k8s.io/v1 CustomResourceDefinitions: the kinds users add to the API.

A definition named ``PLURAL.GROUP`` describes a kind the API server then serves under
``/apis/GROUP/VERSION`` (``agents/apiserver/customresources.py``). The checks are kube's
ValidateCustomResourceDefinition in its own words where practical: the name, the names, the scope,
exactly one storage version among the versions, at least one served, a structural schema for every
version (``crdschema.structural_errors``), well-formed subresources and printer columns. Only the
``None`` conversion strategy is offered (no conversion webhooks here).

As kube does, the strategy records the storage version in ``status.storedVersions``; the definition
carries the ``customresourcecleanup.apiextensions.k8s.io`` finalizer from its creation, so deleting it
leaves it Terminating until its objects are gone.
"""

from __future__ import annotations

import re
from typing import Any

from agents.apiserver import crdschema
from agents.apiserver import validation as v
from agents.apiserver.kinds.base import Strategy
from agents.apiserver.status import duplicate, invalid, not_supported, required
from agents.apiserver.validation import Errors
from agents.machinery.objects import Object

GROUP = "apiextensions.k8s.io"
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
SCOPES = ("Cluster", "Namespaced")
COLUMN_TYPES = ("integer", "number", "string", "boolean", "date")
CONVERSIONS = ("None",)
PROTECTED_GROUPS = (".k8s.io", ".kubernetes.io")  # kube's own; a definition there needs the approval
APPROVAL = "api-approved.kubernetes.io"


def storage_version(obj: Object) -> str:
    """The name of the version marked ``storage`` (the first, when the definition is invalid)."""
    for version in (obj.get("spec") or {}).get("versions") or []:
        if isinstance(version, dict) and version.get("storage"):
            return str(version.get("name") or "")
    return ""


def _names_errors(names: dict[str, Any], path: str) -> Errors:
    out: Errors = []
    for field in ("plural", "singular"):
        value = names.get(field)
        if field == "plural" and not value:
            out.append(required(f"{path}.plural"))
        elif value:
            out += v.name_errors(f"{path}.{field}", str(value), v.dns_label)
    kind, list_kind = names.get("kind"), names.get("listKind")
    if not kind:
        out.append(required(f"{path}.kind"))
    if not list_kind:
        out.append(required(f"{path}.listKind"))
    elif kind and list_kind == kind:
        out.append(invalid(f"{path}.listKind", list_kind, "kind and listKind may not be the same"))
    for field in ("kind", "listKind"):
        value = names.get(field)
        if value and not str(value)[0].isalpha():
            out.append(invalid(f"{path}.{field}", value, "must start with a letter"))
    for i, short in enumerate(names.get("shortNames") or []):
        out += v.name_errors(f"{path}.shortNames[{i}]", str(short), v.dns_label)
    for i, category in enumerate(names.get("categories") or []):
        out += v.name_errors(f"{path}.categories[{i}]", str(category), v.dns_label)
    return out


_FIELD_NAMES = re.compile(r"[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*")


def _simple_path(path: object, under: str) -> bool:
    """Whether a scale path is a dotted path of field names under ``under`` (no array notation)."""
    text = str(path)
    return text.startswith(under) and _FIELD_NAMES.fullmatch(text[len(under) :]) is not None


def _subresources_errors(subresources: dict[str, Any], path: str) -> Errors:
    out: Errors = []
    scale = subresources.get("scale")
    if isinstance(scale, dict):
        spec_path, status_path = scale.get("specReplicasPath"), scale.get("statusReplicasPath")
        if not spec_path:
            out.append(required(f"{path}.scale.specReplicasPath"))
        elif not _simple_path(spec_path, ".spec."):
            out.append(invalid(f"{path}.scale.specReplicasPath", spec_path, "should be a json path under .spec"))
        if not status_path:
            out.append(required(f"{path}.scale.statusReplicasPath"))
        elif not _simple_path(status_path, ".status."):
            out.append(invalid(f"{path}.scale.statusReplicasPath", status_path, "should be a json path under .status"))
        selector = scale.get("labelSelectorPath")
        if selector and not (_simple_path(selector, ".spec.") or _simple_path(selector, ".status.")):
            out.append(
                invalid(
                    f"{path}.scale.labelSelectorPath", selector, "should be a json path under either .spec or .status"
                )
            )
    return out


def _columns_errors(columns: list[Any], path: str) -> Errors:
    out: Errors = []
    for i, column in enumerate(columns):
        where = f"{path}[{i}]"
        if not isinstance(column, dict):
            out.append(invalid(where, column, "must be an object"))
            continue
        if not column.get("name"):
            out.append(required(f"{where}.name"))
        if not column.get("type"):
            out.append(required(f"{where}.type"))
        elif column["type"] not in COLUMN_TYPES:
            out.append(not_supported(f"{where}.type", column["type"], COLUMN_TYPES))
        if not column.get("jsonPath"):
            out.append(required(f"{where}.jsonPath"))
        elif not str(column["jsonPath"]).startswith("."):
            out.append(invalid(f"{where}.jsonPath", column["jsonPath"], "must be a simple json path starting with ."))
    return out


def _versions_errors(versions: Any, path: str) -> Errors:
    if not isinstance(versions, list) or not versions:
        return [invalid(path, versions or [], "must have exactly one version marked as storage version")]
    out: Errors = []
    seen: set[str] = set()
    storage = served = 0
    for i, version in enumerate(versions):
        where = f"{path}[{i}]"
        name = str(version.get("name") or "")
        if not name:
            out.append(required(f"{where}.name"))
        else:
            out += v.name_errors(f"{where}.name", name, v.dns1035_label)
            if name in seen:
                out.append(duplicate(f"{where}.name", name))
            seen.add(name)
        storage += bool(version.get("storage"))
        served += bool(version.get("served"))
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if schema is None:
            out.append(required(f"{where}.schema.openAPIV3Schema", "schemas are required"))
        else:
            out += crdschema.structural_errors(schema, f"{where}.schema.openAPIV3Schema")
        out += _subresources_errors(version.get("subresources") or {}, f"{where}.subresources")
        out += _columns_errors(version.get("additionalPrinterColumns") or [], f"{where}.additionalPrinterColumns")
    if storage != 1:
        out.append(invalid(path, versions, "must have exactly one version marked as storage version"))
    if not served:
        out.append(invalid(path, versions, "must have at least one version marked as served"))
    return out


def definition_errors(obj: Object) -> Errors:
    """What kube's ValidateCustomResourceDefinition finds wrong with a definition."""
    out: Errors = []
    spec: dict[str, Any] = obj.get("spec") or {}
    names: dict[str, Any] = spec.get("names") or {}
    name = str((obj.get("metadata") or {}).get("name", ""))
    group = str(spec.get("group") or "")
    if name != f"{names.get('plural', '')}.{group}":
        out.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if not group:
        out.append(required("spec.group"))
    elif (group.endswith(PROTECTED_GROUPS) or f".{group}".endswith(PROTECTED_GROUPS)) and APPROVAL not in (
        (obj.get("metadata") or {}).get("annotations") or {}
    ):
        out.append(
            required(
                f"metadata.annotations[{APPROVAL}]",
                f'protected groups must have approval annotation "{APPROVAL}", see'
                " https://github.com/kubernetes/enhancements/pull/1111",
            )
        )
    else:
        out += v.name_errors("spec.group", group, v.dns_subdomain)
        if "." not in group:
            out.append(invalid("spec.group", group, "should be a domain with at least one dot"))
    scope = spec.get("scope")
    if not scope:
        out.append(required("spec.scope"))
    elif scope not in SCOPES:
        out.append(not_supported("spec.scope", scope, SCOPES))
    out += _names_errors(names, "spec.names")
    out += _versions_errors(spec.get("versions"), "spec.versions")
    strategy = (spec.get("conversion") or {}).get("strategy", "None")
    if strategy not in CONVERSIONS:
        out.append(not_supported("spec.conversion.strategy", strategy, CONVERSIONS))
    if spec.get("preserveUnknownFields"):
        out.append(invalid("spec.preserveUnknownFields", True, "must be false in order to use defaults in the schema"))
    return out


class CustomResourceDefinitionStrategy(Strategy):
    def default(self, obj: Object) -> None:
        spec = obj.setdefault("spec", {})
        names = spec.setdefault("names", {})
        if names.get("kind"):
            names.setdefault("singular", str(names["kind"]).lower())
            names.setdefault("listKind", f"{names['kind']}List")
        spec.setdefault("conversion", {"strategy": "None"})
        meta = obj.setdefault("metadata", {})
        if not meta.get("deletionTimestamp") and CLEANUP_FINALIZER not in (meta.get("finalizers") or []):
            meta["finalizers"] = [*(meta.get("finalizers") or []), CLEANUP_FINALIZER]

    def initial_status(self, obj: Object) -> dict[str, Any] | None:
        stored = storage_version(obj)
        return {
            "conditions": [],
            "acceptedNames": {"plural": "", "kind": ""},
            "storedVersions": [stored] if stored else [],
        }

    def prepare_update(self, new: Object, old: Object) -> None:
        super().prepare_update(new, old)
        stored = storage_version(new)
        if stored:
            status = new.setdefault("status", {})
            versions = list(status.get("storedVersions") or [])
            if stored not in versions:
                status["storedVersions"] = [*versions, stored]

    def validate(self, obj: Object) -> Errors:
        return definition_errors(obj)

    def validate_update(self, new: Object, old: Object) -> Errors:
        out = self.validate(new)
        new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
        for field in ("scope", "group"):
            if new_spec.get(field) != old_spec.get(field):
                out.append(invalid(f"spec.{field}", new_spec.get(field), "field is immutable"))
        return out

    def validate_status(self, new: Object, old: Object) -> Errors:
        out: Errors = []
        for i, condition in enumerate((new.get("status") or {}).get("conditions") or []):
            if not condition.get("type"):
                out.append(required(f"status.conditions[{i}].type"))
            out += v.one_of(f"status.conditions[{i}].status", condition.get("status"), ("True", "False", "Unknown"))
        return out
