"""Strategies for the core/v1 kinds."""

from __future__ import annotations

import base64
from typing import Any

from agents.apiserver import validation as v
from agents.apiserver.allocators import health_check_port, needs_health_check
from agents.apiserver.kinds import ephemeralcontainers, serviceaccounts
from agents.apiserver.kinds.base import Admission, Strategy
from agents.apiserver.kinds.podspec import (
    TAINT_EFFECTS,
    default_pod_spec,
    qos_class,
    validate_pod_spec,
    validate_template,
)
from agents.apiserver.status import FieldError, forbidden, invalid, not_supported, required, too_long
from agents.apiserver.validation import Errors
from agents.machinery.objects import Object, deep_copy
from agents.machinery.selectors import valid_label_value

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
MAX_DATA_SIZE = 1024 * 1024


def _immutable(path: str, new: Any, old: Any) -> Errors:
    if new != old:
        return [invalid(path, new, "field is immutable")]
    return []


# --- namespaces ----------------------------------------------------------------------------------


class NamespaceStrategy(Strategy):
    name_check = staticmethod(v.dns_label)

    def default(self, obj: Object) -> None:
        name = obj.get("metadata", {}).get("name")
        if name:
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name

    def prepare_create(self, obj: Object) -> None:
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}

    def prepare_update(self, new: Object, old: Object) -> None:
        new["spec"] = deep_copy(old.get("spec") or {})
        if "status" in old:
            new["status"] = old["status"]

    def validate(self, obj: Object) -> Errors:
        out: Errors = []
        for i, fin in enumerate((obj.get("spec") or {}).get("finalizers") or []):
            out += v.qualified_name(f"spec.finalizers[{i}]", fin)
        return out

    def validate_status(self, new: Object, old: Object) -> Errors:
        phase = (new.get("status") or {}).get("phase")
        return v.one_of("status.phase", phase, ("Active", "Terminating")) if phase else []


# --- pods ----------------------------------------------------------------------------------------

_POD_MUTABLE_MESSAGE = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)


def _mask_mutable(spec: dict[str, Any]) -> dict[str, Any]:
    masked = deep_copy(spec)
    for kind in ("containers", "initContainers"):
        for c in masked.get(kind) or []:
            c.pop("image", None)
    masked.pop("activeDeadlineSeconds", None)
    masked.pop("tolerations", None)
    return masked


class PodStrategy(Strategy):
    def default(self, obj: Object) -> None:
        default_pod_spec(obj.setdefault("spec", {}))

    def initial_status(self, obj: Object) -> dict[str, Any]:
        return {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}

    async def admit_create(self, admission: Admission, obj: Object, *, dry_run: bool) -> None:
        spec = obj["spec"]
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        if admission.mounts_tokens:
            await serviceaccounts.admit_pod(admission, obj)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        tolerations = spec.setdefault("tolerations", [])
        for taint in (NOT_READY_TAINT, UNREACHABLE_TAINT):
            if not any(
                t.get("key") == taint and t.get("effect", "NoExecute") == "NoExecute" for t in tolerations
            ) and not any(not t.get("key") and t.get("operator") == "Exists" for t in tolerations):
                tolerations.append(
                    {
                        "key": taint,
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": admission.default_toleration_seconds,
                    }
                )

    def validate(self, obj: Object) -> Errors:
        return validate_pod_spec("spec", obj.get("spec")) + ephemeralcontainers.forbidden_on_create(obj)

    def validate_update(self, new: Object, old: Object) -> Errors:
        out = validate_pod_spec("spec", new.get("spec"))
        new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
        if _mask_mutable(new_spec) != _mask_mutable(old_spec):
            out.append(forbidden("spec", _POD_MUTABLE_MESSAGE))
        old_tolerations = old_spec.get("tolerations") or []
        new_tolerations = new_spec.get("tolerations") or []
        if any(t not in new_tolerations for t in old_tolerations):
            out.append(
                forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds")
            )
        return out

    def validate_ephemeral_containers(self, new: Object, old: Object) -> Errors:
        return validate_pod_spec("spec", new.get("spec")) + ephemeralcontainers.validate_change(new, old)

    def validate_status(self, new: Object, old: Object) -> Errors:
        status = new.get("status") or {}
        out: Errors = []
        if status.get("phase"):
            out += v.one_of("status.phase", status["phase"], ("Pending", "Running", "Succeeded", "Failed", "Unknown"))
        for i, ip in enumerate(status.get("podIPs") or []):
            out += v.ip_address(f"status.podIPs[{i}].ip", ip.get("ip"))
        old_node = (old.get("spec") or {}).get("nodeName")
        if (new.get("spec") or {}).get("nodeName") != old_node:
            out.append(forbidden("spec.nodeName", "may not be changed through the status subresource"))
        return out

    def grace_period(self, obj: Object, requested: int | None) -> int:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return max(requested, 0)
        grace = spec.get("terminationGracePeriodSeconds", 30)
        return int(grace) if grace is not None and grace > 0 else 1


