"""Scenario 5b: programs in pods call the API server as operators do, and people get certificates.

The kubeclient image (Python and Debian's official client, built offline) runs on a worker as a
ServiceAccount: it loads its in-cluster configuration (the projected token, the CA, the namespace,
KUBERNETES_SERVICE_HOST) and is refused the pods of its namespace (403, in kube's words) until a
RoleBinding lets the account list them. A person added with ``kubelab user add`` (a certificate
through the CertificateSigningRequest API, signed by the controller-manager on the master) is who
the API server says, and may do what a binding grants.
"""

from __future__ import annotations

import json
import uuid

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually


def _pod(name: str, namespace: str, image: str, node: str = "") -> str:
    """The client's pod; on ``node`` when given (where the image was pulled already: a large image
    takes a while to pull and unpack on an emulated CPU)."""
    return manifest(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "serviceAccountName": "lister",
                "restartPolicy": "Never",
                **({"nodeName": node} if node else {}),
                "containers": [{"name": "client", "image": image}],
            },
        }
    )


def _finished(kubectl: Kubectl, name: str, namespace: str) -> str:
    """The pod's phase once it ran to its end ("" while it runs)."""
    phase = str(kubectl.json("get", "pod", name, "-n", namespace).get("status", {}).get("phase", ""))
    return phase if phase in ("Succeeded", "Failed") else ""


def test_a_pod_uses_the_api_with_its_service_account_as_rbac_allows(kubelab_lab: Lab, kubelab_kubectl: Kubectl) -> None:
    pushed = kubelab_lab.cli("image", "push", "kubeclient", "--name", kubelab_lab.name, timeout=900)
    assert pushed.ok, pushed.err
    # "library/kubeclient:22.6.0: pushed (registry)": the nodes pull kubeclient:22.6.0, as busybox:1.35.0
    line = next(line for line in pushed.out.splitlines() if line.startswith("library/kubeclient:"))
    image = line.split(": ")[0].removeprefix("library/")
    namespace = f"incluster-{uuid.uuid4().hex[:6]}"
    kubectl = kubelab_kubectl
    kubectl.ok("create", "namespace", namespace)
    try:
        kubectl.ok("create", "serviceaccount", "lister", "-n", namespace)
        kubectl.ok("apply", "-f", "-", stdin=_pod("refused", namespace, image))
        assert eventually(lambda: _finished(kubectl, "refused", namespace), timeout=300, what="the refused pod ends")
        log = kubectl.ok("logs", "refused", "-n", namespace).strip()
        assert log == (
            f'status 403: pods is forbidden: User "system:serviceaccount:{namespace}:lister" cannot list resource'
            f' "pods" in API group "" in the namespace "{namespace}"'
        ), log
        assert _finished(kubectl, "refused", namespace) == "Failed"

        kubectl.ok(
            "create",
            "rolebinding",
            "lister-view",
            "--clusterrole=view",
            f"--serviceaccount={namespace}:lister",
            "-n",
            namespace,
        )
        node = kubectl.json("get", "pod", "refused", "-n", namespace)["spec"]["nodeName"]
        kubectl.ok("apply", "-f", "-", stdin=_pod("allowed", namespace, image, node))
        assert eventually(lambda: _finished(kubectl, "allowed", namespace), timeout=300, what="the allowed pod ends")
        assert kubectl.ok("logs", "allowed", "-n", namespace).strip() == "pods: allowed refused"
        assert _finished(kubectl, "allowed", namespace) == "Succeeded"
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")


def test_a_person_added_with_kubelab_user_add_is_who_the_certificate_says(
    kubelab_lab: Lab, kubelab_kubectl: Kubectl
) -> None:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    added = kubelab_lab.cli("user", "add", name, "--group", "e2e-viewers", "--name", kubelab_lab.name)
    assert added.ok, added.err
    person = Kubectl(kubelab_lab.root / "users" / f"{name}.kubeconfig")
    who = json.loads(person.ok("auth", "whoami", "-o", "json"))["status"]["userInfo"]
    assert who == {"username": name, "groups": ["e2e-viewers", "system:authenticated"]}
    assert person("get", "nodes").code == 1
    kubelab_kubectl.ok("create", "clusterrolebinding", name, "--clusterrole=view", "--group=e2e-viewers")
    try:
        assert eventually(lambda: person("get", "pods", "-A").code == 0, timeout=30, what="view granted")
    finally:
        kubelab_kubectl("delete", "clusterrolebinding", name)
