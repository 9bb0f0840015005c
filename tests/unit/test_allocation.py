"""Several labs side by side: a new lab's host ports and address ranges are picked free (pure planner over
declared facts), the facts are read from the other labs' records and this host, and every lab's kubeconfig
names its cluster, user and context after the lab so that kubectl merges them."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from provisioner import drivers, lifecycle
from provisioner.errors import SpecError
from provisioner.lab import allocation, credentials
from provisioner.lab import spec as labspec
from provisioner.lab.allocation import Taken, allocate
from provisioner.lab.paths import LabPaths
from provisioner.lab.spec import LabSpec

LOCAL = LabSpec(name="b", driver="local")
VM = LabSpec(name="b", driver="libvirt")
DEFAULT_PORTS = {"api_port": 6443, "etcd_port": 2379, "etcd_peer_port": 2380, "registry_port": 5000}
RECORDED_BY_A = {6443: "a", 2379: "a", 2380: "a", 5000: "a"}  # a first lab holding every default


def ports_of(spec: LabSpec) -> dict[str, int]:
    return {key: getattr(spec, key) for key in DEFAULT_PORTS}


def test_a_lab_alone_gets_the_conventional_defaults_and_says_nothing(tmp_path: Path) -> None:
    chosen = allocate(LOCAL, explicit={"name", "driver"}, taken=Taken(spare=(40001, 40002)))
    assert chosen.spec == LOCAL and ports_of(chosen.spec) == DEFAULT_PORTS
    assert chosen.picks == () and chosen.line(tmp_path / "b" / "lab.json") == ""


def test_a_second_local_lab_gets_free_ports_for_every_default_another_lab_recorded(tmp_path: Path) -> None:
    taken = Taken(recorded=RECORDED_BY_A, spare=(40001, 40002, 40003, 40004, 40005))
    chosen = allocate(LOCAL, explicit={"name", "driver"}, taken=taken)
    assert ports_of(chosen.spec) == {
        "api_port": 40001,
        "etcd_port": 40002,
        "etcd_peer_port": 40003,
        "registry_port": 40004,
    }
    assert [(p.key, p.default, p.chosen) for p in chosen.picks] == [
        ("api_port", 6443, 40001),
        ("etcd_port", 2379, 40002),
        ("etcd_peer_port", 2380, 40003),
        ("registry_port", 5000, 40004),
    ]
    line = chosen.line(tmp_path / "b" / "lab.json")
    assert line.startswith("lab 'b': picked api-port 40001 (6443 is recorded by lab 'a'), etcd-port 40002 (")
    assert line.endswith(f"registry-port 40004 (5000 is recorded by lab 'a'); recorded in {tmp_path}/b/lab.json")


def test_a_default_something_listens_on_is_left_to_it_and_said_so() -> None:
    chosen = allocate(LOCAL, explicit=(), taken=Taken(busy=frozenset({6443}), spare=(40001,)))
    assert ports_of(chosen.spec) == {**DEFAULT_PORTS, "api_port": 40001}
    assert [p.words() for p in chosen.picks] == ["api-port 40001 (6443 is in use on this host)"]


def test_spare_ports_another_lab_recorded_or_this_lab_already_has_are_skipped() -> None:
    taken = Taken(recorded={6443: "a", 41000: "a"}, spare=(41000, 2379, 41001))
    chosen = allocate(LOCAL, explicit=(), taken=taken)
    assert chosen.spec.api_port == 41001  # 41000 is a's, 2379 is this lab's etcd-port (decided after it)
    assert ports_of(chosen.spec) == {**DEFAULT_PORTS, "api_port": 41001}


def test_explicit_ports_are_kept_and_the_picked_ones_keep_off_them() -> None:
    spec = LabSpec(name="b", driver="local", api_port=7443, registry_port=40001)
    chosen = allocate(
        spec, explicit={"api_port", "registry_port"}, taken=Taken(recorded={2379: "a"}, spare=(40001, 40002))
    )
    assert ports_of(chosen.spec) == {
        "api_port": 7443,
        "etcd_port": 40002,
        "etcd_peer_port": 2380,
        "registry_port": 40001,
    }
    assert [p.key for p in chosen.picks] == ["etcd_port"]


def test_an_explicit_port_another_lab_recorded_is_refused_naming_the_lab_and_the_way_out() -> None:
    spec = LabSpec(name="b", driver="local", etcd_port=2379)
    with pytest.raises(SpecError) as refused:
        allocate(spec, explicit={"etcd_port"}, taken=Taken(recorded=RECORDED_BY_A, spare=(40001,) * 4))
    assert str(refused.value) == (
        "etcd-port 2379 is recorded by lab 'a'; choose another port,"
        " or leave --etcd-port out and kubelab picks a free one"
    )


def test_when_no_port_is_free_the_error_names_the_setting_and_its_flag() -> None:
    with pytest.raises(
        SpecError, match=r"^no free port for api-port \(6443 is recorded by lab 'a'\); give one with --api-port$"
    ):
        allocate(LOCAL, explicit=(), taken=Taken(recorded=RECORDED_BY_A, spare=()))


def test_a_vm_lab_picks_only_the_ports_it_holds_here_and_the_next_free_network() -> None:
    taken = Taken(
        recorded=RECORDED_BY_A,
        spare=(40001, 40002, 40003),
        ranges=(("192.168.123.0/24", "a"),),
        networks=(("192.168.124.0/23", "default"),),  # 124 and 125
    )
    chosen = allocate(VM, explicit=(), taken=taken)
    assert (chosen.spec.api_port, chosen.spec.registry_port) == (40001, 40002)
    assert (chosen.spec.etcd_port, chosen.spec.etcd_peer_port) == (2379, 2380)  # inside the master, not here
    assert chosen.spec.network_cidr == "192.168.126.0/24"
    assert chosen.picks[-1].words() == "network-cidr 192.168.126.0/24 (192.168.123.0/24 is taken by lab 'a')"


def test_a_network_overlapping_every_candidate_is_one_error_and_an_explicit_one_is_refused_when_taken() -> None:
    with pytest.raises(SpecError, match=r"^no free /24 among 192\.168\.123\.0/24 \.\.\. 192\.168\.254\.0/24"):
        allocate(VM, explicit=(), taken=Taken(networks=(("192.168.0.0/16", "wide"),)))
    spec = LabSpec(name="b", driver="libvirt", network_cidr="192.168.123.128/25")
    with pytest.raises(SpecError) as refused:
        allocate(spec, explicit={"network_cidr"}, taken=Taken(ranges=(("192.168.123.0/24", "a"),)))
    assert str(refused.value).startswith("network-cidr 192.168.123.128/25 overlaps 192.168.123.0/24 of lab 'a';")
    assert "leave --network-cidr out" in str(refused.value)


def test_a_local_lab_takes_no_address_range() -> None:
    chosen = allocate(LOCAL, explicit=(), taken=Taken(ranges=(("192.168.123.0/24", "a"),)))
    assert chosen.spec.network_cidr == "192.168.123.0/24" and chosen.picks == ()


def test_the_keys_a_file_or_a_flag_gave_are_the_explicit_ones(tmp_path: Path) -> None:
    lab_file = tmp_path / "lab.yaml"
    lab_file.write_text("etcd-port: 7379\nworkers: 1\n")
    spec, given = labspec.build_given(lab_file, {"api_port": 8443, "registry_port": None, "name": "b"})
    assert given == {"etcd_port", "workers", "api_port", "name"}
    assert (spec.api_port, spec.etcd_port, spec.registry_port) == (8443, 7379, 5000)


def _record(home: Path, spec: LabSpec, health: dict[str, int] | None = None) -> None:
    paths = LabPaths.for_lab(spec.name, home)
    paths.root.mkdir(parents=True)
    paths.spec.write_text(spec.to_json())
    if health is not None:
        paths.run.mkdir()
        paths.ports.write_text(json.dumps(health))


def test_the_facts_are_the_other_labs_records_the_defaults_in_use_and_free_ports(tmp_path: Path) -> None:
    _record(tmp_path, LabSpec(name="a", driver="local", api_port=16443), {"scheduler": 31001, "kubelet": 31002})
    _record(tmp_path, LabSpec(name="vm", driver="libvirt", api_port=26443, registry_port=25000, etcd_port=22379))
    _record(tmp_path, LabSpec(name="b", driver="local", api_port=1))  # this lab's own old record: not another's
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "lab.json").write_text("{not json")
    (tmp_path / ".cache").mkdir()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listening = listener.getsockname()[1]
        spec = LabSpec(name="b", driver="local", api_port=listening)
        taken = allocation.gather(spec, LabPaths.for_lab("b", tmp_path), networks=[("10.1.0.0/16", "default")])
    assert taken.recorded == {
        16443: "a",
        2379: "a",
        2380: "a",
        5000: "a",
        31001: "a",
        31002: "a",
        26443: "vm",
        25000: "vm",  # not the VM lab's etcd port: that one is inside its master
    }
    assert taken.busy == {listening}
    assert taken.ranges == (("192.168.123.0/24", "vm"),) and taken.networks == (("10.1.0.0/16", "default"),)
    assert len(set(taken.spare)) == allocation.SPARE_PORTS and not set(taken.spare) & set(taken.recorded)


def test_up_of_a_new_lab_beside_another_says_what_it_picked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBELAB_HOME", str(tmp_path))
    _record(tmp_path, LabSpec(name="a", driver="local"))
    spec, given = labspec.build_given(None, {"name": "b", "driver": "local", "api_port": None})
    chosen = lifecycle.allocated(LabPaths.for_lab("b", tmp_path), spec, given, print)
    assert chosen.name == "b" and not set(ports_of(chosen).values()) & set(DEFAULT_PORTS.values())
    said = capsys.readouterr().out.strip()
    assert said.startswith(f"lab 'b': picked api-port {chosen.api_port} (6443 is recorded by lab 'a'), ")
    assert said.endswith(f"; recorded in {tmp_path / 'b' / 'lab.json'}")


def test_a_new_vm_lab_keeps_off_libvirts_active_networks_and_another_labs_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "test:///default")  # libvirt's own in-process test hypervisor
    monkeypatch.setenv("KUBELAB_HOME", str(tmp_path))
    _record(tmp_path, LabSpec(name="a", driver="libvirt", api_port=16443, registry_port=15000))
    spec, given = labspec.build_given(None, {"name": "b", "driver": "libvirt"})
    paths = LabPaths.for_lab("b", tmp_path)
    assert drivers.for_lab(spec, paths).ranges_in_use() == [("192.168.122.0/24", "default")]
    chosen = lifecycle.allocated(paths, spec, given, print)
    assert chosen.network_cidr == "192.168.124.0/24"  # 123 is lab a's
    assert "network-cidr 192.168.124.0/24 (192.168.123.0/24 is taken by lab 'a')" in capsys.readouterr().out


# --- one kubeconfig context per lab ---------------------------------------------------------------


def _admin_kubeconfig(home: Path, lab: str, port: int) -> Path:
    paths = LabPaths.for_lab(lab, home)
    credentials.issue(
        credentials.Credentials(
            lab=lab,
            api_dns_names=(),
            api_ips=("127.0.0.1",),
            kubelets=(),
            components=tuple(credentials.standard_components([f"{lab}-node1"])),
            component_server=f"https://127.0.0.1:{port}",
            admin_server=f"https://127.0.0.1:{port}",
        ),
        paths,
    )
    return paths.kubeconfig


def test_each_labs_kubeconfig_names_its_cluster_user_and_context_after_the_lab(tmp_path: Path) -> None:
    document = yaml.safe_load(_admin_kubeconfig(tmp_path, "alpha", 6443).read_text())
    assert [c["name"] for c in document["clusters"]] == ["alpha"]
    assert [u["name"] for u in document["users"]] == ["alpha-admin"]
    assert document["contexts"] == [
        {"name": "alpha", "context": {"cluster": "alpha", "user": "alpha-admin", "namespace": "default"}}
    ]
    assert document["current-context"] == "alpha"
    assert document["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"


def test_two_labs_kubeconfigs_merge_in_kubectl_without_clashes(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    first = _admin_kubeconfig(tmp_path, "alpha", 6443)
    second = _admin_kubeconfig(tmp_path, "beta", 40123)
    env = {**os.environ, "KUBECONFIG": f"{first}:{second}"}

    def kubectl_out(*args: str) -> str:
        done = subprocess.run([kubectl, *args], capture_output=True, text=True, env=env, timeout=30, check=True)
        return done.stdout

    assert kubectl_out("config", "get-contexts", "-o", "name").split() == ["alpha", "beta"]
    merged = yaml.safe_load(kubectl_out("config", "view"))
    assert sorted(c["name"] for c in merged["clusters"]) == ["alpha", "beta"]
    assert sorted(u["name"] for u in merged["users"]) == ["alpha-admin", "beta-admin"]
    servers = {c["name"]: c["cluster"]["server"] for c in merged["clusters"]}
    assert servers == {"alpha": "https://127.0.0.1:6443", "beta": "https://127.0.0.1:40123"}
    assert kubectl_out("config", "current-context").strip() == "alpha"  # the first file's, as kubectl merges
    assert "https://127.0.0.1:40123" in kubectl_out("config", "view", "--minify", "--context", "beta")
