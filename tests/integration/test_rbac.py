"""RBAC on a local lab, driven by the real kubectl and the official Python client.

The lab's admin is in ``system:masters``; the proxy's kubeconfig (``system:kube-proxy``, bound to
``system:node-proxier`` by the bootstrap policy) is the ordinary user here: what it may do grows and
shrinks with the bindings the tests write in their own namespaces.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from provisioner.lab import kubeconfig

USER = "system:kube-proxy"


@pytest.fixture(scope="module")
def proxy(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(lab.root / "config" / "proxy.kubeconfig", cache_dir=tmp_path_factory.mktemp("proxy-cache"))


def test_a_user_may_do_what_its_roles_grant_and_is_refused_the_rest_in_kube_s_words(proxy: Kubectl) -> None:
    assert json.loads(proxy.ok("auth", "whoami", "-o", "json"))["status"]["userInfo"]["username"] == USER
    assert proxy.ok("auth", "can-i", "watch", "endpointslices.discovery.k8s.io").strip() == "yes"
    refused = proxy("auth", "can-i", "create", "pods")
    assert refused.code == 1 and refused.out.strip() == "no"
    listed = proxy.ok("auth", "can-i", "--list")
    assert "endpointslices.discovery.k8s.io" in listed and "secrets" not in listed
    result = proxy("get", "secrets", "-n", "kube-system")
    assert result.code == 1
    assert result.err.strip() == (
        'Error from server (Forbidden): secrets is forbidden: User "system:kube-proxy" cannot list resource'
        ' "secrets" in API group "" in the namespace "kube-system"'
    )
    result = proxy("delete", "node", "nowhere")
    assert 'nodes "nowhere" is forbidden: User "system:kube-proxy" cannot delete resource "nodes" in API group ""' in (
        result.err
    ) and result.err.strip().endswith("at the cluster scope")


def test_a_role_binding_grants_in_its_namespace_until_it_is_deleted(
    kubectl: Kubectl, proxy: Kubectl, namespace: str
) -> None:
    kubectl.ok("create", "configmap", "seen", "-n", namespace)
    assert proxy("get", "configmaps", "-n", namespace).code == 1
    kubectl.ok("create", "rolebinding", "proxy-views", "--clusterrole=view", f"--user={USER}", "-n", namespace)
    # view gets its rules from the aggregation controller; the binding applies as soon as the API server sees it
    eventually(lambda: proxy("get", "configmaps", "-n", namespace).code == 0, what="view granted in the namespace")
    assert "seen" in proxy.ok("get", "configmaps", "-n", namespace, "-o", "name")
    assert proxy("get", "configmaps", "-n", "default").code == 1  # only in the binding's namespace
    assert proxy("get", "secrets", "-n", namespace).code == 1  # view does not read secrets
    assert proxy("delete", "configmap", "seen", "-n", namespace).code == 1
    kubectl.ok("delete", "rolebinding", "proxy-views", "-n", namespace)
    eventually(lambda: proxy("get", "configmaps", "-n", namespace).code == 1, what="the grant gone with its binding")


def test_the_builtin_roles_are_aggregated(kubectl: Kubectl) -> None:
    def rules(name: str) -> list[dict[str, object]]:
        return list(kubectl.json("get", "clusterrole", name).get("rules") or [])

    def labelled(role: str) -> list[dict[str, object]]:
        """The rules of every ClusterRole that asks to be part of ``role`` (the add-ons' too)."""
        selector = f"rbac.authorization.k8s.io/aggregate-to-{role}=true"
        return [rule for item in kubectl.json("get", "clusterroles", "-l", selector)["items"] for rule in item["rules"]]

    def aggregated(role: str) -> bool:
        have, want = rules(role), labelled(role)
        return all(rule in have for rule in want) and all(rule in want for rule in have)

    assert rules("system:aggregate-to-view")[0] in labelled("view")
    eventually(lambda: aggregated("view"), what="view aggregated")
    eventually(lambda: all(rule in rules("admin") for rule in labelled("view") + labelled("admin")), what="admin")


def test_a_binding_to_a_missing_role_is_stored_and_grants_nothing(
    kubectl: Kubectl, proxy: Kubectl, namespace: str
) -> None:
    kubectl.ok("create", "rolebinding", "dangling", "--role=not-there", f"--user={USER}", "-n", namespace)
    assert kubectl.json("get", "rolebinding", "dangling", "-n", namespace)["roleRef"]["name"] == "not-there"
    assert proxy("auth", "can-i", "get", "pods", "-n", namespace).out.strip() == "no"
    kubectl.ok("create", "role", "not-there", "--verb=get", "--resource=pods", "-n", namespace)
    eventually(
        lambda: proxy("auth", "can-i", "get", "pods", "-n", namespace).out.strip() == "yes",
        what="the role appearing grants at once",
    )


def test_a_user_may_not_grant_what_it_does_not_hold(kubectl: Kubectl, proxy: Kubectl, namespace: str) -> None:
    kubectl.ok(
        "create", "role", "rbac-writer", "--verb=create,update,patch", "--resource=roles,rolebindings", "-n", namespace
    )
    kubectl.ok("create", "rolebinding", "proxy-writes-rbac", "--role=rbac-writer", f"--user={USER}", "-n", namespace)
    eventually(lambda: proxy("auth", "can-i", "create", "roles", "-n", namespace).out.strip() == "yes", what="grant")

    result = proxy("create", "role", "secret-reader", "--verb=get", "--resource=secrets", "-n", namespace)
    assert result.code == 1
    assert (
        'roles.rbac.authorization.k8s.io "secret-reader" is forbidden: user "system:kube-proxy"'
        ' (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:'
    ) in result.err
    assert '{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}' in result.err
    assert kubectl("get", "role", "secret-reader", "-n", namespace).code == 1  # nothing stored

    # what it holds (services: list, watch cluster-wide) it may grant
    proxy.ok("create", "role", "service-lister", "--verb=list", "--resource=services", "-n", namespace)
    result = proxy("create", "rolebinding", "to-admin", "--clusterrole=admin", f"--user={USER}", "-n", namespace)
    assert result.code == 1 and "is attempting to grant RBAC permissions not currently held" in result.err


def test_access_reviews_through_the_official_client(lab: Lab, namespace: str, tmp_path: Path) -> None:
    api = client.AuthorizationV1Api(config.new_client_from_config(config_file=str(lab.kubeconfig)))
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=USER,
            resource_attributes=client.V1ResourceAttributes(verb="list", resource="services", namespace=namespace),
        )
    )
    assert api.create_subject_access_review(review).status.allowed is True
    review.spec.resource_attributes.resource = "secrets"
    assert api.create_subject_access_review(review).status.allowed is False
    as_proxy = client.AuthorizationV1Api(
        config.new_client_from_config(config_file=str(lab.root / "config" / "proxy.kubeconfig"))
    )
    with pytest.raises(ApiException) as refused:  # may the proxy ask about others? no
        as_proxy.create_subject_access_review(review)
    assert refused.value.status == 403
    bad = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec())
    with pytest.raises(ApiException) as invalid:
        api.create_self_subject_access_review(bad)
    assert invalid.value.status == 422
    assert "exactly one of nonResourceAttributes or resourceAttributes must be specified" in invalid.value.body


