"""The catalog of served resources: group, version, kind, names, scope, subresources, storage keys."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

SUBRESOURCE_VERBS = {
    "status": ("get", "patch", "update"),
    "scale": ("get", "patch", "update"),
    "binding": ("create",),
    "finalize": ("update",),
    "log": ("get",),
    "exec": ("create", "get"),
    "attach": ("create", "get"),
    "portforward": ("create", "get"),
    "token": ("create",),
    "approval": ("get", "patch", "update"),
    "eviction": ("create",),
    "ephemeralcontainers": ("get", "patch", "update"),
    "proxy": ("create", "delete", "get", "patch", "update"),
}

COMMON_FIELDS = {"metadata.name": "metadata.name", "metadata.namespace": "metadata.namespace"}


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    model: str  # the model class in the official Python client, e.g. "V1Pod"
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    # field selector label -> dotted path in the object (beyond metadata.name / metadata.namespace)
    field_paths: dict[str, str] = field(default_factory=dict)
    tracks_generation: bool = False  # metadata.generation moves with spec changes
    create_on_update: bool = False  # PUT of a missing object creates it
    review: bool = False  # create-only and never stored: the answer is computed (access reviews, whoami)
    # set on a version served as a converted view of the objects stored at this other version of the
    # kind (agents/apiserver/conversion.py); such a version has no storage of its own
    storage_version: str = ""
    custom: bool = False  # defined by a CustomResourceDefinition: no strategic merge (kube has no Go struct for it)

    @property
    def verbs(self) -> tuple[str, ...]:
        return ("create",) if self.review else VERBS

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def qualified(self) -> str:
        """``deployments.apps`` / ``pods``: how Kubernetes names a resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def key_prefix(self) -> str:
        return f"/registry/{self.group}/{self.plural}/" if self.group else f"/registry/{self.plural}/"

    def key(self, namespace: str, name: str) -> str:
        return f"{self.key_prefix}{namespace}/{name}" if self.namespaced else f"{self.key_prefix}{name}"

    def collection_prefix(self, namespace: str) -> str:
        return f"{self.key_prefix}{namespace}/" if self.namespaced and namespace else self.key_prefix

    def field_labels(self) -> dict[str, str]:
        return {**COMMON_FIELDS, **self.field_paths}

    def has(self, subresource: str) -> bool:
        return subresource in self.subresources

    @property
    def stored(self) -> bool:
        """Objects are stored at this version (not served as a view of another)."""
        return self.storage_version in ("", self.version)


_POD_FIELDS = {
    "spec.nodeName": "spec.nodeName",
    "spec.restartPolicy": "spec.restartPolicy",
    "spec.schedulerName": "spec.schedulerName",
    "spec.serviceAccountName": "spec.serviceAccountName",
    "spec.hostNetwork": "spec.hostNetwork",
    "status.phase": "status.phase",
    "status.podIP": "status.podIP",
    "status.nominatedNodeName": "status.nominatedNodeName",
}
_EVENT_FIELDS = {
    **{
        f"involvedObject.{f}": f"involvedObject.{f}"
        for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
    },
    "reason": "reason",
    "reportingComponent": "reportingComponent",
    "source": "source.component",
    "type": "type",
}