# --- nodes ---------------------------------------------------------------------------------------


class NodeStrategy(Strategy):
    def prepare_create(self, obj: Object) -> None:
        """Nodes register with their status (capacity, addresses), as kubelets do."""

    def validate(self, obj: Object) -> Errors:
        spec = obj.get("spec") or {}
        out: Errors = []
        if spec.get("podCIDR"):
            out += v.cidr("spec.podCIDR", spec["podCIDR"])
        for i, cidr in enumerate(spec.get("podCIDRs") or []):
            out += v.cidr(f"spec.podCIDRs[{i}]", cidr)
        seen: set[tuple[str, str]] = set()
        for i, taint in enumerate(spec.get("taints") or []):
            here = f"spec.taints[{i}]"
            out += v.qualified_name(f"{here}.key", taint.get("key", ""))
            out += v.one_of(f"{here}.effect", taint.get("effect"), TAINT_EFFECTS)
            if taint.get("value") and not valid_label_value(taint["value"]):
                out.append(invalid(f"{here}.value", taint["value"], "must be a valid label value"))
            pair = (taint.get("key", ""), taint.get("effect", ""))
            if pair in seen:
                out.append(
                    FieldError(
                        "FieldValueDuplicate",
                        here,
                        "taints must be unique by key and effect pair",
                        pair,
                        True,
                    )
                )
            seen.add(pair)
        return out

    def validate_update(self, new: Object, old: Object) -> Errors:
        out = self.validate(new)
        old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
        if old_spec.get("podCIDR") and new_spec.get("podCIDR") != old_spec["podCIDR"]:
            out.append(forbidden("spec.podCIDR", 'node updates may not change podCIDR except from "" to valid'))
        if old_spec.get("providerID") and new_spec.get("providerID") != old_spec["providerID"]:
            out.append(forbidden("spec.providerID", 'node updates may not change providerID except from "" to valid'))
        return out


# --- services ------------------------------------------------------------------------------------

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


def copy_allocated(new: Object, old: Object) -> None:
    """Keep the IP and node ports a client left out of an update (kube patchAllocatedValues)."""
    new_spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
    if new_spec.get("type", "ClusterIP") != "ExternalName" and old_spec.get("type") != "ExternalName":
        if not new_spec.get("clusterIP") and old_spec.get("clusterIP"):
            new_spec["clusterIP"] = old_spec["clusterIP"]
            new_spec["clusterIPs"] = list(old_spec.get("clusterIPs") or [old_spec["clusterIP"]])
        if not new_spec.get("ipFamilies") and old_spec.get("ipFamilies"):
            new_spec["ipFamilies"] = list(old_spec["ipFamilies"])
        if not new_spec.get("ipFamilyPolicy") and old_spec.get("ipFamilyPolicy"):
            new_spec["ipFamilyPolicy"] = old_spec["ipFamilyPolicy"]
    if new_spec.get("type") in ("NodePort", "LoadBalancer") and old_spec.get("type") in (
        "NodePort",
        "LoadBalancer",
    ):
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in old_spec.get("ports") or []}
        for port in new_spec.get("ports") or []:
            if not port.get("nodePort"):
                found = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
                if found:
                    port["nodePort"] = found
    kept_check = old_spec.get("healthCheckNodePort")
    if needs_health_check(old) and needs_health_check(new) and kept_check and not new_spec.get("healthCheckNodePort"):
        new_spec["healthCheckNodePort"] = kept_check


