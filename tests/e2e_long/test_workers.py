"""`kubelab up --workers N` on a running lab converges to N workers: a worker that leaves
takes its machine, disk and Node with it and its pods are replaced on the others; one that joins boots,
gets installed and runs pods, also when the `up`s before were killed (SIGKILL) while it booted and while
the playbooks ran: the next `up` takes the killed runs' machine as the lab's own and converges, and
nothing of the killed runs is left (no machine without the lab's identity, no second tunnel, no orphan).

The scenario runs its own 3-replica Deployment over both workers (as the e2e tier's scenario 2) and
takes 3-5 minutes on a TCG lab of this project's machines, which is why it is in the long tier.

The kills add about a minute to the scenario: two more `up`s up to their kill point (image check,
certificates, libvirt; the second also the playbooks' start), the end of the playbook task the second kill
interrupted (seconds for most tasks), and the checks; the joining worker's boot goes on through the kills,
so it is not waited for twice."""

from __future__ import annotations

import json
import os
from pathlib import Path

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.lifecycle import Kill, Ran, Running, Step
from kubelab_testing.plugin import UP_TIMEOUT
from kubelab_testing.waiting import eventually
from provisioner.drivers.libvirt import daemon as libvirthost
from provisioner.drivers.libvirt.plan import CONSOLE_ROOT, VM_ROOT, stamp_of
from provisioner.lab.identity import ENV_LAB
from provisioner.system import processes
from tests.e2e.test_02_deployment import MANIFEST as WEB
from tests.e2e.test_02_deployment import running_pods

PINNED = """
apiVersion: v1
kind: Pod
metadata:
  name: on-new-worker
spec:
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  containers:
  - name: echo
    image: echo:1.0
    readinessProbe:
      httpGet: {{path: /, port: 8080}}
      periodSeconds: 2
"""


def _phases(lab: Lab) -> dict[str, object]:
    data: dict[str, object] = json.loads((lab.root / "run" / "up-phases.json").read_text())
    return data


def _killed_up(lab: Lab, workers: int, kill: Kill) -> Ran:
    """`kubelab up --workers N`, its output shown as it comes, SIGKILLed as ``kill`` says."""
    argv = ["up", "--name", lab.name, "--workers", str(workers)]
    running = Running(lab.home, Step(lab.name, "up", kill), argv, echo=True)
    running.kill_when(kill, timeout=UP_TIMEOUT)
    ran = running.finish(timeout=UP_TIMEOUT)
    assert ran.killed, f"`kubelab up` ended before it was {kill}: nothing was killed ({ran.said()})"
    return ran


def _uid(lab: Lab) -> str:
    return str(json.loads((lab.root / "identity.json").read_text())["uid"])


def _domains(lab: Lab) -> dict[str, str]:
    """The lab's libvirt domains (named after it) and the identity stamped on each ('' for none)."""
    import libvirt  # noqa: PLC0415 - the VM tier's own dependency

    running = libvirthost.current()
    assert running is not None, "no libvirtd answers"
    conn = libvirt.open(running.uri)
    try:
        return {
            d.name(): stamp_of(d.XMLDesc(0))[1] for d in conn.listAllDomains() if d.name().startswith(f"{lab.name}-")
        }
    finally:
        conn.close()


def _lab_processes(lab: Lab, *words: str) -> list[str]:
    """The lab's processes whose command line holds every one of ``words``: those carrying the lab's name,
    naming a path of the lab's, or running in its directory."""
    found = []
    tagged = {p.pid for p in processes.tagged(ENV_LAB) if p.value == lab.name}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            where = os.readlink(entry / "cwd")
        except OSError:
            continue
        ours = int(entry.name) in tagged or str(lab.root) in argv or where.startswith(str(lab.root))
        if ours and all(word in argv for word in words):
            found.append(f"{entry.name}: {argv}")
    return found


