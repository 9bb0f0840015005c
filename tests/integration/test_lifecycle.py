"""A lab's lifecycle on this host with the real CLI and local labs: one command at a time per lab,
no change `up` cannot make safely, nothing taken over that is not the lab's, nothing left behind by
`down` even when the lab's state is gone, and `kubelab list` naming what belongs to no lab."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kubelab_testing.lab import Lab, up_flags
from kubelab_testing.waiting import eventually
from provisioner.lab.identity import ENV_LAB
from provisioner.system import packages, processes
from tests.support.components import require


@pytest.fixture(autouse=True)
def _needs() -> None:
    require(packages.ETCD, packages.REGISTRY, packages.SKOPEO, packages.IPROUTE)


def _processes_of(lab: str) -> list[int]:
    return [found.pid for found in processes.tagged(ENV_LAB) if found.value == lab]


def _one_line_error(result_err: str, starts: str) -> None:
    lines = result_err.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith(f"kubelab: {starts}"), result_err
    assert "Traceback" not in result_err


def test_a_second_command_on_a_busy_lab_is_refused_at_once(tmp_path: Path) -> None:
    lab = Lab("busy", tmp_path)
    argv = [sys.executable, "-m", "provisioner.cli", "up", "--name", "busy", *up_flags("local")]
    first = subprocess.Popen(
        argv,
        env={**dict(os.environ), "KUBELAB_HOME": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        eventually(lambda: _processes_of("busy"), timeout=60, what="the first up starting components")
        second = lab.cli("down", "--name", "busy", timeout=60)
        assert second.code == 1
        _one_line_error(second.err, f"lab 'busy' is busy: `kubelab up` (pid {first.pid}) holds it since ")
        assert first.wait(180) == 0, first.stderr.read() if first.stderr else ""
        assert lab.cli("status", "--name", "busy").ok  # the first up was not disturbed
    finally:
        if first.poll() is None:
            first.kill()
        lab.cli("down", "--name", "busy")
    assert not _processes_of("busy")


def test_up_refuses_a_change_of_driver_and_changes_nothing(tmp_path: Path) -> None:
    lab = Lab("keep", tmp_path)
    assert lab.cli("up", "--name", "keep", *up_flags("local")).ok
    try:
        before = (tmp_path / "keep" / "lab.json").read_text()
        running = sorted(_processes_of("keep"))
        changed = lab.cli("up", "--name", "keep", "--driver", "libvirt")
        assert changed.code == 1
        _one_line_error(changed.err, "lab 'keep' was made with driver local, not libvirt")
        assert "kubelab down --name keep" in changed.err
        assert (tmp_path / "keep" / "lab.json").read_text() == before
        assert sorted(_processes_of("keep")) == running
    finally:
        assert lab.cli("down", "--name", "keep").ok


def test_up_refuses_what_carries_its_name_but_is_not_its_own(tmp_path: Path) -> None:
    stray = "kl-stray-node"
    subprocess.run(["ip", "netns", "add", stray], check=True)
    lab = Lab("stray", tmp_path)
    try:
        refused = lab.cli("up", "--name", "stray", *up_flags("local"))
        assert refused.code == 1
        _one_line_error(refused.err, "lab 'stray' would take over what is not its own: network namespace kl-stray-node")
        assert not (tmp_path / "stray").exists()  # nothing written
        down = lab.cli("down", "--name", "stray")
        assert down.ok and "removed network namespace kl-stray-node" in down.out
        assert not Path("/run/netns", stray).exists()
    finally:
        subprocess.run(["ip", "netns", "delete", stray], capture_output=True, check=False)


def test_a_lab_whose_state_is_lost_is_an_orphan_and_down_still_removes_all_of_it(tmp_path: Path) -> None:
    lab = Lab("lost", tmp_path)
    assert lab.cli("up", "--name", "lost", *up_flags("local")).ok
    try:
        assert _processes_of("lost")
        identity = json.loads((tmp_path / "lost" / "identity.json").read_text())
        shutil.rmtree(tmp_path / "lost")  # the state directory is gone; the lab's processes run on
        listed = lab.cli("list")
        assert listed.ok and "orphans (belong to no lab; remove with: kubelab down --orphans):" in listed.out
        assert f"(lab lost, uid {identity['uid'][:8]})" in listed.out
        down = lab.cli("down", "--name", "lost")
        assert down.ok and "removed process" in down.out, down.out + down.err
        assert not _processes_of("lost")
        assert "lab lost" not in lab.cli("list").out
    finally:
        lab.cli("down", "--name", "lost")
