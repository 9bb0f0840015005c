"""Strategies for rbac.authorization.k8s.io/v1: Role, ClusterRole, RoleBinding, ClusterRoleBinding.

Names are path segments (``system:kube-scheduler`` is a valid name), as kube's ValidateRBACName has
it. A binding's ``roleRef`` never changes once stored; a binding may name a role that does not exist
(kube stores it, and it grants nothing until the role appears).
"""

from __future__ import annotations

from typing import Any

from agents.apiserver import validation as v
from agents.apiserver.kinds.base import Strategy
from agents.apiserver.status import invalid, not_supported, required
from agents.apiserver.validation import Errors
from agents.machinery.objects import Object

GROUP = "rbac.authorization.k8s.io"
SUBJECT_KINDS = ("ServiceAccount", "User", "Group")


def _rule_errors(path: str, rule: dict[str, Any], *, namespaced: bool) -> Errors:
    out: Errors = []
    if not rule.get("verbs"):
        out.append(required(f"{path}.verbs", "verbs must contain at least one value"))
    urls = rule.get("nonResourceURLs") or []
    if urls:
        if namespaced:
            out.append(invalid(f"{path}.nonResourceURLs", urls, "namespaced rules cannot apply to non-resource URLs"))
        if rule.get("apiGroups") or rule.get("resources"):
            out.append(
                invalid(
                    f"{path}.nonResourceURLs",
                    urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                )
            )
        return out
    if not rule.get("apiGroups"):
        out.append(required(f"{path}.apiGroups", "resource rules must supply at least one api group"))
    if not rule.get("resources"):
        out.append(required(f"{path}.resources", "resource rules must supply at least one resource"))
    return out


class RoleStrategy(Strategy):
    name_check = staticmethod(v.path_segment)

    def validate(self, obj: Object) -> Errors:
        out: Errors = []
        namespaced = self.resource.namespaced
        for i, rule in enumerate(obj.get("rules") or []):
            out += _rule_errors(f"rules[{i}]", rule if isinstance(rule, dict) else {}, namespaced=namespaced)
        aggregation = obj.get("aggregationRule")
        if aggregation is not None:
            for i, selector in enumerate(aggregation.get("clusterRoleSelectors") or []):
                out += v.label_selector(f"aggregationRule.clusterRoleSelectors[{i}]", selector)
        return out


class BindingStrategy(Strategy):
    name_check = staticmethod(v.path_segment)

    def default(self, obj: Object) -> None:
        for subject in obj.get("subjects") or []:
            if isinstance(subject, dict) and subject.get("kind") in ("User", "Group"):
                subject.setdefault("apiGroup", GROUP)

    def validate(self, obj: Object) -> Errors:
        out: Errors = []
        ref = obj.get("roleRef") or {}
        kinds = ("Role", "ClusterRole") if self.resource.namespaced else ("ClusterRole",)
        if ref.get("apiGroup") != GROUP:
            out.append(not_supported("roleRef.apiGroup", ref.get("apiGroup", ""), (GROUP,)))
        if ref.get("kind") not in kinds:
            out.append(not_supported("roleRef.kind", ref.get("kind", ""), kinds))
        if not ref.get("name"):
            out.append(required("roleRef.name"))
        else:
            out += v.name_errors("roleRef.name", ref["name"], v.path_segment)
        for i, subject in enumerate(obj.get("subjects") or []):
            out += self._subject_errors(f"subjects[{i}]", subject if isinstance(subject, dict) else {})
        return out

    def _subject_errors(self, path: str, subject: dict[str, Any]) -> Errors:
        out: Errors = []
        kind = subject.get("kind", "")
        if not subject.get("name"):
            out.append(required(f"{path}.name"))
        if kind not in SUBJECT_KINDS:
            return [*out, not_supported(f"{path}.kind", kind, SUBJECT_KINDS)]
        if kind == "ServiceAccount":
            if subject.get("apiGroup"):
                out.append(not_supported(f"{path}.apiGroup", subject["apiGroup"], ("",)))
            if not self.resource.namespaced and not subject.get("namespace"):
                out.append(required(f"{path}.namespace"))
        elif subject.get("apiGroup") != GROUP:
            out.append(not_supported(f"{path}.apiGroup", subject.get("apiGroup", ""), (GROUP,)))
        return out

    def validate_update(self, new: Object, old: Object) -> Errors:
        out = self.validate(new)
        if new.get("roleRef") != old.get("roleRef"):
            out.append(invalid("roleRef", new.get("roleRef"), "cannot change roleRef"))
        return out
