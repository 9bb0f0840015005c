"""The official Kubernetes Python client against the local driver's API server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from kubelab_testing.lab import Lab


@pytest.fixture(scope="module")
def api(lab: Lab) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(lab.kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


def _pod(name: str, labels: dict[str, str]) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="main", image="busybox:1.36", command=["sleep", "3600"])]
        ),
    )


def test_create_read_list_with_selectors_patch_and_delete(core: client.CoreV1Api, namespace: str) -> None:
    for name, tier in (("a", "front"), ("b", "back"), ("c", "front")):
        created = core.create_namespaced_pod(namespace, _pod(name, {"tier": tier}))
        assert created.metadata.uid and created.status.phase == "Pending"
    front = core.list_namespaced_pod(namespace, label_selector="tier=front")
    assert sorted(p.metadata.name for p in front.items) == ["a", "c"]
    not_front = core.list_namespaced_pod(namespace, label_selector="tier notin (front)")
    assert [p.metadata.name for p in not_front.items] == ["b"]
    by_name = core.list_namespaced_pod(namespace, field_selector="metadata.name=b")
    assert [p.metadata.name for p in by_name.items] == ["b"]
    pending = core.list_namespaced_pod(namespace, field_selector="status.phase=Pending,spec.nodeName=")
    assert len(pending.items) == 3

    patched = core.patch_namespaced_pod("a", namespace, {"metadata": {"labels": {"tier": "edge"}}})
    assert patched.metadata.labels == {"tier": "edge"}
    read = core.read_namespaced_pod("a", namespace)
    assert read.metadata.resource_version == patched.metadata.resource_version
    assert read.spec.containers[0].termination_message_policy == "File"

    core.delete_namespaced_pod("a", namespace)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod("a", namespace)
    assert missing.value.status == 404


def test_pages_through_a_list_with_limit_and_continue(core: client.CoreV1Api, namespace: str) -> None:
    for i in range(5):
        core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"cm{i}")))
    names: list[str] = []
    token = None
    pages = 0
    while True:
        # every namespace holds kube-root-ca.crt too (the root CA publisher's)
        page = core.list_namespaced_config_map(
            namespace, limit=2, _continue=token, field_selector="metadata.name!=kube-root-ca.crt"
        )
        names += [c.metadata.name for c in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
    assert sorted(names) == [f"cm{i}" for i in range(5)] and pages == 3


def test_watch_streams_added_modified_deleted(core: client.CoreV1Api, namespace: str) -> None:
    # only "w": the root CA publisher adds kube-root-ca.crt to a new namespace when it gets to it
    only = "metadata.name=w"
    start = core.list_namespaced_config_map(namespace, field_selector=only).metadata.resource_version
    seen: list[tuple[str, str]] = []
    done = threading.Event()

    def follow() -> None:
        stream = watch.Watch()
        for event in stream.stream(
            core.list_namespaced_config_map, namespace, field_selector=only, resource_version=start, timeout_seconds=20
        ):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) == 3:
                stream.stop()
        done.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="w"), data={"k": "1"})
    )
    core.patch_namespaced_config_map("w", namespace, {"data": {"k": "2"}})
    core.delete_namespaced_config_map("w", namespace)
    assert done.wait(20), f"watch saw only {seen}"
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_deployment_scale_subresource_and_status(apps: client.AppsV1Api, namespace: str) -> None:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]},
            },
        },
    }
    apps.create_namespaced_deployment(namespace, body)
    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.spec.replicas == 2 and scale.status.selector == "app=web"
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 6}})
    assert apps.read_namespaced_deployment("web", namespace).spec.replicas == 6
    # the deployment controller owns the status and may rewrite it at once: check the patch's answer
    after = apps.patch_namespaced_deployment_status("web", namespace, {"status": {"replicas": 6, "readyReplicas": 4}})
    assert (after.status.ready_replicas, after.spec.replicas, after.metadata.generation) == (4, 6, 2)


def test_binding_assigns_a_pod_to_a_node_once(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_pod(namespace, _pod("bound", {}))
    binding = client.V1Binding(
        metadata=client.V1ObjectMeta(name="bound"), target=client.V1ObjectReference(kind="Node", name="node-1")
    )
    core.create_namespaced_pod_binding("bound", namespace, binding, _preload_content=False)
    pod = core.read_namespaced_pod("bound", namespace)
    assert pod.spec.node_name == "node-1"
    assert any(c.type == "PodScheduled" and c.status == "True" for c in pod.status.conditions)
    with pytest.raises(ApiException) as again:
        core.create_namespaced_pod_binding("bound", namespace, binding, _preload_content=False)
    assert again.value.status == 409


def test_a_pod_on_a_node_is_deleted_gracefully(core: client.CoreV1Api, namespace: str) -> None:
    pod = _pod("graceful", {})
    pod.spec.node_name = "node-1"
    core.create_namespaced_pod(namespace, pod)
    core.delete_namespaced_pod("graceful", namespace)
    marked = core.read_namespaced_pod("graceful", namespace)
    assert marked.metadata.deletion_timestamp is not None
    assert marked.metadata.deletion_grace_period_seconds == 30
    core.delete_namespaced_pod("graceful", namespace, grace_period_seconds=0)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod("graceful", namespace)
    assert gone.value.status == 404


def test_services_get_unique_cluster_ips_and_node_ports(core: client.CoreV1Api, namespace: str) -> None:
    def service(name: str, kind: str = "ClusterIP", **port: Any) -> client.V1Service:
        return client.V1Service(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1ServiceSpec(type=kind, selector={"app": name}, ports=[client.V1ServicePort(port=80, **port)]),
        )

    first = core.create_namespaced_service(namespace, service("one"))
    second = core.create_namespaced_service(namespace, service("two", "NodePort"))
    assert first.spec.cluster_ip != second.spec.cluster_ip
    assert first.spec.cluster_ip.startswith("10.")
    assert 30000 <= second.spec.ports[0].node_port <= 32767
    assert second.spec.ports[0].target_port == 80
    with pytest.raises(ApiException) as taken:
        core.create_namespaced_service(
            namespace, service("three", "NodePort", node_port=second.spec.ports[0].node_port)
        )
    assert taken.value.status == 422 and "provided port is already allocated" in taken.value.body
    core.delete_namespaced_service("two", namespace)
    reused = core.create_namespaced_service(
        namespace, service("three", "NodePort", node_port=second.spec.ports[0].node_port)
    )
    assert reused.spec.ports[0].node_port == second.spec.ports[0].node_port
    with pytest.raises(ApiException) as out_of_range:
        core.create_namespaced_service(namespace, service("four", "NodePort", node_port=80))
    assert out_of_range.value.status == 422 and "30000-32767" in out_of_range.value.body


def test_invalid_objects_get_a_status_with_causes(core: client.CoreV1Api, namespace: str) -> None:
    bad = client.V1Pod(
        metadata=client.V1ObjectMeta(name="Bad_Name"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")]),
    )
    with pytest.raises(ApiException) as invalid:
        core.create_namespaced_pod(namespace, bad)
    assert invalid.value.status == 422
    assert '"Bad_Name"' in invalid.value.body and "metadata.name" in invalid.value.body
