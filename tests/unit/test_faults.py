"""Fault planning (pure): which faults a lab accepts, how they are healed, the partition ruleset."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest

from provisioner.drivers.libvirt import plan as vmplan
from provisioner.errors import SpecError
from provisioner.faults import plan as faults
from provisioner.faults.executor import table_name
from provisioner.faults.plan import Fault
from provisioner.lab import render
from provisioner.lab import spec as labspec

MACHINES = vmplan.machines(labspec.LabSpec(name="demo", workers=2))
MASTER, WORKER1, WORKER2 = MACHINES


def test_nodes_are_named_in_full_short_or_by_address() -> None:
    assert faults.resolve_node("demo", MACHINES, "demo-worker1") == WORKER1
    assert faults.resolve_node("demo", MACHINES, "worker2") == WORKER2
    assert faults.resolve_node("demo", MACHINES, "192.168.123.10") == MASTER
    with pytest.raises(SpecError, match="lab 'demo' has no node 'worker3'; its nodes are: demo-master, demo-worker1"):
        faults.resolve_node("demo", MACHINES, "worker3")


@pytest.mark.parametrize(
    ("kind", "machine", "component", "active", "message"),
    [
        ("melt", WORKER1, "", [], "unknown fault 'melt'; choose one of: crash, pause, partition, kill"),
        ("kill", WORKER1, "kube-dns", [], "unknown component 'kube-dns'; choose one of: kubelet, proxy"),
        ("kill", WORKER1, "etcd", [], "etcd runs only on the master, not on demo-worker1"),
        ("crash", WORKER1, "kubelet", [], "fault crash takes a node only"),
        ("crash", WORKER1, "", [Fault("crash", "demo-worker1")], "demo-worker1 is already powered off; undo with"),
        ("pause", WORKER1, "", [Fault("crash", "demo-worker1")], "demo-worker1 is powered off; heal it first"),
        ("crash", WORKER1, "", [Fault("pause", "demo-worker1")], "demo-worker1 is paused; heal it first"),
        ("partition", WORKER2, "", [Fault("partition", "demo-worker2")], "demo-worker2 is already cut off"),
        ("kill", WORKER2, "kubelet", [Fault("partition", "demo-worker2")], "demo-worker2 is cut off: kubelab cannot"),
        ("kill", MASTER, "etcd", [Fault("pause", "demo-master")], "demo-master is paused: kubelab cannot reach it"),
    ],
)
def test_a_fault_that_cannot_be_is_one_line_saying_why(
    kind: str, machine: vmplan.Machine, component: str, active: list[Fault], message: str
) -> None:
    with pytest.raises(SpecError) as caught:
        faults.plan(kind, machine, active, component=component)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_faults_combine_where_they_can() -> None:
    active = [Fault("partition", "demo-worker1"), Fault("kill", "demo-master", "etcd")]
    assert faults.plan("crash", WORKER1, active, now=5.0) == Fault("crash", "demo-worker1", "", 5.0)
    assert faults.plan("kill", MASTER, active, component="etcd").unit == "etcd"
    assert faults.plan("kill", WORKER2, active, component="containerd").unit == "containerd"
    assert faults.plan("pause", WORKER2, active).describe() == "demo-worker2: paused (its virtual CPUs are frozen)"


def test_heal_undoes_kills_and_machines_before_the_network_and_keeps_other_nodes_faults() -> None:
    active = [
        Fault("partition", "demo-worker1"),
        Fault("crash", "demo-worker1"),
        Fault("kill", "demo-master", "scheduler"),
        Fault("pause", "demo-worker2"),
    ]
    undo, keep = faults.healing(active, "demo-worker1")
    assert [f.kind for f in undo] == ["crash", "partition"] and keep == active[2:]
    undo, keep = faults.healing(active, None)
    assert [(f.kind, f.node) for f in undo] == [
        ("kill", "demo-master"),
        ("crash", "demo-worker1"),
        ("pause", "demo-worker2"),
        ("partition", "demo-worker1"),
    ]
    assert keep == []


def test_the_fault_list_round_trips_and_a_damaged_one_is_one_clear_error(tmp_path: Path) -> None:
    active = [Fault("partition", "demo-worker1", "", 1.5), Fault("kill", "demo-master", "apiserver", 2.0)]
    path = tmp_path / "faults.json"
    path.write_text(faults.dump(active))
    assert faults.load(path) == active
    assert faults.load(tmp_path / "none.json") == []
    path.write_text('[{"kind": "crash"}]')
    with pytest.raises(SpecError, match="is not a fault list kubelab wrote"):
        faults.load(path)


def _ruleset(active: list[Fault]) -> str:
    cut = faults.partitioned_macs(MACHINES, active)
    return render.render("nftables/faults.nft.j2", lab="demo", table=table_name("demo"), cut=cut)


def test_a_partition_drops_the_nodes_frames_both_ways_in_one_table_of_its_own() -> None:
    text = _ruleset([Fault("partition", "demo-worker2"), Fault("crash", "demo-worker1")])
    assert "table bridge kubelab-faults-demo {" in text
    assert text.count(f"ether saddr {WORKER2.mac} drop") == 3 and text.count(f"ether daddr {WORKER2.mac} drop") == 3
    assert WORKER1.mac not in text  # a crash is not a partition
    healed = _ruleset([])
    assert "delete table bridge kubelab-faults-demo" in healed and "{" not in healed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fault", "crash", "worker1", "--name", "nolab"], "lab 'nolab' does not exist; create it with: kubelab up"),
        (["fault", "kill", "worker9", "kubelet", "--name", "demo"], "lab 'demo' has no node 'worker9'"),
        (["fault", "kill", "worker1", "etcd", "--name", "demo"], "etcd runs only on the master, not on demo-worker1"),
        (["fault", "heal", "worker7", "--name", "demo"], "lab 'demo' has no node 'worker7'"),
    ],
)
def test_fault_commands_on_a_wrong_lab_or_node_are_one_line_and_change_nothing(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from provisioner.cli import main as cli  # noqa: PLC0415

    monkeypatch.setenv("KUBELAB_HOME", str(tmp_path))
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "lab.json").write_text(labspec.LabSpec(name="demo", workers=2).to_json())
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"kubelab: {message}") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


class _Domain:
    def __init__(self) -> None:
        self.state_code = 1  # running
        self.calls: list[str] = []

    def state(self) -> list[int]:
        return [self.state_code, 0]

    def isActive(self) -> bool:
        return self.state_code != 5

    def destroy(self) -> None:
        self.calls.append("destroy")
        self.state_code = 5

    def create(self) -> None:
        self.calls.append("create")
        self.state_code = 1

    def suspend(self) -> None:
        self.calls.append("suspend")
        self.state_code = 3

    def resume(self) -> None:
        self.calls.append("resume")
        self.state_code = 1


class _Driver:
    """What FaultOps uses of the libvirt driver, with domains that only record what was done to them."""

    def __init__(self, root: Path) -> None:
        from provisioner.lab.paths import LabPaths  # noqa: PLC0415

        self.spec = labspec.LabSpec(name="demo", workers=2)
        self.machines = MACHINES
        self.paths = LabPaths(root / "demo")
        self.paths.root.mkdir(parents=True)
        self.paths.spec.write_text(self.spec.to_json())
        self.domains = {m.name: _Domain() for m in MACHINES}
        self.ssh_commands: list[tuple[str, str]] = []

    def _connection(self) -> Any:
        return contextlib.nullcontext(None)

    def _our_domains(self, _conn: object) -> dict[str, _Domain]:
        return self.domains

    def ssh(self, node: str, command: str, *, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        self.ssh_commands.append((node, command))
        return subprocess.CompletedProcess([], 0, "4242\n", "")


def test_inject_and_heal_carry_out_the_plan_and_keep_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioner.drivers.libvirt import daemon as libvirthost  # noqa: PLC0415
    from provisioner.faults import executor as faultops  # noqa: PLC0415

    monkeypatch.setattr(libvirthost, "current", lambda: libvirthost.Daemon(libvirthost.URI, "kubelab-vms"))
    loaded: list[list[str]] = []
    monkeypatch.setattr(
        faultops,
        "apply_partitions",
        lambda _lab, _m, active, _file, _wrap: loaded.append([f.node for f in active if f.kind == "partition"]),
    )
    driver = _Driver(tmp_path)
    said: list[str] = []
    ops = faultops.FaultOps(cast(Any, driver), say=said.append)

    ops.inject("kill", "master", "etcd")
    assert (
        driver.ssh_commands[-1][0] == "demo-master"
        and "systemctl show -p MainPID --value etcd" in driver.ssh_commands[-1][1]
    )
    ops.inject("crash", "worker1")
    ops.inject("partition", "worker1")
    ops.inject("pause", "worker2")
    assert driver.domains["demo-worker1"].calls == ["destroy"] and driver.domains["demo-worker2"].calls == ["suspend"]
    assert loaded == [["demo-worker1"]]
    assert "  undo with: kubelab fault heal demo-worker1 --name demo" in said
    assert [(r.fault.kind, r.state) for r in ops.rows()][1:] == [
        ("crash", "powered off"),
        ("partition", "cut off"),
        ("pause", "paused"),
    ]

    ops.heal("worker1")
    assert driver.domains["demo-worker1"].calls == ["destroy", "create"] and loaded[-1] == []
    assert [f.kind for f in ops.active()] == ["kill", "pause"]
    ops.heal()
    assert driver.domains["demo-worker2"].calls == ["suspend", "resume"] and ops.active() == []
    assert "reset-failed" in driver.ssh_commands[-1][1]  # the killed etcd: started if systemd gave up
    said.clear()
    ops.heal()
    assert said == ["no faults to heal in lab 'demo'"]


def test_a_crashed_machine_booted_outside_heal_can_be_crashed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioner.drivers.libvirt import daemon as libvirthost  # noqa: PLC0415
    from provisioner.faults import executor as faultops  # noqa: PLC0415

    monkeypatch.setattr(libvirthost, "current", lambda: libvirthost.Daemon(libvirthost.URI, "kubelab-vms"))
    driver = _Driver(tmp_path)
    said: list[str] = []
    ops = faultops.FaultOps(cast(Any, driver), say=said.append)
    ops.inject("crash", "worker2")
    ops.inject("pause", "worker1")
    driver.domains["demo-worker2"].create()  # `kubelab up` boots it again
    with pytest.raises(SpecError, match="already paused"):  # worker1 is still paused: that record holds
        ops.inject("pause", "worker1")
    assert "demo-worker2: runs again (not by kubelab fault heal); its crash fault is forgotten" in said
    ops.inject("crash", "worker2")
    assert driver.domains["demo-worker2"].calls == ["destroy", "create", "destroy"]
    assert [(f.kind, f.node) for f in ops.active()] == [("pause", "demo-worker1"), ("crash", "demo-worker2")]