RESOURCES: tuple[Resource, ...] = (
    Resource(
        "",
        "v1",
        "Namespace",
        "namespaces",
        False,
        "V1Namespace",
        ("ns",),
        subresources=("status", "finalize"),
        field_paths={"status.phase": "status.phase"},
    ),
    Resource(
        "",
        "v1",
        "Pod",
        "pods",
        True,
        "V1Pod",
        ("po",),
        ("all",),
        ("status", "binding", "log", "exec", "attach", "portforward", "eviction", "ephemeralcontainers", "proxy"),
        field_paths=_POD_FIELDS,
    ),
    Resource(
        "",
        "v1",
        "Node",
        "nodes",
        False,
        "V1Node",
        ("no",),
        subresources=("status", "proxy"),
        field_paths={"spec.unschedulable": "spec.unschedulable"},
    ),
    Resource(
        "",
        "v1",
        "Service",
        "services",
        True,
        "V1Service",
        ("svc",),
        ("all",),
        ("status", "proxy"),
        field_paths={"spec.clusterIP": "spec.clusterIP", "spec.type": "spec.type"},
    ),
    Resource("", "v1", "Endpoints", "endpoints", True, "V1Endpoints", ("ep",), create_on_update=True),
    Resource("", "v1", "ConfigMap", "configmaps", True, "V1ConfigMap", ("cm",)),
    Resource("", "v1", "Secret", "secrets", True, "V1Secret", field_paths={"type": "type"}),
    Resource(
        "",
        "v1",
        "Event",
        "events",
        True,
        "CoreV1Event",
        ("ev",),
        field_paths=_EVENT_FIELDS,
        create_on_update=True,
    ),
    Resource("", "v1", "ServiceAccount", "serviceaccounts", True, "V1ServiceAccount", ("sa",), (), ("token",)),
    # strategies and the storage admission plugins in agents/apiserver/kinds/storage.py
    Resource(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        False,
        "V1PersistentVolume",
        ("pv",),
        subresources=("status",),
    ),
    Resource(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        True,
        "V1PersistentVolumeClaim",
        ("pvc",),
        subresources=("status",),
    ),
    Resource(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        True,
        "V1ReplicationController",
        ("rc",),
        ("all",),
        ("status", "scale"),
        field_paths={"status.replicas": "status.replicas"},
        tracks_generation=True,
    ),
    Resource(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        True,
        "V1Deployment",
        ("deploy",),
        ("all",),
        ("status", "scale"),
        tracks_generation=True,
    ),
    Resource(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        True,
        "V1ReplicaSet",
        ("rs",),
        ("all",),
        ("status", "scale"),
        field_paths={"status.replicas": "status.replicas"},
        tracks_generation=True,
    ),
    Resource(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        True,
        "V1StatefulSet",
        ("sts",),
        ("all",),
        ("status", "scale"),
        tracks_generation=True,
    ),
    Resource(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        True,
        "V1DaemonSet",
        ("ds",),
        ("all",),
        ("status",),
        tracks_generation=True,
    ),
    Resource("apps", "v1", "ControllerRevision", "controllerrevisions", True, "V1ControllerRevision"),
    Resource(
        "batch",
        "v1",
        "Job",
        "jobs",
        True,
        "V1Job",
        (),
        ("all",),
        ("status",),
        field_paths={"status.successful": "status.succeeded"},
        tracks_generation=True,
    ),
    Resource(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        True,
        "V1CronJob",
        ("cj",),
        ("all",),
        ("status",),
        tracks_generation=True,
    ),
    # stored as v2, the preferred version (listed first); v1 is a converted view of the same objects
    Resource(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        True,
        "V2HorizontalPodAutoscaler",
        ("hpa",),
        ("all",),
        ("status",),
        tracks_generation=True,
    ),
    Resource(
        "autoscaling",
        "v1",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        True,
        "V1HorizontalPodAutoscaler",
        ("hpa",),
        ("all",),
        ("status",),
        tracks_generation=True,
        storage_version="v2",
    ),
    Resource(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        True,
        "V1PodDisruptionBudget",
        ("pdb",),
        subresources=("status",),
        tracks_generation=True,
    ),
    Resource("coordination.k8s.io", "v1", "Lease", "leases", True, "V1Lease", create_on_update=True),
    Resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True, "V1EndpointSlice"),
    # strategies and DefaultIngressClass admission in agents/apiserver/kinds/networking.py
    Resource(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        True,
        "V1Ingress",
        ("ing",),
        subresources=("status",),
        tracks_generation=True,
    ),
    Resource(
        "networking.k8s.io", "v1", "IngressClass", "ingressclasses", False, "V1IngressClass", tracks_generation=True
    ),
    Resource("rbac.authorization.k8s.io", "v1", "Role", "roles", True, "V1Role"),
    Resource("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False, "V1ClusterRole"),
    Resource("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True, "V1RoleBinding"),
    Resource(
        "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False, "V1ClusterRoleBinding"
    ),
    Resource("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, "V1StorageClass", ("sc",)),
    Resource(
        "storage.k8s.io",
        "v1",
        "VolumeAttachment",
        "volumeattachments",
        False,
        "V1VolumeAttachment",
        subresources=("status",),
    ),
    Resource("storage.k8s.io", "v1", "CSINode", "csinodes", False, "V1CSINode"),
    Resource("storage.k8s.io", "v1", "CSIDriver", "csidrivers", False, "V1CSIDriver"),
    Resource(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        False,
        "V1SelfSubjectAccessReview",
        review=True,
    ),
    Resource(
        "authorization.k8s.io",
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        False,
        "V1SelfSubjectRulesReview",
        review=True,
    ),
    Resource(
        "authorization.k8s.io",
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        False,
        "V1SubjectAccessReview",
        review=True,
    ),
    Resource(
        "authorization.k8s.io",
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        True,
        "V1LocalSubjectAccessReview",
        review=True,
    ),
    Resource(
        "certificates.k8s.io",
        "v1",
        "CertificateSigningRequest",
        "certificatesigningrequests",
        False,
        "V1CertificateSigningRequest",
        ("csr",),
        subresources=("status", "approval"),
        field_paths={"spec.signerName": "spec.signerName"},
    ),
    # the aggregation layer's registrations (agents/apiserver/aggregator.py routes by them)
    Resource(
        "apiregistration.k8s.io", "v1", "APIService", "apiservices", False, "V1APIService", subresources=("status",)
    ),
    # custom resources are served from these (agents/apiserver/customresources.py)
    Resource(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        "V1CustomResourceDefinition",
        ("crd", "crds"),
        ("api-extensions",),
        ("status",),
        tracks_generation=True,
    ),
    Resource("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", False, "V1TokenReview", review=True),
    Resource(
        "authentication.k8s.io",
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        False,
        "V1SelfSubjectReview",
        review=True,
    ),
)

# Models served as subresource bodies, not stored on their own.
EXTRA_MODELS = (
    "V1Scale",
    "V1Binding",
    "V1DeleteOptions",
    "V1Status",
    "V1ListMeta",
    "AuthenticationV1TokenRequest",
    "V1Eviction",
)


class Catalog:
    """Lookups over the served resources. Iterating gives each stored resource once: a version served
    as a view of another (``storage_version``) is found by its path, and in discovery, only."""

    def __init__(self, resources: tuple[Resource, ...] = RESOURCES) -> None:
        self.replace(resources)

    def replace(self, resources: tuple[Resource, ...]) -> None:
        """Serve ``resources`` from now on: custom resources come and go with their definitions."""
        self.resources = resources
        stored = tuple(r for r in resources if r.stored)
        self._stored = stored
        self._by_path = {(r.group, r.version, r.plural): r for r in resources}
        self._by_kind = {(r.group, r.kind): r for r in stored}
        self._by_prefix = {r.key_prefix: r for r in stored}
        self._groups: dict[str, list[str]] = {}
        for r in resources:
            versions = self._groups.setdefault(r.group, [])
            if r.version not in versions:
                versions.append(r.version)

    def __iter__(self) -> Iterator[Resource]:
        return iter(self._stored)

    def lookup(self, group: str, version: str, plural: str) -> Resource | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, group: str, kind: str) -> Resource | None:
        return self._by_kind.get((group, kind))

    def by_key(self, key: str) -> Resource | None:
        """The resource a storage key belongs to."""
        parts = key.split("/", 4)  # ["", "registry", a, b, ...]
        if len(parts) < 4:
            return None
        return self._by_prefix.get(f"/registry/{parts[2]}/") or self._by_prefix.get(f"/registry/{parts[2]}/{parts[3]}/")

    def groups(self) -> dict[str, list[str]]:
        """Group name -> versions (the core group is ""); worked out anew by ``replace``, not to be changed."""
        return self._groups

    def in_group_version(self, group: str, version: str) -> list[Resource]:
        return [r for r in self.resources if r.group == group and r.version == version]

    def models(self) -> list[str]:
        return sorted({r.model for r in self.resources} | set(EXTRA_MODELS))
