"""The kubelab command's own parts: how `kubelab ssh` splits its arguments from the remote command,
how status reads for either driver, and which lab a command means."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.cli import main as cli
from provisioner.cli.lab import render_status
from provisioner.drivers.base import ComponentStatus, LabStatus, MachineStatus
from provisioner.errors import SpecError
from provisioner.lab import spec as labspec


@pytest.mark.parametrize(
    ("tokens", "own", "remote"),
    [
        (["demo-master"], ["demo-master"], []),
        (["demo-master", "--name", "lab2"], ["demo-master", "--name", "lab2"], []),
        (["--name", "lab2", "demo-master", "ls", "-l"], ["--name", "lab2", "demo-master"], ["ls", "-l"]),
        (
            ["demo-master", "--name=lab2", "--", "nft", "list", "ruleset"],
            ["demo-master", "--name=lab2"],
            ["nft", "list", "ruleset"],
        ),
        (["demo-master", "ls", "--name", "x"], ["demo-master"], ["ls", "--name", "x"]),  # the command's own flags
        (["demo-master", "--", "--name"], ["demo-master"], ["--name"]),
    ],
)
def test_ssh_takes_its_name_flag_on_either_side_of_the_node(
    tokens: list[str], own: list[str], remote: list[str]
) -> None:
    assert cli.split_ssh(tokens) == (own, remote)


def test_status_of_a_vm_lab_is_a_row_per_machine_with_its_components() -> None:
    status = LabStatus(
        lab="demo",
        driver="libvirt",
        root=Path("/state/demo"),
        summary="1 master + 1 workers",
        machines=(
            MachineStatus(
                "demo-master",
                "master",
                "192.168.123.10",
                "running",
                "tcg",
                "Ready",
                (ComponentStatus("etcd", "active", True), ComponentStatus("kubelet", "active", True)),
            ),
            MachineStatus("demo-worker1", "worker", "192.168.123.11", "shut off", "tcg", "-"),
        ),
        files=(("kubeconfig", Path("/state/demo/kubeconfig")),),
    )
    lines = render_status(status)
    assert lines[0] == "lab 'demo' (driver libvirt, 1 master + 1 workers, state /state/demo)"
    assert lines[1].split() == ["NODE", "ROLE", "IP", "VM", "ACCEL", "NODE", "STATUS", "COMPONENTS"]
    assert lines[2].split() == [
        "demo-master",
        "master",
        "192.168.123.10",
        "running",
        "tcg",
        "Ready",
        "etcd=active",
        "kubelet=active",
    ]
    assert lines[3].split()[-2:] == ["-", "-"] and " shut off " in lines[3]
    assert lines[-1] == "kubeconfig: /state/demo/kubeconfig"
    assert not status.healthy  # a machine is off


def test_status_of_a_local_lab_is_a_row_per_process_and_where_to_look_when_one_is_unwell() -> None:
    status = LabStatus(
        lab="here",
        driver="local",
        root=Path("/state/here"),
        summary="1 real and 0 simulated nodes on this host",
        processes=(
            ComponentStatus("etcd", "running", True, 41, "http://127.0.0.1:2379", "/state/here/logs/etcd.log"),
            ComponentStatus(
                "apiserver", "exited", False, 42, "https://127.0.0.1:6443", "/state/here/logs/apiserver.log"
            ),
            ComponentStatus(
                "scheduler", "stopped", False, None, "http://127.0.0.1:1", "/state/here/logs/scheduler.log"
            ),
        ),
    )
    lines = render_status(status)
    assert "running   healthy" in lines[2] and "exited    unhealthy" in lines[3] and "stopped   -" in lines[4]
    assert lines[-1] == "  apiserver: see /state/here/logs/apiserver.log"
    assert not status.healthy


def test_kubelab_lab_names_the_lab_when_no_name_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBELAB_HOME", str(tmp_path))
    monkeypatch.setenv("KUBELAB_LAB", "fromenv")
    assert cli.main(["kubeconfig"]) == 1
    assert "lab 'fromenv' has no kubeconfig yet" in capsys.readouterr().err
    (tmp_path / "fromenv").mkdir()
    (tmp_path / "fromenv" / "kubeconfig").write_text("{}")
    assert cli.main(["kubeconfig"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "fromenv" / "kubeconfig")
    assert cli.main(["kubeconfig", "--name", "other"]) == 1  # a flag still wins


def test_a_local_lab_shows_its_components_logs_and_has_no_machines_to_reach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from provisioner.drivers.local.driver import LocalDriver  # noqa: PLC0415
    from provisioner.lab.paths import LabPaths  # noqa: PLC0415

    spec = labspec.LabSpec(name="here", driver="local")
    driver = LocalDriver(spec, LabPaths(tmp_path / "here"), say=lambda _m: None)
    (tmp_path / "here" / "logs").mkdir(parents=True)
    (tmp_path / "here" / "logs" / "apiserver.log").write_text("started\n")
    assert driver.logs_argv("here-node1", "apiserver", follow=True, tail=20) == [
        "tail",
        "-n",
        "20",
        "-F",
        str(tmp_path / "here" / "logs" / "apiserver.log"),
    ]
    with pytest.raises(SpecError, match="its node is here-node1"):
        driver.logs_argv("elsewhere", "apiserver", follow=False, tail=0)
    monkeypatch.setenv("KUBELAB_HOME", str(tmp_path))
    (tmp_path / "here" / "lab.json").write_text(spec.to_json())
    assert cli.main(["ssh", "here-node1", "--name", "here"]) == 1
    assert "uses the local driver: it has no machines to reach" in capsys.readouterr().err
