"""Scenario 9: stop shuts the machines down with their disks; start brings the cluster back with its state,
and a machine whose QEMU crashes while it boots is started again."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from tests.e2e.test_02_deployment import running_pods

QEMU_PIDS = Path("/run/libvirt/qemu")  # libvirt's pid file of each running domain's QEMU


def test_stop_then_start_keeps_the_state(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    kubelab_kubectl.ok("create", "configmap", "keep-me", "--from-literal=answer=42")
    stopped = kubelab_lab.cli("stop", "--name", kubelab_lab.name, timeout=600)
    assert stopped.ok and kubelab_lab.master.name in stopped.out, stopped.out + stopped.err
    status = kubelab_lab.cli("status", "--name", kubelab_lab.name)
    assert status.code == 1 and status.out.count("shut off") == len(kubelab_lab.nodes)

    worker = kubelab_lab.workers[0].name
    crashed: list[int] = []
    crasher = threading.Thread(target=_crash_once_booting, args=(worker, crashed), daemon=True)
    crasher.start()
    started = kubelab_lab.cli("start", "--name", kubelab_lab.name, timeout=1200)
    crasher.join(timeout=5)
    assert started.ok, started.out + started.err
    assert crashed, f"{worker}'s QEMU was not seen running during start"
    assert f"{worker}: its QEMU crashed" in started.out and "starting it again" in started.out, started.out
    assert kubelab_kubectl.json("get", "configmap", "keep-me")["data"] == {"answer": "42"}
    eventually(
        lambda: len(running_pods(kubelab_kubectl, "app=web")) == 3, timeout=300, what="the deployment running again"
    )
    assert (
        kubelab_kubectl.json("get", "deployment", "web")["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
        == "3"
    )


def _crash_once_booting(domain: str, crashed: list[int]) -> None:
    """Send SIGSEGV to ``domain``'s QEMU (by its pid) 3 s after it starts, as QEMU's emulation crashes
    on its own now and then; give up after 120 s."""
    deadline = time.monotonic() + 120
    pidfile = QEMU_PIDS / f"{domain}.pid"
    while time.monotonic() < deadline:
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            time.sleep(0.2)
            continue
        if f"guest={domain},".encode() not in cmdline:
            time.sleep(0.2)
            continue
        time.sleep(3)  # past libvirt's start of the domain: the guest boots
        os.kill(pid, signal.SIGSEGV)
        crashed.append(pid)
        return
