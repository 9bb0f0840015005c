"""RBAC as kube's authorizer decides it: rules, subjects, bindings, aggregation and the 403 wording."""

from __future__ import annotations

from typing import Any

import pytest

from agents.apiserver import authorization, bootstrappolicy, noderestriction
from agents.apiserver.authorization import AuthorizationModeError, Authorizer
from agents.apiserver.nodeauthorizer import NodeAuthorizer, PodGraph, references
from agents.apiserver.rbac import Attributes, RbacIndex, covers, rule_allows, subject_matches
from agents.apiserver.requestinfo import request_info
from agents.apiserver.status import StatusError
from agents.controllers.clusterroleaggregation import aggregated_rules

PREFIX = "/registry/rbac.authorization.k8s.io/"


def ask(
    verb: str, resource: str = "pods", *, user: str = "alice", groups: tuple[str, ...] = (), **kw: str
) -> Attributes:
    return Attributes(
        user=user, groups=(*groups, "system:authenticated"), verb=verb, resource_request=True, resource=resource, **kw
    )


def role(name: str, *rules: dict[str, Any], namespace: str = "") -> tuple[str, dict[str, Any]]:
    kind = "roles" if namespace else "clusterroles"
    key = f"{PREFIX}{kind}/{namespace}/{name}" if namespace else f"{PREFIX}{kind}/{name}"
    return key, {"metadata": {"name": name, **({"namespace": namespace} if namespace else {})}, "rules": list(rules)}


def binding(
    name: str, ref: tuple[str, str], *subjects: dict[str, str], namespace: str = ""
) -> tuple[str, dict[str, Any]]:
    kind = "rolebindings" if namespace else "clusterrolebindings"
    key = f"{PREFIX}{kind}/{namespace}/{name}" if namespace else f"{PREFIX}{kind}/{name}"
    obj = {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref[0], "name": ref[1]},
        "subjects": list(subjects),
    }
    return key, obj


def index(*entries: tuple[str, dict[str, Any]]) -> RbacIndex:
    found = RbacIndex()
    for key, obj in entries:
        found.put(key, obj)
    return found


READ_PODS = {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]}


def test_a_rule_matches_verb_group_resource_subresource_and_name() -> None:
    assert rule_allows(READ_PODS, ask("list"))
    assert not rule_allows(READ_PODS, ask("delete"))
    assert not rule_allows(READ_PODS, ask("list", api_group="apps"))
    assert not rule_allows(READ_PODS, ask("get", subresource="log"))  # pods does not cover pods/log
    assert rule_allows({**READ_PODS, "resources": ["pods/log"]}, ask("get", subresource="log"))
    assert rule_allows({**READ_PODS, "resources": ["*/log"]}, ask("get", subresource="log"))
    assert rule_allows({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}, ask("update", subresource="status"))
    named = {**READ_PODS, "resourceNames": ["web"]}
    assert rule_allows(named, ask("get", name="web")) and not rule_allows(named, ask("get", name="db"))
    assert not rule_allows(named, ask("list"))  # a list names no object


def test_a_non_resource_rule_matches_its_path_or_a_prefix_ending_in_a_star() -> None:
    rule = {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]}

    def path(p: str) -> Attributes:
        return Attributes(user="a", groups=(), verb="get", resource_request=False, path=p)

    assert rule_allows(rule, path("/healthz")) and rule_allows(rule, path("/apis/apps/v1"))
    assert not rule_allows(rule, path("/metrics")) and not rule_allows(rule, ask("get"))


def test_subjects_name_a_user_a_group_or_a_service_account() -> None:
    assert subject_matches({"kind": "User", "name": "alice"}, "alice", (), "")
    assert subject_matches({"kind": "Group", "name": "dev"}, "bob", ("dev",), "")
    account = {"kind": "ServiceAccount", "name": "robot"}
    assert subject_matches(account, "system:serviceaccount:team:robot", (), "team")  # the binding's namespace
    assert not subject_matches(account, "system:serviceaccount:other:robot", (), "team")
    assert subject_matches({**account, "namespace": "other"}, "system:serviceaccount:other:robot", (), "team")


def test_a_role_binding_grants_its_role_in_its_namespace_only() -> None:
    rbac = index(
        role("reader", READ_PODS, namespace="team"),
        binding("alice-reads", ("Role", "reader"), {"kind": "User", "name": "alice"}, namespace="team"),
    )
    assert rbac.allows(ask("list", namespace="team"))
    assert not rbac.allows(ask("list", namespace="other"))
    assert not rbac.allows(ask("list"))  # across namespaces is cluster scope
    assert not rbac.allows(ask("list", namespace="team", user="bob"))


