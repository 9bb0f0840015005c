"""What the kubelet's Node says: its labels and taints (``node-labels``, ``register-with-taints``),
and the CNI network list file it writes for people on the node (``cni-conf-dir``).

The kubelet's config template is rendered as the VM lab's node role renders it, then loaded with the
kubelet's own settings loader. Sending the Node is the node status manager's
(``test_kubelet_nodestatus.py``).
"""

from __future__ import annotations

import json
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from agents.apiserver.patch import strategic_merge
from agents.kubelet.__main__ import check
from agents.kubelet.cni import CONFLIST_NAME, BridgeNetwork, bridge_conflist, conflist_text, write_conflist
from agents.kubelet.node import heartbeat, node_object, parse_labels, parse_taints
from agents.kubelet.settings import KubeletSettings
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


def test_under_an_external_cloud_the_node_waits_for_the_cloud_and_then_keeps_its_addresses() -> None:
    node = node_object("w", ip="192.168.150.11", facts=FACTS, max_pods=110, runtime_version="x", external_cloud=True)
    assert node["spec"]["taints"] == [
        {"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"}
    ]
    assert node["metadata"]["annotations"] == {"alpha.kubernetes.io/provided-node-ip": "192.168.150.11"}
    assert "addresses" in heartbeat(node, node, external_cloud=True)["status"]  # not initialized yet: the kubelet's
    initialized = {**node, "spec": {"providerID": "libvirt://x"}}
    assert "addresses" not in heartbeat(initialized, node, external_cloud=True)["status"]  # now the cloud's
    assert "addresses" in heartbeat(initialized, node)["status"]


def test_a_heartbeat_patched_as_the_kubelet_patches_keeps_conditions_other_components_own(
    definitions: dict[str, Any],
) -> None:
    """The kubelet's status patch is strategic (conditions merge by type): the route controller's
    NetworkUnavailable condition outlives every heartbeat."""
    node = node_object("w", ip="192.168.150.11", facts=FACTS, max_pods=110, runtime_version="x")
    routed = {"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated"}
    stored = {**node, "status": {**node["status"], "conditions": [*node["status"]["conditions"], routed]}}
    patched = strategic_merge(definitions, "V1Node", stored, heartbeat(stored, node))
    kinds = [c["type"] for c in patched["status"]["conditions"]]
    assert routed in patched["status"]["conditions"] and len(kinds) == len(set(kinds)), kinds


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
