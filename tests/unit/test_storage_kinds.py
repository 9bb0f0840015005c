"""The storage kinds through the API server on the in-memory store: PersistentVolumes, claims,
StorageClasses, VolumeAttachments, CSINodes and CSIDrivers with kube's defaults, validation wording
and update rules, the DefaultStorageClass, StorageObjectInUseProtection and PersistentVolumeClaimResize
admission, the tables kubectl prints, and what the Node authorizer and the bootstrap roles allow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from agents.apiserver import bootstrappolicy, noderestriction
from agents.apiserver.kinds.storage import default_class
from agents.apiserver.nodeauthorizer import NodeAuthorizer, PodGraph
from agents.apiserver.rbac import Attributes, rule_allows
from agents.apiserver.status import StatusError

Client = TestClient[Any, Any]
PVS = "/api/v1/persistentvolumes"
PVCS = "/api/v1/namespaces/default/persistentvolumeclaims"
STORAGE = "/apis/storage.k8s.io/v1"
CLASSES = f"{STORAGE}/storageclasses"
ATTACHMENTS = f"{STORAGE}/volumeattachments"
TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
MERGE = {"Content-Type": "application/merge-patch+json"}
DEFAULT = "storageclass.kubernetes.io/is-default-class"
DRIVER = "disk.csi.kubelab.dev"


def volume(name: str = "pv1", **spec: Any) -> dict[str, Any]:
    body = {
        "capacity": {"storage": "1Gi"},
        "accessModes": ["ReadWriteOnce"],
        "csi": {"driver": DRIVER, "volumeHandle": "vol-0123456789abcdef"},
        **spec,
    }
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


def claim(name: str = "data", size: str = "1Gi", **spec: Any) -> dict[str, Any]:
    body = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}, **spec}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {k: v for k, v in body.items() if v is not None},
    }


def storage_class(name: str, *, default: bool = False, **fields: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if default:
        meta["annotations"] = {DEFAULT: "true"}
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": meta,
        "provisioner": DRIVER,
        **fields,
    }


def attachment(name: str = "csi-abc", **spec: Any) -> dict[str, Any]:
    body = {"attacher": DRIVER, "nodeName": "w1", "source": {"persistentVolumeName": "pv1"}, **spec}
    return {"apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment", "metadata": {"name": name}, "spec": body}


async def created(http: Client, url: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await http.post(url, json=body)
    assert answer.status == 201, await answer.text()
    return dict(await answer.json())


async def refused(http: Client, url: str, body: dict[str, Any]) -> str:
    """The message of a create refused as invalid (422)."""
    answer = await http.post(url, json=body)
    assert answer.status == 422, await answer.text()
    return str((await answer.json())["message"])


async def patched(http: Client, url: str, patch: dict[str, Any], status: int = 200) -> dict[str, Any]:
    answer = await http.patch(url, json=patch, headers=MERGE)
    assert answer.status == status, await answer.text()
    return dict(await answer.json())


async def bound_claim(http: Client, name: str, class_name: str, size: str = "1Gi") -> None:
    """A claim of ``class_name`` the PV controller has bound (volume name, status Bound, capacity)."""
    await created(http, PVCS, claim(name, size, storageClassName=class_name))
    await patched(http, f"{PVCS}/{name}", {"spec": {"volumeName": f"pvc-{name}"}})
    status = {"phase": "Bound", "capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"]}
    await patched(http, f"{PVCS}/{name}/status", {"status": status})


# --- serving ---------------------------------------------------------------------------------------


async def test_the_storage_kinds_are_discovered_with_kubes_names_scopes_and_short_names(http: Client) -> None:
    core = {r["name"]: r for r in (await (await http.get("/api/v1")).json())["resources"]}
    assert core["persistentvolumes"]["shortNames"] == ["pv"] and not core["persistentvolumes"]["namespaced"]
    assert core["persistentvolumeclaims"]["shortNames"] == ["pvc"] and core["persistentvolumeclaims"]["namespaced"]
    assert "persistentvolumes/status" in core and "persistentvolumeclaims/status" in core
    storage = {r["name"]: r for r in (await (await http.get(STORAGE)).json())["resources"]}
    assert {"storageclasses", "volumeattachments", "volumeattachments/status", "csinodes", "csidrivers"} <= set(storage)
    assert storage["storageclasses"]["shortNames"] == ["sc"]
    assert not any(r["namespaced"] for r in storage.values())
    assert "storageclasses/status" not in storage and "csinodes/status" not in storage


# --- PersistentVolumes ------------------------------------------------------------------------------


async def test_a_new_volume_is_retained_filesystem_pending_and_protected(http: Client) -> None:
    stored = await created(http, PVS, volume())
    assert stored["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert stored["spec"]["volumeMode"] == "Filesystem"
    assert stored["status"]["phase"] == "Pending" and stored["status"]["lastPhaseTransitionTime"]
    assert stored["metadata"]["finalizers"] == ["kubernetes.io/pv-protection"]


async def test_a_volume_status_written_at_create_is_ignored(http: Client) -> None:
    body = volume()
    body["status"] = {"phase": "Bound"}
    assert (await created(http, PVS, body))["status"]["phase"] == "Pending"


async def test_a_volume_without_capacity_modes_or_source_is_refused_in_kubes_words(http: Client) -> None:
    message = await refused(http, PVS, volume(capacity=None, accessModes=None, csi=None))
    assert message.startswith('PersistentVolume "pv1" is invalid: [')
    assert "spec.accessModes: Required value" in message
    assert "spec.capacity: Required value" in message
    assert "spec: Required value: must specify a volume type" in message


async def test_a_volume_checks_its_modes_policy_capacity_and_single_source(http: Client) -> None:
    message = await refused(
        http,
        PVS,
        volume(
            accessModes=["ReadWriteSometimes"],
            persistentVolumeReclaimPolicy="Shred",
            capacity={"storage": "0"},
            hostPath={"path": "/srv/data"},
        ),
    )
    assert (
        'spec.accessModes: Unsupported value: "ReadWriteSometimes": supported values: "ReadOnlyMany",'
        ' "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"'
    ) in message
    assert (
        'spec.persistentVolumeReclaimPolicy: Unsupported value: "Shred": supported values: "Delete", "Recycle",'
        ' "Retain"'
    ) in message
    assert 'spec.capacity[storage]: Invalid value: "0": must be greater than zero' in message
    assert "spec.csi: Forbidden: may not specify more than 1 volume type" in message
    message = await refused(http, PVS, volume(accessModes=["ReadWriteOncePod", "ReadWriteOnce"]))
    assert "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes" in message


async def test_a_csi_volume_needs_a_driver_and_handle_and_a_local_one_node_affinity(http: Client) -> None:
    message = await refused(http, PVS, volume(csi={"driver": "", "volumeHandle": ""}))
    assert "spec.csi.driver: Required value" in message and "spec.csi.volumeHandle: Required value" in message
    message = await refused(http, PVS, volume(csi=None, local={"path": "/mnt/disks/../x"}))
    assert "spec.local.path: Invalid value: \"/mnt/disks/../x\": must not contain '..'" in message
    assert "spec.nodeAffinity: Required value: Local volume requires node affinity" in message
    affinity = {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "Near"}]}]}}
    message = await refused(http, PVS, volume(nodeAffinity=affinity))
    assert (
        'spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].operator: Invalid value: "Near":'
        " not a valid selector operator"
    ) in message


async def test_a_local_volume_with_node_affinity_and_a_host_path_volume_are_stored(http: Client) -> None:
    zone = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["host1"]}
    affinity = {"required": {"nodeSelectorTerms": [{"matchExpressions": [zone]}]}}
    await created(http, PVS, volume("local", csi=None, local={"path": "/mnt/disks/a"}, nodeAffinity=affinity))
    stored = await created(http, PVS, volume("hp", csi=None, hostPath={"path": "/srv/data"}))
    assert stored["spec"]["hostPath"] == {"path": "/srv/data", "type": ""}


async def test_a_volume_source_and_mode_never_change_but_its_claim_ref_and_policy_may(http: Client) -> None:
    await created(http, PVS, volume())
    answer = await http.patch(f"{PVS}/pv1", json={"spec": {"csi": {"volumeHandle": "vol-other"}}}, headers=MERGE)
    assert answer.status == 422
    message = (await answer.json())["message"]
    assert "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation" in message
    answer = await http.patch(f"{PVS}/pv1", json={"spec": {"volumeMode": "Block"}}, headers=MERGE)
    assert 'volumeMode: Invalid value: "Block": field is immutable' in (await answer.json())["message"]
    ref = {"kind": "PersistentVolumeClaim", "namespace": "default", "name": "data", "uid": "u1", "apiVersion": "v1"}
    stored = await patched(http, f"{PVS}/pv1", {"spec": {"claimRef": ref, "persistentVolumeReclaimPolicy": "Delete"}})
    assert stored["spec"]["claimRef"]["name"] == "data"


async def test_the_volume_status_moves_only_through_its_subresource(http: Client) -> None:
    await created(http, PVS, volume())
    stored = await patched(http, f"{PVS}/pv1", {"status": {"phase": "Bound"}})
    assert stored["status"]["phase"] == "Pending"
    stored = await patched(http, f"{PVS}/pv1/status", {"status": {"phase": "Available"}})
    assert stored["status"]["phase"] == "Available"


# --- StorageClasses ---------------------------------------------------------------------------------


async def test_a_class_defaults_to_delete_and_immediate_binding(http: Client) -> None:
    stored = await created(http, CLASSES, storage_class("fast"))
    assert (stored["reclaimPolicy"], stored["volumeBindingMode"]) == ("Delete", "Immediate")


async def test_a_class_needs_a_provisioner_and_known_policy_and_binding_mode(http: Client) -> None:
    body = storage_class("bad", reclaimPolicy="Recycle", volumeBindingMode="Later")
    body["provisioner"] = ""
    message = await refused(http, CLASSES, body)
    assert "provisioner: Required value" in message
    assert 'reclaimPolicy: Unsupported value: "Recycle": supported values: "Delete", "Retain"' in message
    assert (
        'volumeBindingMode: Unsupported value: "Later": supported values: "Immediate", "WaitForFirstConsumer"'
    ) in message


async def test_a_class_keeps_its_provisioner_parameters_policy_and_binding_mode(http: Client) -> None:
    await created(http, CLASSES, storage_class("fast", parameters={"type": "ssd"}))
    change = {
        "provisioner": "other.example.com",
        "parameters": {"type": "hdd"},
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "WaitForFirstConsumer",
    }
    answer = await http.patch(f"{CLASSES}/fast", json=change, headers=MERGE)
    assert answer.status == 422
    message = (await answer.json())["message"]
    assert "parameters: Forbidden: updates to parameters are forbidden." in message
    assert "provisioner: Forbidden: updates to provisioner are forbidden." in message
    assert "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden." in message
    assert 'volumeBindingMode: Invalid value: "WaitForFirstConsumer": field is immutable' in message
    stored = await patched(http, f"{CLASSES}/fast", {"allowVolumeExpansion": True})
    assert stored["allowVolumeExpansion"] is True


# --- PersistentVolumeClaims -------------------------------------------------------------------------


async def test_a_new_claim_is_filesystem_pending_protected_and_gets_the_default_class(http: Client) -> None:
    await created(http, CLASSES, storage_class("standard", default=True, volumeBindingMode="WaitForFirstConsumer"))
    await created(http, CLASSES, storage_class("other"))
    stored = await created(http, PVCS, claim())
    assert stored["spec"]["storageClassName"] == "standard"
    assert stored["spec"]["volumeMode"] == "Filesystem"
    assert stored["status"] == {"phase": "Pending"}
    assert stored["metadata"]["finalizers"] == ["kubernetes.io/pvc-protection"]


async def test_a_claim_naming_a_class_or_none_keeps_it(http: Client) -> None:
    await created(http, CLASSES, storage_class("standard", default=True))
    assert (await created(http, PVCS, claim("a", storageClassName="other")))["spec"]["storageClassName"] == "other"
    assert (await created(http, PVCS, claim("b", storageClassName="")))["spec"]["storageClassName"] == ""
    beta = claim("c")
    beta["metadata"]["annotations"] = {"volume.beta.kubernetes.io/storage-class": "legacy"}
    assert "storageClassName" not in (await created(http, PVCS, beta))["spec"]


async def test_without_a_default_class_a_claim_has_none(http: Client) -> None:
    await created(http, CLASSES, storage_class("other"))
    assert "storageClassName" not in (await created(http, PVCS, claim()))["spec"]


def test_of_several_default_classes_the_newest_wins_then_the_first_by_name() -> None:
    def made(name: str, at: str, *, default: bool = True) -> dict[str, Any]:
        body = storage_class(name, default=default)
        body["metadata"]["creationTimestamp"] = at
        return body

    old, new = "2026-01-01T00:00:00Z", "2026-06-01T00:00:00Z"
    assert default_class([made("a", old), made("b", new), made("c", new, default=False)]) == "b"
    assert default_class([made("z", new), made("y", new), made("a", old)]) == "y"
    assert default_class([made("a", old, default=False)]) is None


async def test_a_claim_needs_access_modes_and_a_storage_request(http: Client) -> None:
    body = claim(accessModes=None)
    body["spec"]["resources"] = {}
    message = await refused(http, PVCS, body)
    assert message.startswith('PersistentVolumeClaim "data" is invalid: [')
    assert "spec.accessModes: Required value: at least 1 access mode is required" in message
    assert "spec.resources[storage]: Required value" in message
    message = await refused(http, PVCS, claim(size="-1Gi", volumeMode="Raw"))
    assert 'spec.resources[storage]: Invalid value: "-1Gi": must be greater than zero' in message
    assert 'spec.volumeMode: Unsupported value: "Raw": supported values: "Block", "Filesystem"' in message


async def test_a_claim_spec_is_immutable_but_its_volume_name_is_set_once(http: Client) -> None:
    await created(http, PVCS, claim())
    answer = await http.patch(f"{PVCS}/data", json={"spec": {"accessModes": ["ReadWriteMany"]}}, headers=MERGE)
    assert answer.status == 422
    assert (
        "spec: Forbidden: "
        + ("spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims")
        in (await answer.json())["message"]
    )
    assert (await patched(http, f"{PVCS}/data", {"spec": {"volumeName": "pv1"}}))["spec"]["volumeName"] == "pv1"
    await patched(http, f"{PVCS}/data", {"spec": {"volumeName": "pv2"}}, status=422)
    # a claim that had no class may be given one (the retroactive default class)
    assert (await patched(http, f"{PVCS}/data", {"spec": {"storageClassName": "late"}}))["spec"]["storageClassName"]


async def test_an_unbound_claim_cannot_grow(http: Client) -> None:
    await created(http, CLASSES, storage_class("standard", allowVolumeExpansion=True))
    await created(http, PVCS, claim(storageClassName="standard"))
    answer = await http.patch(
        f"{PVCS}/data", json={"spec": {"resources": {"requests": {"storage": "2Gi"}}}}, headers=MERGE
    )
    assert answer.status == 422
    assert "spec: Forbidden: spec is immutable after creation" in (await answer.json())["message"]


async def test_a_bound_claim_grows_when_its_class_allows_expansion(http: Client) -> None:
    await created(http, CLASSES, storage_class("standard", allowVolumeExpansion=True))
    await bound_claim(http, "data", "standard")
    grown = await patched(http, f"{PVCS}/data", {"spec": {"resources": {"requests": {"storage": "2Gi"}}}})
    assert grown["spec"]["resources"]["requests"]["storage"] == "2Gi"
    # back down, but not to the capacity the volume already has
    answer = await http.patch(
        f"{PVCS}/data", json={"spec": {"resources": {"requests": {"storage": "1Gi"}}}}, headers=MERGE
    )
    assert answer.status == 422
    assert (
        "spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"
        in (await answer.json())["message"]
    )
    shrunk = await patched(http, f"{PVCS}/data", {"spec": {"resources": {"requests": {"storage": "1536Mi"}}}})
    assert shrunk["spec"]["resources"]["requests"]["storage"] == "1536Mi"


async def test_a_bound_claim_of_a_class_without_expansion_is_not_resized(http: Client) -> None:
    await created(http, CLASSES, storage_class("fixed"))
    await bound_claim(http, "data", "fixed")
    answer = await http.patch(
        f"{PVCS}/data", json={"spec": {"resources": {"requests": {"storage": "2Gi"}}}}, headers=MERGE
    )
    assert answer.status == 403
    assert (await answer.json())["message"] == (
        'persistentvolumeclaims "data" is forbidden: only dynamically provisioned pvc can be resized and the'
        " storageclass that provisions the pvc must support resize"
    )
    await bound_claim(http, "nameless", "")  # no class at all: never resized either
    answer = await http.patch(
        f"{PVCS}/nameless", json={"spec": {"resources": {"requests": {"storage": "2Gi"}}}}, headers=MERGE
    )
    assert answer.status == 403


# --- VolumeAttachments, CSINodes, CSIDrivers --------------------------------------------------------


async def test_an_attachment_starts_detached_and_its_spec_never_changes(http: Client) -> None:
    stored = await created(http, ATTACHMENTS, attachment())
    assert stored["status"] == {"attached": False}
    answer = await http.patch(f"{ATTACHMENTS}/csi-abc", json={"spec": {"nodeName": "w2"}}, headers=MERGE)
    assert answer.status == 422 and "spec: Invalid value: " in (await answer.json())["message"]
    status = {"attached": True, "attachmentMetadata": {"serial": "vol-0123456789abcdef", "device": "vdb"}}
    stored = await patched(http, f"{ATTACHMENTS}/csi-abc/status", {"status": status})
    assert stored["status"]["attached"] is True and stored["status"]["attachmentMetadata"]["device"] == "vdb"


async def test_an_attachment_needs_an_attacher_a_node_and_exactly_one_source(http: Client) -> None:
    message = await refused(http, ATTACHMENTS, attachment(attacher="", nodeName="", source={}))
    assert "spec.attacher: Required value" in message
    assert (
        "spec.source: Required value: must specify exactly one of inlineVolumeSpec and persistentVolumeName" in message
    )
    assert 'spec.nodeName: Invalid value: ""' in message
    both = {"persistentVolumeName": "pv1", "inlineVolumeSpec": {"csi": {"driver": DRIVER, "volumeHandle": "h"}}}
    message = await refused(http, ATTACHMENTS, attachment(source=both))
    assert "spec.source: Forbidden: must specify exactly one of inlineVolumeSpec and persistentVolumeName" in message


async def test_a_csi_driver_gets_kubes_defaults_and_a_csi_node_its_drivers_checked(http: Client) -> None:
    driver = {"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": DRIVER}, "spec": {}}
    spec = (await created(http, f"{STORAGE}/csidrivers", driver))["spec"]
    assert spec["attachRequired"] is True and spec["podInfoOnMount"] is False
    assert spec["volumeLifecycleModes"] == ["Persistent"] and spec["fsGroupPolicy"] == "ReadWriteOnceWithFSType"
    drivers = [
        {"name": DRIVER, "nodeID": "w1", "topologyKeys": ["topology.kubernetes.io/zone"], "allocatable": {"count": 16}}
    ]
    node: dict[str, Any] = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "CSINode",
        "metadata": {"name": "w1"},
        "spec": {"drivers": drivers},
    }
    await created(http, f"{STORAGE}/csinodes", node)
    moved = [{**drivers[0], "nodeID": "w2"}]
    answer = await http.patch(f"{STORAGE}/csinodes/w1", json={"spec": {"drivers": moved}}, headers=MERGE)
    assert 'spec.drivers[0].nodeID: Invalid value: "w2": field is immutable' in (await answer.json())["message"]
    node["metadata"]["name"] = "w2"
    node["spec"]["drivers"] = [{"name": DRIVER, "nodeID": ""}, {"name": DRIVER, "nodeID": "w2"}]
    message = await refused(http, f"{STORAGE}/csinodes", node)
    assert "spec.drivers[0].nodeID: Required value" in message
    assert f'spec.drivers[1].name: Duplicate value: "{DRIVER}"' in message


# --- tables ------------------------------------------------------------------------------------------


async def _table(http: Client, url: str) -> tuple[list[str], list[list[Any]]]:
    answer = await (await http.get(url, headers=TABLE)).json()
    names = [c["name"] for c in answer["columnDefinitions"] if c["priority"] == 0]
    return names, [row["cells"][: len(names)] for row in answer["rows"]]


async def test_kubectl_prints_volumes_claims_and_classes_with_kubes_columns(http: Client) -> None:
    await created(http, CLASSES, storage_class("standard", default=True, allowVolumeExpansion=True))
    ref = {"kind": "PersistentVolumeClaim", "namespace": "default", "name": "data"}
    await created(http, PVS, volume(capacity={"storage": "1024Mi"}, claimRef=ref, storageClassName="standard"))
    await created(http, PVCS, claim())
    columns, rows = await _table(http, PVS)
    assert columns == [
        "Name", "Capacity", "Access Modes", "Reclaim Policy", "Status", "Claim", "StorageClass",
        "VolumeAttributesClass", "Reason", "Age",
    ]  # fmt: skip
    assert rows[0][:9] == ["pv1", "1Gi", "RWO", "Retain", "Pending", "default/data", "standard", "<unset>", ""]
    columns, rows = await _table(http, PVCS)
    assert columns == [
        "Name", "Status", "Volume", "Capacity", "Access Modes", "StorageClass", "VolumeAttributesClass", "Age",
    ]  # fmt: skip
    assert rows[0][:7] == ["data", "Pending", "", "", "", "standard", "<unset>"]
    columns, rows = await _table(http, CLASSES)
    assert columns == ["Name", "Provisioner", "ReclaimPolicy", "VolumeBindingMode", "AllowVolumeExpansion", "Age"]
    assert rows[0][:5] == ["standard (default)", DRIVER, "Delete", "Immediate", True]


# --- the Node authorizer and the bootstrap roles -------------------------------------------------------

KUBELET_GROUPS = ("system:nodes", "system:authenticated")


def ask(verb: str, resource: str, *, api_group: str = "", **kw: str) -> Attributes:
    """A request of the kubelet of node w1."""
    return Attributes(
        user="system:node:w1",
        groups=KUBELET_GROUPS,
        verb=verb,
        resource_request=True,
        resource=resource,
        api_group=api_group,
        **kw,
    )


def _pod(name: str, node: str, claim_name: str) -> dict[str, Any]:
    volumes = [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}]
    return {"metadata": {"name": name, "namespace": "team"}, "spec": {"nodeName": node, "volumes": volumes}}


def test_a_node_gets_a_volume_only_while_a_pod_on_it_uses_the_claim_bound_to_it() -> None:
    graph = PodGraph()
    node = NodeAuthorizer(graph, bootstrappolicy.NODE_RULES)
    get_pv = ask("get", "persistentvolumes", name="pvc-1")
    graph.volumes.put("/registry/persistentvolumes/pvc-1", {"spec": {"claimRef": {"namespace": "team", "name": "db"}}})
    assert not node.allows(get_pv)
    graph.put("/registry/pods/team/web", _pod("web", "w2", "db"))
    assert not node.allows(get_pv)  # another node's pod
    assert node.reason(get_pv) == "no relationship found between node 'w1' and this object"
    graph.put("/registry/pods/team/web", _pod("web", "w1", "db"))
    assert node.allows(get_pv)
    assert not node.allows(ask("list", "persistentvolumes"))
    assert node.reason(ask("list", "persistentvolumes")) == "can only get individual resources of this type"
    # the claim's status, for expansion: update and patch, through the same pod
    status = ask("patch", "persistentvolumeclaims", namespace="team", name="db", subresource="status")
    assert node.allows(status)
    assert not node.allows(ask("patch", "persistentvolumeclaims", namespace="team", name="other", subresource="status"))
    graph.volumes.drop("/registry/persistentvolumes/pvc-1")
    assert not node.allows(get_pv)
    graph.volumes.put("/registry/persistentvolumes/pvc-1", {"spec": {}})  # released: no claim
    assert not node.allows(get_pv)


def test_a_node_gets_the_attachments_to_itself_and_writes_only_its_own_csi_node() -> None:
    graph = PodGraph()
    node = NodeAuthorizer(graph, bootstrappolicy.NODE_RULES)
    storage = "storage.k8s.io"
    graph.attachments.put("/registry/storage.k8s.io/volumeattachments/csi-a", {"spec": {"nodeName": "w1"}})
    graph.attachments.put("/registry/storage.k8s.io/volumeattachments/csi-b", {"spec": {"nodeName": "w2"}})
    assert node.allows(ask("get", "volumeattachments", api_group=storage, name="csi-a"))
    assert not node.allows(ask("get", "volumeattachments", api_group=storage, name="csi-b"))
    assert not node.allows(ask("update", "volumeattachments", api_group=storage, name="csi-a"))
    assert not node.allows(ask("list", "volumeattachments", api_group=storage))
    for verb in ("get", "update", "patch", "delete"):
        assert node.allows(ask(verb, "csinodes", api_group=storage, name="w1"))
        assert not node.allows(ask(verb, "csinodes", api_group=storage, name="w2"))
    assert node.allows(ask("create", "csinodes", api_group=storage))
    assert node.reason(ask("get", "csinodes", api_group=storage, name="w2")) == (
        "can only access CSINode with the same name as the requesting node"
    )
    assert node.allows(ask("watch", "csidrivers", api_group=storage))
    # NodeRestriction checks the name a create carries
    noderestriction.check(ask("create", "csinodes", api_group=storage), graph, created_name="w1")
    with pytest.raises(StatusError) as refusal:
        noderestriction.check(ask("create", "csinodes", api_group=storage), graph, created_name="w2")
    assert refusal.value.message == (
        'csinodes.storage.k8s.io "w2" is forbidden: can only access CSINode with the same name as the requesting node'
    )


def test_the_watch_cache_feeds_the_volume_and_attachment_edges() -> None:
    graph = PodGraph()
    prefixes = {index.prefix for index in graph.indexes}
    assert prefixes == {
        "/registry/pods/",
        "/registry/persistentvolumes/",
        "/registry/storage.k8s.io/volumeattachments/",
    }


def _grants(role: str, verb: str, group: str, resource: str, subresource: str = "") -> bool:
    rules = next(r for r in bootstrappolicy.CLUSTER_ROLES if r["metadata"]["name"] == role)["rules"]
    attrs = Attributes(
        user="u",
        groups=(),
        verb=verb,
        resource_request=True,
        api_group=group,
        resource=resource,
        subresource=subresource,
    )
    return any(rule_allows(rule, attrs) for rule in rules)


@pytest.mark.parametrize(
    ("role", "verb", "group", "resource", "subresource"),
    [
        ("system:kube-controller-manager", "create", "", "persistentvolumes", ""),
        ("system:kube-controller-manager", "patch", "", "persistentvolumeclaims", "status"),
        ("system:kube-controller-manager", "create", "storage.k8s.io", "volumeattachments", ""),
        ("system:kube-controller-manager", "delete", "storage.k8s.io", "volumeattachments", ""),
        ("system:kube-controller-manager", "patch", "", "nodes", "status"),
        ("system:cloud-controller-manager", "create", "", "persistentvolumes", ""),
        ("system:cloud-controller-manager", "delete", "", "persistentvolumes", ""),
        ("system:cloud-controller-manager", "patch", "", "persistentvolumeclaims", ""),
        ("system:cloud-controller-manager", "patch", "", "persistentvolumeclaims", "status"),
        ("system:cloud-controller-manager", "watch", "storage.k8s.io", "volumeattachments", ""),
        ("system:cloud-controller-manager", "patch", "storage.k8s.io", "volumeattachments", "status"),
        ("system:cloud-controller-manager", "list", "storage.k8s.io", "storageclasses", ""),
        ("system:cloud-controller-manager", "get", "storage.k8s.io", "csinodes", ""),
        ("system:cloud-controller-manager", "create", "", "events", ""),
        ("system:kube-scheduler", "patch", "", "persistentvolumeclaims", ""),
        ("system:kube-scheduler", "list", "storage.k8s.io", "csinodes", ""),
    ],
)
def test_the_storage_components_hold_kubes_rules(
    role: str, verb: str, group: str, resource: str, subresource: str
) -> None:
    assert _grants(role, verb, group, resource, subresource)


def test_the_cloud_controller_manager_does_not_create_claims_or_attachments() -> None:
    assert not _grants("system:cloud-controller-manager", "create", "", "persistentvolumeclaims")
    assert not _grants("system:cloud-controller-manager", "create", "storage.k8s.io", "volumeattachments")


async def test_the_storage_add_on_manifests_are_accepted_as_they_are(http: Client) -> None:
    addon = Path(__file__).parents[2] / "addons" / "storage"
    driver = yaml.safe_load((addon / "csidriver.yaml").read_text())
    standard = yaml.safe_load((addon / "storageclass.yaml").read_text())
    assert (await created(http, f"{STORAGE}/csidrivers", driver))["spec"]["attachRequired"] is True
    stored = await created(http, CLASSES, standard)
    assert (stored["volumeBindingMode"], stored["allowVolumeExpansion"]) == ("WaitForFirstConsumer", True)
    assert (await created(http, PVCS, claim()))["spec"]["storageClassName"] == "standard"
