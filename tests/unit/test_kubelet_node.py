"""What the kubelet registers: its Node's labels and taints (``node-labels``, ``register-with-taints``),
and the CNI network list it writes for people on the node (``cni-conf-dir``).

The API client is a fake, declared openly: it records the objects created and the patches sent, and
answers "already exists" when the node is there. The kubelet's config template is rendered as the
VM lab's node role renders it, then loaded with the kubelet's own settings loader.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Mapping
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, cast

import pytest

from agents.kubelet import podstate
from agents.kubelet.__main__ import check
from agents.kubelet.cni import CONFLIST_NAME, BridgeNetwork, bridge_conflist, conflist_text, write_conflist
from agents.kubelet.containerd import Ctr, Task
from agents.kubelet.kubelet import Kubelet, PodRuntime
from agents.kubelet.node import node_object, parse_labels, parse_taints
from agents.kubelet.settings import KubeletSettings
from agents.machinery.client import ApiError, Client
from agents.machinery.events import EventRecorder
from agents.machinery.settings import SettingsError, load
from provisioner.lab.render import render

CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
FACTS = {
    "cpu": "2",
    "memory": "1000Ki",
    "ephemeral-storage": "2000Ki",
    "kernel": "6.1.0",
    "os_image": "Debian GNU/Linux 12 (bookworm)",
}


# --- taints and labels ---------------------------------------------------------------------------


def test_taints_are_written_as_kube_s_kubelet_takes_them() -> None:
    assert parse_taints([f"{CONTROL_PLANE}:NoSchedule", "dedicated=gpu:NoExecute", "spare=:PreferNoSchedule"]) == [
        {"key": CONTROL_PLANE, "effect": "NoSchedule"},
        {"key": "dedicated", "value": "gpu", "effect": "NoExecute"},
        {"key": "spare", "value": "", "effect": "PreferNoSchedule"},
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("dedicated=gpu", "give key=value:Effect or key:Effect"),
        ("dedicated:Sometimes", "the Effect one of NoSchedule, PreferNoSchedule, NoExecute"),
        ("=gpu:NoSchedule", "invalid key ''"),
        ("bad key:NoSchedule", "invalid key 'bad key'"),
        ("dedicated=-gpu:NoSchedule", "invalid value '-gpu'"),
    ],
)
def test_a_taint_that_is_not_valid_is_named(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_taints([spec])


def test_the_same_taint_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="given twice"):
        parse_taints(["a:NoSchedule", "a=b:NoSchedule"])


def test_labels_are_key_equals_value_and_the_value_may_be_empty() -> None:
    assert parse_labels([f"{CONTROL_PLANE}=", "zone=a"]) == {CONTROL_PLANE: "", "zone": "a"}
    with pytest.raises(ValueError, match="give key=value"):
        parse_labels(["zone"])
    with pytest.raises(ValueError, match="invalid key"):
        parse_labels(["-zone=a"])


def test_the_node_object_carries_the_labels_and_taints_besides_the_well_known_labels() -> None:
    node = node_object(
        "kubelab-master",
        ip="192.168.150.10",
        facts=FACTS,
        max_pods=110,
        runtime_version="containerd://1.6.20",
        labels={CONTROL_PLANE: ""},
        taints=[{"key": CONTROL_PLANE, "effect": "NoSchedule"}],
    )
    assert node["metadata"]["labels"] == {
        "kubernetes.io/hostname": "kubelab-master",
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        CONTROL_PLANE: "",
    }
    assert node["spec"] == {"taints": [{"key": CONTROL_PLANE, "effect": "NoSchedule"}]}
    plain = node_object("w", ip="192.168.150.11", facts=FACTS, max_pods=110, runtime_version="x")
    assert plain["spec"] == {}


# --- settings ------------------------------------------------------------------------------------


def _load(tmp_path: Path, text: str) -> KubeletSettings:
    config = tmp_path / "kubelet.yaml"
    config.write_text(text)
    return load(KubeletSettings, ["--config", str(config)], env_prefix="KUBELAB_NOTHING", prog="test")


def test_node_labels_are_a_mapping_or_a_list_in_the_config_file(tmp_path: Path) -> None:
    mapping = _load(tmp_path, f'node-labels: {{"{CONTROL_PLANE}": "", zone: a, empty: }}\n')
    assert mapping.node_labels == (f"{CONTROL_PLANE}=", "zone=a", "empty=")
    listed = _load(tmp_path, "node-labels: [zone=a, rack=7]\nregister-with-taints: [a:NoSchedule]\n")
    assert listed.node_labels == ("zone=a", "rack=7")
    assert listed.register_with_taints == ("a:NoSchedule",)
    flags = load(
        KubeletSettings,
        ["--node-labels", "zone=a,rack=7", "--register-with-taints", "a:NoSchedule"],
        env_prefix="KUBELAB_NOTHING",
        prog="test",
    )
    assert flags.node_labels == ("zone=a", "rack=7")
    assert flags.register_with_taints == ("a:NoSchedule",)


def test_by_default_no_labels_no_taints_and_no_conflist_file() -> None:
    settings = KubeletSettings()
    assert settings.node_labels == ()
    assert settings.register_with_taints == ()
    assert settings.cni_conf_dir is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"register_with_taints": ("a=b",)}, "register-with-taints: taint 'a=b'"),
        ({"node_labels": ("zone",)}, "node-labels: node label 'zone'"),
    ],
)
def test_check_reports_a_bad_taint_or_label_as_a_settings_error(changes: dict[str, Any], message: str) -> None:
    settings = KubeletSettings(node_ip="192.168.150.10", **changes)
    with pytest.raises(SettingsError, match=message):
        check(settings)


def test_the_node_role_s_kubelet_config_loads_with_the_kubelet_s_settings(tmp_path: Path) -> None:
    text = render(
        "agents/kubelet.yaml.j2",
        kubelet_kubeconfig="/etc/kubelab/kubelet.kubeconfig",
        kubelet_node_name="kubelab-master",
        kubelet_node_ip="192.168.150.10",
        kubelet_root_dir="/var/lib/kubelab/kubelet",
        kubelet_containerd_socket="/run/containerd/containerd.sock",
        kubelet_hosts_dir="/etc/containerd/certs.d",
        kubelet_node_netns="",
        kubelet_healthz_port=10248,
        kubelet_server_address="0.0.0.0",
        kubelet_server_port=10250,
        kubelet_server_cert_file="/etc/kubelab/pki/kubelet.crt",
        kubelet_server_key_file="/etc/kubelab/pki/kubelet.key",
        kubelet_server_token_file="/etc/kubelab/pki/apiserver-kubelet-client.token",
        kubelet_register_with_taints=[f"{CONTROL_PLANE}:NoSchedule"],
        kubelet_node_labels={CONTROL_PLANE: ""},
        kubelet_cni_conf_dir="/etc/cni/net.d",
    )
    settings = _load(tmp_path, text)
    check(settings)
    assert settings.register_with_taints == (f"{CONTROL_PLANE}:NoSchedule",)
    assert settings.node_labels == (f"{CONTROL_PLANE}=",)
    assert settings.cni_conf_dir == Path("/etc/cni/net.d")
    assert settings.network.node_netns == ""
    assert settings.server.address == "0.0.0.0"


def test_a_worker_s_config_has_no_taints_and_no_labels(tmp_path: Path) -> None:
    text = render(
        "agents/kubelet.yaml.j2",
        kubelet_kubeconfig="k",
        kubelet_node_name="kubelab-worker1",
        kubelet_node_ip="192.168.150.11",
        kubelet_root_dir="/var/lib/kubelab/kubelet",
        kubelet_containerd_socket="/run/containerd/containerd.sock",
        kubelet_hosts_dir="/etc/containerd/certs.d",
        kubelet_healthz_port=10248,
        kubelet_register_with_taints=[],
        kubelet_node_labels={},
    )
    settings = _load(tmp_path, text)
    assert settings.register_with_taints == ()
    assert settings.node_labels == ()


# --- the conflist file ---------------------------------------------------------------------------


NETWORK = BridgeNetwork(subnet=IPv4Network("10.244.3.0/24"), data_dir=Path("/var/lib/kubelab/kubelet/cni/ipam"))


def test_the_conflist_file_is_the_kubelet_s_list_with_the_header_on_its_first_line() -> None:
    text = conflist_text(bridge_conflist(NETWORK))
    assert text.splitlines()[0] == '{"_comment": "generated by kubelab, do not edit",'
    document = json.loads(text)
    assert document.pop("_comment") == "generated by kubelab, do not edit"
    assert document == bridge_conflist(NETWORK)


def test_writing_the_conflist_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "net.d" / CONFLIST_NAME
    assert write_conflist(path, bridge_conflist(NETWORK))
    assert path.stat().st_mode & 0o777 == 0o644
    assert not write_conflist(path, bridge_conflist(NETWORK))
    assert [p.name for p in path.parent.iterdir()] == [CONFLIST_NAME]


class FakeClient:
    """Records creates and patches; the node exists once created (or when ``existing`` is given)."""

    def __init__(self, existing: dict[str, Any] | None = None) -> None:
        self.existing = existing
        self.created: list[dict[str, Any]] = []
        self.patches: list[tuple[str, Mapping[str, Any], str]] = []

    async def create(self, resource: object, body: dict[str, Any]) -> dict[str, Any]:
        if self.existing is not None:
            raise ApiError({"code": 409, "reason": "AlreadyExists", "message": "exists"}, 409)
        self.created.append(body)
        self.existing = body
        return body

    async def get(self, resource: object, name: str, namespace: str = "") -> dict[str, Any]:
        assert self.existing is not None
        return self.existing

    async def patch(
        self, resource: object, name: str, patch: Mapping[str, Any], *, kind: str = "", subresource: str = ""
    ) -> dict[str, Any]:
        self.patches.append((name, patch, subresource))
        return {}


def _kubelet(client: FakeClient, tmp_path: Path, **settings: Any) -> Kubelet:
    values = KubeletSettings(
        node_name="kubelab-master", node_ip="192.168.150.10", root_dir=tmp_path / "root", **settings
    )
    fake = cast(Client, client)
    return Kubelet(
        fake, values, ctr=Ctr(address=str(tmp_path / "none.sock")), recorder=EventRecorder(fake, component="kubelet")
    )


async def test_the_kubelet_creates_its_node_with_the_labels_and_taints(tmp_path: Path) -> None:
    client = FakeClient()
    kubelet = _kubelet(
        client,
        tmp_path,
        node_labels=(f"{CONTROL_PLANE}=",),
        register_with_taints=(f"{CONTROL_PLANE}:NoSchedule",),
    )
    await kubelet.register()
    (node,) = client.created
    assert node["metadata"]["labels"][CONTROL_PLANE] == ""
    assert node["spec"]["taints"] == [{"key": CONTROL_PLANE, "effect": "NoSchedule"}]


async def test_a_node_registered_before_gets_its_status_refreshed_and_nothing_else(tmp_path: Path) -> None:
    earlier = node_object("kubelab-master", ip="192.168.150.10", facts=FACTS, max_pods=110, runtime_version="x")
    client = FakeClient(existing=earlier)
    kubelet = _kubelet(client, tmp_path, register_with_taints=(f"{CONTROL_PLANE}:NoSchedule",))
    await kubelet.register()
    assert client.created == []
    ((name, patch, subresource),) = client.patches
    assert (name, subresource, list(patch)) == ("kubelab-master", "status", ["status"])


def test_the_kubelet_writes_the_conflist_once_it_knows_its_pod_cidr(tmp_path: Path) -> None:
    kubelet = _kubelet(FakeClient(), tmp_path, cni_conf_dir=tmp_path / "net.d")
    kubelet._node_changed({"metadata": {"name": "kubelab-master"}, "spec": {}})
    assert not (tmp_path / "net.d").exists()
    kubelet._node_changed({"metadata": {"name": "kubelab-master"}, "spec": {"podCIDR": "10.244.3.0/24"}})
    written = json.loads((tmp_path / "net.d" / CONFLIST_NAME).read_text())
    assert written["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.244.3.0/24"}]]
    assert written["plugins"][0]["ipam"]["dataDir"] == str(tmp_path / "root" / "cni" / "ipam")


def test_without_a_cni_conf_dir_no_file_is_written(tmp_path: Path) -> None:
    kubelet = _kubelet(FakeClient(), tmp_path)
    kubelet._node_changed({"metadata": {"name": "kubelab-master"}, "spec": {"podCIDR": "10.244.3.0/24"}})
    assert kubelet.sandboxes is not None
    assert not any(tmp_path.rglob("*.conflist"))


class _SlowCtr:
    """A containerd whose task list is slow: a start that completes while the first list is being
    made is not in it (as with `ctr` on a loaded emulated machine); later lists show the task."""

    def __init__(self, kubelet: Kubelet, cid: str) -> None:
        self.kubelet, self.cid, self.lists = kubelet, cid, 0
        self.third = asyncio.Event()

    async def tasks(self) -> dict[str, Task]:
        self.lists += 1
        if self.lists == 3:
            self.third.set()
        if self.lists == 1:
            await asyncio.sleep(0.05)
            self.kubelet.starts[self.cid] = time.time()  # `ctr start` returns meanwhile
            return {}
        return {self.cid: Task(self.cid, 4242, "RUNNING")}

    async def delete_task(self, cid: str) -> int | None:
        raise AssertionError(f"the running task {cid} was deleted")


async def test_the_relist_does_not_end_a_run_whose_start_finished_after_the_list_was_asked_for(tmp_path: Path) -> None:
    kubelet = _kubelet(FakeClient(), tmp_path)
    uid = "0f1e2d3c-aaaa-bbbb-cccc-000000000001"
    cid = f"{uid}_echo_0"
    runtime = PodRuntime(uid, "default/echo")
    runtime.attempts["echo"] = [podstate.Attempt(0, "running", time.time() - 30, container_id=f"containerd://{cid}")]
    kubelet.runtime[uid] = runtime
    kubelet.starts[cid] = math.inf  # `ctr start` is still running
    slow = _SlowCtr(kubelet, cid)
    kubelet.ctr = cast(Ctr, slow)
    relist = asyncio.create_task(kubelet.relist(period=0.01))
    try:
        await asyncio.wait_for(slow.third.wait(), 5)
    finally:
        relist.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relist
    assert runtime.attempts["echo"][-1].state == "running"
