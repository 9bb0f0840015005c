"""The kubelab CLI with the local driver: idempotent up, status, stop/start, down, and clear errors."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from provisioner.system import packages as host
from provisioner.system import processes as procs
from tests.support.components import free_port, require
from tests.support.kubectl import Kubectl, eventually, kubelab


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
    result = kubelab("up", *args, home=tmp_path)
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith("kubelab: ") and message in lines[0]
    assert "Traceback" not in result.err
    assert not any(tmp_path.iterdir())


def test_a_bad_lab_file_names_the_problem(tmp_path: Path) -> None:
    lab_file = tmp_path / "lab.yaml"
    lab_file.write_text("api-port: 7443\nwrokers: 3\n")
    result = kubelab("up", "-f", str(lab_file), home=tmp_path / "home")
    assert result.code == 1 and "unknown setting 'wrokers'" in result.err and "Traceback" not in result.err


def test_a_taken_port_is_reported_not_mistaken_for_the_lab(tmp_path: Path) -> None:
    require(host.ETCD, host.REGISTRY, host.SKOPEO)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        result = kubelab(
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
            home=tmp_path,
        )
    assert result.code == 1 and f"port {taken} is in use" in result.err and "--etcd-port" in result.err
    kubelab("down", "--name", "clash", home=tmp_path)


CONTROL_PLANE = (
    *("etcd", "registry", "apiserver", "controller-manager", "scheduler"),
    *("containerd", "kubelet", "proxy"),
)


def _netns() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def test_up_twice_stop_start_and_down_leave_nothing_running(tmp_path: Path) -> None:
    require(host.ETCD, host.REGISTRY, host.SKOPEO, host.CONTAINERD, host.RUNC, host.CNI_BRIDGE, host.NFT, host.CURL)
    ports = [
        *("--api-port", str(free_port()), "--etcd-port", str(free_port())),
        *("--etcd-peer-port", str(free_port()), "--registry-port", str(free_port())),
    ]
    try:
        first = kubelab("up", "--driver", "local", "--name", "cycle", *ports, home=tmp_path)
        assert first.ok, first.err
        run_dir = tmp_path / "cycle" / "run"
        records = {name: procs.ProcessRecord.load(run_dir, name) for name in CONTROL_PLANE}
        assert all(r is not None and procs.alive(r) for r in records.values())

        # the lab's own node runs a pod, reachable inside the node's network namespace
        kubectl = Kubectl(tmp_path / "cycle" / "kubeconfig", tmp_path / "kubectl-cache")
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

        second = kubelab("up", "--name", "cycle", home=tmp_path)  # reuses the saved settings
        assert second.ok and second.out.count("already running") == len(CONTROL_PLANE)

        logs = kubelab("logs", "--name", "cycle", "cycle-node1", "apiserver", "--tail", "5", home=tmp_path)
        assert logs.ok and 0 < len(logs.out.splitlines()) <= 5, logs.err

        status = kubelab("status", "--name", "cycle", home=tmp_path)
        assert status.ok and status.out.count("running   healthy") == len(CONTROL_PLANE)
        assert kubelab("kubeconfig", "--name", "cycle", home=tmp_path).out.strip() == str(
            tmp_path / "cycle" / "kubeconfig"
        )

        assert (
            "stopped: proxy, kubelet, containerd, scheduler, controller-manager, apiserver, registry, etcd"
            in kubelab("stop", "--name", "cycle", home=tmp_path).out
        )
        assert not any(procs.alive(r) for r in records.values() if r is not None)
        assert kubelab("status", "--name", "cycle", home=tmp_path).code == 1

        again = kubelab("up", "--name", "cycle", home=tmp_path)  # state kept: the lab comes back
        assert again.ok, again.err
        saved = json.loads((tmp_path / "cycle" / "lab.json").read_text())
        assert saved["api_port"] == int(ports[1])

        restarted = {name: procs.ProcessRecord.load(run_dir, name) for name in CONTROL_PLANE}
        down = kubelab("down", "--name", "cycle", home=tmp_path)
        assert down.ok and "removed lab 'cycle'" in down.out
        assert not any(procs.alive(r) for r in restarted.values() if r is not None)
        assert not (tmp_path / "cycle").exists()
        assert not {n for n in _netns() if n.startswith("kl-cycle-")}  # the node's and its pods' namespaces
        assert "does not exist" in kubelab("down", "--name", "cycle", home=tmp_path).out
    finally:
        if (tmp_path / "cycle").exists():  # a failed step above: leave nothing running
            kubelab("down", "--name", "cycle", home=tmp_path)
