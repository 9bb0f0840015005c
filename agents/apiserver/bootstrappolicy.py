"""The roles and bindings every RBAC cluster starts with (kube's bootstrap policy).

The API server's first worker writes them at start: what is missing is created; an object stamped
``rbac.authorization.kubernetes.io/autoupdate: "true"`` gets the rules and subjects it lacks added
back (a user may add to them, and may set the annotation to "false" to keep its own version).

What they grant follows kube's bootstrap policy: ``cluster-admin`` for ``system:masters``; ``admin``,
``edit`` and ``view`` aggregated (by the controller-manager's clusterrole-aggregation controller) from
the ``system:aggregate-to-*`` roles; discovery and health for everyone; and each component's role under
its own identity. The controller-manager runs every controller under one identity (kube can give each
its own ServiceAccount), so its role is the union of what they need: the garbage collector and the
namespace controller touch every kind, which in kube's roles is ``*``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from agents.apiserver.registry import ResourceStore
from agents.apiserver.status import StatusError
from agents.machinery.objects import Object, deep_copy

log = logging.getLogger(__name__)

GROUP = "rbac.authorization.k8s.io"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
AGGREGATE_TO = "rbac.authorization.k8s.io/aggregate-to-"
READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")
EVENTS = ("create", "patch", "update")


def rule(verbs: Sequence[str], groups: Sequence[str], resources: Sequence[str], names: Sequence[str] = ()) -> Object:
    out: Object = {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}
    if names:
        out["resourceNames"] = list(names)
    return out


def urls(verbs: Sequence[str], paths: Sequence[str]) -> Object:
    return {"verbs": list(verbs), "nonResourceURLs": list(paths)}


def _meta(name: str, labels: dict[str, str] | None = None) -> Object:
    return {
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults", **(labels or {})},
        "annotations": {AUTOUPDATE: "true"},
    }


def cluster_role(
    name: str, rules: Sequence[Object], *, labels: dict[str, str] | None = None, aggregate: Sequence[str] = ()
) -> Object:
    role: Object = {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole", "metadata": _meta(name, labels)}
    if aggregate:
        role["aggregationRule"] = {
            "clusterRoleSelectors": [{"matchLabels": {f"{AGGREGATE_TO}{to}": "true"}} for to in aggregate]
        }
    role["rules"] = list(rules)
    return role


def cluster_binding(name: str, role: str, subjects: Sequence[tuple[str, str]]) -> Object:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _meta(name),
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": GROUP, "kind": kind, "name": who} for kind, who in subjects],
    }


_VIEW = [
    rule(
        READ,
        [""],
        [
            "pods",
            "pods/log",
            "pods/status",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "replicationcontrollers/status",
            "services",
            "services/status",
            "endpoints",
            "configmaps",
            "persistentvolumeclaims",
            "persistentvolumeclaims/status",
            "serviceaccounts",
            "bindings",
            "events",
            "limitranges",
            "resourcequotas",
            "resourcequotas/status",
            "namespaces",
            "namespaces/status",
        ],
    ),
    rule(
        READ,
        ["apps"],
        [
            "controllerrevisions",
            "daemonsets",
            "daemonsets/status",
            "deployments",
            "deployments/scale",
            "deployments/status",
            "replicasets",
            "replicasets/scale",
            "replicasets/status",
            "statefulsets",
            "statefulsets/scale",
            "statefulsets/status",
        ],
    ),
    rule(READ, ["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
    rule(READ, ["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
    rule(READ, ["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"]),
    rule(READ, ["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"]),
    rule(READ, ["discovery.k8s.io"], ["endpointslices"]),
]
# full use of the kubelets' API, through the API server's nodes/proxy or at a kubelet's own port
_KUBELET_API_ADMIN = [
    rule(READ, [""], ["nodes"]),
    rule(("proxy",), [""], ["nodes"]),
    rule(("*",), [""], ["nodes/proxy", "nodes/metrics", "nodes/stats", "nodes/log"]),
]
# the lab's trace collector keeps its own Service and EndpointSlice in kube-system
_TRACE_COLLECTOR = [
    rule(("get", "create", "update"), [""], ["services"]),
    rule(("get", "create", "update"), ["discovery.k8s.io"], ["endpointslices"]),
]
_EDIT = [
    rule(
        WRITE,
        [""],
        [
            "pods",
            "pods/attach",
            "pods/exec",
            "pods/portforward",
            "pods/proxy",
            "configmaps",
            "endpoints",
            "persistentvolumeclaims",
            "replicationcontrollers",
            "replicationcontrollers/scale",
            "secrets",
            "serviceaccounts",
            "services",
            "services/proxy",
        ],
    ),
    rule(("create",), [""], ["pods/eviction", "serviceaccounts/token"]),
    rule(READ, [""], ["secrets", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "services/proxy"]),
    rule(("impersonate",), [""], ["serviceaccounts"]),
    rule(
        WRITE,
        ["apps"],
        [
            "daemonsets",
            "deployments",
            "deployments/rollback",
            "deployments/scale",
            "replicasets",
            "replicasets/scale",
            "statefulsets",
            "statefulsets/scale",
        ],
    ),
    rule(WRITE, ["autoscaling"], ["horizontalpodautoscalers"]),
    rule(WRITE, ["batch"], ["cronjobs", "jobs"]),
    rule(WRITE, ["policy"], ["poddisruptionbudgets"]),
    rule(WRITE, ["networking.k8s.io"], ["ingresses", "networkpolicies"]),
    rule(WRITE, ["discovery.k8s.io"], ["endpointslices"]),
]
_ADMIN = [
    rule((*READ, *WRITE), [GROUP], ["roles", "rolebindings"]),
    rule(("create",), ["authorization.k8s.io"], ["localsubjectaccessreviews"]),
]
_SELF_REVIEWS = [
    rule(("create",), ["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
    rule(("create",), ["authentication.k8s.io"], ["selfsubjectreviews"]),
]
_DISCOVERY = [
    urls(
        ("get",),
        [
            "/api",
            "/api/*",
            "/apis",
            "/apis/*",
            "/healthz",
            "/livez",
            "/openapi",
            "/openapi/*",
            "/readyz",
            "/version",
            "/version/",
        ],
    )
]
_PUBLIC_INFO = [urls(("get",), ["/healthz", "/livez", "/readyz", "/version", "/version/"])]
_REVIEWS = [
    rule(("create",), ["authentication.k8s.io"], ["tokenreviews"]),
    rule(("create",), ["authorization.k8s.io"], ["subjectaccessreviews"]),
]
_SCHEDULER = [
    rule(EVENTS, ["", "events.k8s.io"], ["events"]),
    rule(("create",), ["coordination.k8s.io"], ["leases"]),
    rule(("get", "update"), ["coordination.k8s.io"], ["leases"], ["kube-scheduler"]),
    rule(
        READ,
        [""],
        ["nodes", "namespaces", "services", "replicationcontrollers", "persistentvolumeclaims", "persistentvolumes"],
    ),
    rule((*READ, "delete"), [""], ["pods"]),
    rule(("create",), [""], ["bindings", "pods/binding"]),
    rule(("patch", "update"), [""], ["pods/status"]),
    rule(READ, ["apps"], ["replicasets", "statefulsets"]),
    rule(READ, ["policy"], ["poddisruptionbudgets"]),
    rule(READ, ["storage.k8s.io"], ["csidrivers", "csinodes", "csistoragecapacities", "storageclasses"]),
    # kube's system:volume-scheduler, bound to the scheduler too: a claim's selected node, a volume's claim
    rule(("patch", "update"), [""], ["persistentvolumeclaims", "persistentvolumes"]),
    *_REVIEWS,
]
_CONTROLLER_MANAGER = [
    # the garbage collector and the namespace controller: every kind, as kube's roles for them give
    rule((*READ, "patch", "update", "delete", "deletecollection"), ["*"], ["*"]),
    rule(
        ("create",),
        [""],
        [
            "pods",
            "events",
            "endpoints",
            "serviceaccounts",
            "secrets",
            "configmaps",
            "persistentvolumeclaims",
            "persistentvolumes",
        ],
    ),
    rule(("create",), ["events.k8s.io"], ["events"]),
    # the persistent volume, attach/detach and expansion controllers (kube's system:controller:* roles for
    # them), said even where the first rule holds them: volumes, claims and their status, attachments
    rule((*READ, "create", "update", "patch", "delete"), [""], ["persistentvolumes", "persistentvolumeclaims"]),
    rule(("update", "patch"), [""], ["persistentvolumes/status", "persistentvolumeclaims/status", "nodes/status"]),
    rule((*READ, "create", "delete"), ["storage.k8s.io"], ["volumeattachments"]),
    rule(READ, ["storage.k8s.io"], ["storageclasses", "csinodes", "csidrivers"]),
    rule(("create",), ["apps"], ["replicasets", "controllerrevisions"]),
    rule(("create",), ["batch"], ["jobs"]),
    rule(("create",), ["discovery.k8s.io"], ["endpointslices"]),
    rule(("create",), ["coordination.k8s.io"], ["leases"]),
    # the horizontal-pod-autoscaler's own rules (kube's system:controller:horizontal-pod-autoscaler), said
    # even where the first rule holds them: its HPAs, the targets' scale, and the resource metrics API
    rule(READ, ["autoscaling"], ["horizontalpodautoscalers"]),
    rule(("update",), ["autoscaling"], ["horizontalpodautoscalers/status"]),
    rule(("get", "update"), ["apps"], ["deployments/scale", "replicasets/scale", "statefulsets/scale"]),
    rule(("get", "update"), [""], ["replicationcontrollers/scale"]),
    rule(("get", "list"), ["metrics.k8s.io"], ["pods"]),
    # the clusterrole-aggregation controller writes rules it does not hold itself
    rule(("escalate",), [GROUP], ["clusterroles"]),
    # the CSR signer issues client certificates for the kube-apiserver-client signers
    rule(
        ("sign",),
        ["certificates.k8s.io"],
        ["signers"],
        ["kubernetes.io/kube-apiserver-client", "kubernetes.io/kube-apiserver-client-kubelet"],
    ),
    *_REVIEWS,
]
_NODE_PROXIER = [
    rule(("list", "watch"), [""], ["services", "endpoints"]),
    rule(READ, [""], ["nodes"]),
    rule(EVENTS, ["", "events.k8s.io"], ["events"]),
    rule(("list", "watch"), ["discovery.k8s.io"], ["endpointslices"]),
]
# The cloud-controller-manager's (kube ships it with the cloud provider's manifests; here it is
# bootstrapped, since the lab's nodes wait for it): Nodes initialized and deleted, Services' load balancers.
_CLOUD_CONTROLLER_MANAGER = [
    rule(EVENTS, ["", "events.k8s.io"], ["events"]),
    rule((*READ, "patch", "update", "delete"), [""], ["nodes"]),
    rule(("patch", "update"), [""], ["nodes/status"]),
    rule((*READ, "patch", "update"), [""], ["services"]),
    rule(("patch", "update"), [""], ["services/status"]),
    rule((*READ, "create", "update"), ["coordination.k8s.io"], ["leases"]),
    # the CSI driver's controller side (kube ships it as external-provisioner, -attacher and -resizer
    # sidecars with their own roles): volumes created for claims, attachments carried out, claims grown
    rule((*READ, "create", "delete", "patch", "update"), [""], ["persistentvolumes"]),
    rule((*READ, "patch", "update"), [""], ["persistentvolumeclaims"]),
    rule(("patch", "update"), [""], ["persistentvolumeclaims/status", "persistentvolumes/status"]),
    rule((*READ, "patch", "update"), ["storage.k8s.io"], ["volumeattachments"]),
    rule(("patch", "update"), ["storage.k8s.io"], ["volumeattachments/status"]),
    rule(READ, ["storage.k8s.io"], ["storageclasses", "csinodes", "csidrivers"]),
]
# What a kubelet may do: the Node authorizer's rules (the Secrets, ConfigMaps, claims, volumes and
# attachments it reads only through its pods and its node, the CSINode of its own name), narrowed to its
# own objects by NodeRestriction; kube binds this role to no one.
NODE_RULES = [
    rule((*READ, "create", "update", "patch", "delete"), [""], ["nodes"]),
    rule(("patch", "update"), [""], ["nodes/status"]),
    rule(EVENTS, ["", "events.k8s.io"], ["events"]),
    rule((*READ, "delete"), [""], ["pods"]),
    rule(("create",), [""], ["pods"]),
    rule(("patch", "update"), [""], ["pods/status"]),
    rule(("create",), [""], ["pods/eviction"]),
    rule(READ, [""], ["configmaps", "secrets", "services", "endpoints", "persistentvolumeclaims", "persistentvolumes"]),
    rule(("get", "update", "patch"), [""], ["persistentvolumeclaims/status"]),  # volume expansion
    rule(("get",), ["storage.k8s.io"], ["volumeattachments"]),
    rule(("get", "create", "update", "patch", "delete"), ["storage.k8s.io"], ["csinodes"]),
    rule(READ, ["storage.k8s.io"], ["csidrivers"]),
    rule(("create",), [""], ["serviceaccounts/token"]),
    rule((*READ, "create", "update", "patch", "delete"), ["coordination.k8s.io"], ["leases"]),
    *_REVIEWS,
]

CLUSTER_ROLES: tuple[Object, ...] = (
    cluster_role("cluster-admin", [rule(["*"], ["*"], ["*"]), urls(["*"], ["*"])]),
    cluster_role("admin", [], aggregate=("admin",)),
    cluster_role("edit", [], labels={f"{AGGREGATE_TO}admin": "true"}, aggregate=("edit",)),
    cluster_role("view", [], labels={f"{AGGREGATE_TO}edit": "true"}, aggregate=("view",)),
    cluster_role("system:aggregate-to-admin", _ADMIN, labels={f"{AGGREGATE_TO}admin": "true"}),
    cluster_role("system:aggregate-to-edit", _EDIT, labels={f"{AGGREGATE_TO}edit": "true"}),
    cluster_role("system:aggregate-to-view", _VIEW, labels={f"{AGGREGATE_TO}view": "true"}),
    cluster_role("system:basic-user", _SELF_REVIEWS),
    cluster_role("system:discovery", _DISCOVERY),
    cluster_role("system:public-info-viewer", _PUBLIC_INFO),
    cluster_role("system:kube-scheduler", _SCHEDULER),
    cluster_role("system:kube-controller-manager", _CONTROLLER_MANAGER),
    cluster_role("system:cloud-controller-manager", _CLOUD_CONTROLLER_MANAGER),
    cluster_role("system:node-proxier", _NODE_PROXIER),
    cluster_role("system:kubelet-api-admin", _KUBELET_API_ADMIN),
    cluster_role("system:kube-trace-collector", _TRACE_COLLECTOR),
    cluster_role("system:node", NODE_RULES),
    # what an aggregated API server needs to check its callers' tokens and permissions with this one
    cluster_role("system:auth-delegator", _REVIEWS),
)
CLUSTER_ROLE_BINDINGS: tuple[Object, ...] = (
    cluster_binding("cluster-admin", "cluster-admin", [("Group", "system:masters")]),
    cluster_binding("system:basic-user", "system:basic-user", [("Group", "system:authenticated")]),
    cluster_binding("system:discovery", "system:discovery", [("Group", "system:authenticated")]),
    cluster_binding(
        "system:public-info-viewer",
        "system:public-info-viewer",
        [("Group", "system:authenticated"), ("Group", "system:unauthenticated")],
    ),
    cluster_binding("system:kube-scheduler", "system:kube-scheduler", [("User", "system:kube-scheduler")]),
    cluster_binding(
        "system:kube-trace-collector", "system:kube-trace-collector", [("User", "system:kube-trace-collector")]
    ),
    cluster_binding(
        "system:kube-controller-manager", "system:kube-controller-manager", [("User", "system:kube-controller-manager")]
    ),
    cluster_binding(
        "system:cloud-controller-manager",
        "system:cloud-controller-manager",
        [("User", "system:cloud-controller-manager")],
    ),
    cluster_binding("system:node-proxier", "system:node-proxier", [("User", "system:kube-proxy")]),
    # simulated nodes are many nodes under one identity, outside the Node authorizer's system:nodes
    cluster_binding("kubelab:simulated-nodes", "system:node", [("User", "kubelab:simulated-nodes")]),
)


# Roles in system namespaces (created once the namespaces exist): aggregated API servers read the
# front proxy's and the client CA's trust settings from this ConfigMap.
NAMESPACED_ROLES: tuple[Object, ...] = (
    {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Role",
        "metadata": {**_meta("extension-apiserver-authentication-reader"), "namespace": "kube-system"},
        "rules": [rule(READ, [""], ["configmaps"], ["extension-apiserver-authentication"])],
    },
)
NAMESPACED_ROLE_BINDINGS: tuple[Object, ...] = (
    {
        "apiVersion": f"{GROUP}/v1",
        "kind": "RoleBinding",
        "metadata": {**_meta("system::extension-apiserver-authentication-reader"), "namespace": "kube-system"},
        "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "extension-apiserver-authentication-reader"},
        "subjects": [
            {"apiGroup": GROUP, "kind": "User", "name": "system:kube-controller-manager"},
            {"apiGroup": GROUP, "kind": "User", "name": "system:kube-scheduler"},
        ],
    },
)


def _missing(have: Sequence[Any], want: Sequence[Any]) -> list[Any]:
    return [item for item in want if item not in have]


async def _reconcile(store: ResourceStore, wanted: Object, field: str) -> None:
    name = wanted["metadata"]["name"]
    namespace = wanted["metadata"].get("namespace", "")
    try:
        await store.create(namespace, deep_copy(wanted))  # a create fills in the object it is given
        return
    except StatusError as exc:
        if exc.code != 409:
            raise
    current = (await store.get(namespace, name)).obj()
    if (current["metadata"].get("annotations") or {}).get(AUTOUPDATE) != "true":
        return  # the user took it over
    if "aggregationRule" in wanted:
        return  # its rules are the aggregation controller's
    lacking = _missing(current.get(field) or [], wanted[field])
    if not lacking:
        return

    def add(obj: Object) -> Object:
        obj[field] = [*(obj.get(field) or []), *_missing(obj.get(field) or [], wanted[field])]
        return obj

    await store.update(namespace, name, add, pinned=False)
    log.info("bootstrap policy: %s %s got back %d %s", wanted["kind"], name, len(lacking), field)


async def ensure(cluster_roles: ResourceStore, cluster_role_bindings: ResourceStore) -> None:
    """Create the bootstrap roles and bindings, or add back what an auto-updated one lacks."""
    for role in CLUSTER_ROLES:
        await _reconcile(cluster_roles, role, "rules")
    for binding in CLUSTER_ROLE_BINDINGS:
        await _reconcile(cluster_role_bindings, binding, "subjects")


async def ensure_namespaced(roles: ResourceStore, role_bindings: ResourceStore) -> None:
    """The bootstrap Roles and RoleBindings of system namespaces (which must exist by now)."""
    for role in NAMESPACED_ROLES:
        await _reconcile(roles, role, "rules")
    for binding in NAMESPACED_ROLE_BINDINGS:
        await _reconcile(role_bindings, binding, "subjects")
