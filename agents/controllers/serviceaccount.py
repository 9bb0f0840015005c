"""ServiceAccount controller: every active namespace has a ``default`` ServiceAccount."""

from __future__ import annotations

from dataclasses import dataclass

from agents.controllers.base import Context, Controller
from agents.machinery.client import ApiError
from agents.machinery.objects import Object
from agents.machinery.resources import NAMESPACES, SERVICE_ACCOUNTS


@dataclass(frozen=True)
class Plan:
    create: Object | None = None  # the namespace's default ServiceAccount


def plan(namespace: Object, default_account: Object | None) -> Plan:
    """A namespace that is not being deleted and has no ``default`` ServiceAccount gets one."""
    if namespace["metadata"].get("deletionTimestamp") or default_account is not None:
        return Plan()
    name = namespace["metadata"]["name"]
    return Plan(
        create={"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": name}}
    )


class ServiceAccountController(Controller):
    name = "serviceaccount"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.namespaces = ctx.informer(NAMESPACES)
        self.accounts = ctx.informer(SERVICE_ACCOUNTS)
        self.namespaces.on_any(self.enqueue)
        self.accounts.on(delete=self._account_deleted)

    def _account_deleted(self, account: Object) -> None:
        if account["metadata"]["name"] == "default":
            self.queue.add(account["metadata"]["namespace"])

    async def sync(self, key: str) -> None:
        namespace = self.namespaces.get(key)
        if namespace is None:
            return
        decided = plan(namespace, self.accounts.get(f"{key}/default"))
        if decided.create is not None:
            try:
                await self.client.create(SERVICE_ACCOUNTS, decided.create)
            except ApiError as exc:
                if not exc.already_exists:
                    raise
