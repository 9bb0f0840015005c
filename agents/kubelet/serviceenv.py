"""The variables a container learns the cluster's Services by (kube's service environment variables).

Every Service with a cluster IP in the pod's namespace (unless the pod says ``enableServiceLinks:
false``), and always the API server's ``kubernetes`` Service in ``default``, gives the container
``NAME_SERVICE_HOST`` and ``NAME_SERVICE_PORT`` (one ``NAME_SERVICE_PORT_PORTNAME`` per named port) and
Docker's link variables (``NAME_PORT=tcp://IP:PORT``, ``NAME_PORT_80_TCP``, ``..._PROTO``, ``..._PORT``,
``..._ADDR``), NAME being the Service's name in capitals with ``-`` as ``_``. In-cluster clients find
the API server by ``KUBERNETES_SERVICE_HOST`` and ``KUBERNETES_SERVICE_PORT``. A variable the
container declares itself wins over these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MASTER_NAMESPACE = "default"
MASTER_SERVICES = frozenset({"kubernetes"})


def _has_cluster_ip(service: Mapping[str, Any]) -> bool:
    ip = (service.get("spec") or {}).get("clusterIP") or ""
    return bool(ip) and ip != "None"


def _variables(service: Mapping[str, Any]) -> dict[str, str]:
    spec = service.get("spec") or {}
    name = str(service["metadata"]["name"]).upper().replace("-", "_")
    ip = str(spec["clusterIP"])
    ports = [p for p in spec.get("ports") or [] if isinstance(p, dict) and p.get("port")]
    out = {f"{name}_SERVICE_HOST": ip}
    if not ports:
        return out
    out[f"{name}_SERVICE_PORT"] = str(ports[0]["port"])
    for port in ports:
        if port.get("name"):
            out[f"{name}_SERVICE_PORT_{str(port['name']).upper().replace('-', '_')}"] = str(port["port"])
    first = ports[0]
    out[f"{name}_PORT"] = f"{str(first.get('protocol') or 'TCP').lower()}://{ip}:{first['port']}"
    for port in ports:
        protocol = str(port.get("protocol") or "TCP")
        prefix = f"{name}_PORT_{port['port']}_{protocol.upper()}"
        out[prefix] = f"{protocol.lower()}://{ip}:{port['port']}"
        out[f"{prefix}_PROTO"] = protocol.lower()
        out[f"{prefix}_PORT"] = str(port["port"])
        out[f"{prefix}_ADDR"] = ip
    return out


def service_environment(pod: Mapping[str, Any], services: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The service variables of ``pod`` from the cluster's ``services``."""
    namespace = pod["metadata"]["namespace"]
    links = (pod.get("spec") or {}).get("enableServiceLinks", True) is not False
    chosen: dict[str, Mapping[str, Any]] = {}
    for service in services:
        if not _has_cluster_ip(service):
            continue
        meta = service["metadata"]
        name, where = str(meta["name"]), meta.get("namespace", "")
        if (where == namespace and links) or (
            where == MASTER_NAMESPACE and name in MASTER_SERVICES and name not in chosen
        ):
            chosen[name] = service
    out: dict[str, str] = {}
    for name in sorted(chosen):
        out.update(_variables(chosen[name]))
    return out