def test_a_cluster_role_bound_in_a_namespace_grants_there_and_bound_cluster_wide_grants_everywhere() -> None:
    rbac = index(
        role("pod-reader", READ_PODS),
        binding("in-team", ("ClusterRole", "pod-reader"), {"kind": "User", "name": "alice"}, namespace="team"),
        binding("everywhere", ("ClusterRole", "pod-reader"), {"kind": "Group", "name": "ops"}),
    )
    assert rbac.allows(ask("get", namespace="team")) and not rbac.allows(ask("get", namespace="x"))
    assert rbac.allows(ask("list", user="bob", groups=("ops",)))


def test_a_binding_to_a_missing_role_grants_nothing_until_the_role_appears_and_changes_apply_at_once() -> None:
    rbac = index(binding("early", ("ClusterRole", "later"), {"kind": "User", "name": "alice"}))
    assert not rbac.allows(ask("list", namespace="team"))
    key, obj = role("later", READ_PODS)
    rbac.put(key, obj)
    assert rbac.allows(ask("list", namespace="team"))
    rbac.drop(key)
    assert not rbac.allows(ask("list", namespace="team"))


def test_system_masters_may_do_anything_whatever_the_bindings_and_always_deny_refuses_the_rest() -> None:
    authorizer = Authorizer(("RBAC",))
    assert authorizer.allows(ask("delete", "secrets", groups=("system:masters",)))
    assert not authorizer.allows(ask("get", "secrets"))
    assert not Authorizer(("AlwaysDeny",)).allows(ask("get"))
    assert Authorizer(("AlwaysAllow",)).allows(ask("get"))
    with pytest.raises(AuthorizationModeError, match="unknown authorization mode 'Webhook'"):
        Authorizer(("RBAC", "Webhook"))


def test_a_refusal_is_worded_as_kube_words_it() -> None:
    info = request_info("GET", "/api/v1/namespaces/team/secrets", {})
    refused = authorization.forbidden(authorization.attributes("alice", (), info))
    assert refused.code == 403 and refused.reason == "Forbidden"
    assert refused.message == (
        'secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" in the namespace "team"'
    )
    info = request_info("PATCH", "/apis/apps/v1/namespaces/team/deployments/web/scale", {})
    assert authorization.forbidden(authorization.attributes("alice", (), info)).message == (
        'deployments.apps "web" is forbidden: User "alice" cannot patch resource "deployments/scale"'
        ' in API group "apps" in the namespace "team"'
    )
    info = request_info("GET", "/api/v1/nodes", {})
    assert authorization.forbidden_message(authorization.attributes("alice", (), info)).endswith("at the cluster scope")
    info = request_info("GET", "/metrics", {})
    assert authorization.forbidden(authorization.attributes("alice", (), info)).message == (
        'forbidden: User "alice" cannot get path "/metrics"'
    )


def test_the_bootstrap_policy_lets_each_component_do_its_work_and_no_more() -> None:
    rbac = index(
        *((f"{PREFIX}clusterroles/{r['metadata']['name']}", r) for r in bootstrappolicy.CLUSTER_ROLES),
        *((f"{PREFIX}clusterrolebindings/{b['metadata']['name']}", b) for b in bootstrappolicy.CLUSTER_ROLE_BINDINGS),
    )
    scheduler: dict[str, Any] = {"user": "system:kube-scheduler"}
    assert rbac.allows(ask("create", subresource="binding", namespace="x", name="p", **scheduler))
    assert rbac.allows(
        ask(
            "update",
            "leases",
            api_group="coordination.k8s.io",
            namespace="kube-system",
            name="kube-scheduler",
            **scheduler,
        )
    )
    assert not rbac.allows(
        ask("update", "leases", api_group="coordination.k8s.io", namespace="kube-system", name="other", **scheduler)
    )
    assert not rbac.allows(ask("get", "secrets", namespace="x", **scheduler))
    proxy: dict[str, Any] = {"user": "system:kube-proxy"}
    assert rbac.allows(ask("watch", "endpointslices", api_group="discovery.k8s.io", **proxy))
    assert not rbac.allows(ask("create", "pods", namespace="x", **proxy))
    node: dict[str, Any] = {"user": "system:node:w1", "groups": ("system:nodes",)}
    assert not rbac.allows(ask("patch", "pods", subresource="status", namespace="x", name="p", **node))  # Node's
    simulated: dict[str, Any] = {"user": "kubelab:simulated-nodes"}
    assert rbac.allows(ask("patch", "pods", subresource="status", namespace="x", name="p", **simulated))
    manager: dict[str, Any] = {"user": "system:kube-controller-manager"}
    assert rbac.allows(ask("create", "replicasets", api_group="apps", namespace="x", **manager))
    assert rbac.allows(
        ask("delete", "roles", api_group="rbac.authorization.k8s.io", namespace="x", name="r", **manager)
    )
    assert not rbac.allows(ask("create", "clusterrolebindings", api_group="rbac.authorization.k8s.io", **manager))
    anyone = Attributes(
        user="bob", groups=("system:authenticated",), verb="get", resource_request=False, path="/apis/apps/v1"
    )
    assert rbac.allows(anyone)