def drop_type_dependent(new: Object, old: Object) -> None:
    """Clear what the Service's new type or policy no longer uses when the client left it as it was
    (kube's dropTypeDependentFields): the ``healthCheckNodePort`` (released after the update) and an
    ``externalTrafficPolicy`` the Service can no longer be reached by."""
    new_spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
    if (
        needs_health_check(old)
        and not needs_health_check(new)
        and new_spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort")
    ):
        new_spec.pop("healthCheckNodePort", None)
    if (
        _externally_accessible(old_spec)
        and not _externally_accessible(new_spec)
        and new_spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy")
    ):
        new_spec.pop("externalTrafficPolicy", None)


def _externally_accessible(spec: dict[str, Any]) -> bool:
    kind = spec.get("type") or "ClusterIP"
    return kind in ("NodePort", "LoadBalancer") or (kind == "ClusterIP" and bool(spec.get("externalIPs")))


def _traffic_policy_errors(spec: dict[str, Any], service: Object) -> Errors:
    """kube's validateServiceExternalTrafficPolicy: the policy only where the Service is reachable
    from outside, a ``healthCheckNodePort`` only for a LoadBalancer with the policy ``Local``."""
    out: Errors = []
    policy = spec.get("externalTrafficPolicy")
    if policy:
        if not _externally_accessible(spec):
            detail = "may only be set for externally-accessible services"
            out.append(invalid("spec.externalTrafficPolicy", policy, detail))
        elif policy not in ("Cluster", "Local"):
            out.append(not_supported("spec.externalTrafficPolicy", policy, ("Cluster", "Local")))
    port = spec.get("healthCheckNodePort")
    if needs_health_check(service):
        if port:
            out += v.port_number("spec.healthCheckNodePort", port)
    elif port:
        out.append(
            invalid(
                "spec.healthCheckNodePort",
                port,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            )
        )
    return out


