"""Ingresses and IngressClasses on the local lab, driven by the real kubectl: its own generator
(``kubectl create ingress``, which sends protobuf), the printed columns, ``explain``, kube's errors,
and the default class. IngressClasses are cluster-wide: each test names its own and deletes it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kubelab_testing.kubectl import Kubectl, manifest

DEFAULT = "ingressclass.kubernetes.io/is-default-class"


def ingress_class(name: str, *, default: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if default:
        meta["annotations"] = {DEFAULT: "true"}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": meta,
        "spec": {"controller": "kubelab.test/ingress"},
    }


@pytest.fixture
def class_name(kubectl: Kubectl) -> Iterator[str]:
    """An IngressClass name of this test's own, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    yield name
    kubectl("delete", "ingressclass", name, "--ignore-not-found")


def test_kubectl_create_ingress_and_get_show_kubes_shape_and_columns(
    kubectl: Kubectl, namespace: str, class_name: str
) -> None:
    kubectl.ok("apply", "-f", "-", stdin=manifest(ingress_class(class_name)))
    kubectl.ok(
        "create",
        "ingress",
        "simple",
        "-n",
        namespace,
        "--rule=foo.example.com/bar*=svc1:8080",
        f"--class={class_name}",
    )
    kubectl.ok(
        "create",
        "ingress",
        "secure",
        "-n",
        namespace,
        "--rule=a.example.com/=svc2:https,tls=a-cert",
        "--rule=b.example.com/exact=svc3:80",
        f"--class={class_name}",
    )
    got = kubectl.json("get", "ingress", "simple", "-n", namespace)
    assert got["spec"]["ingressClassName"] == class_name
    assert got["spec"]["rules"] == [
        {
            "host": "foo.example.com",
            "http": {
                "paths": [
                    {
                        "path": "/bar",
                        "pathType": "Prefix",
                        "backend": {"service": {"name": "svc1", "port": {"number": 8080}}},
                    }
                ]
            },
        }
    ]
    assert got["status"] == {"loadBalancer": {}} and got["metadata"]["generation"] == 1
    secure = kubectl.json("get", "ing", "secure", "-n", namespace)
    assert secure["spec"]["tls"] == [{"hosts": ["a.example.com"], "secretName": "a-cert"}]
    assert secure["spec"]["rules"][1]["http"]["paths"][0]["pathType"] == "Exact"
    assert secure["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] == {"name": "https"}

    table = kubectl.ok("get", "ingress", "-n", namespace).splitlines()
    assert table[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows["simple"][1:4] == [class_name, "foo.example.com", "80"]  # ADDRESS is empty until a controller fills it
    assert rows["secure"][1:5] == [class_name, "a.example.com,b.example.com", "80,", "443"]
    classes = kubectl.ok("get", "ingressclass", class_name).splitlines()
    assert classes[0].split() == ["NAME", "CONTROLLER", "PARAMETERS", "AGE"]
    assert classes[1].split()[:3] == [class_name, "kubelab.test/ingress", "<none>"]


def test_the_default_class_is_given_to_an_ingress_that_names_none(
    kubectl: Kubectl, namespace: str, class_name: str
) -> None:
    kubectl.ok("apply", "-f", "-", stdin=manifest(ingress_class(class_name, default=True)))
    kubectl.ok("create", "ingress", "defaulted", "-n", namespace, "--default-backend=svc1:80")
    got = kubectl.json("get", "ingress", "defaulted", "-n", namespace)
    assert got["spec"]["ingressClassName"] == class_name
    assert got["spec"]["defaultBackend"] == {"service": {"name": "svc1", "port": {"number": 80}}}


def test_kubectl_explain_describes_ingress_rules(kubectl: Kubectl) -> None:
    explained = kubectl.ok("explain", "ingress.spec.rules")
    assert "GROUP:      networking.k8s.io" in explained and "KIND:       Ingress" in explained
    assert "host" in explained and "http" in explained
    assert "pathType" in kubectl.ok("explain", "ingress.spec.rules.http.paths")


def test_an_invalid_ingress_is_refused_with_the_field_path(kubectl: Kubectl, namespace: str) -> None:
    bad = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "bad"},
        "spec": {
            "rules": [
                {
                    "host": "10.0.0.1",
                    "http": {
                        "paths": [
                            {
                                "path": "relative",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "svc1", "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ]
        },
    }
    refused = kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest(bad))
    assert refused.code != 0
    assert 'The Ingress "bad" is invalid' in refused.err
    assert 'spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address' in refused.err
    assert 'spec.rules[0].http.paths[0].path: Invalid value: "relative": must be an absolute path' in refused.err
    assert kubectl("get", "ingress", "bad", "-n", namespace).code != 0