def _converged_after_kills(lab: Lab, kubectl: Kubectl, joining: str) -> None:
    """`up --workers 2` killed once the joining worker has started booting, again once the playbooks have
    begun, then left to finish: it converges with the killed runs' machine, and leaves nothing of them."""
    uid = _uid(lab)
    _killed_up(lab, 2, Kill(lines=1, text=f"  {joining}: started"))
    assert _domains(lab).get(joining) == uid  # the killed run's machine carries the lab's identity
    _killed_up(lab, 2, Kill(lines=3, text="  playbooks: "))
    # the killed command's ansible-playbook ignores the hang-up of its terminal (ansible-runner starts it so) and
    # ends at its next write to it, once the task in progress is done: awaited, so the next up does not overlap it
    eventually(lambda: not _lab_processes(lab, "ansible-playbook"), timeout=300, what="no ansible-playbook of the lab")

    converged = lab.cli("up", "--name", lab.name, "--workers", "2")
    assert converged.ok, converged.out + converged.err
    assert _phases(lab)["created"] == [] and _phases(lab)["removed"] == []  # the killed run made the machine
    assert _uid(lab) == uid
    assert _domains(lab) == {name: uid for name in (lab.master.name, *(w.name for w in lab.workers))}
    tunnels = _lab_processes(lab, "provisioner.drivers.libvirt.tunnel", "forward")
    assert len(tunnels) == 1, tunnels  # the killed runs started no second one
    listed = lab.cli("list")
    assert listed.ok and not [line for line in listed.out.splitlines() if f"(lab {lab.name}," in line], listed.out
    nodes = kubectl.json("get", "nodes")["items"]
    ready = {
        n["metadata"]["name"]
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    }
    assert ready == {n.name for n in lab.nodes}, nodes


def test_fewer_workers_then_more(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    leaving = kubelab_lab.workers[-1].name
    staying = kubelab_lab.workers[0].name
    kubelab_kubectl.ok("apply", "-f", "-", stdin=WEB)
    kubelab_kubectl.ok("rollout", "status", "deployment/web", "--timeout=300s", timeout=320)
    eventually(lambda: len(running_pods(kubelab_kubectl, "app=web")) == 3, timeout=60, what="3 web pods")
    assert any(p["spec"]["nodeName"] == leaving for p in running_pods(kubelab_kubectl, "app=web"))

    fewer = kubelab_lab.cli("up", "--name", kubelab_lab.name, "--workers", "1")
    assert fewer.ok, fewer.out + fewer.err
    assert f"{leaving}: machine removed" in fewer.out and f"{leaving}: Node deleted" in fewer.out, fewer.out
    assert _phases(kubelab_lab)["removed"] == [leaving] and _phases(kubelab_lab)["created"] == []
    assert [n.name for n in kubelab_lab.nodes] == [kubelab_lab.master.name, staying]
    assert {n["metadata"]["name"] for n in kubelab_kubectl.json("get", "nodes")["items"]} == {
        kubelab_lab.master.name,
        staying,
    }
    assert not [p.name for p in (VM_ROOT / kubelab_lab.name).iterdir() if p.name.startswith(leaving)]
    assert not (CONSOLE_ROOT / kubelab_lab.name / f"{leaving}-console.log").exists()
    status = kubelab_lab.cli("status", "--name", kubelab_lab.name)
    assert leaving not in status.out and "1 master + 1 workers" in status.out, status.out

    # the pod garbage collector deletes the pods bound to the missing Node; the ReplicaSet replaces them
    def moved() -> bool:
        pods = running_pods(kubelab_kubectl, "app=web")
        return len(pods) == 3 and all(p["status"].get("podIP") and p["spec"]["nodeName"] == staying for p in pods)

    eventually(moved, timeout=300, interval=2, what=f"3 web pods running on {staying}")

    _converged_after_kills(kubelab_lab, kubelab_kubectl, leaving)
    assert kubelab_lab.ssh(leaving, "systemctl is-active kubelab-kubelet kubelab-proxy containerd").ok
    kubelab_kubectl.ok("apply", "-f", "-", stdin=PINNED.format(node=leaving))
    kubelab_kubectl.ok("wait", "--for=condition=Ready", "pod/on-new-worker", "--timeout=240s", timeout=260)
    assert kubelab_kubectl.json("get", "pod", "on-new-worker")["spec"]["nodeName"] == leaving
    kubelab_kubectl.ok("delete", "pod", "on-new-worker", "--wait=false")
    kubelab_kubectl.ok("delete", "deployment", "web", "--wait=false")
