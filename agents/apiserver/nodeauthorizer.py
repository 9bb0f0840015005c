"""The Node authorizer: what a kubelet may read and write, judged by the pods bound to its node.

A kubelet calls as ``system:node:<node>`` in the group ``system:nodes``. It may ``get`` a Secret, a
ConfigMap or a PersistentVolumeClaim only when a pod bound to its node refers to it (a volume, an
environment variable, an image pull secret), update or patch such a claim's status (volume
expansion), ``get`` a PersistentVolume only when its ``claimRef`` names such a claim, ``get`` a
VolumeAttachment only when its ``spec.nodeName`` is the node, write only its own CSINode (the name is
checked on every verb but create, which NodeRestriction checks), and request a token only for a
ServiceAccount such a pod runs as, as kube's graph of pods, nodes and what pods use decides;
for everything else it holds the ``system:node`` rules. What it may then write is narrowed further by
NodeRestriction admission (``noderestriction.py``). A request from anyone else is not this
authorizer's to decide.

``PodGraph`` is the graph: the watch cache feeds it every pod, and it keeps for each pod its node and
for each object pods use, the pods that use it. Its two companions, fed the same way, keep each
PersistentVolume's claim (``VolumeClaims``) and each VolumeAttachment's node (``Attachments``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from agents.apiserver.rbac import Attributes, Rule, rule_allows
from agents.machinery.objects import Object

NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
PODS_PREFIX = "/registry/pods/"
VOLUMES_PREFIX = "/registry/persistentvolumes/"
ATTACHMENTS_PREFIX = "/registry/storage.k8s.io/volumeattachments/"
STORAGE_GROUP = "storage.k8s.io"
CSI_NODE_VERBS = ("get", "create", "update", "patch", "delete")
# what a node reaches only through its pods, and only by name
GRAPHED = frozenset({"secrets", "configmaps", "persistentvolumeclaims"})

Ref = tuple[str, str, str]  # (resource, namespace, name)


def node_of(attrs: Attributes) -> str | None:
    """The node a request comes from (None: not a node's)."""
    if NODES_GROUP not in attrs.groups or not attrs.user.startswith(NODE_PREFIX):
        return None
    return attrs.user[len(NODE_PREFIX) :] or None


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(group) or []:
            if isinstance(container, dict):
                yield container


def references(pod: Object) -> set[Ref]:
    """The Secrets, ConfigMaps and claims a pod uses."""
    namespace = pod["metadata"].get("namespace", "")
    spec = pod.get("spec") or {}
    out: set[Ref] = set()

    def add(resource: str, name: Any) -> None:
        if isinstance(name, str) and name:
            out.add((resource, namespace, name))

    add("serviceaccounts", spec.get("serviceAccountName") or "default")
    for secret in spec.get("imagePullSecrets") or []:
        add("secrets", (secret or {}).get("name"))
    for listed in spec.get("volumes") or []:
        volume = listed or {}
        add("secrets", (volume.get("secret") or {}).get("secretName"))
        add("configmaps", (volume.get("configMap") or {}).get("name"))
        add("persistentvolumeclaims", (volume.get("persistentVolumeClaim") or {}).get("claimName"))
        for source in (volume.get("projected") or {}).get("sources") or []:
            add("secrets", ((source or {}).get("secret") or {}).get("name"))
            add("configmaps", ((source or {}).get("configMap") or {}).get("name"))
    for container in _containers(spec):
        for source in container.get("envFrom") or []:
            add("secrets", ((source or {}).get("secretRef") or {}).get("name"))
            add("configmaps", ((source or {}).get("configMapRef") or {}).get("name"))
        for env in container.get("env") or []:
            value_from = (env or {}).get("valueFrom") or {}
            add("secrets", (value_from.get("secretKeyRef") or {}).get("name"))
            add("configmaps", (value_from.get("configMapKeyRef") or {}).get("name"))
    return out


def _name_of(key: str) -> str:
    return key.rsplit("/", 1)[-1]


@dataclass
class VolumeClaims:
    """Each PersistentVolume's claim (its ``spec.claimRef``): the edge from a volume to the claim, and
    through the claim's pods, to nodes."""

    claims: dict[str, Ref] = field(default_factory=dict)  # volume name -> the claim it is bound to

    prefix = VOLUMES_PREFIX

    def reset(self) -> None:
        self.claims.clear()

    def put(self, key: str, obj: Object) -> None:
        ref = (obj.get("spec") or {}).get("claimRef") or {}
        namespace, name = ref.get("namespace"), ref.get("name")
        if isinstance(namespace, str) and isinstance(name, str) and namespace and name:
            self.claims[_name_of(key)] = ("persistentvolumeclaims", namespace, name)
        else:
            self.claims.pop(_name_of(key), None)

    def drop(self, key: str) -> None:
        self.claims.pop(_name_of(key), None)


@dataclass
class Attachments:
    """Each VolumeAttachment's node (its ``spec.nodeName``)."""

    nodes: dict[str, str] = field(default_factory=dict)  # attachment name -> node

    prefix = ATTACHMENTS_PREFIX

    def reset(self) -> None:
        self.nodes.clear()

    def put(self, key: str, obj: Object) -> None:
        self.nodes[_name_of(key)] = str((obj.get("spec") or {}).get("nodeName") or "")

    def drop(self, key: str) -> None:
        self.nodes.pop(_name_of(key), None)


@dataclass
class PodGraph:
    """Pods, their nodes and what they use, as the watch cache last saw them."""

    nodes: dict[str, str] = field(default_factory=dict)  # pod key -> node ('' while unscheduled)
    uses: dict[str, set[Ref]] = field(default_factory=dict)  # pod key -> what it uses
    users: dict[Ref, set[str]] = field(default_factory=dict)  # what is used -> pod keys
    volumes: VolumeClaims = field(default_factory=VolumeClaims)
    attachments: Attachments = field(default_factory=Attachments)

    prefix = PODS_PREFIX

    @property
    def indexes(self) -> tuple[PodGraph | VolumeClaims | Attachments, ...]:
        """What the watch cache keeps current: the pods, and the volumes' and attachments' edges."""
        return (self, self.volumes, self.attachments)

    def reset(self) -> None:
        self.nodes.clear()
        self.uses.clear()
        self.users.clear()

    def put(self, key: str, obj: Object) -> None:
        self.drop(key)
        self.nodes[key] = str((obj.get("spec") or {}).get("nodeName") or "")
        refs = references(obj)
        self.uses[key] = refs
        for ref in refs:
            self.users.setdefault(ref, set()).add(key)

    def drop(self, key: str) -> None:
        self.nodes.pop(key, None)
        for ref in self.uses.pop(key, set()):
            keys = self.users.get(ref)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.users[ref]

    def node_of_pod(self, namespace: str, name: str) -> str | None:
        """The node a stored pod is bound to ('' unscheduled, None unknown)."""
        return self.nodes.get(f"{PODS_PREFIX}{namespace}/{name}")

    def used_on(self, node: str, ref: Ref) -> bool:
        return any(self.nodes.get(key) == node for key in self.users.get(ref, ()))

    def volume_used_on(self, node: str, volume: str) -> bool:
        """A pod on ``node`` uses the claim the volume is bound to."""
        claim = self.volumes.claims.get(volume)
        return claim is not None and self.used_on(node, claim)

    def attached_to(self, node: str, attachment: str) -> bool:
        return bool(node) and self.attachments.nodes.get(attachment) == node


class NodeAuthorizer:
    def __init__(self, graph: PodGraph, node_rules: Sequence[Rule]) -> None:
        self.graph = graph
        self.node_rules = tuple(node_rules)

    def allows(self, attrs: Attributes) -> bool:
        node = node_of(attrs)
        if node is None:
            return False
        if attrs.resource_request and attrs.api_group == STORAGE_GROUP:
            if attrs.resource == "volumeattachments":
                return (attrs.verb, attrs.subresource) == ("get", "") and self.graph.attached_to(node, attrs.name)
            if attrs.resource == "csinodes":
                own = attrs.verb == "create" or attrs.name == node  # create: NodeRestriction checks the name
                return attrs.verb in CSI_NODE_VERBS and not attrs.subresource and own
        if attrs.resource_request and attrs.api_group == "" and attrs.resource == "persistentvolumes":
            return (attrs.verb, attrs.subresource) == ("get", "") and self.graph.volume_used_on(node, attrs.name)
        if attrs.resource_request and attrs.api_group == "" and attrs.resource == "persistentvolumeclaims":
            ref = (attrs.resource, attrs.namespace, attrs.name)
            if attrs.subresource == "status":  # a claim's status, for volume expansion
                return attrs.verb in ("update", "patch") and self.graph.used_on(node, ref)
            return (attrs.verb, attrs.subresource) == ("get", "") and self.graph.used_on(node, ref)
        if attrs.resource_request and attrs.api_group == "" and attrs.resource in GRAPHED and not attrs.subresource:
            return attrs.verb == "get" and self.graph.used_on(node, (attrs.resource, attrs.namespace, attrs.name))
        if attrs.resource_request and attrs.api_group == "" and attrs.resource == "serviceaccounts":
            # a token for an account a pod on this node runs as (NodeRestriction binds it to that pod)
            ref = ("serviceaccounts", attrs.namespace, attrs.name)
            return (attrs.subresource, attrs.verb) == ("token", "create") and self.graph.used_on(node, ref)
        return any(rule_allows(rule, attrs) for rule in self.node_rules)

    def reason(self, attrs: Attributes) -> str:
        """Why a node's request it refuses is refused, in kube's words ("" when its rules simply do not
        cover it, or the request is not a node's)."""
        node = node_of(attrs)
        if node is None or not attrs.resource_request:
            return ""
        if attrs.api_group == STORAGE_GROUP:
            return _storage_reason(attrs, node)
        if attrs.api_group != "":
            return ""
        if attrs.resource == "persistentvolumeclaims" and attrs.subresource == "status":
            if attrs.verb not in ("update", "patch"):
                return "can only get/update/patch this type"
            return f"no relationship found between node '{node}' and this object"
        if attrs.resource in ("persistentvolumes", "persistentvolumeclaims"):
            if attrs.verb != "get":
                return "can only get individual resources of this type"
            if attrs.subresource:
                return "cannot get subresource"
            return f"no relationship found between node '{node}' and this object"
        if attrs.resource in GRAPHED and not attrs.subresource:
            if attrs.verb != "get" or not attrs.name:
                return "can only get individual resources of this type"
            return f"no relationship found between node '{node}' and this object"
        if attrs.resource == "serviceaccounts":
            if (attrs.subresource, attrs.verb) != ("token", "create"):
                return "can only create tokens for individual service accounts"
            return f"no relationship found between node '{node}' and this object"
        return ""


def _storage_reason(attrs: Attributes, node: str) -> str:
    if attrs.resource == "volumeattachments":
        if attrs.verb != "get":
            return "can only get individual resources of this type"
        if attrs.subresource:
            return "cannot get subresource"
        return f"no relationship found between node '{node}' and this object"
    if attrs.resource == "csinodes":
        if attrs.verb not in CSI_NODE_VERBS:
            return "can only get, create, update, patch, or delete a CSINode"
        if attrs.subresource:
            return "cannot authorize CSINode subresources"
        return "can only access CSINode with the same name as the requesting node"
    return ""
