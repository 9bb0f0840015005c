"""Strategies for networking.k8s.io/v1 Ingresses and IngressClasses, and DefaultIngressClass admission.

An Ingress maps hosts and paths to Service backends (or a default backend); an ingress controller reads
it, routes the traffic and writes the address it serves from into ``status.loadBalancer``. Which
controller serves it is named by ``spec.ingressClassName``, the name of a cluster-scoped IngressClass
whose ``spec.controller`` the controller recognises. The checks follow kube's networking validation,
word for word where kubectl prints them: hosts are DNS names (a leading ``*.`` allowed, IP addresses
not), every path has a ``pathType``, ``Exact`` and ``Prefix`` paths are absolute, a backend names a
Service (a DNS-1035 label and exactly one of port name or number) or a resource, never both, and an
Ingress needs rules or a default backend. An IngressClass's controller is a domain-prefixed path that
never changes.

Admission does what kube's DefaultIngressClass plugin does: an Ingress created without a class (and
without the older ``kubernetes.io/ingress.class`` annotation) gets the class annotated
``ingressclass.kubernetes.io/is-default-class: "true"``, the newest if several are, the first by name
among equally new ones. The strategy reads the IngressClasses through a lister the API server hands
it (``IngressStrategy(resource, classes=...)``); without one it leaves the class unset.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agents.apiserver import validation as v
from agents.apiserver.kinds.base import Admission, Strategy
from agents.apiserver.resources import Resource
from agents.apiserver.status import forbidden, invalid, not_supported, required, too_long
from agents.apiserver.validation import Errors
from agents.machinery.objects import Object

INGRESS_CLASS_ANNOTATION = "kubernetes.io/ingress.class"  # the field's predecessor; kube still honours it
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")  # sorted, as kube lists them
PARAMETER_SCOPES = ("Cluster", "Namespace")
MAX_CONTROLLER_LENGTH = 250

_WILDCARD = re.compile(r"^\*\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
WILDCARD_MSG = (
    "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must"
    " consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character"
    " (e.g. '*.example.com', regex used for validation is"
    " '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_HTTP_PATH_FORMAT = "[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+"
_HTTP_PATH = re.compile(f"^{_HTTP_PATH_FORMAT}$")
# what an Exact or Prefix path may not hold, or end with (it would not name one normalized path)
_BAD_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_BAD_SUFFIXES = ("/..", "/.")

IngressClassLister = Callable[[], Awaitable[list[Object]]]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def wildcard_subdomain(value: str) -> list[str]:
    """What kube's IsWildcardDNS1123Subdomain finds wrong with ``value`` (``*.example.com``)."""
    out = []
    if len(value) > 253:
        out.append("must be no more than 253 characters")
    if not _WILDCARD.match(value):
        out.append(WILDCARD_MSG)
    return out


def host_errors(path: str, host: str) -> Errors:
    """A host of a TLS entry: a DNS subdomain, or one with a leading ``*.``."""
    check = wildcard_subdomain if "*" in host else v.dns_subdomain
    return [invalid(path, host, msg) for msg in check(host)]


def domain_prefixed_path(path: str, value: str) -> Errors:
    """kube's IsDomainPrefixedPath: ``example.com/some/path``."""
    if not value:
        return [required(path)]
    host, _, rest = value.partition("/")
    if not host or not rest:
        return [invalid(path, value, 'must be a domain-prefixed path (such as "acme.io/foo")')]
    out = [invalid(path, host, msg) for msg in v.dns_subdomain(host)]
    if not _HTTP_PATH.match(rest):
        out.append(invalid(path, rest, f"Invalid path (regex used for validation is '{_HTTP_PATH_FORMAT}')"))
    return out


def _reference_errors(path: str, ref: dict[str, Any]) -> Errors:
    """A typed reference (a resource backend, an IngressClass's parameters): kind and name required."""
    out: Errors = []
    group = ref.get("apiGroup")
    if group is not None:
        out += [invalid(f"{path}.apiGroup", group, msg) for msg in v.dns_subdomain(str(group))]
    for name in ("kind", "name"):
        value = ref.get(name) or ""
        if not value:
            out.append(required(f"{path}.{name}", f"{name} is required"))
        else:
            out += [invalid(f"{path}.{name}", value, msg) for msg in v.path_segment(str(value))]
    return out


