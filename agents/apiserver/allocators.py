"""ClusterIP and NodePort allocation (``healthCheckNodePort`` too), as kube-apiserver does it, on etcd.

Each allocated IP or port is a key under ``/kubelab/allocations/`` created with a create-if-absent
transaction, so two API servers can never hand out the same one. Reservations made while handling
a request are undone if the request fails; what an update stops using is released only after the
update is stored. A repair pass (at start and periodically) frees reservations whose Service is gone
and re-reserves what a Service holds but has no key for.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from agents.apiserver.status import FieldError, StatusError, invalid, invalid_object
from agents.apiserver.storage import Store, prefix_end
from agents.apiserver.storage.errors import KeyExistsError, KeyNotFoundError
from agents.machinery import codec
from agents.machinery.objects import Object, name_of, namespace_of

log = logging.getLogger(__name__)

IP_PREFIX = "/kubelab/allocations/serviceips/"
PORT_PREFIX = "/kubelab/allocations/nodeports/"
NODE_PORT_TYPES = ("NodePort", "LoadBalancer")


def _owner(service: Object) -> str:
    return f"{namespace_of(service)}/{name_of(service)}"


def needs_health_check(service: Object) -> bool:
    """Whether a Service gets a ``healthCheckNodePort`` (kube's NeedsHealthCheck): a LoadBalancer
    with ``externalTrafficPolicy: Local``, whose load balancer asks each node whether it has a
    local endpoint."""
    spec = service.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def health_check_port(service: Object) -> int:
    """The ``healthCheckNodePort`` a Service holds (0: none)."""
    value = (service.get("spec") or {}).get("healthCheckNodePort")
    return value if needs_health_check(service) and isinstance(value, int) and value > 0 else 0


def _ports_of(service: Object) -> set[int]:
    """The node ports a Service holds: its ports' ``nodePort``s and its ``healthCheckNodePort``."""
    spec = service.get("spec") or {}
    if spec.get("type") not in NODE_PORT_TYPES:
        return set()
    held = {int(p["nodePort"]) for p in spec.get("ports") or [] if p.get("nodePort")}
    return held | ({health_check_port(service)} if health_check_port(service) else set())


def _ip_of(service: Object) -> str:
    ip = (service.get("spec") or {}).get("clusterIP") or ""
    return "" if ip == "None" else str(ip)


def _invalid(service: Object, errors: list[FieldError]) -> StatusError:
    return invalid_object("Service", name_of(service), "", errors)


class ServiceAllocator:
    def __init__(self, store: Store, *, cidr: str, node_ports: tuple[int, int]) -> None:
        self._store = store
        self.network = ipaddress.ip_network(cidr)
        self.node_ports = node_ports
        self._lock = asyncio.Lock()

    @property
    def first_ip(self) -> str:
        """The address reserved for the ``kubernetes`` Service."""
        return str(self.network.network_address + 1)

    # --- keys ------------------------------------------------------------------------------------

    async def _reserve(self, key: str, owner: str) -> bool:
        value = codec.dumps({"owner": owner, "time": time.time()})
        try:
            await self._store.create(key, value)
        except KeyExistsError:
            return False
        return True

    async def _free(self, key: str) -> None:
        with contextlib.suppress(KeyNotFoundError):
            await self._store.delete(key)

    async def _taken(self, prefix: str) -> set[str]:
        result = await self._store.range(prefix, prefix_end(prefix))
        return {kv.key[len(prefix) :] for kv in result.kvs}

    # --- IPs -------------------------------------------------------------------------------------

    def _in_range(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return address in self.network and address not in (self.network.network_address, self.network.broadcast_address)

    async def _random_ip(self, owner: str, *, reserve: bool) -> str:
        taken = await self._taken(IP_PREFIX)
        size = self.network.num_addresses - 2
        for _ in range(64):
            ip = str(self.network.network_address + 1 + random.randrange(1, size))  # .1 is for `kubernetes`
            if ip in taken:
                continue
            if not reserve or await self._reserve(IP_PREFIX + ip, owner):
                return ip
            taken.add(ip)
        raise StatusError(
            500, "InternalError", "Internal error occurred: failed to allocate a serviceIP: range is full"
        )

    async def _claim_ip(self, service: Object, ip: str, *, reserve: bool) -> None:
        if not self._in_range(ip):
            raise _invalid(
                service,
                [
                    invalid(
                        "spec.clusterIPs",
                        [ip],
                        f"failed to allocate IP {ip}: the provided IP"
                        f" ({ip}) is not in the valid range. The range of valid IPs is"
                        f" {self.network}",
                    )
                ],
            )
        taken = (await self._store.get(IP_PREFIX + ip))[0] is not None
        if taken or (reserve and not await self._reserve(IP_PREFIX + ip, _owner(service))):
            raise _invalid(
                service,
                [invalid("spec.clusterIPs", [ip], f"failed to allocate IP {ip}: provided IP is already allocated")],
            )

    # --- ports -----------------------------------------------------------------------------------

    async def _random_port(self, owner: str, *, reserve: bool, taken_now: set[int]) -> int:
        taken = {int(p) for p in await self._taken(PORT_PREFIX)} | taken_now
        low, high = self.node_ports
        for _ in range(64):
            port = random.randint(low, high)
            if port in taken:
                continue
            if not reserve or await self._reserve(f"{PORT_PREFIX}{port}", owner):
                return port
            taken.add(port)
        raise StatusError(500, "InternalError", "Internal error occurred: failed to allocate a nodePort: range is full")

    # --- services --------------------------------------------------------------------------------

    async def allocate(self, service: Object, old: Object | None, *, dry_run: bool) -> list[str]:
        """Give ``service`` its ClusterIP and node ports; return the keys newly reserved."""
        reserve = not dry_run
        reserved: list[str] = []
        spec = service.setdefault("spec", {})
        kind = spec.get("type", "ClusterIP")
        owner = _owner(service)
        old_ip = _ip_of(old) if old is not None else ""
        try:
            if kind == "ExternalName":
                spec.pop("clusterIP", None)
                spec.pop("clusterIPs", None)
            elif spec.get("clusterIP") == "None":
                spec["clusterIPs"] = ["None"]
            else:
                ip = spec.get("clusterIP") or ""
                if not ip:
                    ip = old_ip or await self._random_ip(owner, reserve=reserve)
                    if ip != old_ip and reserve:
                        reserved.append(IP_PREFIX + ip)
                elif ip != old_ip:
                    await self._claim_ip(service, ip, reserve=reserve)
                    if reserve:
                        reserved.append(IP_PREFIX + ip)
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]
            if kind != "ExternalName":
                spec.setdefault("ipFamilies", ["IPv4"])
                spec.setdefault("ipFamilyPolicy", "SingleStack")
            if kind in NODE_PORT_TYPES:
                reserved += await self._allocate_ports(service, old, reserve=reserve)
                if needs_health_check(service):
                    reserved += await self._allocate_health_check(service, old, reserve=reserve)
            else:
                for port in spec.get("ports") or []:
                    port.pop("nodePort", None)
        except BaseException:
            await self.release_keys(reserved)
            raise
        return reserved

    async def _allocate_ports(self, service: Object, old: Object | None, *, reserve: bool) -> list[str]:
        reserved: list[str] = []
        held = _ports_of(old) if old is not None else set()
        in_service: set[int] = set()
        low, high = self.node_ports
        for i, port in enumerate(service["spec"].get("ports") or []):
            wanted = port.get("nodePort")
            if wanted:
                wanted = int(wanted)
                if wanted in held or wanted in in_service:
                    in_service.add(wanted)
                    continue
                if not low <= wanted <= high:
                    raise _invalid(
                        service,
                        [
                            invalid(
                                f"spec.ports[{i}].nodePort",
                                wanted,
                                f"provided port is not in the valid range. The range of valid ports is {low}-{high}",
                            )
                        ],
                    )
                exists = (await self._store.get(f"{PORT_PREFIX}{wanted}"))[0] is not None
                if exists or (reserve and not await self._reserve(f"{PORT_PREFIX}{wanted}", _owner(service))):
                    raise _invalid(
                        service, [invalid(f"spec.ports[{i}].nodePort", wanted, "provided port is already allocated")]
                    )
                if reserve:
                    reserved.append(f"{PORT_PREFIX}{wanted}")
                in_service.add(wanted)
            else:
                chosen = await self._random_port(_owner(service), reserve=reserve, taken_now=in_service)
                port["nodePort"] = chosen
                in_service.add(chosen)
                if reserve:
                    reserved.append(f"{PORT_PREFIX}{chosen}")
        return reserved

    async def _allocate_health_check(self, service: Object, old: Object | None, *, reserve: bool) -> list[str]:
        """The Service's ``healthCheckNodePort``: kept from ``old``, the one asked for, or a free one.
        Failing to get the one asked for is an internal error in kube's words, not a field error."""
        spec = service["spec"]
        own_ports = {int(p["nodePort"]) for p in spec.get("ports") or [] if p.get("nodePort")}
        wanted = spec.get("healthCheckNodePort") or 0
        if wanted and old is not None and wanted == health_check_port(old):
            return []
        if not wanted:
            chosen = await self._random_port(_owner(service), reserve=reserve, taken_now=own_ports)
            spec["healthCheckNodePort"] = chosen
            return [f"{PORT_PREFIX}{chosen}"] if reserve else []
        low, high = self.node_ports
        problem = ""
        if not low <= wanted <= high:
            problem = f"provided port is not in the valid range. The range of valid ports is {low}-{high}"
        elif (
            wanted in own_ports
            or (await self._store.get(f"{PORT_PREFIX}{wanted}"))[0] is not None
            or (reserve and not await self._reserve(f"{PORT_PREFIX}{wanted}", _owner(service)))
        ):
            problem = "provided port is already allocated"
        if problem:
            cause = f"failed to allocate requested HealthCheck NodePort {wanted}: {problem}"
            raise StatusError(
                500, "InternalError", f"Internal error occurred: {cause}", details={"causes": [{"message": cause}]}
            )
        return [f"{PORT_PREFIX}{wanted}"] if reserve else []

    async def release_keys(self, keys: Iterable[str]) -> None:
        for key in keys:
            await self._free(key)

    async def release(self, service: Object, *, keep: Object | None = None) -> None:
        """Free what ``service`` holds, except what ``keep`` (its successor) still uses."""
        keep_ip = _ip_of(keep) if keep is not None else ""
        keep_ports = _ports_of(keep) if keep is not None else set()
        ip = _ip_of(service)
        if ip and ip != keep_ip:
            await self._free(IP_PREFIX + ip)
        for port in _ports_of(service) - keep_ports:
            await self._free(f"{PORT_PREFIX}{port}")

    # --- repair ----------------------------------------------------------------------------------

    async def repair(self, services: list[Object], *, grace: float = 60.0) -> int:
        """Reconcile reservations with Services; return how many keys were changed."""
        async with self._lock:
            held_ips = {_ip_of(s): _owner(s) for s in services if _ip_of(s)}
            held_ports = {str(p): _owner(s) for s in services for p in _ports_of(s)}
            changed = 0
            for prefix, held in ((IP_PREFIX, held_ips), (PORT_PREFIX, held_ports)):
                result = await self._store.range(prefix, prefix_end(prefix))
                present = set()
                for kv in result.kvs:
                    item = kv.key[len(prefix) :]
                    present.add(item)
                    if item in held:
                        continue
                    info: Any = codec.loads(kv.value)
                    if time.time() - float(info.get("time", 0)) > grace:
                        log.info("releasing leaked allocation %s (was %s)", kv.key, info.get("owner"))
                        await self._free(kv.key)
                        changed += 1
                for item, owner in held.items():
                    if item not in present and await self._reserve(prefix + item, owner):
                        log.info("re-reserved %s for %s", prefix + item, owner)
                        changed += 1
            return changed


class RequestAdmission:
    """The admission services for one request: reservations undone on failure, releases on success."""

    def __init__(
        self,
        allocator: ServiceAllocator,
        default_toleration_seconds: int,
        accounts: Callable[[str, str], Awaitable[Object | None]] | None = None,
    ) -> None:
        self._allocator = allocator
        self.default_toleration_seconds = default_toleration_seconds
        self._accounts = accounts
        self._reserved: list[str] = []
        self._after_commit: list[tuple[Object, Object | None]] = []

    @property
    def mounts_tokens(self) -> bool:
        """Whether pods get a ServiceAccount token mounted (the server issues tokens)."""
        return self._accounts is not None

    async def service_account(self, namespace: str, name: str) -> Object | None:
        return await self._accounts(namespace, name) if self._accounts is not None else None

    async def allocate_service(self, service: Object, old: Object | None, *, dry_run: bool) -> None:
        self._reserved += await self._allocator.allocate(service, old, dry_run=dry_run)
        if old is not None and not dry_run:
            self._after_commit.append((old, service))

    async def release_service(self, service: Object, *, keep: Object | None = None) -> None:
        await self._allocator.release(service, keep=keep)

    async def commit(self) -> None:
        for old, new in self._after_commit:
            await self._allocator.release(old, keep=new)
        self._reserved.clear()
        self._after_commit.clear()

    async def rollback(self) -> None:
        await self._allocator.release_keys(self._reserved)
        self._reserved.clear()
        self._after_commit.clear()
