"""Scenario 6: ssh into a worker shows the moving parts: the kubelet's unit, the pods' containers in
containerd, the proxy's nftables table, the CNI config, pods' veths without udev's rules; the master
runs etcd, which answers only over TLS to a client certificate of its own CA (a pod cannot read it),
and keeps the API server's audit log; a worker's kubelet credentials reach only what its node needs."""

from __future__ import annotations

import base64
import json

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from tests.e2e.test_02_deployment import running_pods

PROBE = """
apiVersion: v1
kind: Pod
metadata:
  name: etcd-probe
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: sh
    image: busybox:1.35.0
    command: [sleep, "3600"]
"""


def test_a_worker_shows_its_parts(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    pod = running_pods(kubelab_kubectl, "app=web")[0]
    node = pod["spec"]["nodeName"]
    unit = kubelab_lab.ssh(node, "systemctl status kubelab-kubelet --no-pager")
    assert unit.ok and "active (running)" in unit.out and "/etc/kubelab/kubelet.yaml" in unit.out
    containers = kubelab_lab.ssh(node, "ctr -n k8s.io containers list")
    # the pod's container, named by the kubelet after the pod's UID, the container and its run
    assert containers.ok and f"{pod['metadata']['uid']}_" in containers.out, containers.out
    table = kubelab_lab.ssh(node, "nft list table ip kubelab")
    cluster_ip = kubelab_kubectl.json("get", "service", "web")["spec"]["clusterIP"]
    assert table.ok and cluster_ip in table.out
    cni = kubelab_lab.ssh(node, "cat /etc/cni/net.d/10-kubelab.conflist")
    assert cni.ok and '"type": "bridge"' in cni.out
    # the host ends of the pods' veth pairs are the CNI plugins' alone: udev ends their rules at once,
    # so systemd makes no device unit for them
    veths = kubelab_lab.ssh(node, "ip -o link show type veth")
    assert veths.ok and " veth" in veths.out
    units = kubelab_lab.ssh(node, "systemctl list-units --all --plain --no-legend 'sys-subsystem-net-devices-veth*'")
    assert units.ok and units.out.strip() == "", units.out


def test_the_cli_reaches_nodes_and_their_logs(kubelab_lab: Lab) -> None:
    master = kubelab_lab.master.name
    ran = kubelab_lab.cli(
        "ssh",
        "--name",
        kubelab_lab.name,
        master,
        "--",
        # a login shell: /etc/profile.d/kubelab-etcdctl.sh gives etcdctl the endpoint and certificates
        "bash",
        "-lc",
        "'etcdctl endpoint health'",
    )
    assert ran.ok and "is healthy" in ran.out + ran.err
    logs = kubelab_lab.cli("logs", "--name", kubelab_lab.name, master, "apiserver", "--tail", "20")
    assert logs.ok and logs.out.strip()
    # the API server's audit log: the deployment scenario 2 created, with who created it
    audit = kubelab_lab.cli("logs", "--name", kubelab_lab.name, master, "audit", "--tail", "0")
    assert audit.ok, audit.err
    events = [json.loads(line) for line in audit.out.splitlines() if line.startswith("{")]
    created = [e for e in events if e["verb"] == "create" and e.get("objectRef", {}).get("resource") == "deployments"]
    assert created and created[0]["user"]["username"].endswith("-admin"), events[-3:]
    elsewhere = kubelab_lab.cli("logs", "--name", kubelab_lab.name, kubelab_lab.workers[0].name, "audit")
    assert elsewhere.code == 1 and f"it is on {master}" in elsewhere.err
    config = kubelab_lab.cli("ssh-config", "--name", kubelab_lab.name)
    assert config.ok and all(f"Host {n.name} {n.ip}" in config.out for n in kubelab_lab.nodes)
    bad = kubelab_lab.cli("ssh", "--name", kubelab_lab.name, "nosuchnode")
    assert bad.code == 1 and "no node 'nosuchnode'" in bad.err and "Traceback" not in bad.err


def test_a_pod_cannot_read_etcd_and_the_master_reads_it_with_its_certificate(
    kubelab_lab: Lab, kubelab_kubectl: Kubectl
) -> None:
    master = kubelab_lab.master
    worker = kubelab_lab.workers[0]
    kubelab_kubectl.ok("apply", "-f", "-", stdin=PROBE.format(node=worker.name))
    try:
        kubelab_kubectl.ok("wait", "--for=condition=Ready", "pod/etcd-probe", "--timeout=180s", timeout=200)
        # etcd's JSON gateway, asked in plain HTTP for every key under /registry/ (what a plaintext
        # etcd on the lab's network answered anyone): the connection is made (nc exits 0, where a
        # closed port is exit 1) and closed by TLS-only etcd without a byte of an answer
        body = json.dumps(
            {"key": base64.b64encode(b"/registry/").decode(), "range_end": base64.b64encode(b"/registry0").decode()}
        )
        request = (
            f"printf 'POST /v3/kv/range HTTP/1.0\\r\\nContent-Type: application/json\\r\\n"
            f"Content-Length: {len(body)}\\r\\n\\r\\n%s' '{body}' | nc -w 5 {master.ip} 2379; echo nc=$?"
        )
        plain = kubelab_kubectl("exec", "etcd-probe", "--", "sh", "-c", request)
        assert plain.ok and plain.out.strip() == "nc=0", plain.out
        # TLS without a client certificate (busybox's wget): refused in the handshake
        bare = kubelab_kubectl(
            "exec",
            "etcd-probe",
            "--",
            "wget",
            "-q",
            "-O-",
            "--no-check-certificate",
            f"https://{master.ip}:2379/health",
        )
        assert not bare.ok and "health" not in bare.out
    finally:
        kubelab_kubectl("delete", "pod", "etcd-probe", "--wait=false")
    # the same without a client certificate on the master, with etcd's CA: refused too
    ca = "/etc/kubelab/pki/etcd-ca.crt"
    refused = kubelab_lab.ssh(master.name, f"curl -sS --max-time 20 --cacert {ca} https://{master.ip}:2379/health")
    assert not refused.ok and "health" not in refused.out
    # the health check's certificate reads the store, as the API server's does
    keys = kubelab_lab.ssh(master.name, "bash -lc 'etcdctl get /registry/namespaces/ --prefix --keys-only'")
    assert keys.ok and "/registry/namespaces/default" in keys.out.split()


def test_a_worker_s_kubelet_credentials_reach_only_what_its_node_needs(
    kubelab_lab: Lab, kubelab_kubectl: Kubectl
) -> None:
    """With the kubelet's own client certificate, from the worker: a secret no pod there uses and another
    node are refused (the Node authorizer and NodeRestriction on the master); its own node is not."""
    worker, other = kubelab_lab.workers[0], kubelab_lab.master
    kubelab_kubectl.ok("create", "secret", "generic", "not-for-nodes", "--from-literal=k=v")
    try:
        api = f"https://{other.ip}:6443"
        kubeconfig = "/etc/kubelab/kubelet.kubeconfig"
        curl = (
            "d=/run/e2e-kubelet-cert; mkdir -p -m 700 $d;"
            f" sed -n 's/^ *client-certificate-data: //p' {kubeconfig} | base64 -d > $d/c;"
            f" sed -n 's/^ *client-key-data: //p' {kubeconfig} | base64 -d > $d/k;"
            " curl -sS --max-time 20 --cacert /etc/kubelab/pki/ca.crt --cert $d/c --key $d/k"
        )
        secret = kubelab_lab.ssh(worker.name, f"{curl} {api}/api/v1/namespaces/default/secrets/not-for-nodes")
        refused = json.loads(secret.out)
        assert refused["code"] == 403 and refused["message"] == (
            f'secrets "not-for-nodes" is forbidden: User "system:node:{worker.name}" cannot get resource "secrets"'
            f' in API group "" in the namespace "default": no relationship found between node \'{worker.name}\''
            " and this object"
        )
        patch = '-X PATCH -H \'Content-Type: application/merge-patch+json\' -d \'{"metadata":{"labels":{"x":"y"}}}\''
        foreign = json.loads(kubelab_lab.ssh(worker.name, f"{curl} {patch} {api}/api/v1/nodes/{other.name}").out)
        assert foreign["code"] == 403
        assert foreign["message"].endswith(f'node "{worker.name}" is not allowed to modify node "{other.name}"')
        own = json.loads(kubelab_lab.ssh(worker.name, f"{curl} {api}/api/v1/nodes/{worker.name}").out)
        assert own["metadata"]["name"] == worker.name
        # the Secret is in etcd as kube's aescbc ciphertext, its value nowhere in clear
        stored = kubelab_lab.ssh(
            kubelab_lab.master.name,
            "bash -lc 'etcdctl get /registry/secrets/default/not-for-nodes --print-value-only | base64 -w0'",
        )
        value = base64.b64decode(stored.out.strip())
        assert value.startswith(b"k8s:enc:aescbc:v1:key1:"), value[:40]
        assert b"not-for-nodes" not in value and b"dg==" not in value  # neither its name nor "v"
    finally:
        kubelab_kubectl("delete", "secret", "not-for-nodes")
