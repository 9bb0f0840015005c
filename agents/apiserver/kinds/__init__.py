"""Per-kind behaviour (defaults, validation, admission) behind one ``Strategy`` interface."""

from __future__ import annotations

from agents.apiserver.kinds import (
    apiextensions,
    apiregistration,
    apps,
    autoscaling,
    batch,
    certificates,
    core,
    misc,
    networking,
    policy,
    rbac,
    storage,
)
from agents.apiserver.kinds.base import Admission, Strategy
from agents.apiserver.resources import Resource

_STRATEGIES: dict[str, type[Strategy]] = {
    "namespaces": core.NamespaceStrategy,
    "pods": core.PodStrategy,
    "nodes": core.NodeStrategy,
    "services": core.ServiceStrategy,
    "endpoints": core.EndpointsStrategy,
    "configmaps": core.ConfigMapStrategy,
    "secrets": core.SecretStrategy,
    "events": core.EventStrategy,
    "serviceaccounts": core.ServiceAccountStrategy,
    "replicationcontrollers": core.ReplicationControllerStrategy,
    "persistentvolumes": storage.PersistentVolumeStrategy,
    "persistentvolumeclaims": storage.PersistentVolumeClaimStrategy,
    "storageclasses.storage.k8s.io": storage.StorageClassStrategy,
    "volumeattachments.storage.k8s.io": storage.VolumeAttachmentStrategy,
    "csinodes.storage.k8s.io": storage.CSINodeStrategy,
    "csidrivers.storage.k8s.io": storage.CSIDriverStrategy,
    "deployments.apps": apps.DeploymentStrategy,
    "replicasets.apps": apps.ReplicaSetStrategy,
    "statefulsets.apps": apps.StatefulSetStrategy,
    "daemonsets.apps": apps.DaemonSetStrategy,
    "controllerrevisions.apps": apps.ControllerRevisionStrategy,
    "jobs.batch": batch.JobStrategy,
    "cronjobs.batch": batch.CronJobStrategy,
    "horizontalpodautoscalers.autoscaling": autoscaling.HorizontalPodAutoscalerStrategy,
    "poddisruptionbudgets.policy": policy.PodDisruptionBudgetStrategy,
    "leases.coordination.k8s.io": misc.LeaseStrategy,
    "endpointslices.discovery.k8s.io": misc.EndpointSliceStrategy,
    "ingresses.networking.k8s.io": networking.IngressStrategy,
    "ingressclasses.networking.k8s.io": networking.IngressClassStrategy,
    "roles.rbac.authorization.k8s.io": rbac.RoleStrategy,
    "clusterroles.rbac.authorization.k8s.io": rbac.RoleStrategy,
    "rolebindings.rbac.authorization.k8s.io": rbac.BindingStrategy,
    "clusterrolebindings.rbac.authorization.k8s.io": rbac.BindingStrategy,
    "certificatesigningrequests.certificates.k8s.io": certificates.CertificateSigningRequestStrategy,
    "apiservices.apiregistration.k8s.io": apiregistration.APIServiceStrategy,
    "customresourcedefinitions.apiextensions.k8s.io": apiextensions.CustomResourceDefinitionStrategy,
}


def strategy_for(
    resource: Resource,
    *,
    ingress_classes: networking.IngressClassLister | None = None,
    storage_classes: storage.StorageClassLister | None = None,
) -> Strategy:
    """The strategy of a served kind. ``ingress_classes`` lists the IngressClasses, for the Ingress
    strategy's DefaultIngressClass admission; ``storage_classes`` the StorageClasses, for the claim
    strategy's DefaultStorageClass and PersistentVolumeClaimResize admission (the only strategies that
    read another kind themselves)."""
    if resource.qualified == "ingresses.networking.k8s.io":
        return networking.IngressStrategy(resource, classes=ingress_classes)
    if resource.qualified == "persistentvolumeclaims":
        return storage.PersistentVolumeClaimStrategy(resource, classes=storage_classes)
    return _STRATEGIES.get(resource.qualified, Strategy)(resource)


__all__ = ["Admission", "Strategy", "strategy_for"]