def test_aggregation_gathers_the_rules_of_the_roles_its_selectors_match() -> None:
    roles = [r for r in bootstrappolicy.CLUSTER_ROLES]
    by_name = {r["metadata"]["name"]: r for r in roles}
    view = aggregated_rules(by_name["view"], roles)
    assert view is not None and view == by_name["system:aggregate-to-view"]["rules"]
    edit = aggregated_rules(by_name["edit"], roles)
    assert (
        edit is not None
        and edit[: len(by_name["system:aggregate-to-edit"]["rules"])] == (by_name["system:aggregate-to-edit"]["rules"])
    )
    # admin also gathers edit's, which is labelled aggregate-to-admin (and edit's own rules once filled)
    assert aggregated_rules(by_name["cluster-admin"], roles) is None
    bad = {
        "metadata": {"name": "x"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchExpressions": [{"key": "a", "operator": "Near"}]}]},
    }
    assert aggregated_rules(bad, roles) is None


def test_covers_checks_every_single_permission_of_a_rule() -> None:
    owned = [READ_PODS, {"verbs": ["get"], "nonResourceURLs": ["/apis/*"]}]
    assert covers(owned, {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]})
    assert not covers(owned, {"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["pods"]})
    assert not covers(owned, {"verbs": ["get"], "apiGroups": [""], "resources": ["pods", "secrets"]})
    assert not covers(owned, {"verbs": ["get"], "apiGroups": [""], "resources": ["*"]})
    assert covers(owned, {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["web"]})
    assert covers(owned, {"verbs": ["get"], "nonResourceURLs": ["/apis/apps"]})
    assert not covers(owned, {"verbs": ["get"], "nonResourceURLs": ["/metrics"]})


# --- the Node authorizer and NodeRestriction ------------------------------------------------------


def _pod(name: str, node: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "team"}, "spec": {"nodeName": node, **spec}}


KUBELET: dict[str, Any] = {"user": "system:node:w1", "groups": ("system:nodes",)}


def test_a_node_reads_a_secret_or_config_map_only_while_a_pod_bound_to_it_uses_it() -> None:
    graph = PodGraph()
    node = NodeAuthorizer(graph, bootstrappolicy.NODE_RULES)
    secret = ask("get", "secrets", namespace="team", name="db", **KUBELET)
    assert not node.allows(secret)
    uses = {"containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "db"}}]}]}
    graph.put("/registry/pods/team/web", _pod("web", "w2", **uses))
    assert not node.allows(secret)  # another node's pod
    graph.put("/registry/pods/team/web", _pod("web", "w1", **uses))
    assert node.allows(secret)
    assert not node.allows(ask("list", "secrets", namespace="team", **KUBELET))  # by name only
    graph.drop("/registry/pods/team/web")
    assert not node.allows(secret)
    assert not node.allows(ask("get", "secrets", namespace="team", name="db", user="bob"))  # not a node
    # the refusal says why, as kube's Node authorizer does
    assert node.reason(secret) == "no relationship found between node 'w1' and this object"
    assert node.reason(ask("list", "secrets", namespace="team", **KUBELET)) == (
        "can only get individual resources of this type"
    )
    assert node.reason(ask("get", "secrets", namespace="team", name="db", user="bob")) == ""
    refused = authorization.forbidden(secret, authorization.reason(Authorizer(("Node", "RBAC"), node=node), secret))
    assert refused.message == (
        'secrets "db" is forbidden: User "system:node:w1" cannot get resource "secrets" in API group ""'
        " in the namespace \"team\": no relationship found between node 'w1' and this object"
    )


def test_what_a_pod_uses_is_read_from_volumes_environment_and_pull_secrets() -> None:
    pod = _pod(
        "p",
        "w1",
        imagePullSecrets=[{"name": "pull"}],
        volumes=[
            {"name": "a", "secret": {"secretName": "vol-secret"}},
            {"name": "b", "configMap": {"name": "vol-cm"}},
            {"name": "c", "persistentVolumeClaim": {"claimName": "data"}},
            {"name": "d", "projected": {"sources": [{"configMap": {"name": "proj-cm"}}, {"secret": {"name": "proj"}}]}},
        ],
        initContainers=[{"name": "i", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "env-cm"}}}]}],
    )
    assert references(pod) == {
        ("serviceaccounts", "team", "default"),
        ("secrets", "team", "pull"),
        ("secrets", "team", "vol-secret"),
        ("configmaps", "team", "vol-cm"),
        ("persistentvolumeclaims", "team", "data"),
        ("configmaps", "team", "proj-cm"),
        ("secrets", "team", "proj"),
        ("configmaps", "team", "env-cm"),
    }


