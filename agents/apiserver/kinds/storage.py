"""Strategies for the storage kinds, and the admission kube runs on them.

core/v1 PersistentVolumes and PersistentVolumeClaims, storage.k8s.io/v1 StorageClasses,
VolumeAttachments, CSINodes and CSIDrivers: defaults, validation and update rules as kube's storage
and core validation have them, word for word where kubectl prints them. A claim's spec never changes
after creation except the volume name (set once, by the PV controller), a class name set on a claim
that had none (the retroactive default class), and, for a bound claim, ``resources.requests.storage``,
which may grow (and shrink back while still above ``status.capacity``).

Admission (kube's plugins of the same names):
- DefaultStorageClass: a claim created naming no class (no ``storageClassName``, no beta class
  annotation) gets the class annotated ``storageclass.kubernetes.io/is-default-class: "true"``, the
  newest if several are, the first by name among equally new ones.
- StorageObjectInUseProtection: new claims get the ``kubernetes.io/pvc-protection`` finalizer, new
  volumes ``kubernetes.io/pv-protection``; the controllers remove them when nothing uses the object.
- PersistentVolumeClaimResize: a claim's request grows only when it is bound and its class allows
  volume expansion.
The claim strategy reads the StorageClasses through a lister the API server hands it; without one
DefaultStorageClass leaves the class unset and every resize is refused, as with no class at all.
"""

from __future__ import annotations

import posixpath
from collections.abc import Awaitable, Callable, Sequence
from fractions import Fraction
from typing import Any

