"""Scenario 6: ssh into a worker shows the moving parts: the kubelet's unit, the pods' containers in
containerd, the proxy's nftables table, the CNI config; the master runs etcd."""

from __future__ import annotations

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from tests.e2e.test_02_deployment import running_pods


def test_a_worker_shows_its_parts(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    pod = running_pods(kubelab_kubectl, "app=web")[0]
    node = pod["spec"]["nodeName"]
    unit = kubelab_lab.ssh(node, "systemctl status kubelab-kubelet --no-pager")
    assert unit.ok and "active (running)" in unit.out and "/etc/kubelab/kubelet.yaml" in unit.out
    containers = kubelab_lab.ssh(node, "ctr -n k8s.io containers list")
    assert containers.ok and len(containers.out.splitlines()) >= 3  # header, a sandbox and a container
    table = kubelab_lab.ssh(node, "nft list table ip kubelab")
    cluster_ip = kubelab_kubectl.json("get", "service", "web")["spec"]["clusterIP"]
    assert table.ok and cluster_ip in table.out
    cni = kubelab_lab.ssh(node, "cat /etc/cni/net.d/10-kubelab.conflist")
    assert cni.ok and '"type": "bridge"' in cni.out


def test_the_cli_reaches_nodes_and_their_logs(kubelab_lab: Lab) -> None:
    master = kubelab_lab.master.name
    ran = kubelab_lab.cli(
        "ssh",
        "--name",
        kubelab_lab.name,
        master,
        "--",
        "etcdctl",
        "endpoint",
        "health",
        "--endpoints",
        f"http://{kubelab_lab.master.ip}:2379",
    )
    assert ran.ok and "is healthy" in ran.out + ran.err
    logs = kubelab_lab.cli("logs", "--name", kubelab_lab.name, master, "apiserver", "--tail", "20")
    assert logs.ok and logs.out.strip()
    config = kubelab_lab.cli("ssh-config", "--name", kubelab_lab.name)
    assert config.ok and all(f"Host {n.name} {n.ip}" in config.out for n in kubelab_lab.nodes)
    bad = kubelab_lab.cli("ssh", "--name", kubelab_lab.name, "nosuchnode")
    assert bad.code == 1 and "no node 'nosuchnode'" in bad.err and "Traceback" not in bad.err
