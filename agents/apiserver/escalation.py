"""RBAC's escalation prevention: a user may grant only what it holds (kube's role and binding storage checks).

Writing a Role or ClusterRole is refused unless the writer holds every permission its rules grant,
where it would hold them (the role's namespace, or cluster-wide), or may ``escalate`` that role.
Writing a binding is refused unless the writer holds every permission of the role it names, or may
``bind`` that role. ``system:masters`` is never refused; nor are the roles an aggregation fills in (the
controller that fills them holds ``escalate`` on ClusterRoles).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from agents.apiserver.auth import User, with_authenticated
from agents.apiserver.authorization import PRIVILEGED_GROUP, Authorizer, may
from agents.apiserver.rbac import Rule, covers
from agents.apiserver.resources import Resource
from agents.apiserver.status import StatusError
from agents.machinery.objects import Object

GROUP = "rbac.authorization.k8s.io"
ROLES = frozenset({"roles", "clusterroles"})
BINDINGS = frozenset({"rolebindings", "clusterrolebindings"})
# a rule as kube's refusal prints it (PolicyRule's CompactString)
COMPACT = (
    ("apiGroups", "APIGroups"),
    ("resources", "Resources"),
    ("resourceNames", "ResourceNames"),
    ("nonResourceURLs", "NonResourceURLs"),
    ("verbs", "Verbs"),
)


def _may(authorizer: Authorizer, user: User, verb: str, resource: str, *, namespace: str, name: str) -> bool:
    return may(authorizer, user, verb, GROUP, resource, namespace=namespace, name=name)


def _not_held(rules: Sequence[Rule], owned: Sequence[Rule]) -> list[Rule]:
    return [rule for rule in rules if not covers(owned, rule)]


def _refused(resource: Resource, name: str, user: User, groups: Sequence[str], missing: Sequence[Rule]) -> StatusError:
    listed = "\n".join(
        "{" + ", ".join(f"{label}:{json.dumps(rule[key])}" for key, label in COMPACT if rule.get(key)) + "}"
        for rule in missing
    )
    message = (
        f'{resource.plural}.{GROUP} "{name}" is forbidden: user "{user.name}" (groups={json.dumps(list(groups))})'
        f" is attempting to grant RBAC permissions not currently held:\n{listed}"
    )
    return StatusError(403, "Forbidden", message, details={"name": name, "group": GROUP, "kind": resource.plural})


GRANTING = ("rules", "aggregationRule", "roleRef", "subjects")  # what a role or binding grants by


def check(
    authorizer: Authorizer,
    user: User | None,
    resource: Resource,
    namespace: str,
    obj: Object,
    *,
    old: Object | None = None,
) -> None:
    """Refuse (403) a Role, ClusterRole or binding ``user`` may not write because of what it grants. An
    update that leaves what it grants as it was (the garbage collector's finalizers and owners) passes."""
    if user is None or resource.group != GROUP or not authorizer.uses_rbac:
        return
    if old is not None and all(obj.get(key) == old.get(key) for key in GRANTING):
        return
    groups = with_authenticated(user.groups)
    if PRIVILEGED_GROUP in groups:
        return
    name = str((obj.get("metadata") or {}).get("name", ""))
    owned = authorizer.rbac.granted(user.name, groups, namespace)
    if resource.plural in ROLES:
        if obj.get("aggregationRule") or _may(
            authorizer, user, "escalate", resource.plural, namespace=namespace, name=name
        ):
            return
        missing = _not_held([r for r in obj.get("rules") or [] if isinstance(r, dict)], owned)
    elif resource.plural in BINDINGS:
        ref = obj.get("roleRef") or {}
        kind = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
        if _may(authorizer, user, "bind", kind, namespace=namespace, name=str(ref.get("name", ""))):
            return
        missing = _not_held(authorizer.rbac.role_rules(ref, namespace), owned)
    else:
        return
    if missing:
        raise _refused(resource, name, user, groups, missing)