def test_node_restriction_keeps_a_kubelet_to_its_own_node_lease_and_pods() -> None:
    graph = PodGraph()
    graph.put("/registry/pods/team/mine", _pod("mine", "w1"))
    graph.put("/registry/pods/team/theirs", _pod("theirs", "w2"))
    noderestriction.check(ask("patch", "nodes", name="w1", subresource="status", **KUBELET), graph)
    noderestriction.check(ask("create", "nodes", **KUBELET), graph, created_name="w1")
    noderestriction.check(ask("update", "pods", namespace="team", name="mine", subresource="status", **KUBELET), graph)
    noderestriction.check(ask("delete", "pods", namespace="team", name="mine", **KUBELET), graph)
    refusals = {
        'node "w1" is not allowed to modify node "w2"': ask("patch", "nodes", name="w2", **KUBELET),
        'node "w1" can only update pod status for pods with spec.nodeName set to itself': ask(
            "patch", "pods", namespace="team", name="theirs", subresource="status", **KUBELET
        ),
        'node "w1" can only delete pods with spec.nodeName set to itself': ask(
            "delete", "pods", namespace="team", name="theirs", **KUBELET
        ),
        'unexpected operation "update", node "w1" can only update pod status': ask(
            "update", "pods", namespace="team", name="mine", **KUBELET
        ),
        "unexpected pod subresource \"ephemeralcontainers\", only 'status' and 'eviction' are allowed": ask(
            "patch", "pods", namespace="team", name="mine", subresource="ephemeralcontainers", **KUBELET
        ),
        'node "w1" can only access node lease with the same name as the requesting node': ask(
            "update", "leases", api_group="coordination.k8s.io", namespace="kube-node-lease", name="w2", **KUBELET
        ),
    }
    for message, attrs in refusals.items():
        with pytest.raises(StatusError) as refused:
            noderestriction.check(attrs, graph)
        assert refused.value.code == 403 and refused.value.message.endswith(f"is forbidden: {message}")
    with pytest.raises(StatusError, match="can only create mirror pods"):
        noderestriction.check(ask("create", "pods", namespace="team", **KUBELET), graph, created_name="new")
    noderestriction.check(ask("patch", "nodes", name="w2"), graph)  # not a node: not restricted here


def test_a_kubelet_requests_tokens_only_for_its_pods_accounts_bound_to_those_pods() -> None:
    graph = PodGraph()
    graph.put("/registry/pods/team/mine", _pod("mine", "w1", serviceAccountName="robot"))
    graph.put("/registry/pods/team/theirs", _pod("theirs", "w2", serviceAccountName="other"))
    node = NodeAuthorizer(graph, bootstrappolicy.NODE_RULES)
    token = {"subresource": "token", "namespace": "team", **KUBELET}
    assert node.allows(ask("create", "serviceaccounts", name="robot", **token))
    assert not node.allows(ask("create", "serviceaccounts", name="other", **token))  # a pod of another node's
    bound = {"spec": {"boundObjectRef": {"kind": "Pod", "name": "mine"}}}
    noderestriction.check(ask("create", "serviceaccounts", name="robot", **token), graph, body=bound)
    for body, message in (
        ({"spec": {}}, "node requested token not bound to a pod"),
        (
            {"spec": {"boundObjectRef": {"kind": "Pod", "name": "theirs"}}},
            "bound to a pod scheduled on a different node",
        ),
    ):
        with pytest.raises(StatusError, match=message):
            noderestriction.check(ask("create", "serviceaccounts", name="robot", **token), graph, body=body)


def test_a_websocket_get_to_exec_attach_or_portforward_also_needs_create() -> None:
    for sub in ("exec", "attach", "portforward"):
        attrs = authorization.attributes("alice", (), request_info("GET", f"/api/v1/namespaces/a/pods/web/{sub}", {}))
        assert [(c.verb, c.subresource) for c in authorization.checks(attrs)] == [("get", sub), ("create", sub)]
    for method, path in (("GET", "/api/v1/namespaces/a/pods/web/log"), ("POST", "/api/v1/namespaces/a/pods/web/exec")):
        attrs = authorization.attributes("alice", (), request_info(method, path, {}))
        assert authorization.checks(attrs) == (attrs,)
    only_get = {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods/exec", "pods/attach"]}
    rbac = index(
        role("reader", only_get),
        binding("r", ("ClusterRole", "reader"), {"kind": "User", "name": "alice"}),
    )
    authorizer = Authorizer(["RBAC"], rbac=rbac)
    attrs = authorization.attributes("alice", (), request_info("GET", "/api/v1/namespaces/a/pods/web/exec", {}))
    assert [authorizer.allows(c) for c in authorization.checks(attrs)] == [True, False]
