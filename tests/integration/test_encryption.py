"""Secrets encrypted at rest, read back from etcd directly: on the session's local lab (the
EncryptionConfiguration ``kubelab up`` writes), and through a key rotation on an API server of this
process over a real etcd (Debian's etcd-server): a new key first, every Secret written again, the old
key dropped."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from aiohttp.test_utils import TestClient, TestServer

from agents.apiserver.server import ApiServer
from agents.apiserver.settings import ApiServerSettings, EtcdSettings
from agents.apiserver.storage.etcd import EtcdStore, EtcdTls
from kubelab_testing.kubectl import Kubectl
from kubelab_testing.lab import Lab
from provisioner.drivers.local.components import Etcd
from provisioner.lab import pki

SECRETS = "/api/v1/namespaces/default/secrets"


def _tls(directory: Path) -> EtcdTls:
    client = pki.APISERVER_ETCD_CLIENT
    return EtcdTls(
        ca=(directory / f"{pki.ETCD_CA}.crt").read_bytes(),
        cert=(directory / f"{client}.crt").read_bytes(),
        key=(directory / f"{client}.key").read_bytes(),
    )


async def _raw(endpoint: str, pki_dir: Path, key: str) -> bytes:
    store = EtcdStore([endpoint], tls=_tls(pki_dir))
    await store.start()
    try:
        kv, _ = await store.get(key)
    finally:
        await store.close()
    assert kv is not None, key
    return kv.value


async def test_the_lab_keeps_secrets_as_aescbc_ciphertext_in_etcd(lab: Lab, kubectl: Kubectl, namespace: str) -> None:
    kubectl.ok("create", "secret", "generic", "sealed", "--from-literal=password=hunter2", "-n", namespace)
    kubectl.ok("create", "configmap", "open", "--from-literal=colour=blue", "-n", namespace)
    endpoint = f"https://127.0.0.1:{lab.spec['etcd_port']}"
    stored = await _raw(endpoint, lab.root / "pki", f"/registry/secrets/{namespace}/sealed")
    assert stored.startswith(b"k8s:enc:aescbc:v1:key1:")
    assert b"hunter2" not in stored and base64.b64encode(b"hunter2") not in stored and b"sealed" not in stored
    assert b"blue" in await _raw(endpoint, lab.root / "pki", f"/registry/configmaps/{namespace}/open")
    assert kubectl.json("get", "secret", "sealed", "-n", namespace)["data"]["password"] == "aHVudGVyMg=="


def _config(path: Path, *providers: dict[str, Any]) -> Path:
    document = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"], "providers": list(providers)}],
    }
    path.write_text(yaml.safe_dump(document))
    return path


def _aescbc(*names: str) -> dict[str, Any]:
    return {"aescbc": {"keys": [{"name": n, "secret": base64.b64encode(n.encode() * 8).decode()} for n in names]}}


@asynccontextmanager
async def _server(etcd: Etcd, schemas: Path, config: Path) -> AsyncIterator[TestClient[Any, Any]]:
    directory = etcd.paths.pki
    settings = ApiServerSettings(
        schema_cache_dir=schemas,
        encryption_provider_config=config,
        etcd=EtcdSettings(
            servers=(etcd.endpoint,),
            cafile=directory / f"{pki.ETCD_CA}.crt",
            certfile=directory / f"{pki.APISERVER_ETCD_CLIENT}.crt",
            keyfile=directory / f"{pki.APISERVER_ETCD_CLIENT}.key",
        ),
    )
    api = ApiServer(settings)
    await api.start()
    client = TestClient(TestServer(api.application()))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        await api.stop()


async def test_a_key_rotation_rewrites_every_secret_with_the_new_key(etcd: Etcd, lab: Lab, tmp_path: Path) -> None:
    schemas = lab.root.parent / ".cache"  # derived by the session lab's API server
    names = ["rot-a", "rot-b"]
    # before encryption: plain JSON in etcd
    async with _server(etcd, schemas, _config(tmp_path / "0.yaml", {"identity": {}})) as http:
        for name in names:
            body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": {"k": name}}
            answer = await http.post(SECRETS, json=body)
            assert answer.status == 201, await answer.text()
    assert (await _raw(etcd.endpoint, etcd.paths.pki, "/registry/secrets/default/rot-a")).startswith(b"{")

    async def rewrite(http: TestClient[Any, Any]) -> None:
        """What ``kubectl get secrets -o json | kubectl replace -f -`` does: each one put back unchanged."""
        listed = await (await http.get(SECRETS)).json()
        for item in listed["items"]:
            if item["metadata"]["name"] in names:
                answer = await http.put(f"{SECRETS}/{item['metadata']['name']}", json=item)
                assert answer.status == 200, await answer.text()

    # key1 written, plain still read (identity), then everything rewritten with key1
    async with _server(etcd, schemas, _config(tmp_path / "1.yaml", _aescbc("key1"), {"identity": {}})) as http:
        assert (await (await http.get(f"{SECRETS}/rot-a")).json())["data"]["k"] == base64.b64encode(b"rot-a").decode()
        await rewrite(http)
    for name in names:
        assert (await _raw(etcd.endpoint, etcd.paths.pki, f"/registry/secrets/default/{name}")).startswith(
            b"k8s:enc:aescbc:v1:key1:"
        )
    # key2 first, key1 still read: a rewrite moves every Secret to key2
    async with _server(etcd, schemas, _config(tmp_path / "2.yaml", _aescbc("key2", "key1"))) as http:
        await rewrite(http)
    for name in names:
        assert (await _raw(etcd.endpoint, etcd.paths.pki, f"/registry/secrets/default/{name}")).startswith(
            b"k8s:enc:aescbc:v1:key2:"
        )
    # key1 dropped: every Secret still reads
    async with _server(etcd, schemas, _config(tmp_path / "3.yaml", _aescbc("key2"))) as http:
        for name in names:
            got = await (await http.get(f"{SECRETS}/{name}")).json()
            assert got["data"]["k"] == base64.b64encode(name.encode()).decode()
            assert (await http.delete(f"{SECRETS}/{name}")).status == 200


def test_a_bad_configuration_stops_the_api_server_with_one_line(tmp_path: Path) -> None:
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    config = _config(tmp_path / "bad.yaml", {"aescbc": {"keys": [{"name": "k", "secret": "c2hvcnQ="}]}})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agents.apiserver",
            "--encryption-provider-config",
            str(config),
            "--storage-backend",
            "memory",
            "--secure-port",
            "0",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "secret is not of the expected length, got 5, expected one of [16 24 32]" in result.stderr
    assert "Traceback" not in result.stderr