@pytest.fixture(scope="module")
def kubelet(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl(lab.root / "config" / "kubelet.kubeconfig", cache_dir=tmp_path_factory.mktemp("kubelet-cache"))


def test_a_kubelet_reads_a_secret_only_while_a_pod_on_its_node_uses_it(
    kubectl: Kubectl, kubelet: Kubectl, namespace: str
) -> None:
    node = json.loads(kubelet.ok("auth", "whoami", "-o", "json"))["status"]["userInfo"]["username"]
    assert node.startswith("system:node:")
    kubectl.ok("create", "secret", "generic", "db", "--from-literal=password=x", "-n", namespace)
    refused = kubelet("get", "secret", "db", "-n", namespace)
    assert refused.code == 1 and f'User "{node}" cannot get resource "secrets"' in refused.err
    assert f"no relationship found between node '{node.removeprefix('system:node:')}' and this object" in refused.err
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "uses-db", "namespace": namespace},
        "spec": {
            "nodeName": node.removeprefix("system:node:"),
            "containers": [{"name": "c", "image": "busybox:1.36", "envFrom": [{"secretRef": {"name": "db"}}]}],
        },
    }
    kubectl.ok("apply", "-f", "-", stdin=json.dumps(pod))
    eventually(lambda: kubelet("get", "secret", "db", "-n", namespace).code == 0, what="the node's pod grants the read")
    assert kubelet("get", "secrets", "-n", namespace).code == 1  # by name only, never a list
    kubectl.ok("delete", "pod", "uses-db", "-n", namespace, "--grace-period=0", "--force")
    eventually(lambda: kubelet("get", "secret", "db", "-n", namespace).code == 1, what="the read gone with the pod")


def test_a_kubelet_may_not_change_another_node(kubectl: Kubectl, kubelet: Kubectl) -> None:
    node = json.loads(kubelet.ok("auth", "whoami", "-o", "json"))["status"]["userInfo"]["username"]
    own = node.removeprefix("system:node:")
    kubectl.ok("apply", "-f", "-", stdin='{"apiVersion":"v1","kind":"Node","metadata":{"name":"rbac-other-node"}}')
    try:
        refused = kubelet("label", "node", "rbac-other-node", "touched=yes")
        assert refused.code == 1
        assert (
            f'nodes "rbac-other-node" is forbidden: node "{own}" is not allowed to modify node "rbac-other-node"'
            in refused.err
        )
        assert "touched" not in (kubectl.json("get", "node", "rbac-other-node")["metadata"].get("labels") or {})
    finally:
        kubectl("delete", "node", "rbac-other-node")


def test_a_review_answers_with_its_name_only_whatever_metadata_it_was_sent(lab: Lab) -> None:
    """The fuzzer's find: managedFields may hold any JSON (an integer past 64 bits here), and a review
    echoed it into an answer that could not be encoded (500)."""
    import ssl  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    token = kubeconfig.bearer_token(lab.kubeconfig)
    context = ssl.create_default_context(cafile=str(lab.root / "pki" / "ca.crt"))
    body = (
        '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview","metadata":{"name":"me",'
        '"managedFields":[{"manager":"x","fieldsV1":{"f:big":123456789012345678901234567890}}]}}'
    )
    request = urllib.request.Request(
        f"{lab.server}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        data=body.encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        assert response.status == 201
        answer = json.loads(response.read())
    assert answer["metadata"] == {"name": "me"} and answer["status"]["userInfo"]["username"] == "kubelab-admin"