class ServiceStrategy(Strategy):
    name_check = staticmethod(v.dns1035_label)
    reserves_on_create = True

    def default(self, obj: Object) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["sessionAffinity"] == "ClientIP":
            client = spec.setdefault("sessionAffinityConfig", {}).setdefault("clientIP", {})
            client.setdefault("timeoutSeconds", 10800)
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            if "targetPort" not in port and "port" in port:
                port["targetPort"] = port["port"]
        if spec["type"] != "ExternalName":
            spec.setdefault("internalTrafficPolicy", "Cluster")
        if spec["type"] in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
        if spec.get("clusterIP") and not spec.get("clusterIPs"):
            spec["clusterIPs"] = [spec["clusterIP"]]

    def initial_status(self, obj: Object) -> dict[str, Any]:
        return {"loadBalancer": {}}

    def validate(self, obj: Object) -> Errors:
        spec = obj.get("spec") or {}
        out: Errors = []
        kind = spec.get("type", "ClusterIP")
        out += v.one_of("spec.type", kind, SERVICE_TYPES)
        ports = spec.get("ports") or []
        headless = spec.get("clusterIP") == "None"
        if not ports and not headless and kind != "ExternalName":
            out.append(required("spec.ports"))
        seen_names: set[str] = set()
        seen_ports: set[tuple[Any, Any]] = set()
        for i, port in enumerate(ports):
            here = f"spec.ports[{i}]"
            name = port.get("name", "")
            if len(ports) > 1 and not name:
                out.append(required(f"{here}.name"))
            if name:
                out += v.name_errors(f"{here}.name", name, v.dns_label)
                if name in seen_names:
                    out.append(FieldError("FieldValueDuplicate", f"{here}.name", "", name, True))
                seen_names.add(name)
            out += v.port_number(f"{here}.port", port.get("port"))
            out += v.protocol(f"{here}.protocol", port.get("protocol", "TCP"))
            key = (port.get("port"), port.get("protocol", "TCP"))
            if key in seen_ports:
                out.append(FieldError("FieldValueDuplicate", here, "", {"port": key[0], "protocol": key[1]}, True))
            seen_ports.add(key)
            if "targetPort" in port:
                out += v.int_or_name_port(f"{here}.targetPort", port["targetPort"])
            if port.get("nodePort"):
                if kind not in ("NodePort", "LoadBalancer"):
                    out.append(forbidden(f"{here}.nodePort", f"may not be used when `type` is '{kind}'"))
                else:
                    out += v.port_number(f"{here}.nodePort", port["nodePort"])
        if kind == "ExternalName":
            name = spec.get("externalName", "")
            if not name:
                out.append(required("spec.externalName"))
            else:
                out += v.name_errors("spec.externalName", name.rstrip("."), v.dns_subdomain)
        cluster_ip = spec.get("clusterIP", "")
        if cluster_ip and cluster_ip != "None":
            out += v.ip_address("spec.clusterIP", cluster_ip)
        if headless and kind in ("NodePort", "LoadBalancer"):
            out.append(invalid("spec.clusterIPs[0]", "None", f"may not be set to 'None' for {kind} services"))
        out += v.label_map("spec.selector", spec.get("selector"))
        out += v.one_of("spec.sessionAffinity", spec.get("sessionAffinity", "None"), ("None", "ClientIP"))
        for i, ip in enumerate(spec.get("externalIPs") or []):
            out += v.ip_address(f"spec.externalIPs[{i}]", ip)
        out += _traffic_policy_errors(spec, obj)
        return out

    def prepare_update(self, new: Object, old: Object) -> None:
        super().prepare_update(new, old)
        copy_allocated(new, old)
        drop_type_dependent(new, old)

    def validate_update(self, new: Object, old: Object) -> Errors:
        out = self.validate(new)
        new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
        if "ExternalName" not in (new_spec.get("type"), old_spec.get("type")) and old_spec.get("clusterIP"):
            out += _immutable("spec.clusterIP", new_spec.get("clusterIP"), old_spec.get("clusterIP"))
        if needs_health_check(old) and needs_health_check(new) and health_check_port(new) != health_check_port(old):
            out.append(forbidden("spec.healthCheckNodePort", "field is immutable"))
        return out

    async def admit_create(self, admission: Admission, obj: Object, *, dry_run: bool) -> None:
        await admission.allocate_service(obj, None, dry_run=dry_run)

    async def admit_update(self, admission: Admission, new: Object, old: Object, *, dry_run: bool) -> None:
        await admission.allocate_service(new, old, dry_run=dry_run)

    async def released(self, admission: Admission, obj: Object) -> None:
        await admission.release_service(obj)


# --- endpoints -----------------------------------------------------------------------------------


class EndpointsStrategy(Strategy):
    def validate(self, obj: Object) -> Errors:
        out: Errors = []
        for i, subset in enumerate(obj.get("subsets") or []):
            here = f"subsets[{i}]"
            for kind in ("addresses", "notReadyAddresses"):
                for j, address in enumerate(subset.get(kind) or []):
                    out += v.ip_address(f"{here}.{kind}[{j}].ip", address.get("ip"))
            ports = subset.get("ports") or []
            for j, port in enumerate(ports):
                if len(ports) > 1 and not port.get("name"):
                    out.append(required(f"{here}.ports[{j}].name"))
                out += v.port_number(f"{here}.ports[{j}].port", port.get("port"))
                out += v.protocol(f"{here}.ports[{j}].protocol", port.get("protocol", "TCP"))
        return out

    def default(self, obj: Object) -> None:
        for subset in obj.get("subsets") or []:
            for port in subset.get("ports") or []:
                port.setdefault("protocol", "TCP")


# --- configmaps and secrets ----------------------------------------------------------------------


def _data_errors(obj: Object, fields: tuple[str, ...]) -> Errors:
    out: Errors = []
    seen: dict[str, str] = {}
    size = 0
    for name in fields:
        for key, value in (obj.get(name) or {}).items():
            out += v.config_key(f"{name}[{key}]", key)
            if key in seen:
                out.append(invalid(f"{name}[{key}]", key, f"duplicate of key present in {seen[key]}"))
            seen[key] = name
            size += len(value) if isinstance(value, str) else 0
    if size > MAX_DATA_SIZE:
        out.append(too_long(fields[0], MAX_DATA_SIZE))
    return out


