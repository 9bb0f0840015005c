"""Encryption at rest: the providers' formats, stale values, the configuration file, and the store
that encrypts on its way to the inner store."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.apiserver import encryptionconfig
from agents.apiserver.encryptionconfig import EncryptionConfigError
from agents.apiserver.resources import Catalog
from agents.apiserver.storage.encryption import (
    AesCbcProvider,
    AesGcmProvider,
    DecryptionError,
    EncryptingStore,
    IdentityProvider,
    Key,
    Transformer,
)
from agents.apiserver.storage.memory import MemoryStore

KEY1, KEY2 = Key("key1", b"1" * 32), Key("key2", b"2" * 32)
CONTEXT = b"/registry/secrets/default/s"


def test_aescbc_and_aesgcm_values_carry_kube_s_prefix_and_come_back() -> None:
    for provider, name in ((AesCbcProvider([KEY1]), "aescbc"), (AesGcmProvider([KEY1]), "aesgcm")):
        transformer = Transformer([provider])
        stored = transformer.to_storage(b'{"data":"secret"}', CONTEXT)
        assert stored.startswith(f"k8s:enc:{name}:v1:key1:".encode()) and b"secret" not in stored
        assert transformer.from_storage(stored, CONTEXT) == (b'{"data":"secret"}', False)
        assert transformer.to_storage(b"x", CONTEXT) != transformer.to_storage(b"x", CONTEXT)  # a fresh IV each time
    gcm = Transformer([AesGcmProvider([KEY1])])
    with pytest.raises(DecryptionError):  # aesgcm binds the value to its etcd key
        gcm.from_storage(gcm.to_storage(b"x", CONTEXT), b"/registry/secrets/default/other")


def test_a_value_read_with_an_older_key_or_plain_is_stale_and_one_no_provider_reads_is_an_error() -> None:
    old = Transformer([AesCbcProvider([KEY1]), IdentityProvider()])
    stored = old.to_storage(b"v", CONTEXT)
    rotated = Transformer([AesCbcProvider([KEY2, KEY1]), IdentityProvider()])
    assert rotated.from_storage(stored, CONTEXT) == (b"v", True)
    assert rotated.from_storage(rotated.to_storage(b"v", CONTEXT), CONTEXT) == (b"v", False)
    assert rotated.from_storage(b'{"plain":1}', CONTEXT) == (b'{"plain":1}', True)  # written before encryption
    without_old = Transformer([AesCbcProvider([KEY2])])
    with pytest.raises(DecryptionError, match="no matching prefix"):
        without_old.from_storage(stored, CONTEXT)
    with pytest.raises(DecryptionError):  # no identity: plain values are not read either
        without_old.from_storage(b"{}", CONTEXT)
    identity_first = Transformer([IdentityProvider(), AesCbcProvider([KEY1])])
    assert identity_first.to_storage(b"v", CONTEXT) == b"v"
    assert identity_first.from_storage(stored, CONTEXT) == (b"v", True)  # decryption back to plain
    assert identity_first.from_storage(b"v", CONTEXT) == (b"v", False)


def _config(tmp_path: Path, *providers: dict[str, Any], resources: tuple[str, ...] = ("secrets",)) -> Path:
    path = tmp_path / "encryption.yaml"
    document = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{"resources": list(resources), "providers": list(providers)}],
    }
    path.write_text(yaml.safe_dump(document))
    return path


def _aescbc(*keys: tuple[str, bytes]) -> dict[str, Any]:
    return {"aescbc": {"keys": [{"name": n, "secret": base64.b64encode(s).decode()} for n, s in keys]}}


def test_the_configuration_names_resources_and_providers_and_a_mistake_is_one_line(tmp_path: Path) -> None:
    catalog = Catalog()
    loaded = encryptionconfig.load(_config(tmp_path, _aescbc(("k", b"k" * 32)), {"identity": {}}), catalog)
    assert [prefix for prefix, _ in loaded] == ["/registry/secrets/"]
    apps = encryptionconfig.load(_config(tmp_path, {"identity": {}}, resources=("*.apps",)), catalog)
    assert "/registry/apps/deployments/" in [prefix for prefix, _ in apps]
    for providers, resources, words in (
        (
            [_aescbc(("k", b"short"))],
            ("secrets",),
            "secret is not of the expected length, got 5, expected one of [16 24 32]",
        ),
        ([{"secretbox": {"keys": []}}], ("secrets",), "use aescbc or aesgcm"),
        ([{"rot13": {}}], ("secrets",), 'Unsupported value: "rot13"'),
        ([], ("secrets",), "providers: Required value"),
        ([{"identity": {}}], ("widgets",), "resource 'widgets' is not served here"),
        ([_aescbc(("k", b"k" * 16), ("k", b"j" * 16))], ("secrets",), "Duplicate value: 'k'"),
    ):
        with pytest.raises(EncryptionConfigError, match=re.escape(words)) as caught:
            encryptionconfig.load(_config(tmp_path, *providers, resources=resources), catalog)
        assert "\n" not in str(caught.value)
    (tmp_path / "other.yaml").write_text("kind: Something\n")
    with pytest.raises(
        EncryptionConfigError, match=re.escape("not an apiserver.config.k8s.io/v1 EncryptionConfiguration")
    ):
        encryptionconfig.load(tmp_path / "other.yaml", catalog)


async def test_the_store_encrypts_what_it_is_told_to_and_decrypts_on_every_way_back() -> None:
    inner = MemoryStore()
    store = EncryptingStore(inner, [("/registry/secrets/", Transformer([AesCbcProvider([KEY1])]))])
    await store.start()
    revision = await store.create("/registry/secrets/default/s", b'{"v":1}')
    await store.create("/registry/configmaps/default/c", b'{"v":2}')
    raw, _ = await inner.get("/registry/secrets/default/s")
    assert raw is not None and raw.value.startswith(b"k8s:enc:aescbc:v1:key1:")
    plain, _ = await inner.get("/registry/configmaps/default/c")
    assert plain is not None and plain.value == b'{"v":2}'
    got, _ = await store.get("/registry/secrets/default/s")
    assert got is not None and got.value == b'{"v":1}' and not got.stale
    listed = await store.range("/registry/secrets/", "/registry/secrets0")
    assert [kv.value for kv in listed.kvs] == [b'{"v":1}']
    await store.update("/registry/secrets/default/s", b'{"v":3}', expected_revision=revision)
    events = store.watch("/registry/secrets/", start_revision=revision)
    first = await anext(events)
    assert first.kv.value == b'{"v":1}'
    second = await anext(events)
    assert second.kv.value == b'{"v":3}' and second.prev is not None and second.prev.value == b'{"v":1}'
    await events.aclose()  # type: ignore[attr-defined]
    deleted, _ = await store.delete("/registry/secrets/default/s")
    assert deleted.value == b'{"v":3}'
    await store.close()
