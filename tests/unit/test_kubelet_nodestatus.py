"""The node status manager: the Node it creates (labels and taints), the status a node registered
before gets, the Lease and status heartbeats, and the pod network it learns from the podCIDR (handed
to the runtime through the kubelet's wiring, written as the CNI network list with ``cni-conf-dir``).

The API client is a fake, declared openly: a dictionary of objects by resource, namespace and name;
it answers "already exists" and "not found" as the API server does, records the status patches
sent, and fails the calls it is told to fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, cast

import pytest

from agents.kubelet.cni import CONFLIST_NAME, BridgeNetwork
from agents.kubelet.containerd import Containerd
from agents.kubelet.ctr import Ctr
from agents.kubelet.kubelet import Kubelet
from agents.kubelet.node import node_object
from agents.kubelet.nodestatus import NODE_LEASES, NodeStatus, pod_network
from agents.kubelet.settings import KubeletSettings
from agents.machinery.client import ApiError, ApiUnavailableError, Client
from agents.machinery.events import EventRecorder
from agents.machinery.resources import ResourceRef
from kubelab_testing.waiting import until
from tests.unit.test_kubelet_node import CONTROL_PLANE, FACTS

NODE = "kubelab-master"


class FakeClient:
    """Objects by (plural, namespace, name); ``failing`` names calls that raise ApiUnavailableError once."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []
        self.patches: list[tuple[str, Mapping[str, Any], str]] = []
        self.failing: set[str] = set()

    def _fail(self, call: str) -> None:
        if call in self.failing:
            self.failing.discard(call)
            raise ApiUnavailableError(f"{call}: the API server is away")

    @staticmethod
    def _key(resource: ResourceRef, obj: Mapping[str, Any]) -> tuple[str, str, str]:
        meta = obj.get("metadata") or {}
        return resource.plural, str(meta.get("namespace", "")), str(meta["name"])

    async def create(self, resource: ResourceRef, body: dict[str, Any]) -> dict[str, Any]:
        self._fail("create")
        if self._key(resource, body) in self.objects:
            raise ApiError({"code": 409, "reason": "AlreadyExists", "message": "exists"}, 409)
        self.created.append(body)
        self.objects[self._key(resource, body)] = body
        return body

    async def get(self, resource: ResourceRef, name: str, namespace: str = "") -> dict[str, Any]:
        self._fail("get")
        found = self.objects.get((resource.plural, namespace, name))
        if found is None:
            raise ApiError({"code": 404, "reason": "NotFound", "message": f"{name} not found"}, 404)
        return found

    async def update(self, resource: ResourceRef, body: dict[str, Any]) -> dict[str, Any]:
        self._fail("update")
        self.objects[self._key(resource, body)] = body
        return body

    async def patch(
        self, resource: ResourceRef, name: str, patch: Mapping[str, Any], *, kind: str = "", subresource: str = ""
    ) -> dict[str, Any]:
        self._fail("patch")
        self.patches.append((name, patch, subresource))
        return {}


def _settings(tmp_path: Path, **settings: Any) -> KubeletSettings:
    return KubeletSettings(node_name=NODE, node_ip="192.168.150.10", root_dir=tmp_path / "root", **settings)


def _node_status(client: FakeClient, settings: KubeletSettings, networks: list[BridgeNetwork]) -> NodeStatus:
    return NodeStatus(
        cast(Client, client), settings, runtime_version=lambda: "containerd://1.6.20", on_pod_network=networks.append
    )


def _kubelet(client: FakeClient, settings: KubeletSettings, tmp_path: Path) -> Kubelet:
    fake = cast(Client, client)
    socket = str(tmp_path / "none.sock")
    containerd = Containerd(address=socket, fifo_dir=tmp_path / "fifo", ctr=Ctr(address=socket))
    return Kubelet(fake, settings, containerd=containerd, recorder=EventRecorder(fake, component="kubelet"))


