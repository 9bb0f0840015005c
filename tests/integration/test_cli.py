"""The kubelab CLI with the local driver: idempotent up, status, stop/start, down, and clear errors."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab, free_port, up_flags
from kubelab_testing.waiting import eventually
from provisioner.system import packages
from provisioner.system import processes as procs
from tests.integration.conftest import CLI_TIMEOUT
from tests.support.components import require


def lab_in(home: Path, name: str = "cycle") -> Lab:
    return Lab(name, home, timeout=CLI_TIMEOUT)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--api-port", "0"], "api-port 0: must be between 1 and 65535"),
        (["--name", "Bad_Name"], "use 1-40 lowercase letters"),
        (["--service-cidr", "10.96.0.0/33"], "service-cidr"),
        (["--node-port-range", "30000"], "node-port-range '30000': expected LOW-HIGH"),
        (["--api-port", "7000", "--etcd-port", "7000"], "must differ"),
    ],
)
def test_bad_lab_settings_get_one_line_and_change_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    result = lab_in(tmp_path).cli("up", *args)
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("kubelab: ") and message in lines[0]
    assert "Traceback" not in result.err
    assert not any(tmp_path.iterdir())


def test_a_bad_lab_file_names_the_problem(tmp_path: Path) -> None:
    lab_file = tmp_path / "lab.yaml"
    lab_file.write_text("api-port: 7443\nwrokers: 3\n")
    result = lab_in(tmp_path / "home").cli("up", "-f", str(lab_file))
    assert result.code == 1 and "unknown setting 'wrokers'" in result.err and "Traceback" not in result.err


def test_a_taken_port_is_reported_not_mistaken_for_the_lab(tmp_path: Path) -> None:
    require(packages.ETCD, packages.REGISTRY, packages.SKOPEO)
    lab = lab_in(tmp_path, "clash")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        result = lab.cli(
            "up",
            "--driver",
            "local",
            "--name",
            "clash",
            "--api-port",
            str(free_port()),
            "--etcd-port",
            str(taken),
            "--etcd-peer-port",
            str(free_port()),
            "--registry-port",
            str(free_port()),
        )
    assert result.code == 1 and f"port {taken} is in use" in result.err and "--etcd-port" in result.err
    lab.cli("down", "--name", "clash")


CONTROL_PLANE = (
    *("etcd", "registry", "apiserver", "trace-collector", "controller-manager", "scheduler"),
    *("containerd", "uplink", "kubelet", "proxy"),
)


def _netns() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def test_up_twice_stop_start_and_down_leave_nothing_running(tmp_path: Path) -> None:
    require(
        packages.ETCD,
        packages.REGISTRY,
        packages.SKOPEO,
        packages.CONTAINERD,
        packages.RUNC,
        packages.CNI_BRIDGE,
        packages.NFT,
        packages.CURL,
    )
    flags = up_flags("local", "--nodes", "1")  # the lab's own node, on free ports
    lab = lab_in(tmp_path)
    try:
        first = lab.cli("up", "--name", "cycle", *flags)
        assert first.ok, first.err
        run_dir = tmp_path / "cycle" / "run"
        records = {name: procs.ProcessRecord.load(run_dir, name) for name in CONTROL_PLANE}
        assert all(r is not None and procs.alive(r) for r in records.values())

        # the lab's own node runs a pod, reachable inside the node's network namespace
        kubectl = Kubectl(lab.kubeconfig, cache_dir=tmp_path / "kubectl-cache")
        kubectl.ok("run", "hello", "--image=echo:1.0", "--restart=Never")
        eventually(
            lambda: kubectl.json("get", "pod", "hello")["status"].get("phase") == "Running", timeout=60, what="the pod"
        )
        ip = kubectl.json("get", "pod", "hello")["status"]["podIP"]
        answer = subprocess.run(
            ["ip", "netns", "exec", "kl-cycle-node", "curl", "-s", "--max-time", "5", f"http://{ip}:8080/"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert answer.stdout.strip() == f"pod hello ip {ip} method GET path /"

        # and the node's proxy makes a Service of it: its ClusterIP answers in the node's namespace
        kubectl.ok("expose", "pod", "hello", "--port=80", "--target-port=8080", "--name=hello")
        cluster_ip = kubectl.json("get", "service", "hello")["spec"]["clusterIP"]

        def through_service() -> str:
            command = ["ip", "netns", "exec", "kl-cycle-node", "curl", "-s", "--max-time", "2", f"http://{cluster_ip}/"]
            return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()

        assert eventually(through_service, timeout=30, what="the Service") == f"pod hello ip {ip} method GET path /"

        second = lab.cli("up", "--name", "cycle")  # reuses the saved settings
        assert second.ok and second.out.count("already running") == len(CONTROL_PLANE)

        logs = lab.cli("logs", "--name", "cycle", "cycle-node1", "apiserver", "--tail", "5")
        assert logs.ok and 0 < len(logs.out.splitlines()) <= 5, logs.err

        status = lab.cli("status", "--name", "cycle")
        assert status.ok and status.out.count("running   healthy") == len(CONTROL_PLANE)
        assert lab.cli("kubeconfig", "--name", "cycle").out.strip() == str(tmp_path / "cycle" / "kubeconfig")

        assert (
            "stopped: proxy, kubelet, uplink, containerd, scheduler, controller-manager, trace-collector, apiserver,"
            " registry, etcd" in lab.cli("stop", "--name", "cycle").out
        )
        assert not any(procs.alive(r) for r in records.values() if r is not None)
        assert lab.cli("status", "--name", "cycle").code == 1

        again = lab.cli("up", "--name", "cycle")  # state kept: the lab comes back
        assert again.ok, again.err
        saved = json.loads((tmp_path / "cycle" / "lab.json").read_text())
        assert saved["api_port"] == int(flags[flags.index("--api-port") + 1])

        restarted = {name: procs.ProcessRecord.load(run_dir, name) for name in CONTROL_PLANE}
        down = lab.cli("down", "--name", "cycle")
        assert down.ok and "removed lab 'cycle'" in down.out
        assert not any(procs.alive(r) for r in restarted.values() if r is not None)
        assert not (tmp_path / "cycle").exists()
        assert not {n for n in _netns() if n.startswith("kl-cycle-")}  # the node's and its pods' namespaces
        assert "does not exist" in lab.cli("down", "--name", "cycle").out
    finally:
        if (tmp_path / "cycle").exists():  # a failed step above: leave nothing running
            lab.cli("down", "--name", "cycle")
