"""``kubectl port-forward`` and the official Python client's ``portforward()`` through the API server to
the kubelet of a lab's real node, which connects inside the pod's network namespace: an HTTP server in
a pod answers through the forwarded port, several times and on two connections at once, over
kubectl's both transports (SPDY tunnelled in a WebSocket, its default, and a plain SPDY/3.1 upgrade
with KUBECTL_PORT_FORWARD_WEBSOCKETS=false); a port nothing listens on gives kube's error."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.stream import portforward
from kubernetes.stream.ws_client import create_websocket, get_websocket_url

from kubelab_testing.kubectl import Kubectl, running_pod
from kubelab_testing.lab import Lab

PORT = 8080  # the echo image's HTTP server
PATH = "/cgi-bin/index.cgi"


@pytest.fixture(scope="module")
def web_pod(node_kubectl: Kubectl) -> Iterator[tuple[str, str]]:
    with running_pod(
        node_kubectl,
        "web",
        {"name": "echo", "image": "echo", "ports": [{"containerPort": PORT}]},
        prefix="pf",
        timeout=90,
    ) as ns:
        yield ns, "web"


class Forwarding:
    """A running ``kubectl port-forward``: its local port and what it has said so far."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self.port = 0
        self._found = threading.Event()
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (process.stdout, process.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))
            found = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line)
            if found:
                self.port = int(found.group(1))
                self._found.set()

    def wait_listening(self) -> int:
        assert self._found.wait(60), f"kubectl port-forward did not start: {self.lines}"
        return self.port

    def said(self) -> str:
        return "\n".join(self.lines)


@contextmanager
def forwarding(k: Kubectl, ns: str, target: str, *, websockets: bool) -> Iterator[Forwarding]:
    env = dict(os.environ, KUBECTL_PORT_FORWARD_WEBSOCKETS="true" if websockets else "false")
    process = subprocess.Popen(
        [*k.argv("port-forward", "-n", ns, "pod/web", target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        yield Forwarding(process)
    finally:
        process.terminate()
        process.wait(10)


def fetch(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{PATH}", timeout=30) as answer:
        return str(answer.read().decode())


@pytest.mark.parametrize("websockets", [True, False], ids=["websocket", "spdy"])
def test_requests_reach_the_pods_server_through_the_forwarded_port(
    node_kubectl: Kubectl, web_pod: tuple[str, str], websockets: bool
) -> None:
    ns, name = web_pod
    with forwarding(node_kubectl, ns, f":{PORT}", websockets=websockets) as forward:
        port = forward.wait_listening()
        for _ in range(3):
            assert fetch(port).startswith(f"pod {name} ip ")
        with ThreadPoolExecutor(2) as pool:  # two connections at once, each its own pair of streams
            answers = list(pool.map(fetch, [port, port]))
        assert all(f"method GET path {PATH}" in answer for answer in answers), answers
        assert forward.process.poll() is None, forward.said()
        assert forward.said().count(f"Handling connection for {port}") == 5


@pytest.mark.parametrize("websockets", [True, False], ids=["websocket", "spdy"])
def test_a_port_nothing_listens_on_gives_kubes_error(
    node_kubectl: Kubectl, web_pod: tuple[str, str], websockets: bool
) -> None:
    ns, _ = web_pod
    with forwarding(node_kubectl, ns, ":9", websockets=websockets) as forward:
        port = forward.wait_listening()
        with pytest.raises(OSError):
            fetch(port)
        forward.process.wait(30)  # kubectl gives up the session at the first failed connection
    said = forward.said()
    assert "an error occurred forwarding" in said and "error forwarding port 9 to pod " in said, said
    assert "failed to connect to localhost:9 inside namespace" in said, said
    assert "dial tcp4 127.0.0.1:9: connect: connection refused" in said, said
    assert "lost connection to pod" in said, said


@pytest.fixture(scope="module")
def core(node_lab: Lab) -> Iterator[client.CoreV1Api]:
    connect: Any = config.new_client_from_config
    api = connect(config_file=str(node_lab.kubeconfig))
    yield client.CoreV1Api(api)
    api.close()


def test_the_official_clients_portforward(core: client.CoreV1Api, web_pod: tuple[str, str]) -> None:
    ns, name = web_pod
    forward = portforward(core.connect_get_namespaced_pod_portforward, name, ns, ports=str(PORT))
    sock = forward.socket(PORT)
    sock.settimeout(30)
    sock.sendall(f"GET {PATH} HTTP/1.0\r\nHost: web\r\n\r\n".encode())
    answer = b""
    while chunk := sock.recv(4096):
        answer += chunk
    sock.close()
    assert answer.startswith(b"HTTP/1.") and f"pod {name} ip ".encode() in answer, answer
    assert forward.error(PORT) is None


def test_the_official_clients_portforward_gets_kubes_error_on_the_error_channel(
    core: client.CoreV1Api, web_pod: tuple[str, str]
) -> None:
    ns, name = web_pod
    forward = portforward(core.connect_get_namespaced_pod_portforward, name, ns, ports="9")
    sock = forward.socket(9)
    sock.settimeout(30)
    assert sock.recv(16) == b""  # the client closes the port's socket when its error channel speaks
    error = forward.error(9)
    assert error is not None and "failed to connect to localhost:9 inside namespace" in error, error
    assert "dial tcp4 127.0.0.1:9: connect: connection refused" in error, error


def test_a_websocket_without_ports_is_refused_in_kubes_words(core: client.CoreV1Api, web_pod: tuple[str, str]) -> None:
    ns, name = web_pod
    configuration = core.api_client.configuration
    to_websocket: Any = get_websocket_url
    create: Any = create_websocket
    url = to_websocket(f"{configuration.host}/api/v1/namespaces/{ns}/pods/{name}/portforward")
    headers = {"sec-websocket-protocol": "v4.channel.k8s.io"}
    token = configuration.get_api_key_with_prefix("authorization")
    if token:
        headers["authorization"] = token
    with pytest.raises(Exception, match="Handshake status 400") as caught:  # websocket-client's words
        create(configuration, url, headers)
    said = str(caught.value)
    assert "query parameter" in said and "port" in said and "is required" in said, said  # the kubelet's words
