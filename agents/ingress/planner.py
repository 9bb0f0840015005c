"""What nginx must do for the Ingresses this controller serves (pure: objects in, a :class:`Plan` out).

kube's Ingress rules, as ingress-nginx carries them out:

- **Servers.** Every host of a rule is a server of its own (rules of several Ingresses for one host
  are merged); rules without a host and the Ingresses' ``defaultBackend`` go to the catch-all server,
  which also answers every host no rule names. A wildcard host ``*.example.com`` matches exactly one
  more label (``a.example.com``, not ``example.com`` nor ``a.b.example.com``).
- **Paths.** ``Exact`` matches the path alone. ``Prefix`` matches element by element: ``/foo``
  matches ``/foo`` and ``/foo/bar`` but not ``/foobar``, and a trailing slash does not count (``/foo/``
  is ``/foo``). ``ImplementationSpecific`` is taken as ``Prefix``. The longest matching path wins, and
  ``Exact`` wins over a ``Prefix`` of the same path; where two Ingresses claim the same path for a
  host, the older Ingress wins.
- **The rest of a host.** A path no rule of a host matches goes to the ``defaultBackend`` of the
  (oldest) Ingress that names the host, else it is answered 404, as ingress-nginx's default backend does.
- **Backends.** Upstreams go straight to the ready endpoints of the Service's EndpointSlices for the
  Service port named or numbered (as ingress-nginx does, bypassing the ClusterIP); an endpoint whose
  ``ready`` condition is false is left out. A path whose Service or port does not exist, or has no
  ready endpoint, is answered 503; a missing Service or port is also a warning on the Ingress.
- **TLS.** The hosts of a ``tls`` entry are served over HTTPS with the certificate and key of its
  Secret (type ``kubernetes.io/tls``, in the Ingress's namespace), written to a file of their own.
  A Secret that is missing or not a TLS secret leaves those hosts on plain HTTP, with a warning.

:func:`plan` resolves all of that into servers and locations (:class:`Server`, :class:`Location`) and
has :mod:`agents.ingress.nginxconf` write them as nginx's configuration; the executor
(:mod:`agents.ingress.nginx`) writes the files and reloads nginx.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.ingress import classes as classes_
from agents.ingress import nginxconf
from agents.ingress.model import NOT_FOUND, Backend, Location, Server, Tls

Object = Mapping[str, Any]

TLS_SECRET_TYPE = "kubernetes.io/tls"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
WARNING = "Warning"
# the reasons of the warnings for backends that cannot be used (a Service with no ready endpoint is
# no mistake of the Ingress: it answers 503 without one)
NO_SERVICE, BAD_BACKEND, NO_SECRET = "ServiceNotFound", "BadBackend", "SecretNotFound"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Options:
    """What the planner needs of the controller's settings."""

    controller: str = classes_.CONTROLLER
    ingress_class: str = "nginx"
    config_dir: str = "/etc/ingress-controller"
    http_port: int = 80
    https_port: int = 443
    user: str = "www-data"
    worker_processes: str = "auto"


@dataclass(frozen=True)
class TlsFile:
    path: str
    content: bytes


@dataclass(frozen=True)
class Notice:
    """An event for an Ingress (by namespace/name)."""

    ingress: str
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    config: str
    files: tuple[TlsFile, ...]
    servers: tuple[Server, ...]
    upstreams: tuple[Backend, ...]
    ingresses: tuple[str, ...]  # namespace/name of every Ingress served, oldest first
    notices: tuple[Notice, ...] = ()


@dataclass(frozen=True)
class Observed:
    ingresses: Sequence[Object] = ()
    classes: Sequence[Object] = ()
    services: Sequence[Object] = ()
    slices: Sequence[Object] = ()
    secrets: Sequence[Object] = ()


# --- paths and hosts ------------------------------------------------------------------------------


def normalized_prefix(path: str) -> str:
    """A Prefix path as its elements: trailing slashes do not count (``/foo/`` is ``/foo``)."""
    path = path or "/"
    stripped = path.rstrip("/")
    return stripped or "/"


def locations_for(path: str, path_type: str) -> list[tuple[bool, str]]:
    """The nginx locations (exact?, path) a rule's path is: ``Prefix /foo`` is ``= /foo`` and ``/foo/``."""
    if path_type == "Exact":
        return [(True, path or "/")]
    prefix = normalized_prefix(path)
    if prefix == "/":
        return [(False, "/")]
    return [(True, prefix), (False, prefix + "/")]


def prefix_matches(prefix: str, request_path: str) -> bool:
    """kube's element-wise prefix match (what the locations above do in nginx; for tests and docs)."""
    prefix = normalized_prefix(prefix)
    if prefix == "/":
        return True
    return request_path == prefix or request_path.startswith(prefix + "/")


def host_matches(pattern: str, host: str) -> bool:
    """``*.example.com`` matches one more label; anything else matches itself (case-insensitive)."""
    pattern, host = pattern.lower(), host.lower()
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == host


# --- backends -------------------------------------------------------------------------------------


