"""ClusterRole aggregation controller: a ClusterRole with an ``aggregationRule`` holds the rules of every
ClusterRole its selectors match (how ``admin``, ``edit`` and ``view`` gather the rules labelled
``rbac.authorization.k8s.io/aggregate-to-*``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agents.controllers.base import Context, Controller
from agents.machinery import selectors
from agents.machinery.objects import Object
from agents.machinery.resources import CLUSTER_ROLES
from agents.machinery.selectors import SelectorError


def aggregated_rules(role: Object, roles: Iterable[Object]) -> list[dict[str, Any]] | None:
    """The rules ``role`` should hold (each distinct rule once, in name order of the roles it came
    from), or None when it aggregates nothing or a selector is invalid."""
    rule = role.get("aggregationRule")
    if not rule:
        return None
    try:
        chosen = [selectors.from_structured(s) for s in rule.get("clusterRoleSelectors") or []]
    except SelectorError:
        return None
    name = role["metadata"]["name"]
    out: list[dict[str, Any]] = []
    for other in sorted(roles, key=lambda r: str(r["metadata"]["name"])):
        if other["metadata"]["name"] == name:
            continue
        labels = other["metadata"].get("labels") or {}
        if any(selector.matches(labels) for selector in chosen):
            out += [r for r in other.get("rules") or [] if r not in out]
    return out


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.roles = ctx.informer(CLUSTER_ROLES)
        self.roles.on_any(self._changed)

    def _changed(self, _role: Object) -> None:
        # any role may feed any aggregating one: look at each of those again
        for role in self.roles.items():
            if role.get("aggregationRule"):
                self.queue.add(role["metadata"]["name"])

    async def sync(self, key: str) -> None:
        role = self.roles.get(key)
        if role is None:
            return
        rules = aggregated_rules(role, self.roles.items())
        if rules is None or rules == (role.get("rules") or []):
            return
        await self.client.update(CLUSTER_ROLES, {**role, "rules": rules})
