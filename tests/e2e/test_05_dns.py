"""Scenario 5c: the cluster's names and the images real manifests name, on the VMs.

Every lab runs the DNS add-on (two kube-dns pods in kube-system, applied by ``kubelab up``): a pod
on a worker finds a Service by its short name through its resolv.conf and the kube-dns Service
(UDP through the proxy's rules, to whichever node a kube-dns pod runs on), and fetches nginx's page
by name; a manifest that names kube's own pause image (registry.k8s.io/pause:3.10) runs unchanged,
pulled from the lab registry standing in for registry.k8s.io.
"""

from __future__ import annotations

import uuid

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually


def _phase(kubectl: Kubectl, name: str, namespace: str) -> str:
    return str(kubectl.json("get", "pod", name, "-n", namespace).get("status", {}).get("phase", ""))


def test_pods_find_services_by_name_and_kubes_images_run_unchanged(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    kubectl = kubelab_kubectl
    worker = kubelab_lab.workers[0].name
    namespace = f"dns-{uuid.uuid4().hex[:6]}"
    kubectl.ok("create", "namespace", namespace)
    try:

        def dns_ready() -> bool:
            status = kubectl.json("get", "deployment", "kube-dns", "-n", "kube-system").get("status", {})
            return int(status.get("readyReplicas", 0)) == 2

        assert eventually(dns_ready, timeout=300, what="both kube-dns replicas ready")
        kubectl.ok("create", "deployment", "web", "--image=nginx:1.14.2", "--port=80", "-n", namespace)
        kubectl.ok("expose", "deployment", "web", "--port=80", "-n", namespace)
        ip = kubectl.json("get", "service", "web", "-n", namespace)["spec"]["clusterIP"]
        # fails (and runs again) until nginx's page came back
        script = "nslookup web; echo ==; wget -qO- http://web/ | grep -o -m1 'Welcome to nginx' | grep ."
        client = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "client", "namespace": namespace},
            "spec": {
                "nodeName": worker,
                "restartPolicy": "OnFailure",  # until nginx answers: the Deployment starts beside it
                "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", script]}],
            },
        }
        pause = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "pause", "namespace": namespace},
            "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]},
        }
        kubectl.ok("apply", "-f", "-", stdin=manifest(client) + "---\n" + manifest(pause))
        assert eventually(lambda: _phase(kubectl, "client", namespace) == "Succeeded", timeout=300, what="the lookup")
        lookup, page = kubectl.ok("logs", "client", "-n", namespace).split("==")
        assert f"Name:\tweb.{namespace}.svc.cluster.local\nAddress: {ip}" in lookup
        assert page.strip() == "Welcome to nginx"
        assert eventually(lambda: _phase(kubectl, "pause", namespace) == "Running", timeout=300, what="kube's pause")
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")
