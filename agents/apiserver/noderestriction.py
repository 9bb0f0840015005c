"""NodeRestriction admission: a kubelet writes only its own Node, Lease and CSINode and the pods bound to it.

The Node authorizer lets a kubelet write Nodes, pods' status and Leases at all; this check, run on
every write a node's credentials make, narrows that to its own objects, with kube's wording. A pod's
node is read from the Node authorizer's graph (``nodeauthorizer.PodGraph``), not from etcd.
"""

from __future__ import annotations

from agents.apiserver.nodeauthorizer import PodGraph, node_of
from agents.apiserver.rbac import Attributes
from agents.apiserver.status import StatusError, forbidden_object
from agents.machinery.objects import Object

NODE_LEASES = "kube-node-lease"
WRITES = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def _forbidden(attrs: Attributes, name: str, message: str) -> StatusError:
    return forbidden_object(attrs.resource, attrs.api_group, name, message)


def check(attrs: Attributes, graph: PodGraph, *, created_name: str = "", body: Object | None = None) -> None:
    """Refuse (403) a node's write to what is not its own. ``created_name``: the name in a create's
    body; ``body``: the body itself (a TokenRequest's bound pod)."""
    node = node_of(attrs)
    if node is None or attrs.verb not in WRITES:
        return
    name = created_name if attrs.verb == "create" and not attrs.subresource else attrs.name
    if attrs.api_group == "" and attrs.resource == "serviceaccounts" and attrs.subresource == "token":
        _check_token(attrs, graph, node, body or {})
        return
    if attrs.api_group == "" and attrs.resource == "nodes":
        if name != node:
            raise _forbidden(attrs, name, f'node "{node}" is not allowed to modify node "{name}"')
    elif attrs.api_group == "" and attrs.resource == "pods":
        _check_pod(attrs, graph, node, name)
    elif attrs.api_group == "storage.k8s.io" and attrs.resource == "csinodes" and name != node:
        raise _forbidden(attrs, name, "can only access CSINode with the same name as the requesting node")
    elif _node_lease(attrs) and name != node:
        raise _forbidden(
            attrs, name, f'node "{node}" can only access node lease with the same name as the requesting node'
        )


def _node_lease(attrs: Attributes) -> bool:
    return attrs.api_group == "coordination.k8s.io" and attrs.resource == "leases" and attrs.namespace == NODE_LEASES


def _check_token(attrs: Attributes, graph: PodGraph, node: str, body: Object) -> None:
    """A kubelet's token is bound to a pod on its node."""
    ref = (body.get("spec") or {}).get("boundObjectRef") or {}
    if ref.get("kind") != "Pod":
        raise _forbidden(attrs, attrs.name, f'node requested token not bound to a pod (node "{node}")')
    if graph.node_of_pod(attrs.namespace, str(ref.get("name", ""))) != node:
        raise _forbidden(
            attrs, attrs.name, f'node requested token bound to a pod scheduled on a different node (node "{node}")'
        )


def _check_pod(attrs: Attributes, graph: PodGraph, node: str, name: str) -> None:
    if attrs.verb == "create" and not attrs.subresource:
        raise _forbidden(
            attrs,
            name,
            f'pod does not have "kubernetes.io/config.mirror" annotation, node "{node}" can only create mirror pods',
        )
    bound = graph.node_of_pod(attrs.namespace, attrs.name) if attrs.name else None
    if attrs.subresource == "status":
        if bound != node:
            raise _forbidden(
                attrs, name, f'node "{node}" can only update pod status for pods with spec.nodeName set to itself'
            )
    elif attrs.subresource == "eviction" or attrs.verb == "delete":
        if bound != node:
            raise _forbidden(attrs, name, f'node "{node}" can only delete pods with spec.nodeName set to itself')
    elif not attrs.subresource:
        raise _forbidden(attrs, name, f'unexpected operation "{attrs.verb}", node "{node}" can only update pod status')
    else:
        raise _forbidden(
            attrs, name, f"unexpected pod subresource \"{attrs.subresource}\", only 'status' and 'eviction' are allowed"
        )
