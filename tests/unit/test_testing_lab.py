"""kubelab_testing's lab: read from the files `kubelab up` writes, run through the real CLI, made for a
session on free ports and removed afterwards."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from kubelab_testing.lab import Lab, LabFailed, Node, created_lab, free_port, up_flags
from provisioner.lab.spec import LabSpec
from provisioner.system import ports as hostports


def saved(home: Path, spec: LabSpec) -> Lab:
    """A lab as ``kubelab up`` leaves its spec on disk."""
    (home / spec.name).mkdir(parents=True)
    (home / spec.name / "lab.json").write_text(spec.to_json())
    return Lab(spec.name, home)


def test_a_vm_lab_is_read_from_its_files(tmp_path: Path) -> None:
    lab = saved(tmp_path, LabSpec(name="demo", api_port=7443, registry_port=7000, workers=2))
    assert lab.root == tmp_path / "demo" and lab.kubeconfig == tmp_path / "demo" / "kubeconfig"
    assert lab.ssh_config == tmp_path / "demo" / "ssh_config"
    assert (lab.api_port, lab.server) == (7443, "https://127.0.0.1:7443")
    assert (lab.registry_port, lab.registry) == (7000, "127.0.0.1:7000")
    assert lab.spec["node_grace_period"] == 40
    assert lab.nodes == [
        Node("demo-master", "master", "192.168.123.10"),
        Node("demo-worker1", "worker", "192.168.123.11"),
        Node("demo-worker2", "worker", "192.168.123.12"),
    ]
    assert lab.master.name == "demo-master" and [w.name for w in lab.workers] == ["demo-worker1", "demo-worker2"]


def test_a_local_lab_has_its_ports_and_no_machines(tmp_path: Path) -> None:
    lab = saved(tmp_path, LabSpec(name="here", driver="local", api_port=16443, registry_port=15000))
    assert (lab.server, lab.registry) == ("https://127.0.0.1:16443", "127.0.0.1:15000")
    assert lab.nodes == [] and lab.workers == []


def test_up_flags_put_every_host_port_of_a_lab_on_a_free_one() -> None:
    local = up_flags("local")
    assert local[:2] == ("--driver", "local")
    ports = [int(local[local.index(f"--{p}-port") + 1]) for p in ("api", "etcd", "etcd-peer", "registry")]
    assert len(set(ports)) == 4
    assert local[-2:] == ("--nodes", "0")  # the control plane alone
    assert up_flags("local", "--nodes", "1")[-2:] == ("--nodes", "1") and "0" not in up_flags("local", "--nodes", "1")
    vm = up_flags("libvirt", "--workers", "2")
    assert vm[:2] == ("--driver", "libvirt") and vm[-2:] == ("--workers", "2")
    assert "--api-port" in vm and "--registry-port" in vm and "--etcd-port" not in vm  # etcd is on the master


def test_free_ports_are_outside_the_ephemeral_range_never_repeated_and_never_taken() -> None:
    low, high = hostports.ephemeral_range()
    handed = [free_port() for _ in range(50)]
    assert len(set(handed)) == 50
    assert all(not low <= port <= high for port in handed)  # no outgoing connection's source port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", hostports.free()))
        sock.listen()
        taken = sock.getsockname()[1]
        assert hostports.in_use("127.0.0.1", taken)
        assert hostports.free(avoid={taken}) != taken


def test_a_free_port_can_be_listened_on() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))


def test_cli_runs_the_kubelab_command_with_the_labs_home(tmp_path: Path) -> None:
    status = Lab("absent", tmp_path, timeout=60).cli("status", "--name", "absent")
    assert status.code == 1 and "lab 'absent' does not exist" in status.out + status.err


def test_a_lab_that_cannot_be_made_fails_with_what_up_said_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(LabFailed, match="use 1-40 lowercase letters") as failed, created_lab("Bad_Name", home=tmp_path):
        pytest.fail("the body of a lab that was not made ran")
    assert isinstance(failed.value, RuntimeError)
    assert not any(tmp_path.iterdir())
