"""Scenario 8: `kubelab up --workers N` on a running lab converges to N workers: a worker that leaves
takes its machine, disk and Node with it and its pods are replaced on the others; one that joins boots,
gets installed and runs pods."""

from __future__ import annotations

import json

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from provisioner.drivers.libvirt.plan import CONSOLE_ROOT, VM_ROOT
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


def test_fewer_workers_then_more(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    leaving = kubelab_lab.workers[-1].name
    staying = kubelab_lab.workers[0].name
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

    more = kubelab_lab.cli("up", "--name", kubelab_lab.name, "--workers", "2")
    assert more.ok, more.out + more.err
    assert _phases(kubelab_lab)["created"] == [leaving] and _phases(kubelab_lab)["removed"] == []
    ready = kubelab_kubectl.json("get", "node", leaving)["status"]["conditions"]
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in ready)
    assert kubelab_lab.ssh(leaving, "systemctl is-active kubelab-kubelet kubelab-proxy containerd").ok
    kubelab_kubectl.ok("apply", "-f", "-", stdin=PINNED.format(node=leaving))
    kubelab_kubectl.ok("wait", "--for=condition=Ready", "pod/on-new-worker", "--timeout=240s", timeout=260)
    assert kubelab_kubectl.json("get", "pod", "on-new-worker")["spec"]["nodeName"] == leaving
    kubelab_kubectl.ok("delete", "pod", "on-new-worker", "--wait=false")