from agents.apiserver import validation as v
from agents.apiserver.kinds.base import Admission, Strategy
from agents.apiserver.resources import Resource
from agents.apiserver.status import duplicate, forbidden, forbidden_object, invalid, not_supported, required, too_long
from agents.apiserver.validation import Errors
from agents.machinery import quantity
from agents.machinery.objects import Object, deep_copy, now

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
BETA_DEFAULT_CLASS_ANNOTATION = "storageclass.beta.kubernetes.io/is-default-class"
BETA_CLASS_ANNOTATION = "volume.beta.kubernetes.io/storage-class"  # the field's predecessor, still honoured
PVC_PROTECTION_FINALIZER = "kubernetes.io/pvc-protection"
PV_PROTECTION_FINALIZER = "kubernetes.io/pv-protection"

ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")  # sorted, as kube lists them
PV_RECLAIM_POLICIES = ("Delete", "Recycle", "Retain")
CLASS_RECLAIM_POLICIES = ("Delete", "Retain")
BINDING_MODES = ("Immediate", "WaitForFirstConsumer")
VOLUME_MODES = ("Block", "Filesystem")
HOST_PATH_TYPES = ("", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket")
LIFECYCLE_MODES = ("Ephemeral", "Persistent")
FS_GROUP_POLICIES = ("File", "None", "ReadWriteOnceWithFSType")
NODE_SELECTOR_OPS = ("In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt")
# kube's PersistentVolumeSource members, in the order its validation visits them
PV_SOURCES = (
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "glusterfs",
    "flocker",
    "nfs",
    "rbd",
    "quobyte",
    "cephfs",
    "iscsi",
    "cinder",
    "fc",
    "flexVolume",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "scaleIO",
    "local",
    "storageos",
    "csi",
)
CSI_SECRET_REFS = (
    "controllerPublishSecretRef",
    "nodeStageSecretRef",
    "nodePublishSecretRef",
    "controllerExpandSecretRef",
    "nodeExpandSecretRef",
)
MAX_DRIVER_NAME = 63
MAX_NODE_ID = 192
MAX_TOPOLOGY_KEYS = 16
MAX_PARAMETERS = 512
MAX_PARAMETERS_SIZE = 256 * 1024
MAX_VOLUME_ERROR = 1024
MAX_ATTACHMENT_METADATA = 256 * 1024

CLAIM_IMMUTABLE = (
    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"
)
RESIZE_REFUSED = (
    "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"
)

StorageClassLister = Callable[[], Awaitable[list[Object]]]


def _meta(obj: Object) -> dict[str, Any]:
    meta: dict[str, Any] = obj.get("metadata") or {}
    return meta


def _spec(obj: Object) -> dict[str, Any]:
    spec: dict[str, Any] = obj.get("spec") or {}
    return spec


def _immutable(path: str, new: Any, old: Any) -> Errors:
    return [invalid(path, new, "field is immutable")] if new != old else []


def _add_finalizer(obj: Object, finalizer: str) -> None:
    finalizers = obj.setdefault("metadata", {}).setdefault("finalizers", [])
    if finalizer not in finalizers:
        finalizers.append(finalizer)


def storage_request(claim: Object) -> Any:
    """The claim's ``spec.resources.requests.storage`` (None when missing)."""
    return ((_spec(claim).get("resources") or {}).get("requests") or {}).get("storage")


def _bytes(text: Any) -> Fraction | None:
    """A quantity's value, or None where it is missing or not a quantity (validation says why)."""
    if text is None:
        return None
    try:
        return quantity.value(text)
    except quantity.QuantityError:
        return None


# --- shared field checks ---------------------------------------------------------------------------


def csi_driver_name(path: str, name: Any) -> Errors:
    """kube's ValidateCSIDriverName: required, at most 63 characters, a DNS subdomain (any case)."""
    text = str(name or "")
    out: Errors = []
    if not text:
        out.append(required(path))
    if len(text) > MAX_DRIVER_NAME:
        out.append(too_long(path, MAX_DRIVER_NAME))
    out += [invalid(path, text, msg) for msg in v.dns_subdomain(text.lower())]
    return out


def access_modes(path: str, modes: Any, *, claim: bool) -> Errors:
    modes = modes or []
    out: Errors = []
    if not modes:
        out.append(required(path, "at least 1 access mode is required" if claim else ""))
    for mode in modes:
        if mode not in ACCESS_MODES:
            out.append(not_supported(path, mode, ACCESS_MODES))
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        out.append(forbidden(path, "may not use ReadWriteOncePod with other access modes"))
    return out


def _class_name(path: str, name: Any) -> Errors:
    if not name:
        return []
    return [invalid(path, name, msg) for msg in v.dns_subdomain(str(name))]


def _volume_mode(path: str, mode: Any) -> Errors:
    return [] if mode is None or mode in VOLUME_MODES else [not_supported(path, mode, VOLUME_MODES)]


def _positive_quantity(path: str, value: Any) -> Errors:
    """kube's ValidateResourceQuantityValue + ValidatePositiveQuantityValue."""
    try:
        amount = quantity.value(value)
    except quantity.QuantityError as exc:
        return [invalid(path, value, str(exc))]
    if amount <= 0:
        return [invalid(path, value, "must be greater than zero")]
    return []


def _no_backsteps(path: str, target: str) -> Errors:
    if ".." in target.split("/"):
        return [invalid(path, target, "must not contain '..'")]
    return []


def node_selector(path: str, selector: dict[str, Any]) -> Errors:
    """kube's ValidateNodeSelector (a volume's required node affinity)."""
    terms = selector.get("nodeSelectorTerms") or []
    if not terms:
        return [required(f"{path}.nodeSelectorTerms", "must have at least one node selector term")]
    out: Errors = []
    for i, term in enumerate(terms):
        for j, expr in enumerate((term or {}).get("matchExpressions") or []):
            here = f"{path}.nodeSelectorTerms[{i}].matchExpressions[{j}]"
            op, values = expr.get("operator"), expr.get("values") or []
            if op in ("In", "NotIn") and not values:
                out.append(required(f"{here}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
            elif op in ("Exists", "DoesNotExist") and values:
                out.append(
                    forbidden(f"{here}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'")
                )
            elif op in ("Gt", "Lt") and len(values) != 1:
                out.append(required(f"{here}.values", "must be specified single value when `operator` is 'Lt' or 'Gt'"))
            elif op not in NODE_SELECTOR_OPS:
                out.append(invalid(f"{here}.operator", op, "not a valid selector operator"))
            out += v.qualified_name(f"{here}.key", str(expr.get("key") or ""))
        for j, expr in enumerate((term or {}).get("matchFields") or []):
            here = f"{path}.nodeSelectorTerms[{i}].matchFields[{j}]"
            if expr.get("key") != "metadata.name":
                out.append(invalid(f"{here}.key", expr.get("key"), "not a valid field selector key"))
            if expr.get("operator") not in ("In", "NotIn"):
                out.append(invalid(f"{here}.operator", expr.get("operator"), "not a valid selector operator"))
            if len(expr.get("values") or []) != 1:
                out.append(required(f"{here}.values", "must be only one value when `operator` is 'In' or 'NotIn'"))
    return out


# --- volume sources ---------------------------------------------------------------------------------


def _host_path(path: str, source: dict[str, Any]) -> Errors:
    target = source.get("path") or ""
    if not target:
        return [required(f"{path}.path")]
    out = _no_backsteps(f"{path}.path", target)
    kind = source.get("type")
    if kind is not None and kind not in HOST_PATH_TYPES:
        out.append(not_supported(f"{path}.type", kind, HOST_PATH_TYPES))
    return out


def _local(path: str, source: dict[str, Any]) -> Errors:
    target = source.get("path") or ""
    if not target:
        return [required(f"{path}.path")]
    return _no_backsteps(f"{path}.path", target)


def _nfs(path: str, source: dict[str, Any]) -> Errors:
    out: Errors = []
    if not source.get("server"):
        out.append(required(f"{path}.server"))
    target = source.get("path") or ""
    if not target:
        out.append(required(f"{path}.path"))
    elif not target.startswith("/"):
        out.append(invalid(f"{path}.path", target, "must be an absolute path"))
    return out


def _csi(path: str, source: dict[str, Any]) -> Errors:
    out = csi_driver_name(f"{path}.driver", source.get("driver"))
    if not source.get("volumeHandle"):
        out.append(required(f"{path}.volumeHandle"))
    for ref_name in CSI_SECRET_REFS:
        ref = source.get(ref_name)
        if ref is None:
            continue
        for part in ("name", "namespace"):
            value = (ref or {}).get(part) or ""
            if not value:
                out.append(required(f"{path}.{ref_name}.{part}"))
            else:
                check = v.dns_subdomain if part == "name" else v.dns_label
                out += [invalid(f"{path}.{ref_name}.{part}", value, msg) for msg in check(str(value))]
    return out


_SOURCE_CHECKS: dict[str, Callable[[str, dict[str, Any]], Errors]] = {
    "hostPath": _host_path,
    "local": _local,
    "nfs": _nfs,
    "csi": _csi,
}


def volume_source(path: str, spec: dict[str, Any]) -> Errors:
    """Exactly one volume source, and what kube checks of the ones the lab uses."""
    out: Errors = []
    found = 0
    for name in PV_SOURCES:
        if spec.get(name) is None:
            continue
        if found:
            out.append(forbidden(f"{path}.{name}", "may not specify more than 1 volume type"))
            continue
        found += 1
        check = _SOURCE_CHECKS.get(name)
        if check is not None:
            out += check(f"{path}.{name}", spec[name] or {})
    if not found:
        out.append(required(path, "must specify a volume type"))
    return out


# --- PersistentVolumes ------------------------------------------------------------------------------


def persistent_volume_spec(spec: dict[str, Any], path: str = "spec") -> Errors:
    """kube's ValidatePersistentVolumeSpec."""
    out = access_modes(f"{path}.accessModes", spec.get("accessModes"), claim=False)
    out += _class_name(f"{path}.storageClassName", spec.get("storageClassName"))
    capacity = spec.get("capacity") or {}
    if not capacity:
        out.append(required(f"{path}.capacity"))
    if "storage" not in capacity or len(capacity) > 1:
        out.append(not_supported(f"{path}.capacity", capacity, ["storage"]))
    for key, amount in capacity.items():
        out += _positive_quantity(f"{path}.capacity[{key}]", amount)
    policy = spec.get("persistentVolumeReclaimPolicy") or ""
    if policy and policy not in PV_RECLAIM_POLICIES:
        out.append(not_supported(f"{path}.persistentVolumeReclaimPolicy", policy, PV_RECLAIM_POLICIES))
    host_path = (spec.get("hostPath") or {}).get("path")
    if policy == "Recycle" and host_path and posixpath.normpath(host_path) == "/":
        out.append(
            forbidden(f"{path}.persistentVolumeReclaimPolicy", "may not be 'recycle' for a hostPath mount of '/'")
        )
    affinity = spec.get("nodeAffinity")
    if affinity is not None:
        required_terms = (affinity or {}).get("required")
        if required_terms is None:
            out.append(required(f"{path}.nodeAffinity.required", "must specify required node constraints"))
        else:
            out += node_selector(f"{path}.nodeAffinity.required", required_terms)
    out += volume_source(path, spec)
    if spec.get("local") is not None and affinity is None:
        out.append(required(f"{path}.nodeAffinity", "Local volume requires node affinity"))
    out += _volume_mode(f"{path}.volumeMode", spec.get("volumeMode"))
    return out


def _pv_source(spec: dict[str, Any]) -> dict[str, Any]:
    return {name: spec[name] for name in PV_SOURCES if spec.get(name) is not None}


class PersistentVolumeStrategy(Strategy):
    def default(self, obj: Object) -> None:
        spec = obj.setdefault("spec", {})
        if not spec.get("persistentVolumeReclaimPolicy"):
            spec["persistentVolumeReclaimPolicy"] = "Retain"
        spec.setdefault("volumeMode", "Filesystem")
        host_path = spec.get("hostPath")
        if isinstance(host_path, dict):
            host_path.setdefault("type", "")

    def initial_status(self, obj: Object) -> dict[str, Any]:
        return {"phase": "Pending", "lastPhaseTransitionTime": now()}

    def validate(self, obj: Object) -> Errors:
        return persistent_volume_spec(_spec(obj))

    def validate_update(self, new: Object, old: Object) -> Errors:
        """kube's ValidatePersistentVolumeUpdate: the source, volume mode and a set node affinity stay."""
        out = self.validate(new)
        new_spec, old_spec = _spec(new), _spec(old)
        if _pv_source(new_spec) != _pv_source(old_spec):
            out.append(
                forbidden("spec.persistentvolumesource", "spec.persistentvolumesource is immutable after creation")
            )
        out += _immutable("volumeMode", new_spec.get("volumeMode"), old_spec.get("volumeMode"))
        if old_spec.get("nodeAffinity") is not None:
            out += _immutable("nodeAffinity", new_spec.get("nodeAffinity"), old_spec.get("nodeAffinity"))
        return out

    async def admit_create(self, admission: Admission, obj: Object, *, dry_run: bool) -> None:
        _add_finalizer(obj, PV_PROTECTION_FINALIZER)  # StorageObjectInUseProtection


# --- PersistentVolumeClaims -------------------------------------------------------------------------


def claim_spec(spec: dict[str, Any], path: str = "spec") -> Errors:
    """kube's ValidatePersistentVolumeClaimSpec."""
    out = access_modes(f"{path}.accessModes", spec.get("accessModes"), claim=True)
    out += v.label_selector(f"{path}.selector", spec.get("selector"))
    requests = (spec.get("resources") or {}).get("requests") or {}
    if "storage" not in requests:
        out.append(required(f"{path}.resources[storage]"))
    else:
        out += _positive_quantity(f"{path}.resources[storage]", requests["storage"])
    out += _class_name(f"{path}.storageClassName", spec.get("storageClassName"))
    out += _volume_mode(f"{path}.volumeMode", spec.get("volumeMode"))
    return out


def claim_class(claim: Object) -> str:
    """The claim's class: the beta annotation first, then ``spec.storageClassName`` ("" for none)."""
    annotations = _meta(claim).get("annotations") or {}
    if BETA_CLASS_ANNOTATION in annotations:
        return str(annotations[BETA_CLASS_ANNOTATION])
    return str(_spec(claim).get("storageClassName") or "")


def names_class(claim: Object) -> bool:
    """The claim says which class it wants (a name, or "" for none), by field or annotation."""
    annotations = _meta(claim).get("annotations") or {}
    return BETA_CLASS_ANNOTATION in annotations or _spec(claim).get("storageClassName") is not None


def is_default_class(storage_class: Object) -> bool:
    annotations = _meta(storage_class).get("annotations") or {}
    return "true" in (annotations.get(DEFAULT_CLASS_ANNOTATION), annotations.get(BETA_DEFAULT_CLASS_ANNOTATION))


def default_class(classes: Sequence[Object]) -> str | None:
    """The class DefaultStorageClass gives a claim: of those annotated default, the newest (RFC 3339 UTC
    timestamps sort as text), the first by name among equally new ones."""
    marked = [c for c in classes if is_default_class(c)]
    if not marked:
        return None
    newest = max(str(_meta(c).get("creationTimestamp") or "") for c in marked)
    return min(str(_meta(c).get("name", "")) for c in marked if (_meta(c).get("creationTimestamp") or "") == newest)


def claim_update_errors(new: Object, old: Object) -> Errors:
    """kube's ValidatePersistentVolumeClaimUpdate (expansion failure recovery on, as in 1.32)."""
    out = claim_spec(_spec(new))
    new_spec, old_spec = deep_copy(_spec(new)), deep_copy(_spec(old))
    if not old_spec.get("volumeName"):  # bound once, by the PV controller
        old_spec["volumeName"] = new_spec.get("volumeName")
        if old_spec["volumeName"] is None:
            old_spec.pop("volumeName")
    old_annotations = _meta(old).get("annotations") or {}
    if old_spec.get("storageClassName") is None and new_spec.get("storageClassName") is not None:
        beta = old_annotations.get(BETA_CLASS_ANNOTATION)
        new_beta = (_meta(new).get("annotations") or {}).get(BETA_CLASS_ANNOTATION)
        if beta is None or (beta == new_beta and new_spec.get("storageClassName") == beta):
            new_spec.pop("storageClassName")  # a class given to a claim that had none
    bound = ((new.get("status") or {}).get("phase")) == "Bound"
    new_requests = (new_spec.get("resources") or {}).get("requests")
    if bound and new_requests is not None:
        old_request = storage_request(old)
        if old_request is None:
            new_requests.pop("storage", None)
        else:
            new_requests["storage"] = old_request
    if new_spec != old_spec:
        out.append(forbidden("spec", CLAIM_IMMUTABLE))
    new_size, old_size = _bytes(storage_request(new)), _bytes(storage_request(old))
    if new_size is not None and old_size is not None and new_size < old_size:
        capacity = _bytes(((old.get("status") or {}).get("capacity") or {}).get("storage")) or 0
        if new_size <= capacity:
            out.append(forbidden("spec.resources.requests.storage", "field can not be less than status.capacity"))
    return out


def claim_status_errors(status: dict[str, Any]) -> Errors:
    out: Errors = []
    out += access_modes_status("status.accessModes", status.get("accessModes"))
    for field in ("capacity", "allocatedResources"):
        for key, amount in (status.get(field) or {}).items():
            out += v.quantity_value(f"status.{field}[{key}]", amount)
    return out


def access_modes_status(path: str, modes: Any) -> Errors:
    return [not_supported(path, mode, ACCESS_MODES) for mode in modes or [] if mode not in ACCESS_MODES]


class PersistentVolumeClaimStrategy(Strategy):
    def __init__(self, resource: Resource, *, classes: StorageClassLister | None = None) -> None:
        super().__init__(resource)
        self.classes = classes

    def default(self, obj: Object) -> None:
        obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")

    def initial_status(self, obj: Object) -> dict[str, Any]:
        return {"phase": "Pending"}

    def validate(self, obj: Object) -> Errors:
        return claim_spec(_spec(obj))

    def validate_update(self, new: Object, old: Object) -> Errors:
        return claim_update_errors(new, old)

    def validate_status(self, new: Object, old: Object) -> Errors:
        return claim_status_errors(new.get("status") or {})

    async def _class(self, name: str) -> Object | None:
        if self.classes is None or not name:
            return None
        return next((c for c in await self.classes() if _meta(c).get("name") == name), None)

    async def admit_create(self, admission: Admission, obj: Object, *, dry_run: bool) -> None:
        if self.classes is not None and not names_class(obj):  # DefaultStorageClass
            name = default_class(await self.classes())
            if name is not None:
                obj.setdefault("spec", {})["storageClassName"] = name
        _add_finalizer(obj, PVC_PROTECTION_FINALIZER)  # StorageObjectInUseProtection

    async def admit_update(self, admission: Admission, new: Object, old: Object, *, dry_run: bool) -> None:
        """PersistentVolumeClaimResize: growing needs a bound claim of a class allowing expansion."""
        new_size, old_size = _bytes(storage_request(new)), _bytes(storage_request(old))
        if new_size is None or old_size is None or new_size <= old_size:
            return
        name = str(_meta(old).get("name", ""))
        if ((old.get("status") or {}).get("phase")) != "Bound":
            raise forbidden_object(
                "persistentvolumeclaims", "", name, "Only bound persistent volume claims can be expanded"
            )
        wanted = claim_class(new)
        found = await self._class(wanted) if wanted and wanted == claim_class(old) else None
        if found is None or found.get("allowVolumeExpansion") is not True:
            raise forbidden_object("persistentvolumeclaims", "", name, RESIZE_REFUSED)


# --- StorageClasses ---------------------------------------------------------------------------------


def _parameters(path: str, params: dict[str, Any]) -> Errors:
    out: Errors = []
    if len(params) > MAX_PARAMETERS:
        out.append(invalid(path, len(params), f"must have at most {MAX_PARAMETERS} entries"))
    size = 0
    for key, value in params.items():
        if not key:
            out.append(invalid(path, key, "field can not be empty."))
        size += len(key) + len(str(value))
    if size > MAX_PARAMETERS_SIZE:
        out.append(too_long(path, MAX_PARAMETERS_SIZE))
    return out


class StorageClassStrategy(Strategy):
    def default(self, obj: Object) -> None:
        if not obj.get("reclaimPolicy"):
            obj["reclaimPolicy"] = "Delete"
        if not obj.get("volumeBindingMode"):
            obj["volumeBindingMode"] = "Immediate"

    def validate(self, obj: Object) -> Errors:
        provisioner = str(obj.get("provisioner") or "")
        out: Errors = []
        if not provisioner:
            out.append(required("provisioner"))
        else:
            out += v.qualified_name("provisioner", provisioner.lower())
        out += _parameters("parameters", obj.get("parameters") or {})
        policy = obj.get("reclaimPolicy")
        if policy and policy not in CLASS_RECLAIM_POLICIES:
            out.append(not_supported("reclaimPolicy", policy, CLASS_RECLAIM_POLICIES))
        mode = obj.get("volumeBindingMode")
        if not mode:
            out.append(required("volumeBindingMode"))
        elif mode not in BINDING_MODES:
            out.append(not_supported("volumeBindingMode", mode, BINDING_MODES))
        for i, term in enumerate(obj.get("allowedTopologies") or []):
            expressions = (term or {}).get("matchLabelExpressions") or []
            if not expressions:
                out.append(
                    required(
                        f"allowedTopologies[{i}].matchLabelExpressions", "must have at least one node selector term"
                    )
                )
            for j, expr in enumerate(expressions):
                here = f"allowedTopologies[{i}].matchLabelExpressions[{j}]"
                out += v.qualified_name(f"{here}.key", str(expr.get("key") or ""))
                if not expr.get("values"):
                    out.append(required(f"{here}.values", "must specify as least one value"))
        return out

    def validate_update(self, new: Object, old: Object) -> Errors:
        out = self.validate(new)
        if (new.get("parameters") or {}) != (old.get("parameters") or {}):
            out.append(forbidden("parameters", "updates to parameters are forbidden."))
        if new.get("provisioner") != old.get("provisioner"):
            out.append(forbidden("provisioner", "updates to provisioner are forbidden."))
        if new.get("reclaimPolicy") != old.get("reclaimPolicy"):
            out.append(forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."))
        out += _immutable("volumeBindingMode", new.get("volumeBindingMode"), old.get("volumeBindingMode"))
        return out


# --- VolumeAttachments ------------------------------------------------------------------------------


def _volume_error(path: str, error: Any) -> Errors:
    if not isinstance(error, dict):
        return []
    message = str(error.get("message") or "")
    return [too_long(f"{path}.message", MAX_VOLUME_ERROR)] if len(message) > MAX_VOLUME_ERROR else []


def attachment_status_errors(status: dict[str, Any]) -> Errors:
    out: Errors = []
    size = sum(len(k) + len(str(val)) for k, val in (status.get("attachmentMetadata") or {}).items())
    if size > MAX_ATTACHMENT_METADATA:
        out.append(too_long("status.attachmentMetadata", MAX_ATTACHMENT_METADATA))
    out += _volume_error("status.attachError", status.get("attachError"))
    out += _volume_error("status.detachError", status.get("detachError"))
    return out


class VolumeAttachmentStrategy(Strategy):
    def initial_status(self, obj: Object) -> dict[str, Any]:
        return {"attached": False}

    def validate(self, obj: Object) -> Errors:
        spec = _spec(obj)
        out = csi_driver_name("spec.attacher", spec.get("attacher"))
        source = spec.get("source") or {}
        pv_name, inline = source.get("persistentVolumeName"), source.get("inlineVolumeSpec")
        if pv_name is None and inline is None:
            out.append(required("spec.source", "must specify exactly one of inlineVolumeSpec and persistentVolumeName"))
        elif pv_name is not None and inline is not None:
            out.append(
                forbidden("spec.source", "must specify exactly one of inlineVolumeSpec and persistentVolumeName")
            )
        elif pv_name is not None:
            if not pv_name:
                out.append(required("spec.source.persistentVolumeName", "must specify non empty persistentVolumeName"))
        else:
            csi = (inline or {}).get("csi")  # a migrated inline volume: a CSI source, nothing of a PV's own
            if csi is None:
                out.append(required("spec.source.inlineVolumeSpec.csi", "must specify a CSI volume source"))
            else:
                out += _csi("spec.source.inlineVolumeSpec.csi", csi)
        node = str(spec.get("nodeName") or "")
        out += [invalid("spec.nodeName", node, msg) for msg in v.dns_subdomain(node)]
        return out + attachment_status_errors(obj.get("status") or {})

    def validate_update(self, new: Object, old: Object) -> Errors:
        out = self.validate(new)
        if _spec(new) != _spec(old):
            out.append(invalid("spec", _spec(new), "field is immutable"))
        return out

    def validate_status(self, new: Object, old: Object) -> Errors:
        return attachment_status_errors(new.get("status") or {})


# --- CSINodes and CSIDrivers ------------------------------------------------------------------------


def _csi_node_driver(path: str, driver: dict[str, Any]) -> Errors:
    out = csi_driver_name(f"{path}.name", driver.get("name"))
    node_id = str(driver.get("nodeID") or "")
    if not node_id:
        out.append(required(f"{path}.nodeID"))
    elif len(node_id) > MAX_NODE_ID:
        out.append(too_long(f"{path}.nodeID", MAX_NODE_ID))
    keys = driver.get("topologyKeys") or []
    if len(keys) > MAX_TOPOLOGY_KEYS:
        out.append(invalid(f"{path}.topologyKeys", len(keys), f"must have at most {MAX_TOPOLOGY_KEYS} entries"))
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if key in seen:
            out.append(duplicate(f"{path}.topologyKeys", key))
        seen.add(str(key))
        out += v.qualified_name(f"{path}.topologyKeys[{i}]", str(key))
    count = (driver.get("allocatable") or {}).get("count")
    if count is not None:
        out += v.non_negative(f"{path}.allocatable.count", count)
    return out


class CSINodeStrategy(Strategy):
    def validate(self, obj: Object) -> Errors:
        out: Errors = []
        drivers = _spec(obj).get("drivers") or []
        for i, driver in enumerate(drivers):
            out += _csi_node_driver(f"spec.drivers[{i}]", driver or {})
        out += v.unique("spec.drivers", ((i, (d or {}).get("name")) for i, d in enumerate(drivers)), "name")
        return out

    def validate_update(self, new: Object, old: Object) -> Errors:
        """A driver keeps its node ID, topology keys and allocatable while registered."""
        out = self.validate(new)
        old_drivers = {str((d or {}).get("name")): d or {} for d in _spec(old).get("drivers") or []}
        for i, driver in enumerate(_spec(new).get("drivers") or []):
            before = old_drivers.get(str((driver or {}).get("name")))
            if before is None:
                continue
            for field in ("nodeID", "topologyKeys", "allocatable"):
                out += _immutable(f"spec.drivers[{i}].{field}", (driver or {}).get(field), before.get(field))
        return out


def csi_driver_object_name(name: str) -> list[str]:
    """A CSIDriver is named after its driver: a DNS subdomain of at most 63 characters."""
    out = v.dns_subdomain(name)
    if len(name) > MAX_DRIVER_NAME:
        out.insert(0, f"must be no more than {MAX_DRIVER_NAME} characters")
    return out


class CSIDriverStrategy(Strategy):
    name_check = staticmethod(csi_driver_object_name)

    def default(self, obj: Object) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("attachRequired", True)
        spec.setdefault("podInfoOnMount", False)
        spec.setdefault("storageCapacity", False)
        spec.setdefault("requiresRepublish", False)
        spec.setdefault("seLinuxMount", False)
        spec.setdefault("fsGroupPolicy", "ReadWriteOnceWithFSType")
        if not spec.get("volumeLifecycleModes"):
            spec["volumeLifecycleModes"] = ["Persistent"]

    def validate(self, obj: Object) -> Errors:
        spec = _spec(obj)
        out: Errors = []
        for field in ("attachRequired", "podInfoOnMount", "storageCapacity", "requiresRepublish", "seLinuxMount"):
            if field in spec and not isinstance(spec[field], bool):
                out.append(required(f"spec.{field}"))
        policy = spec.get("fsGroupPolicy")
        if policy is not None and policy not in FS_GROUP_POLICIES:
            out.append(not_supported("spec.fsGroupPolicy", policy, FS_GROUP_POLICIES))
        for mode in spec.get("volumeLifecycleModes") or []:
            if mode not in LIFECYCLE_MODES:
                out.append(not_supported("spec.volumeLifecycleModes", mode, LIFECYCLE_MODES))
        audiences = [(i, (t or {}).get("audience")) for i, t in enumerate(spec.get("tokenRequests") or [])]
        out += v.unique("spec.tokenRequests", audiences, "audience")
        for i, request in enumerate(spec.get("tokenRequests") or []):
            seconds = (request or {}).get("expirationSeconds")
            if isinstance(seconds, int) and seconds < 600:
                out.append(
                    invalid(
                        f"spec.tokenRequests[{i}].expirationSeconds",
                        seconds,
                        "may not specify a duration less than 10 minutes",
                    )
                )
        return out

    def validate_update(self, new: Object, old: Object) -> Errors:
        out = self.validate(new)
        new_spec, old_spec = _spec(new), _spec(old)
        for field in ("attachRequired", "fsGroupPolicy", "volumeLifecycleModes"):
            out += _immutable(f"spec.{field}", new_spec.get(field), old_spec.get(field))
        return out
