"""Authorization: the step after authentication, before admission (kube-apiserver's --authorization-mode).

The modes are tried in order and the first to allow a request wins; a request none allows is refused
with a 403 Status worded as kube words it. ``AlwaysAllow`` (the default, for labs and tests that run
without credentials) allows everything; ``Node`` judges kubelets by the pods bound to their nodes
(``nodeauthorizer.py``); ``RBAC`` asks the stored roles and bindings (``rbac.py``).
Members of ``system:masters`` are allowed everything before any mode is asked, as kube's privileged
group is: the lab's admin keeps working whatever the bindings say.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from agents.apiserver.auth import User, with_authenticated
from agents.apiserver.nodeauthorizer import NodeAuthorizer, PodGraph
from agents.apiserver.rbac import Attributes, RbacIndex
from agents.apiserver.requestinfo import RequestInfo
from agents.apiserver.status import StatusError, forbidden_object
from agents.machinery.errors import KubelabError

MODES = ("AlwaysAllow", "AlwaysDeny", "Node", "RBAC")
PRIVILEGED_GROUP = "system:masters"


class AuthorizationModeError(KubelabError):
    """An unknown authorization mode was configured."""


def attributes(user: str, groups: Sequence[str], info: RequestInfo) -> Attributes:
    """The attributes of an authenticated user's request (kube adds ``system:authenticated``)."""
    return Attributes(
        user=user,
        groups=with_authenticated(groups),
        verb=info.verb,
        resource_request=info.resource_request,
        namespace=info.namespace,
        api_group=info.api_group,
        resource=info.resource,
        subresource=info.subresource,
        name=info.name,
        path=info.path,
    )


STREAMING_SUBRESOURCES = frozenset({"exec", "attach", "portforward"})


def checks(attrs: Attributes) -> tuple[Attributes, ...]:
    """What a request must be allowed, in order: its own attributes; a WebSocket upgrade (a GET) to a
    pod's exec, attach or portforward also needs ``create`` on that subresource, as kube-apiserver
    asks since the WebSocket protocols came in (the SPDY upgrade is a POST, a create already)."""
    streaming = (
        attrs.verb == "get"
        and attrs.resource_request
        and attrs.api_group == ""
        and attrs.resource == "pods"
        and attrs.subresource in STREAMING_SUBRESOURCES
    )
    return (attrs, replace(attrs, verb="create")) if streaming else (attrs,)


def may(
    authorizer: Authorizer,
    user: User,
    verb: str,
    api_group: str,
    resource: str,
    *,
    namespace: str = "",
    name: str = "",
) -> bool:
    """Whether ``user`` may ``verb`` the resource (or the object ``name``): what admission asks beyond
    the request itself (escalation prevention, the CSR approver, ...)."""
    attrs = Attributes(
        user=user.name,
        groups=with_authenticated(user.groups),
        verb=verb,
        resource_request=True,
        namespace=namespace,
        api_group=api_group,
        resource=resource,
        name=name,
    )
    return authorizer.allows(attrs)


class Authorizer:
    def __init__(self, modes: Sequence[str], rbac: RbacIndex | None = None, node: NodeAuthorizer | None = None) -> None:
        unknown = [m for m in modes if m not in MODES]
        if unknown or not modes:
            raise AuthorizationModeError(
                f"unknown authorization mode {unknown[0] if unknown else '(none)'!r};"
                f" use one or more of {', '.join(MODES)}"
            )
        self.modes = tuple(modes)
        self.rbac = rbac if rbac is not None else RbacIndex()
        self.node = node if node is not None else NodeAuthorizer(PodGraph(), ())

    @property
    def uses_rbac(self) -> bool:
        return "RBAC" in self.modes

    @property
    def uses_node(self) -> bool:
        return "Node" in self.modes

    def allows(self, attrs: Attributes) -> bool:
        return bool(self.allowed_by(attrs))

    def allowed_by(self, attrs: Attributes) -> str:
        """What allows the request (the privileged group or the first mode that does), or "" when none does."""
        if PRIVILEGED_GROUP in attrs.groups:
            return "the group " + PRIVILEGED_GROUP
        for mode in self.modes:
            if mode == "AlwaysAllow":
                return mode
            if mode == "RBAC" and self.rbac.allows(attrs):
                return mode
            if mode == "Node" and self.node.allows(attrs):
                return mode
        return ""


def reason(authorizer: Authorizer, attrs: Attributes) -> str:
    """What a refusal adds after the user and the request: the Node authorizer's reason, if it had one."""
    return authorizer.node.reason(attrs) if authorizer.uses_node else ""


def forbidden_message(attrs: Attributes) -> str:
    """What kube says a user may not do (its forbiddenMessage)."""
    if not attrs.resource_request:
        return f'User "{attrs.user}" cannot {attrs.verb} path "{attrs.path}"'
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    return f'User "{attrs.user}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.api_group}" {where}'


def forbidden(attrs: Attributes, reason: str = "") -> StatusError:
    """The 403 Status of a refused request: ``pods "x" is forbidden: User ...`` (kube's NewForbidden)."""
    message = forbidden_message(attrs) + (f": {reason}" if reason else "")
    if not attrs.resource_request:
        return StatusError(403, "Forbidden", f"forbidden: {message}", details={})
    return forbidden_object(attrs.resource, attrs.api_group, attrs.name, message)
