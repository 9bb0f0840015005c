"""RBAC: which requests the stored Roles, ClusterRoles and their bindings allow (kube's RBAC authorizer).

A request's attributes (who, which verb, on what) are allowed when a rule of a role bound to the user
allows them: the ClusterRoles of ClusterRoleBindings whose subjects name the user, one of its groups
or its ServiceAccount, then, in the request's namespace, the Roles and ClusterRoles of that
namespace's RoleBindings. RBAC only ever allows; nothing here denies. A binding to a role that does
not exist grants nothing (and is kept, as kube keeps it).

``RbacIndex`` holds the four kinds as the API server's watch cache feeds them (``put``/``drop`` by
storage key). What a user's bindings grant in a namespace is worked out once per change of any RBAC
object and kept, so a request costs a dictionary lookup and a walk over that user's own rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.machinery.objects import Object

PREFIX = "/registry/rbac.authorization.k8s.io/"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
Rule = dict[str, Any]


@dataclass(frozen=True)
class Attributes:
    """What an authorizer judges (kube's authorizer.Attributes)."""

    user: str
    groups: tuple[str, ...]
    verb: str
    resource_request: bool
    namespace: str = ""
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""


def _has(values: Sequence[str] | None, wanted: str) -> bool:
    return bool(values) and (wanted in values or "*" in values)  # type: ignore[operator]


def _resource_matches(rule: Rule, resource: str, subresource: str) -> bool:
    resources = rule.get("resources") or []
    if "*" in resources:
        return True
    if not subresource:
        return resource in resources
    return f"{resource}/{subresource}" in resources or f"*/{subresource}" in resources


def _url_matches(rule: Rule, path: str) -> bool:
    for url in rule.get("nonResourceURLs") or []:
        if url in ("*", path) or (url.endswith("*") and path.startswith(url[:-1])):
            return True
    return False


def rule_allows(rule: Rule, attrs: Attributes) -> bool:
    """Whether one PolicyRule allows the request (kube's RuleAllows)."""
    if not _has(rule.get("verbs"), attrs.verb):
        return False
    if not attrs.resource_request:
        return _url_matches(rule, attrs.path)
    names = rule.get("resourceNames") or []
    return (
        _has(rule.get("apiGroups"), attrs.api_group)
        and _resource_matches(rule, attrs.resource, attrs.subresource)
        and (not names or attrs.name in names)
    )


def subject_matches(subject: dict[str, Any], user: str, groups: Iterable[str], binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return bool(user == name)
    if kind == "Group":
        return name in groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return bool(user == f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}")
    return False


@dataclass
class RbacIndex:
    """The stored RBAC objects, by kind, as the watch cache last saw them."""

    cluster_roles: dict[str, Object] = field(default_factory=dict)
    roles: dict[tuple[str, str], Object] = field(default_factory=dict)
    cluster_bindings: dict[str, Object] = field(default_factory=dict)
    bindings: dict[str, dict[str, Object]] = field(default_factory=dict)  # namespace -> name -> binding
    generation: int = 0
    _granted: dict[tuple[str, tuple[str, ...], str], tuple[Rule, ...]] = field(default_factory=dict)

    prefix = PREFIX

    # --- fed by the watch cache ------------------------------------------------------------------

    def reset(self) -> None:
        self.cluster_roles.clear()
        self.roles.clear()
        self.cluster_bindings.clear()
        self.bindings.clear()
        self._changed()

    def put(self, key: str, obj: Object) -> None:
        kind, namespace, name = _split(key)
        if kind == "clusterroles":
            self.cluster_roles[name] = obj
        elif kind == "roles":
            self.roles[(namespace, name)] = obj
        elif kind == "clusterrolebindings":
            self.cluster_bindings[name] = obj
        elif kind == "rolebindings":
            self.bindings.setdefault(namespace, {})[name] = obj
        self._changed()

    def drop(self, key: str) -> None:
        kind, namespace, name = _split(key)
        if kind == "clusterroles":
            self.cluster_roles.pop(name, None)
        elif kind == "roles":
            self.roles.pop((namespace, name), None)
        elif kind == "clusterrolebindings":
            self.cluster_bindings.pop(name, None)
        elif kind == "rolebindings":
            self.bindings.get(namespace, {}).pop(name, None)
        self._changed()

    def _changed(self) -> None:
        self.generation += 1
        self._granted.clear()

    # --- questions -------------------------------------------------------------------------------

    def role_rules(self, ref: dict[str, Any], namespace: str) -> list[Rule]:
        """The rules of the role a roleRef names ([] when it does not exist)."""
        if ref.get("kind") == "ClusterRole":
            role = self.cluster_roles.get(ref.get("name", ""))
        else:
            role = self.roles.get((namespace, ref.get("name", "")))
        return [r for r in (role or {}).get("rules") or [] if isinstance(r, dict)]

    def granted(self, user: str, groups: tuple[str, ...], namespace: str) -> tuple[Rule, ...]:
        """Every rule the user's bindings give it: cluster-wide ones, then those of ``namespace``."""
        key = (user, groups, namespace)
        found = self._granted.get(key)
        if found is not None:
            return found
        rules: list[Rule] = []
        for binding in self.cluster_bindings.values():
            if any(subject_matches(s, user, groups, "") for s in binding.get("subjects") or []):
                rules += self.role_rules(binding.get("roleRef") or {}, "")
        if namespace:
            for binding in self.bindings.get(namespace, {}).values():
                if any(subject_matches(s, user, groups, namespace) for s in binding.get("subjects") or []):
                    rules += self.role_rules(binding.get("roleRef") or {}, namespace)
        found = tuple(rules)
        if len(self._granted) > 4096:
            self._granted.clear()
        self._granted[key] = found
        return found

    def allows(self, attrs: Attributes) -> bool:
        return any(rule_allows(rule, attrs) for rule in self.granted(attrs.user, attrs.groups, attrs.namespace))


def _split(key: str) -> tuple[str, str, str]:
    """``/registry/rbac.authorization.k8s.io/roles/NS/NAME`` -> ("roles", "NS", "NAME")."""
    parts = key[len(PREFIX) :].split("/")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    return parts[0], "", parts[-1]


def covers(owned: Sequence[Rule], wanted: Rule) -> bool:
    """Whether ``owned`` rules allow everything ``wanted`` allows (escalation prevention: a user may
    grant only what it holds). Each verb, group, resource, name and URL of ``wanted`` is checked on its
    own against the owned rules, as kube's Covers breaks rules into single permissions."""
    verbs = wanted.get("verbs") or []
    urls = wanted.get("nonResourceURLs") or []
    if urls:
        return all(
            any(_has(r.get("verbs"), verb) and _url_matches(r, url) for r in owned) for verb in verbs for url in urls
        )
    names = wanted.get("resourceNames") or [""]
    for verb in verbs:
        for group in wanted.get("apiGroups") or []:
            for resource in wanted.get("resources") or []:
                for name in names:
                    if not any(_resource_rule_covers(r, verb, group, resource, name) for r in owned):
                        return False
    return True


def _resource_rule_covers(rule: Rule, verb: str, group: str, resource: str, name: str) -> bool:
    if not _has(rule.get("verbs"), verb) or not _has(rule.get("apiGroups"), group):
        return False
    resources = rule.get("resources") or []
    sub = resource.partition("/")[2]
    if not ("*" in resources or resource in resources or (sub and f"*/{sub}" in resources)):
        return False
    names = rule.get("resourceNames") or []
    return not names or (bool(name) and name in names)
