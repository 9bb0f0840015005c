"""Probes against real sockets in this process' own network namespace: HTTP status rules, TCP
connects, named ports, thresholds, and startup gating the other probes."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agents.kubelet.probes import ContainerProber, http_probe, tcp_probe
from kubelab_testing.waiting import until

OWN_NETNS = Path("/proc/self/ns/net")


@pytest.fixture
async def server() -> AsyncIterator[int]:
    """An HTTP server on 127.0.0.1: /ok answers 200, /moved 302, anything else 500."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readline()).decode().split()
        path = request[1] if len(request) > 1 else "/"
        code = {"/ok": 200, "/moved": 302}.get(path, 500)
        writer.write(f"HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield port


async def test_http_status_200_to_399_is_success_and_others_fail(server: int) -> None:
    ok = await http_probe(OWN_NETNS, "127.0.0.1", server, path="/ok", seconds=2, headers={})
    moved = await http_probe(OWN_NETNS, "127.0.0.1", server, path="/moved", seconds=2, headers={})
    broken = await http_probe(OWN_NETNS, "127.0.0.1", server, path="/broken", seconds=2, headers={})
    assert ok.success and moved.success
    assert not broken.success and broken.message == "HTTP probe failed with statuscode: 500"


async def test_a_closed_port_fails_tcp_and_http_with_the_reason(server: int) -> None:
    assert (await tcp_probe(OWN_NETNS, "127.0.0.1", server, seconds=2)).success
    closed = await tcp_probe(OWN_NETNS, "127.0.0.1", 1, seconds=2)
    assert not closed.success and "127.0.0.1:1" in closed.message
    assert not (await http_probe(OWN_NETNS, "127.0.0.1", 1, path="/", seconds=2, headers={})).success


def _self_signed(directory: Path) -> ssl.SSLContext:
    """A serving context with a certificate nobody signed, as a container's own HTTPS port has."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pod")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(directory / "tls.crt"), str(directory / "tls.key"))
    return context


async def test_https_probes_speak_tls_without_checking_the_certificate(tmp_path: Path) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=_self_signed(tmp_path))
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        secure = await http_probe(OWN_NETNS, "127.0.0.1", port, path="/", seconds=2, headers={}, scheme="HTTPS")
        plain = await http_probe(OWN_NETNS, "127.0.0.1", port, path="/", seconds=2, headers={})
    assert secure.success
    assert not plain.success  # plain HTTP to a TLS port gets no HTTP status back


def prober(container: dict[str, Any], *, failures: list[tuple[str, str]], changes: list[int]) -> ContainerProber:
    async def failed(kind: str, message: str) -> None:
        failures.append((kind, message))

    async def run_exec(_cid: str, argv: list[str], _seconds: float) -> tuple[int, str]:
        return (0, "") if argv == ["true"] else (1, "no")

    return ContainerProber(
        container=container,
        container_id="c",
        netns=OWN_NETNS,
        pod_ip="127.0.0.1",
        exec_probe=run_exec,
        on_change=lambda: changes.append(1),
        on_failure=failed,
    )


async def test_readiness_follows_its_probe_and_a_named_port_resolves(server: int) -> None:
    container = {
        "name": "web",
        "ports": [{"name": "http", "containerPort": server}],
        "readinessProbe": {"httpGet": {"path": "/ok", "port": "http"}, "periodSeconds": 1},
    }
    changes: list[int] = []
    probes = prober(container, failures=[], changes=changes)
    assert not probes.state.ready and probes.state.started
    try:
        await until(lambda: probes.state.ready, within=5)
        assert changes == [1]
    finally:
        probes.stop()


async def test_liveness_fails_after_its_threshold_and_waits_for_startup() -> None:
    container = {
        "name": "main",
        "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
        "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2},
    }
    failures: list[tuple[str, str]] = []
    probes = prober(container, failures=failures, changes=[])
    assert not probes.state.started and probes.state.ready  # no readiness probe: ready once running
    try:
        await until(lambda: bool(failures), within=8)
        assert probes.state.started
        assert failures == [("liveness", "no")]
    finally:
        probes.stop()