@dataclass
class _Cluster:
    services: dict[tuple[str, str], Object]
    slices: dict[tuple[str, str], list[Object]]
    secrets: dict[tuple[str, str], Object]

    @classmethod
    def of(cls, observed: Observed) -> _Cluster:
        services = {(_ns(s), _name(s)): s for s in observed.services}
        slices: dict[tuple[str, str], list[Object]] = {}
        for piece in observed.slices:
            owner = ((piece.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL)
            if owner:
                slices.setdefault((_ns(piece), str(owner)), []).append(piece)
        secrets = {(_ns(s), _name(s)): s for s in observed.secrets}
        return cls(services, slices, secrets)


def _ns(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def _name(obj: Object) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _port_text(port: Mapping[str, Any]) -> str:
    return str(port.get("name") or port.get("number") or "")


def resolve(namespace: str, backend: Mapping[str, Any], cluster: _Cluster) -> Backend:
    """A backend of an Ingress as an upstream of ready endpoints, or the reason it answers 503."""
    service = backend.get("service")
    if not isinstance(service, Mapping):
        kind = ((backend.get("resource") or {}).get("kind")) or "resource"
        problem = f"{kind} backends are not supported"
        return Backend(f"{namespace}/{kind}", status=503, problem=problem, warning=BAD_BACKEND)
    name = str(service.get("name") or "")
    port = service.get("port") or {}
    label = f"{namespace}/{name}:{_port_text(port)}"
    found = cluster.services.get((namespace, name))
    if found is None:
        return Backend(label, status=503, problem=f'service "{namespace}/{name}" not found', warning=NO_SERVICE)
    spec = found.get("spec") or {}
    if spec.get("type") == "ExternalName":
        problem = f'service "{namespace}/{name}" is ExternalName, not supported'
        return Backend(label, status=503, problem=problem, warning=BAD_BACKEND)
    wanted = None
    for entry in spec.get("ports") or []:
        if (port.get("name") and entry.get("name") == port["name"]) or (
            port.get("number") and int(entry.get("port") or 0) == int(port["number"])
        ):
            wanted = entry
            break
    if wanted is None:
        problem = f'service "{namespace}/{name}" has no port {_port_text(port)}'
        return Backend(label, status=503, problem=problem, warning=BAD_BACKEND)
    port_name = str(wanted.get("name") or "")
    protocol = str(wanted.get("protocol") or "TCP")
    endpoints: set[str] = set()
    for piece in cluster.slices.get((namespace, name), []):
        numbers = [
            int(p.get("port") or 0)
            for p in piece.get("ports") or []
            if str(p.get("name") or "") == port_name and str(p.get("protocol") or "TCP") == protocol
        ]
        if not numbers or not numbers[0]:
            continue
        v6 = piece.get("addressType") == "IPv6"
        for endpoint in piece.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or []:
                endpoints.add(f"[{address}]:{numbers[0]}" if v6 else f"{address}:{numbers[0]}")
    if not endpoints:
        return Backend(label, status=503, problem=f'service "{namespace}/{name}" has no ready endpoints')
    # "_" is in no namespace, Service or port name: no two backends share an upstream
    upstream = _SAFE.sub("-", f"{namespace}_{name}_{port_name or wanted.get('port')}")
    return Backend(label, upstream=upstream, endpoints=tuple(sorted(endpoints)))


# --- TLS ------------------------------------------------------------------------------------------


def _certificate(secret: Object | None, namespace: str, name: str, config_dir: str) -> TlsFile | str:
    """The file for a TLS Secret, or why there is none."""
    if secret is None:
        return f'secret "{namespace}/{name}" not found'
    if secret.get("type") != TLS_SECRET_TYPE:
        return f'secret "{namespace}/{name}" is of type {secret.get("type") or "Opaque"}, not {TLS_SECRET_TYPE}'
    data = secret.get("data") or {}
    try:
        cert = base64.b64decode(str(data.get("tls.crt") or ""), validate=True)
        key = base64.b64decode(str(data.get("tls.key") or ""), validate=True)
    except (binascii.Error, ValueError):
        return f'secret "{namespace}/{name}" has data that is not base64'
    if not cert.strip() or not key.strip():
        return f'secret "{namespace}/{name}" has no tls.crt or no tls.key'
    content = cert.rstrip(b"\n") + b"\n" + key.rstrip(b"\n") + b"\n"
    digest = hashlib.sha256(content).hexdigest()[:12]
    return TlsFile(f"{config_dir}/ssl/{namespace}-{name}-{digest}.pem", content)


# --- the plan -------------------------------------------------------------------------------------


@dataclass
class _Building:
    # host -> candidates: (exact first, ingress age, order) -> location
    candidates: dict[str, list[tuple[tuple[int, int, int], Location]]] = field(default_factory=dict)
    fallback: dict[str, Location] = field(default_factory=dict)  # host -> its "/" default backend
    tls: dict[str, Tls] = field(default_factory=dict)
    files: dict[str, TlsFile] = field(default_factory=dict)
    notices: dict[Notice, None] = field(default_factory=dict)

    def note(self, ingress: str, type_: str, reason: str, message: str) -> None:
        self.notices.setdefault(Notice(ingress, type_, reason, message), None)


def _warn_backend(build: _Building, ingress: str, backend: Backend, where: str) -> None:
    if backend.warning:
        build.note(ingress, WARNING, backend.warning, f"{backend.problem}: {where} answers 503")


def plan(observed: Observed, options: Options | None = None) -> Plan:
    """The configuration and files for what ``observed`` holds."""
    options = options or Options()
    served = classes_.served(
        observed.ingresses, observed.classes, controller=options.controller, ingress_class=options.ingress_class
    )
    cluster = _Cluster.of(observed)
    build = _Building()
    build.candidates[""] = []
    for age, ingress in enumerate(served):
        namespace, key = _ns(ingress), classes_.key(ingress)
        spec = ingress.get("spec") or {}
        default = spec.get("defaultBackend")
        default_backend = None
        if isinstance(default, Mapping):
            default_backend = resolve(namespace, default, cluster)
            _warn_backend(build, key, default_backend, "the default backend")
            build.fallback.setdefault("", Location(False, "/", default_backend, f"{key} defaultBackend"))
        order = 0
        for rule in spec.get("rules") or []:
            host = str(rule.get("host") or "").lower()
            build.candidates.setdefault(host, [])
            if host and default_backend is not None:
                build.fallback.setdefault(host, Location(False, "/", default_backend, f"{key} defaultBackend"))
            for item in (rule.get("http") or {}).get("paths") or []:
                path_type = str(item.get("pathType") or "ImplementationSpecific")
                path = str(item.get("path") or "/")
                backend = resolve(namespace, item.get("backend") or {}, cluster)
                _warn_backend(build, key, backend, f"{host or '*'}{path}")
                for exact, nginx_path in locations_for(path, path_type):
                    rank = (0 if path_type == "Exact" else 1, age, order)
                    location = Location(exact, nginx_path, backend, f"{key} {path_type} {path}")
                    build.candidates[host].append((rank, location))
                    order += 1
        for entry in spec.get("tls") or []:
            hosts = [str(h).lower() for h in entry.get("hosts") or []]
            secret_name = str(entry.get("secretName") or "")
            if not hosts or not secret_name:
                continue
            secret = cluster.secrets.get((namespace, secret_name))
            found = _certificate(secret, namespace, secret_name, options.config_dir)
            if isinstance(found, str):
                build.note(key, WARNING, NO_SECRET, f"{found}: {', '.join(hosts)} served without TLS")
                continue
            build.files.setdefault(found.path, found)
            for host in hosts:
                build.tls.setdefault(host, Tls(f"{namespace}/{secret_name}", found.path))
    servers = []
    upstreams: dict[str, Backend] = {}
    for host in sorted(build.candidates, key=lambda h: (h != "", h)):
        chosen: dict[tuple[bool, str], Location] = {}
        for _rank, location in sorted(build.candidates[host], key=lambda c: c[0]):
            chosen.setdefault(location.nginx_key, location)
        if (False, "/") not in chosen:
            chosen[(False, "/")] = build.fallback.get(host) or Location(False, "/", NOT_FOUND, "no rule")
        ordered = sorted(chosen.values(), key=lambda loc: (-len(loc.path), loc.path, not loc.exact))
        for location in ordered:
            if location.backend.upstream:
                upstreams.setdefault(location.backend.upstream, location.backend)
        tls = None
        if host:
            tls = build.tls.get(host) or next(
                (t for pattern, t in sorted(build.tls.items()) if host_matches(pattern, host)), None
            )
        servers.append(Server(host, tuple(ordered), tls))
    used = {s.tls.path for s in servers if s.tls is not None}
    files = tuple(f for path, f in sorted(build.files.items()) if path in used)
    config = nginxconf.render(
        servers,
        sorted(upstreams.values(), key=lambda b: b.upstream),
        config_dir=options.config_dir,
        http_port=options.http_port,
        https_port=options.https_port,
        user=options.user,
        worker_processes=options.worker_processes,
    )
    return Plan(
        config=config,
        files=files,
        servers=tuple(servers),
        upstreams=tuple(sorted(upstreams.values(), key=lambda b: b.upstream)),
        ingresses=classes_.keys(served),
        notices=tuple(build.notices),
    )


def route(plan_: Plan, host: str, path: str) -> Backend:
    """Where nginx sends a request for ``host`` and ``path`` under ``plan_`` (nginx's own choice of
    server and location, for tests and explanations: exact names, then wildcards, then the
    catch-all; an exact location, else the longest prefix)."""
    host = host.lower().split(":", 1)[0]
    servers = {s.host: s for s in plan_.servers}
    server = servers.get(host)
    if server is None:
        server = next((s for s in plan_.servers if s.host.startswith("*.") and host_matches(s.host, host)), None)
    if server is None:
        server = servers[""]
    exact = {loc.path: loc for loc in server.locations if loc.exact}
    if path in exact:
        return exact[path].backend
    prefixes = [loc for loc in server.locations if not loc.exact and path.startswith(loc.path)]
    return max(prefixes, key=lambda loc: len(loc.path)).backend
