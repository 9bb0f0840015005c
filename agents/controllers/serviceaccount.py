"""ServiceAccount controller: every active namespace has a ``default`` ServiceAccount."""

from __future__ import annotations

from agents.controllers.base import Context, Controller
from agents.machinery.client import ApiError
from agents.machinery.objects import Object
from agents.machinery.resources import NAMESPACES, SERVICE_ACCOUNTS


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
        if namespace is None or namespace["metadata"].get("deletionTimestamp"):
            return
        if self.accounts.get(f"{key}/default") is not None:
            return
        try:
            await self.client.create(
                SERVICE_ACCOUNTS,
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": key}},
            )
        except ApiError as exc:
            if not exc.already_exists:
                raise