def _immutable_data(new: Object, old: Object, fields: tuple[str, ...]) -> Errors:
    if not old.get("immutable"):
        return []
    out: Errors = []
    if not new.get("immutable"):
        out.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    for name in fields:
        if (new.get(name) or {}) != (old.get(name) or {}):
            out.append(forbidden(name, "field is immutable when `immutable` is set"))
    return out


class ConfigMapStrategy(Strategy):
    def validate(self, obj: Object) -> Errors:
        return _data_errors(obj, ("data", "binaryData"))

    def validate_update(self, new: Object, old: Object) -> Errors:
        return self.validate(new) + _immutable_data(new, old, ("data", "binaryData"))


_SECRET_REQUIRED_KEYS = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}


class SecretStrategy(Strategy):
    def default(self, obj: Object) -> None:
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if string_data:
            data = obj.setdefault("data", {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()

    def validate(self, obj: Object) -> Errors:
        out = _data_errors(obj, ("data",))
        data = obj.get("data") or {}
        for key in _SECRET_REQUIRED_KEYS.get(obj.get("type", "Opaque"), ()):
            if key not in data:
                out.append(required(f"data[{key}]"))
        if obj.get("type") == "kubernetes.io/basic-auth" and not ({"username", "password"} & set(data)):
            out.append(required("data[username]"))
        return out

    def validate_update(self, new: Object, old: Object) -> Errors:
        out = self.validate(new) + _immutable_data(new, old, ("data",))
        out += _immutable("type", new.get("type"), old.get("type"))
        return out


# --- events and service accounts -----------------------------------------------------------------


class EventStrategy(Strategy):
    name_check = staticmethod(v.path_segment)

    def validate(self, obj: Object) -> Errors:
        out: Errors = []
        involved = obj.get("involvedObject") or {}
        namespace = (obj.get("metadata") or {}).get("namespace", "")
        target = involved.get("namespace", "")
        if target and target != namespace:
            out.append(invalid("involvedObject.namespace", target, "does not match event.namespace"))
        if not target and namespace not in ("", "default"):
            out.append(invalid("involvedObject.namespace", target, "does not match event.namespace"))
        if obj.get("type"):
            out += v.one_of("type", obj["type"], ("Normal", "Warning"))
        return out


class ServiceAccountStrategy(Strategy):
    pass


# --- replication controllers ---------------------------------------------------------------------
# The older form of a ReplicaSet: its selector is a plain label map (every pair must match), which
# defaults to the template's labels, as do the object's own labels.


class ReplicationControllerStrategy(Strategy):
    def default(self, obj: Object) -> None:
        spec = obj.setdefault("spec", {})
        template = spec.get("template")
        labels = ((template or {}).get("metadata") or {}).get("labels") if isinstance(template, dict) else None
        if labels:
            if not spec.get("selector"):
                spec["selector"] = dict(labels)
            meta = obj.setdefault("metadata", {})
            if not meta.get("labels"):
                meta["labels"] = dict(labels)
        spec.setdefault("replicas", 1)
        if isinstance(template, dict):
            default_pod_spec(template.setdefault("spec", {}))

    def initial_status(self, obj: Object) -> dict[str, Any]:
        return {"replicas": 0}

    def validate(self, obj: Object) -> Errors:
        spec = obj.get("spec") or {}
        selector = spec.get("selector") or {}
        out: Errors = []
        if not selector:
            out.append(required("spec.selector"))
        out += v.label_map("spec.selector", selector)
        out += v.non_negative("spec.replicas", spec.get("replicas"))
        out += v.non_negative("spec.minReadySeconds", spec.get("minReadySeconds"))
        template = spec.get("template")
        out += validate_template(
            "spec.template",
            template,
            selector={"matchLabels": selector} if selector else None,
            restart_policies=("Always",),
        )
        deadline = ((template or {}).get("spec") or {}).get("activeDeadlineSeconds")
        if deadline is not None:
            out.append(
                invalid(
                    "spec.template.spec.activeDeadlineSeconds",
                    deadline,
                    "activeDeadlineSeconds in ReplicationController is not Supported",
                )
            )
        return out

    def validate_status(self, new: Object, old: Object) -> Errors:
        status = new.get("status") or {}
        out: Errors = []
        for name in ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas", "observedGeneration"):
            out += v.non_negative(f"status.{name}", status.get(name))
        return out
