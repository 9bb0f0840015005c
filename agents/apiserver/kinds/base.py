"""What every kind's strategy can decide: defaults, validation, and how create/update/delete treat it.

A strategy is pure except for its ``admit_*`` and ``released`` hooks, which may call the services in
``Admission`` (IP and port allocation). The registry calls the hooks in a fixed order:
create: default -> prepare_create -> validate -> admit_create;
update: prepare_update -> default -> validate_update -> admit_update; delete: released.
"""

from __future__ import annotations

from typing import Any, Protocol

from agents.apiserver.resources import Resource
from agents.apiserver.validation import Errors, NameCheck, dns_subdomain
from agents.machinery.objects import Object


class Admission(Protocol):
    """Services the API server offers to admission hooks."""

    default_toleration_seconds: int

    @property
    def mounts_tokens(self) -> bool: ...

    async def service_account(self, namespace: str, name: str) -> Object | None: ...

    async def allocate_service(self, service: Object, old: Object | None, *, dry_run: bool) -> None: ...

    async def release_service(self, service: Object, *, keep: Object | None = None) -> None: ...


class Strategy:
    """The behaviour shared by all kinds; subclasses override what differs."""

    name_check: NameCheck = staticmethod(dns_subdomain)
    # Admission reserves something (an IP, a port) for the object: check for a name clash first, so
    # that creating an existing object reports AlreadyExists rather than a reservation conflict.
    reserves_on_create = False

    def __init__(self, resource: Resource) -> None:
        self.resource = resource

    # --- create ----------------------------------------------------------------------------------

    def default(self, obj: Object) -> None:
        """Fill in defaults, as Kubernetes' SetDefaults functions do (also applied on update)."""

    def prepare_create(self, obj: Object) -> None:
        """Reset what a client may not set on create (status, for kinds with a status subresource)."""
        if self.resource.has("status"):
            obj.pop("status", None)
            initial = self.initial_status(obj)
            if initial is not None:
                obj["status"] = initial

    def initial_status(self, obj: Object) -> dict[str, Any] | None:
        return None

    def validate(self, obj: Object) -> Errors:
        return []

    async def admit_create(self, admission: Admission, obj: Object, *, dry_run: bool) -> None:
        return None

    # --- update ----------------------------------------------------------------------------------

    def prepare_update(self, new: Object, old: Object) -> None:
        """Keep the status of kinds that have a status subresource (it changes only through it)."""
        if self.resource.has("status"):
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)

    def validate_update(self, new: Object, old: Object) -> Errors:
        return self.validate(new)

    async def admit_update(self, admission: Admission, new: Object, old: Object, *, dry_run: bool) -> None:
        return None

    def spec_changed(self, new: Object, old: Object) -> bool:
        return bool(new.get("spec") != old.get("spec"))

    # --- status subresource ----------------------------------------------------------------------

    def validate_status(self, new: Object, old: Object) -> Errors:
        return []

    # --- ephemeralcontainers subresource (pods) ---------------------------------------------------

    def validate_ephemeral_containers(self, new: Object, old: Object) -> Errors:
        return []

    # --- delete ----------------------------------------------------------------------------------

    def grace_period(self, obj: Object, requested: int | None) -> int:
        """Seconds of graceful deletion; 0 deletes at once."""
        return 0

    async def released(self, admission: Admission, obj: Object) -> None:
        """The object is gone from storage: free what it held."""
        return None
