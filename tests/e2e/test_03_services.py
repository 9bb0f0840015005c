"""Scenario 3: a ClusterIP Service answers from a pod on the other worker; a NodePort answers from
the hypervisor side of the lab network."""

from __future__ import annotations

import subprocess

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from tests.e2e.test_02_deployment import running_pods

CLIENT = """
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  nodeName: {node}
  containers:
  - name: sh
    image: busybox:1.35.0
    command: [sleep, "3600"]
"""


def test_cluster_ip_answers_across_nodes(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    kubelab_kubectl.ok("expose", "deployment", "web", "--port=80", "--target-port=8080", "--name=web")
    cluster_ip = kubelab_kubectl.json("get", "service", "web")["spec"]["clusterIP"]
    first, second = kubelab_lab.workers[:2]
    kubelab_kubectl.ok("apply", "-f", "-", stdin=CLIENT.format(node=second.name))
    kubelab_kubectl.ok("wait", "--for=condition=Ready", "pod/client", "--timeout=180s", timeout=200)
    backends = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in running_pods(kubelab_kubectl, "app=web")}
    assert first.name in backends.values()  # some backend lives on the other worker

    seen: set[str] = set()

    def every_backend_answered() -> bool:
        # busybox's nc speaks the request (its static wget cannot resolve anything, not even a literal)
        request = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {cluster_ip} 80"
        answer = kubelab_kubectl("exec", "client", "--", "sh", "-c", request)
        body = answer.out.strip().splitlines()[-1:] if answer.ok else []
        if body and body[0].startswith("pod "):
            seen.add(body[0].split()[1])
        return seen >= set(backends)

    eventually(every_backend_answered, timeout=180, interval=0.5, what=f"answers from every backend of {cluster_ip}")


def test_node_port_answers_from_the_host_side(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    kubelab_kubectl.ok(
        "expose", "deployment", "web", "--port=80", "--target-port=8080", "--type=NodePort", "--name=web-np"
    )
    port = kubelab_kubectl.json("get", "service", "web-np")["spec"]["ports"][0]["nodePort"]
    for node in kubelab_lab.nodes:
        argv = kubelab_lab.on_lab_network(["curl", "-s", "--max-time", "5", f"http://{node.ip}:{port}/"])

        def answer(argv: list[str] = argv) -> str:
            return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

        assert eventually(answer, timeout=120, what=f"NodePort {port} on {node.name}").startswith("pod web-")


def test_a_load_balancer_answers_at_its_external_address_and_goes_with_its_service(
    kubelab_lab: Lab, kubelab_kubectl: Kubectl
) -> None:
    """The cloud-controller-manager's service controller asks the lab's cloud for a load balancer: an
    address from the lab's pool on the lab network, haproxy on the host side forwarding to every node's
    NodePort; `kubectl get svc` shows it as EXTERNAL-IP and deleting the Service frees it."""
    kubelab_kubectl.ok(
        "expose", "deployment", "web", "--port=80", "--target-port=8080", "--type=LoadBalancer", "--name=web-lb"
    )

    def external_ip() -> str:
        ingress = kubelab_kubectl.json("get", "service", "web-lb")["status"].get("loadBalancer", {}).get("ingress")
        return str(ingress[0]["ip"]) if ingress else ""

    address = eventually(external_ip, timeout=120, what="web-lb's external address")
    assert address in kubelab_kubectl.ok("get", "service", "web-lb")  # the EXTERNAL-IP column
    argv = kubelab_lab.on_lab_network(["curl", "-s", "--max-time", "5", f"http://{address}/"])

    def answer() -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout

    assert eventually(answer, timeout=120, what=f"the load balancer at {address}").startswith("pod web-")
    events = kubelab_kubectl.ok("get", "events", "--field-selector", "involvedObject.name=web-lb")
    assert "EnsuredLoadBalancer" in events, events
    kubelab_kubectl.ok("delete", "service", "web-lb", "--timeout=60s", timeout=90)
    eventually(lambda: not answer(), timeout=30, what=f"{address} to stop answering")
