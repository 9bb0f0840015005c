"""How components name the resources they use: group, version, plural and scope."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceRef:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str = "", name: str = "", subresource: str = "") -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if subresource:
            base += f"/{subresource}"
        return base


NAMESPACES = ResourceRef("", "v1", "namespaces", "Namespace", namespaced=False)
NODES = ResourceRef("", "v1", "nodes", "Node", namespaced=False)
PODS = ResourceRef("", "v1", "pods", "Pod")
SERVICES = ResourceRef("", "v1", "services", "Service")
ENDPOINTS = ResourceRef("", "v1", "endpoints", "Endpoints")
EVENTS = ResourceRef("", "v1", "events", "Event")
CONFIGMAPS = ResourceRef("", "v1", "configmaps", "ConfigMap")
SECRETS = ResourceRef("", "v1", "secrets", "Secret")
SERVICE_ACCOUNTS = ResourceRef("", "v1", "serviceaccounts", "ServiceAccount")
REPLICATION_CONTROLLERS = ResourceRef("", "v1", "replicationcontrollers", "ReplicationController")
DEPLOYMENTS = ResourceRef("apps", "v1", "deployments", "Deployment")
REPLICASETS = ResourceRef("apps", "v1", "replicasets", "ReplicaSet")
STATEFULSETS = ResourceRef("apps", "v1", "statefulsets", "StatefulSet")
DAEMONSETS = ResourceRef("apps", "v1", "daemonsets", "DaemonSet")
CONTROLLER_REVISIONS = ResourceRef("apps", "v1", "controllerrevisions", "ControllerRevision")
JOBS = ResourceRef("batch", "v1", "jobs", "Job")
PERSISTENT_VOLUMES = ResourceRef("", "v1", "persistentvolumes", "PersistentVolume", namespaced=False)
PERSISTENT_VOLUME_CLAIMS = ResourceRef("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
STORAGE_CLASSES = ResourceRef("storage.k8s.io", "v1", "storageclasses", "StorageClass", namespaced=False)
VOLUME_ATTACHMENTS = ResourceRef("storage.k8s.io", "v1", "volumeattachments", "VolumeAttachment", namespaced=False)
CSI_NODES = ResourceRef("storage.k8s.io", "v1", "csinodes", "CSINode", namespaced=False)
CSI_DRIVERS = ResourceRef("storage.k8s.io", "v1", "csidrivers", "CSIDriver", namespaced=False)
CRONJOBS = ResourceRef("batch", "v1", "cronjobs", "CronJob")
LEASES = ResourceRef("coordination.k8s.io", "v1", "leases", "Lease")
ENDPOINT_SLICES = ResourceRef("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
HORIZONTAL_POD_AUTOSCALERS = ResourceRef("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
POD_DISRUPTION_BUDGETS = ResourceRef("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")
CLUSTER_ROLES = ResourceRef("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False)
CERTIFICATE_SIGNING_REQUESTS = ResourceRef(
    "certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest", namespaced=False
)

ALL = (
    NAMESPACES,
    NODES,
    PODS,
    SERVICES,
    ENDPOINTS,
    EVENTS,
    CONFIGMAPS,
    SECRETS,
    SERVICE_ACCOUNTS,
    REPLICATION_CONTROLLERS,
    DEPLOYMENTS,
    REPLICASETS,
    STATEFULSETS,
    DAEMONSETS,
    CONTROLLER_REVISIONS,
    JOBS,
    CRONJOBS,
    LEASES,
    ENDPOINT_SLICES,
    HORIZONTAL_POD_AUTOSCALERS,
    POD_DISRUPTION_BUDGETS,
    PERSISTENT_VOLUME_CLAIMS,
    PERSISTENT_VOLUMES,
    STORAGE_CLASSES,
    VOLUME_ATTACHMENTS,
    CSI_NODES,
    CSI_DRIVERS,
)


def by_kind(api_version: str, kind: str) -> ResourceRef | None:
    return next((r for r in ALL if r.api_version == api_version and r.kind == kind), None)
