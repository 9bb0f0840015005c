"""Fault planning (pure): which faults a lab accepts, how they are healed, the partition ruleset."""

from __future__ import annotations

import subprocess
from collections.abc import Collection
from pathlib import Path
from typing import Any, cast

import pytest

from provisioner.drivers.base import Machine
from provisioner.drivers.libvirt import plan as vmplan
from provisioner.drivers.libvirt.partitions import ruleset
from provisioner.errors import SpecError
from provisioner.faults import plan as faults
from provisioner.faults.plan import Fault
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
    kind: str, machine: Machine, component: str, active: list[Fault], message: str
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
    return ruleset("demo", MACHINES, {f.node for f in active if f.kind == "partition"})


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


class _Machines:
    """A lab's machines for the fault executor (the MachineControl protocol), declared fake: each
    records what was done to it and keeps the state that would follow."""

    def __init__(self) -> None:
        self.machines = MACHINES
        self.state = {m.name: "running" for m in MACHINES}
        self.calls: dict[str, list[str]] = {m.name: [] for m in MACHINES}
        self.cut: list[list[str]] = []
        self.scripts: list[tuple[str, str]] = []

    def reachable(self) -> bool:
        return True

    def states(self) -> dict[str, str]:
        return dict(self.state)

    def _do(self, name: str, call: str, state: str) -> None:
        self.calls[name].append(call)
        self.state[name] = state

    def power_off(self, name: str) -> None:
        self._do(name, "power_off", "shut off")

    def power_on(self, name: str) -> None:
        self._do(name, "power_on", "running")

    def pause(self, name: str) -> None:
        self._do(name, "pause", "paused")

    def resume(self, name: str) -> None:
        self._do(name, "resume", "running")

    def cut_off(self, names: Collection[str]) -> None:
        self.cut.append(sorted(names))

    def run(self, name: str, script: str, *, timeout: float) -> subprocess.CompletedProcess[str]:
        self.scripts.append((name, script))
        return subprocess.CompletedProcess([], 0, "4242\n", "")


class _Driver:
    """What the fault executor uses of a driver: its spec, paths and machines."""

    def __init__(self, root: Path) -> None:
        from provisioner.lab.paths import LabPaths  # noqa: PLC0415

        self.spec = labspec.LabSpec(name="demo", workers=2)
        self.paths = LabPaths(root / "demo")
        self.paths.root.mkdir(parents=True)
        self.paths.spec.write_text(self.spec.to_json())
        self.control = _Machines()

    def machines(self) -> _Machines:
        return self.control


def test_inject_and_heal_carry_out_the_plan_and_keep_the_record(tmp_path: Path) -> None:
    from provisioner.faults import executor  # noqa: PLC0415

    driver = _Driver(tmp_path)
    machines = driver.control
    said: list[str] = []
    ops = executor.FaultOps(cast(Any, driver), say=said.append)

    ops.inject("kill", "master", "etcd")
    assert (
        machines.scripts[-1][0] == "demo-master" and "systemctl show -p MainPID --value etcd" in machines.scripts[-1][1]
    )
    ops.inject("crash", "worker1")
    ops.inject("partition", "worker1")
    ops.inject("pause", "worker2")
    assert machines.calls["demo-worker1"] == ["power_off"] and machines.calls["demo-worker2"] == ["pause"]
    assert machines.cut == [["demo-worker1"]]
    assert "  undo with: kubelab fault heal demo-worker1 --name demo" in said
    assert [(r.fault.kind, r.state) for r in ops.rows()][1:] == [
        ("crash", "powered off"),
        ("partition", "cut off"),
        ("pause", "paused"),
    ]

    ops.heal("worker1")
    assert machines.calls["demo-worker1"] == ["power_off", "power_on"] and machines.cut[-1] == []
    assert [f.kind for f in ops.active()] == ["kill", "pause"]
    ops.heal()
    assert machines.calls["demo-worker2"] == ["pause", "resume"] and ops.active() == []
    assert "reset-failed" in machines.scripts[-1][1]  # the killed etcd: started if systemd gave up
    said.clear()
    ops.heal()
    assert said == ["no faults to heal in lab 'demo'"]


def test_only_a_running_machine_can_be_crashed_or_paused(tmp_path: Path) -> None:
    from provisioner.errors import ProvisionError  # noqa: PLC0415
    from provisioner.faults import executor  # noqa: PLC0415

    driver = _Driver(tmp_path)
    driver.control.state["demo-worker1"] = "shut off"  # powered off outside kubelab
    ops = executor.FaultOps(cast(Any, driver), say=lambda _m: None)
    with pytest.raises(ProvisionError, match="demo-worker1 is not running; only a running machine can be crashed"):
        ops.inject("crash", "worker1")
    assert driver.control.calls["demo-worker1"] == [] and ops.active() == []


def test_a_crashed_machine_booted_outside_heal_can_be_crashed_again(tmp_path: Path) -> None:
    from provisioner.faults import executor  # noqa: PLC0415

    driver = _Driver(tmp_path)
    machines = driver.control
    said: list[str] = []
    ops = executor.FaultOps(cast(Any, driver), say=said.append)
    ops.inject("crash", "worker2")
    ops.inject("pause", "worker1")
    machines.state["demo-worker2"] = "running"  # `kubelab up` boots it again
    with pytest.raises(SpecError, match="already paused"):  # worker1 is still paused: that record holds
        ops.inject("pause", "worker1")
    assert "demo-worker2: runs again (not by kubelab fault heal); its crash fault is forgotten" in said
    ops.inject("crash", "worker2")
    assert machines.calls["demo-worker2"] == ["power_off", "power_off"]
    assert [(f.kind, f.node) for f in ops.active()] == [("pause", "demo-worker1"), ("crash", "demo-worker2")]


def test_a_local_lab_has_no_machines_to_break(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from provisioner.cli import main as cli  # noqa: PLC0415

    monkeypatch.setenv("KUBELAB_HOME", str(tmp_path))
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "lab.json").write_text(labspec.LabSpec(name="here", driver="local").to_json())
    assert cli.main(["fault", "crash", "node1", "--name", "here"]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("kubelab: lab 'here' uses the local driver: it has no machines to break")
        and err.count("\n") == 1
    )
