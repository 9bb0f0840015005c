"""Strategy for apiregistration.k8s.io/v1 APIServices: the registrations the aggregation layer routes by.

An APIService named ``VERSION.GROUP`` claims ``/apis/GROUP/VERSION`` for the Service it names (or, with
no Service, for this server itself: a "local" one). Defaults and checks follow kube's own: the Service's
port defaults to 443; the priorities are positive and bounded; a local APIService carries no TLS
settings; ``insecureSkipTLSVerify`` and ``caBundle`` exclude each other.
"""

from __future__ import annotations

from typing import Any

from agents.apiserver import validation as v
from agents.apiserver.kinds.base import Strategy
from agents.apiserver.status import invalid, required
from agents.apiserver.validation import Errors
from agents.machinery.objects import Object

DEFAULT_SERVICE_PORT = 443
MAX_GROUP_PRIORITY = 20000
MAX_VERSION_PRIORITY = 1000


def apiservice_errors(obj: Object) -> Errors:
    """What kube's ValidateAPIService finds wrong with an APIService."""
    out: Errors = []
    spec: dict[str, Any] = obj.get("spec") or {}
    name = str((obj.get("metadata") or {}).get("name", ""))
    group, version = str(spec.get("group") or ""), str(spec.get("version") or "")
    if name != f"{version}.{group}":
        out.append(invalid("metadata.name", name, 'must be `spec.version+"."+spec.group`'))
    if not group and version != "v1":
        out.append(required("spec.group", "only v1 may have an empty group and it better be legacy kube"))
    elif group:
        out += v.name_errors("spec.group", group, v.dns_subdomain)
    if not version:
        out.append(required("spec.version"))
    else:
        out += v.name_errors("spec.version", version, v.dns1035_label)
    group_priority = spec.get("groupPriorityMinimum", 0)
    if not isinstance(group_priority, int) or not 0 < group_priority <= MAX_GROUP_PRIORITY:
        out.append(
            invalid("spec.groupPriorityMinimum", group_priority, f"must be positive and less than {MAX_GROUP_PRIORITY}")
        )
    version_priority = spec.get("versionPriority", 0)
    if not isinstance(version_priority, int) or not 0 < version_priority <= MAX_VERSION_PRIORITY:
        out.append(
            invalid("spec.versionPriority", version_priority, f"must be positive and less than {MAX_VERSION_PRIORITY}")
        )
    service = spec.get("service")
    insecure, ca_bundle = bool(spec.get("insecureSkipTLSVerify")), spec.get("caBundle")
    if service is None:
        if ca_bundle:
            out.append(invalid("spec.caBundle", "(bytes)", "local APIServices may not have a caBundle"))
        if insecure:
            out.append(
                invalid("spec.insecureSkipTLSVerify", True, "local APIServices may not have insecureSkipTLSVerify")
            )
    else:
        if not service.get("namespace"):
            out.append(required("spec.service.namespace"))
        if not service.get("name"):
            out.append(required("spec.service.name"))
        if "port" in service:
            out += v.port_number("spec.service.port", service["port"])
    if insecure and ca_bundle:
        out.append(invalid("spec.insecureSkipTLSVerify", True, "may not be true if caBundle is present"))
    return out


class APIServiceStrategy(Strategy):
    def default(self, obj: Object) -> None:
        service = (obj.get("spec") or {}).get("service")
        if isinstance(service, dict):
            service.setdefault("port", DEFAULT_SERVICE_PORT)

    def validate(self, obj: Object) -> Errors:
        return apiservice_errors(obj)

    def validate_status(self, new: Object, old: Object) -> Errors:
        out: Errors = []
        for i, condition in enumerate((new.get("status") or {}).get("conditions") or []):
            if not condition.get("type"):
                out.append(required(f"status.conditions[{i}].type"))
            out += v.one_of(f"status.conditions[{i}].status", condition.get("status"), ("True", "False", "Unknown"))
        return out
