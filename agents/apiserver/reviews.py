"""The API's questions about access, answered and never stored: ``kubectl auth can-i`` (a
SelfSubjectAccessReview, or with ``--list`` a SelfSubjectRulesReview), a SubjectAccessReview (may this
user...?) and its namespaced LocalSubjectAccessReview, and ``kubectl auth whoami`` (a SelfSubjectReview).

Each answer is the body the client sent with its ``status`` filled in, as kube answers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents.apiserver import authorization
from agents.apiserver.auth import User, with_authenticated
from agents.apiserver.authorization import Authorizer
from agents.apiserver.rbac import Attributes
from agents.apiserver.status import invalid, invalid_object, required
from agents.machinery.objects import Object

ONE_OF = "exactly one of nonResourceAttributes or resourceAttributes must be specified"


def _attributes(user: str, groups: Sequence[str], spec: dict[str, Any], kind: str, name: str) -> Attributes:
    resource = spec.get("resourceAttributes")
    non_resource = spec.get("nonResourceAttributes")
    if (resource is None) == (non_resource is None):
        raise invalid_object(
            kind,
            name,
            "authorization.k8s.io",
            [
                required(
                    "spec.resourceAttributes",
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )
            ],
        )
    if non_resource is not None or resource is None:
        return Attributes(
            user=user,
            groups=tuple(groups),
            verb=str((non_resource or {}).get("verb", "")),
            resource_request=False,
            path=str((non_resource or {}).get("path", "")),
        )
    assert resource is not None
    return Attributes(
        user=user,
        groups=tuple(groups),
        verb=str(resource.get("verb", "")),
        resource_request=True,
        namespace=str(resource.get("namespace", "")),
        api_group=str(resource.get("group", "")),
        resource=str(resource.get("resource", "")),
        subresource=str(resource.get("subresource", "")),
        name=str(resource.get("name", "")),
    )


def _decided(authorizer: Authorizer, body: Object, attrs: Attributes) -> Object:
    allowed = authorizer.allows(attrs)
    status: dict[str, Any] = {"allowed": allowed}
    if allowed:
        status["reason"] = (
            "the user is in system:masters" if authorization.PRIVILEGED_GROUP in attrs.groups else "allowed by RBAC"
        )
    return {**body, "status": status}


def self_subject_access_review(authorizer: Authorizer, user: User, body: Object) -> Object:
    attrs = _attributes(
        user.name, with_authenticated(user.groups), body.get("spec") or {}, "SelfSubjectAccessReview", ""
    )
    return _decided(authorizer, body, attrs)


def subject_access_review(authorizer: Authorizer, body: Object, *, namespace: str = "") -> Object:
    kind = "LocalSubjectAccessReview" if namespace else "SubjectAccessReview"
    spec = body.get("spec") or {}
    name = str((body.get("metadata") or {}).get("name", ""))
    if not spec.get("user") and not spec.get("groups"):
        raise invalid_object(
            kind,
            name,
            "authorization.k8s.io",
            [required("spec.user", "at least one of user or group must be specified")],
        )
    attrs = _attributes(str(spec.get("user", "")), spec.get("groups") or [], spec, kind, name)
    if namespace and attrs.resource_request and attrs.namespace != namespace:
        raise invalid_object(
            kind,
            name,
            "authorization.k8s.io",
            [invalid("spec.resourceAttributes.namespace", attrs.namespace, "must match metadata.namespace")],
        )
    return _decided(authorizer, body, attrs)


def self_subject_rules_review(authorizer: Authorizer, user: User, body: Object) -> Object:
    """What the user may do in ``spec.namespace``: the rules of its bindings there and cluster-wide."""
    namespace = str((body.get("spec") or {}).get("namespace", ""))
    groups = with_authenticated(user.groups)
    resource_rules: list[dict[str, Any]] = []
    non_resource_rules: list[dict[str, Any]] = []
    for rule in authorizer.rbac.granted(user.name, groups, namespace):
        if rule.get("nonResourceURLs"):
            non_resource_rules.append({"verbs": rule.get("verbs") or [], "nonResourceURLs": rule["nonResourceURLs"]})
        else:
            entry = {k: rule[k] for k in ("verbs", "apiGroups", "resources", "resourceNames") if rule.get(k)}
            resource_rules.append(entry)
    status = {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": False}
    return {**body, "status": status}


def self_subject_review(user: User, body: Object) -> Object:
    info: dict[str, Any] = {"username": user.name, "groups": list(with_authenticated(user.groups))}
    if user.uid:
        info["uid"] = user.uid
    return {**body, "status": {"userInfo": info}}


def answer(authorizer: Authorizer, kind: str, user: User, body: Object, namespace: str) -> Object:
    """The answer to a review of ``kind`` the user sent."""
    if kind == "SelfSubjectAccessReview":
        return self_subject_access_review(authorizer, user, body)
    if kind == "SelfSubjectRulesReview":
        return self_subject_rules_review(authorizer, user, body)
    if kind == "SubjectAccessReview":
        return subject_access_review(authorizer, body)
    if kind == "LocalSubjectAccessReview":
        return subject_access_review(authorizer, body, namespace=namespace)
    return self_subject_review(user, body)
