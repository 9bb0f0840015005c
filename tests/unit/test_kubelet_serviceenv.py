"""The Services' variables a container gets, as kube's kubelet makes them."""

from __future__ import annotations

import asyncio
from typing import Any

from agents.kubelet.serviceenv import service_environment
from agents.kubelet.volumes import environment


def service(name: str, namespace: str, ip: str, *ports: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"clusterIP": ip, "ports": list(ports)}}


KUBERNETES = service("kubernetes", "default", "10.96.0.1", {"name": "https", "port": 443, "protocol": "TCP"})
WEB = service(
    "web-front", "team", "10.96.0.20", {"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}
)
HEADLESS = service("db", "team", "None", {"port": 5432})
ELSEWHERE = service("other", "elsewhere", "10.96.0.30", {"port": 8080})


def pod(namespace: str = "team", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": namespace}, "spec": spec}


def test_a_pod_learns_the_api_server_and_its_namespace_s_services() -> None:
    env = service_environment(pod(), [KUBERNETES, WEB, HEADLESS, ELSEWHERE])
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT"] == "tcp://10.96.0.1:443"
    assert env["KUBERNETES_PORT_443_TCP_ADDR"] == "10.96.0.1"
    assert env["WEB_FRONT_SERVICE_HOST"] == "10.96.0.20" and env["WEB_FRONT_SERVICE_PORT"] == "80"
    assert env["WEB_FRONT_SERVICE_PORT_DNS"] == "53"
    assert env["WEB_FRONT_PORT_53_UDP"] == "udp://10.96.0.20:53" and env["WEB_FRONT_PORT_53_UDP_PROTO"] == "udp"
    assert not any(k.startswith(("DB_", "OTHER_")) for k in env)  # headless, another namespace


def test_without_service_links_only_the_api_server_is_named() -> None:
    env = service_environment(pod(enableServiceLinks=False), [KUBERNETES, WEB])
    assert {k.split("_", 1)[0] for k in env} == {"KUBERNETES"}


def test_a_variable_the_container_declares_wins_and_may_use_the_services() -> None:
    async def nothing(_namespace: str, _name: str) -> None:
        return None

    container = {
        "name": "c",
        "env": [
            {"name": "WEB_FRONT_SERVICE_PORT", "value": "8080"},
            {"name": "URL", "value": "https://$(KUBERNETES_SERVICE_HOST)"},
        ],
    }
    env = asyncio.run(
        environment(
            pod(),
            container,
            image_env=["KUBERNETES_SERVICE_HOST=from-image", "PATH=/bin"],
            host_ip="192.168.123.11",
            pod_ip="10.244.1.5",
            configmaps=nothing,
            secrets=nothing,
            service_env=service_environment(pod(), [KUBERNETES, WEB]),
        )
    )
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"  # the service's over the image's
    assert env["WEB_FRONT_SERVICE_PORT"] == "8080" and env["URL"] == "https://10.96.0.1" and env["PATH"] == "/bin"