def _node(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": NODE}, "spec": spec}


# --- registration --------------------------------------------------------------------------------


async def test_the_kubelet_creates_its_node_with_the_labels_and_taints(tmp_path: Path) -> None:
    client = FakeClient()
    settings = _settings(
        tmp_path, node_labels=(f"{CONTROL_PLANE}=",), register_with_taints=(f"{CONTROL_PLANE}:NoSchedule",)
    )
    await _node_status(client, settings, []).register()
    (node,) = client.created
    assert node["metadata"]["labels"][CONTROL_PLANE] == ""
    assert node["spec"]["taints"] == [{"key": CONTROL_PLANE, "effect": "NoSchedule"}]
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "containerd://1.6.20"


async def test_a_node_registered_before_gets_its_status_refreshed_and_nothing_else(tmp_path: Path) -> None:
    client = FakeClient()
    client.objects["nodes", "", NODE] = node_object(
        NODE, ip="192.168.150.10", facts=FACTS, max_pods=110, runtime_version="x"
    )
    settings = _settings(tmp_path, register_with_taints=(f"{CONTROL_PLANE}:NoSchedule",))
    await _node_status(client, settings, []).register()
    assert client.created == []
    ((name, patch, subresource),) = client.patches
    assert (name, subresource, list(patch)) == (NODE, "status", ["status"])


async def test_registration_waits_for_an_api_server_that_does_not_answer_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = FakeClient()
    attempts = 0
    create = client.create

    async def refused_twice(resource: ResourceRef, body: dict[str, Any]) -> dict[str, Any]:
        nonlocal attempts
        attempts += 1
        if attempts <= 2:
            raise ApiUnavailableError("POST /api/v1/nodes: Cannot connect to host 192.168.123.10:6443")
        return await create(resource, body)

    waited: list[float] = []
    real_sleep = asyncio.sleep

    async def no_wait(seconds: float) -> None:
        waited.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(client, "create", refused_twice)
    monkeypatch.setattr(asyncio, "sleep", no_wait)
    await _node_status(client, _settings(tmp_path), []).register()
    assert attempts == 3
    assert waited == [0.5, 1.0]  # doubling between attempts
    assert [n["metadata"]["name"] for n in client.created] == [NODE]


async def test_registration_refused_by_the_api_server_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = FakeClient()

    async def forbidden(resource: ResourceRef, body: dict[str, Any]) -> dict[str, Any]:
        raise ApiError({"code": 403, "reason": "Forbidden", "message": "nodes is forbidden"}, 403)

    monkeypatch.setattr(client, "create", forbidden)
    with pytest.raises(ApiError, match="Forbidden"):
        await _node_status(client, _settings(tmp_path), []).register()


# --- heartbeats ----------------------------------------------------------------------------------


async def test_heartbeats_keep_the_lease_and_the_status_and_outlive_a_failed_round(tmp_path: Path) -> None:
    client = FakeClient()
    client.objects["nodes", "", NODE] = node_object(
        NODE, ip="192.168.150.10", facts=FACTS, max_pods=110, runtime_version="x"
    )
    client.failing = {"get"}  # the first round finds the API server away
    status = _node_status(client, _settings(tmp_path, lease_interval=0.01, status_interval=0.0), [])
    beating = asyncio.create_task(status.heartbeats())
    try:
        await until(lambda: len(client.patches) >= 2, within=5)
    finally:
        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
    lease = client.objects["leases", NODE_LEASES, NODE]
    assert lease["spec"]["holderIdentity"] == NODE
    assert lease["spec"]["leaseDurationSeconds"] == 40
    assert all((name, subresource) == (NODE, "status") for name, _patch, subresource in client.patches)


# --- the pod network -----------------------------------------------------------------------------


def test_the_pod_network_is_the_pod_cidr_on_the_node_s_bridge() -> None:
    root = Path("/var/lib/kubelab/kubelet")
    assert pod_network(_node(), root=root, bridge="kubelab0") is None
    network = pod_network(_node(podCIDR="10.244.3.0/24"), root=root, bridge="klit0")
    assert network == BridgeNetwork(IPv4Network("10.244.3.0/24"), root / "cni" / "ipam", bridge="klit0")


def test_only_the_first_pod_cidr_seen_makes_the_pod_network(tmp_path: Path) -> None:
    networks: list[BridgeNetwork] = []
    status = _node_status(FakeClient(), _settings(tmp_path), networks)
    status.node_changed(_node())
    assert networks == []
    status.node_changed(_node(podCIDR="10.244.3.0/24"))
    status.node_changed(_node(podCIDR="10.244.3.0/24"))
    status.node_changed(_node(podCIDR="10.244.9.0/24"))
    assert [str(n.subnet) for n in networks] == ["10.244.3.0/24"]


def test_the_kubelet_writes_the_conflist_once_it_knows_its_pod_cidr(tmp_path: Path) -> None:
    kubelet = _kubelet(FakeClient(), _settings(tmp_path, cni_conf_dir=tmp_path / "net.d"), tmp_path)
    kubelet.node_status.node_changed(_node())
    assert not (tmp_path / "net.d").exists()
    assert kubelet.runtime.sandboxes is None
    kubelet.node_status.node_changed(_node(podCIDR="10.244.3.0/24"))
    written = json.loads((tmp_path / "net.d" / CONFLIST_NAME).read_text())
    assert written["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}]]
    assert written["plugins"][0]["ipam"]["dataDir"] == str(tmp_path / "root" / "cni" / "ipam")
    assert kubelet.runtime.sandboxes is not None


def test_without_a_cni_conf_dir_no_file_is_written(tmp_path: Path) -> None:
    kubelet = _kubelet(FakeClient(), _settings(tmp_path), tmp_path)
    kubelet.node_status.node_changed(_node(podCIDR="10.244.3.0/24"))
    assert kubelet.runtime.sandboxes is not None
    assert kubelet.runtime.sandboxes.netns_prefix == f"kl-{NODE}-"
    assert not any(tmp_path.rglob("*.conflist"))