def backend_errors(path: str, backend: dict[str, Any]) -> Errors:
    """kube's validateIngressBackend: a Service (name and one port) or a resource, exactly one."""
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        return [invalid(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        return _reference_errors(f"{path}.resource", resource)
    if service is None:
        return [invalid(path, "", "resource or service backend is required")]
    out: Errors = []
    name = service.get("name") or ""
    if not name:
        out.append(required(f"{path}.service.name"))
    else:
        out += [invalid(f"{path}.service.name", name, msg) for msg in v.dns1035_label(name)]
    port = service.get("port") or {}
    port_name, number = port.get("name") or "", port.get("number") or 0
    if port_name and number:
        out.append(invalid(path, "", "cannot set both port name & port number"))
    elif port_name:
        out += v.port_name(f"{path}.service.port.name", port_name)
    elif number:
        out += v.port_number(f"{path}.service.port.number", number)
    else:
        out.append(required(path, "port name or number is required"))
    return out


def http_path_errors(path: str, item: dict[str, Any]) -> Errors:
    """One ``http.paths[]`` entry: its type, its path as that type wants it, its backend."""
    kind = item.get("pathType")
    if kind is None:
        return [required(f"{path}.pathType", "pathType must be specified")]
    url = item.get("path") or ""
    out: Errors = []
    if kind in ("Exact", "Prefix"):
        if not url.startswith("/"):
            out.append(invalid(f"{path}.path", url, "must be an absolute path"))
        out += [invalid(f"{path}.path", url, f"must not contain '{s}'") for s in _BAD_SEQUENCES if s in url]
        out += [invalid(f"{path}.path", url, f"cannot end with '{s}'") for s in _BAD_SUFFIXES if url.endswith(s)]
    elif kind == "ImplementationSpecific":
        if url and not url.startswith("/"):
            out.append(invalid(f"{path}.path", url, "must be an absolute path"))
    else:
        out.append(not_supported(f"{path}.pathType", kind, PATH_TYPES))
    return out + backend_errors(f"{path}.backend", item.get("backend") or {})


def rule_errors(path: str, rules: Sequence[dict[str, Any]]) -> Errors:
    out: Errors = []
    for i, rule in enumerate(rules):
        here = f"{path}[{i}]"
        host = rule.get("host") or ""
        if host:
            if _is_ip(host):
                out.append(invalid(f"{here}.host", host, "must be a DNS name, not an IP address"))
            out += host_errors(f"{here}.host", host)
        http = rule.get("http")
        if http is not None:
            paths = http.get("paths") or []
            if not paths:
                out.append(required(f"{here}.http.paths"))
            for j, item in enumerate(paths):
                out += http_path_errors(f"{here}.http.paths[{j}]", item)
    return out


def tls_errors(path: str, entries: Sequence[dict[str, Any]]) -> Errors:
    out: Errors = []
    for i, entry in enumerate(entries):
        for j, host in enumerate(entry.get("hosts") or []):
            out += host_errors(f"{path}[{i}].hosts[{j}]", host)
        secret = entry.get("secretName") or ""
        if secret:
            out += [invalid(f"{path}[{i}].secretName", secret, msg) for msg in v.dns_subdomain(secret)]
    return out


def ingress_spec_errors(spec: dict[str, Any]) -> Errors:
    """What kube's ValidateIngressSpec finds wrong."""
    out: Errors = []
    rules, default = spec.get("rules") or [], spec.get("defaultBackend")
    if not rules and default is None:
        out.append(invalid("spec", spec.get("rules"), "either `defaultBackend` or `rules` must be specified"))
    if default is not None:
        out += backend_errors("spec.defaultBackend", default)
    out += rule_errors("spec.rules", rules)
    out += tls_errors("spec.tls", spec.get("tls") or [])
    name = spec.get("ingressClassName")
    if name is not None:
        out += [invalid("spec.ingressClassName", name, msg) for msg in v.dns_subdomain(str(name))]
    return out


def load_balancer_errors(status: dict[str, Any]) -> Errors:
    """The addresses an ingress controller reports: IPs, or host names that are not IPs."""
    out: Errors = []
    for i, entry in enumerate((status.get("loadBalancer") or {}).get("ingress") or []):
        here = f"status.loadBalancer.ingress[{i}]"
        ip, hostname = entry.get("ip") or "", entry.get("hostname") or ""
        if ip:
            out += v.ip_address(f"{here}.ip", ip)
        if hostname:
            out += [invalid(f"{here}.hostname", hostname, msg) for msg in v.dns_subdomain(hostname)]
            if _is_ip(hostname):
                out.append(invalid(f"{here}.hostname", hostname, "must be a DNS name, not an IP address"))
    return out


def default_class(classes: Sequence[Object]) -> str | None:
    """The IngressClass DefaultIngressClass admission gives a new Ingress: of those annotated default,
    the newest (creation timestamps are RFC 3339 UTC, so they sort as text), the first by name on a tie."""
    marked = [
        c
        for c in classes
        if ((c.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
    ]
    if not marked:
        return None
    newest = max(str((c.get("metadata") or {}).get("creationTimestamp") or "") for c in marked)
    names = [str(c["metadata"].get("name", "")) for c in marked if c["metadata"].get("creationTimestamp", "") == newest]
    return min(names)


def wants_default_class(ingress: Object) -> bool:
    """An Ingress names no class, by field or by the older annotation."""
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    return INGRESS_CLASS_ANNOTATION not in annotations and (ingress.get("spec") or {}).get("ingressClassName") is None


class IngressStrategy(Strategy):
    def __init__(self, resource: Resource, *, classes: IngressClassLister | None = None) -> None:
        super().__init__(resource)
        self.classes = classes

    def initial_status(self, obj: Object) -> dict[str, Any]:
        return {"loadBalancer": {}}

    def validate(self, obj: Object) -> Errors:
        return ingress_spec_errors(obj.get("spec") or {})

    def validate_status(self, new: Object, old: Object) -> Errors:
        return load_balancer_errors(new.get("status") or {})

    async def admit_create(self, admission: Admission, obj: Object, *, dry_run: bool) -> None:
        if self.classes is None or not wants_default_class(obj):
            return
        name = default_class(await self.classes())
        if name is not None:
            obj.setdefault("spec", {})["ingressClassName"] = name


def parameters_errors(path: str, params: dict[str, Any]) -> Errors:
    """An IngressClass's parameters: a typed reference, scoped to the cluster or to one namespace."""
    out = _reference_errors(path, params)
    scope = params.get("scope") or ""
    namespace = params.get("namespace")
    if scope not in PARAMETER_SCOPES:
        out.append(not_supported(f"{path}.scope", scope, PARAMETER_SCOPES))
    elif scope == "Namespace":
        if namespace is None:
            out.append(required(f"{path}.namespace", "`parameters.scope` is set to 'Namespace'"))
        else:
            out += [invalid(f"{path}.namespace", namespace, msg) for msg in v.dns_label(str(namespace))]
    elif namespace is not None:
        out.append(forbidden(f"{path}.namespace", "`parameters.scope` is set to 'Cluster'"))
    return out


class IngressClassStrategy(Strategy):
    def default(self, obj: Object) -> None:
        params = (obj.get("spec") or {}).get("parameters")
        if isinstance(params, dict):
            params.setdefault("scope", "Cluster")

    def validate(self, obj: Object) -> Errors:
        spec = obj.get("spec") or {}
        controller = spec.get("controller") or ""
        out: Errors = []
        if len(controller) > MAX_CONTROLLER_LENGTH:
            out.append(too_long("spec.controller", MAX_CONTROLLER_LENGTH))
        out += domain_prefixed_path("spec.controller", controller)
        params = spec.get("parameters")
        if params is not None:
            out += parameters_errors("spec.parameters", params)
        return out

    def validate_update(self, new: Object, old: Object) -> Errors:
        out = self.validate(new)
        controller = (new.get("spec") or {}).get("controller")
        if controller != (old.get("spec") or {}).get("controller"):
            out.append(invalid("spec.controller", controller, "field is immutable"))
        return out
