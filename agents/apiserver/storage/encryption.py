"""Encryption at rest: values transformed on their way to etcd and back, as kube-apiserver's
``--encryption-provider-config`` does it.

A ``Transformer`` holds an ordered list of providers. The first one writes: ``aescbc`` or ``aesgcm``
with its first key, or ``identity`` (plain bytes). Every provider reads: a stored value names its
provider and key in a prefix (``k8s:enc:aescbc:v1:key1:``), and a value without ``k8s:enc:`` is
plain, readable while ``identity`` is in the list. A value read with anything but the writing
provider's first key is *stale*: the registry writes it again even when nothing changed, so that
rewriting every object (``kubectl get secrets -A -o json | kubectl replace -f -``) moves it to the
new key, after which the old key can be dropped.

``EncryptingStore`` wraps a ``Store``: values under the prefixes given a transformer are encrypted
on create and update, and decrypted wherever they come back (get, range, delete, watch).

The formats are kube's: aescbc is a random 16-byte IV then AES-CBC of the PKCS#7-padded value;
aesgcm is a random 12-byte nonce then AES-GCM of the value, with the etcd key as authenticated data
(a value copied under another key does not decrypt).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agents.apiserver.storage.base import KeyValue, RangeResult, Store, WatchEvent
from agents.apiserver.storage.errors import StorageError

ENCRYPTED = b"k8s:enc:"


class DecryptionError(StorageError):
    """A stored value no configured provider can read (a key was dropped too early, or it was damaged)."""


@dataclass(frozen=True)
class Key:
    name: str
    secret: bytes  # 16, 24 or 32 bytes


class Provider:
    """One way values are stored; ``prefix`` is what its values start with."""

    name = ""

    def prefixes(self) -> list[tuple[bytes, Key | None]]:
        return []

    def encrypt(self, plain: bytes, context: bytes) -> bytes:
        raise NotImplementedError

    def decrypt(self, key: Key | None, sealed: bytes, context: bytes) -> bytes:
        raise NotImplementedError


class IdentityProvider(Provider):
    name = "identity"

    def encrypt(self, plain: bytes, context: bytes) -> bytes:
        return plain

    def decrypt(self, key: Key | None, sealed: bytes, context: bytes) -> bytes:
        return sealed


class _KeyedProvider(Provider):
    def __init__(self, keys: Sequence[Key]) -> None:
        if not keys:
            raise ValueError(f"{self.name}: at least one key")
        self.keys = list(keys)

    def prefix(self, key: Key) -> bytes:
        return ENCRYPTED + f"{self.name}:v1:{key.name}:".encode()

    def prefixes(self) -> list[tuple[bytes, Key | None]]:
        return [(self.prefix(key), key) for key in self.keys]

    def encrypt(self, plain: bytes, context: bytes) -> bytes:
        key = self.keys[0]
        return self.prefix(key) + self.seal(key, plain, context)

    def seal(self, key: Key, plain: bytes, context: bytes) -> bytes:
        raise NotImplementedError


class AesCbcProvider(_KeyedProvider):
    name = "aescbc"

    def __init__(self, keys: Sequence[Key]) -> None:
        super().__init__(keys)
        # the cipher's key object checked once (building it costs more than encrypting a Secret)
        self._aes = {key.name: algorithms.AES(key.secret) for key in self.keys}

    def seal(self, key: Key, plain: bytes, context: bytes) -> bytes:
        iv = os.urandom(16)
        pad = 16 - len(plain) % 16  # PKCS#7: 1 to 16 bytes, each the count
        encryptor = Cipher(self._aes[key.name], modes.CBC(iv)).encryptor()
        return iv + encryptor.update(plain + bytes((pad,)) * pad) + encryptor.finalize()

    def decrypt(self, key: Key | None, sealed: bytes, context: bytes) -> bytes:
        assert key is not None
        if len(sealed) < 32 or len(sealed) % 16:
            raise DecryptionError("the data is not a whole number of AES blocks")
        decryptor = Cipher(self._aes[key.name], modes.CBC(sealed[:16])).decryptor()
        padded = decryptor.update(sealed[16:]) + decryptor.finalize()
        pad = padded[-1]
        if not 1 <= pad <= 16 or padded[-pad:] != bytes((pad,)) * pad:
            raise DecryptionError("invalid padding on input")
        return padded[:-pad]


class AesGcmProvider(_KeyedProvider):
    name = "aesgcm"

    def __init__(self, keys: Sequence[Key]) -> None:
        super().__init__(keys)
        self._aead = {key.name: AESGCM(key.secret) for key in self.keys}

    def seal(self, key: Key, plain: bytes, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead[key.name].encrypt(nonce, plain, context)

    def decrypt(self, key: Key | None, sealed: bytes, context: bytes) -> bytes:
        assert key is not None
        try:
            return self._aead[key.name].decrypt(sealed[:12], sealed[12:], context)
        except (InvalidTag, ValueError) as exc:
            raise DecryptionError("message authentication failed") from exc


class Transformer:
    """The providers of one set of resources: the first writes, all read."""

    def __init__(self, providers: Sequence[Provider]) -> None:
        if not providers:
            raise ValueError("at least one provider")
        self.providers = list(providers)
        self._writer = self.providers[0]
        # (prefix, provider, key), longest prefixes first; identity reads what no prefix claims
        self._readers = sorted(
            ((prefix, provider, key) for provider in self.providers for prefix, key in provider.prefixes()),
            key=lambda entry: -len(entry[0]),
        )
        self._identity = any(isinstance(p, IdentityProvider) for p in self.providers)
        first = self._writer.prefixes()
        self._current = first[0][0] if first else None  # what a value needs to start with not to be stale

    def to_storage(self, plain: bytes, context: bytes) -> bytes:
        return self._writer.encrypt(plain, context)

    def from_storage(self, stored: bytes, context: bytes) -> tuple[bytes, bool]:
        """The plain value and whether it is stale (stored otherwise than the writer would now)."""
        for prefix, provider, key in self._readers:
            if stored.startswith(prefix):
                plain = provider.decrypt(key, stored[len(prefix) :], context)
                return plain, prefix != self._current
        if self._identity and not stored.startswith(ENCRYPTED):
            return stored, self._current is not None
        raise DecryptionError("no matching prefix found: the value's provider or key is not configured")


class EncryptingStore:
    """A ``Store`` whose values under the given key prefixes are kept encrypted in the inner store."""

    def __init__(self, inner: Store, transformers: Sequence[tuple[str, Transformer]]) -> None:
        """``transformers``: (a resource's key prefix, ``/registry/secrets/`` or
        ``/registry/apps/deployments/``, and its transformer)."""
        self.inner = inner
        self._by_prefix = dict(transformers)

    def _transformer(self, key: str) -> Transformer | None:
        # a key is /registry/PLURAL/... (the core group) or /registry/GROUP/PLURAL/...
        parts = key.split("/", 4)
        if len(parts) < 4:
            return None
        found = self._by_prefix.get(f"/registry/{parts[2]}/")
        return found if found is not None else self._by_prefix.get(f"/registry/{parts[2]}/{parts[3]}/")

    def _encrypt(self, key: str, value: bytes) -> bytes:
        transformer = self._transformer(key)
        return value if transformer is None else transformer.to_storage(value, key.encode())

    def _decrypt(self, kv: KeyValue) -> KeyValue:
        transformer = self._transformer(kv.key)
        if transformer is None or not kv.value:
            return kv
        try:
            plain, stale = transformer.from_storage(kv.value, kv.key.encode())
        except DecryptionError as exc:
            raise DecryptionError(f"{kv.key}: {exc}") from exc
        return KeyValue(kv.key, plain, kv.create_revision, kv.mod_revision, stale)

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def get(self, key: str) -> tuple[KeyValue | None, int]:
        kv, revision = await self.inner.get(key)
        return (self._decrypt(kv) if kv is not None else None), revision

    async def range(self, start: str, end: str, *, revision: int = 0, limit: int = 0) -> RangeResult:
        result = await self.inner.range(start, end, revision=revision, limit=limit)
        return replace(result, kvs=[self._decrypt(kv) for kv in result.kvs])

    async def create(self, key: str, value: bytes) -> int:
        return await self.inner.create(key, self._encrypt(key, value))

    async def update(self, key: str, value: bytes, *, expected_revision: int) -> int:
        return await self.inner.update(key, self._encrypt(key, value), expected_revision=expected_revision)

    async def delete(self, key: str, *, expected_revision: int = 0) -> tuple[KeyValue, int]:
        kv, revision = await self.inner.delete(key, expected_revision=expected_revision)
        return self._decrypt(kv), revision

    async def watch(self, prefix: str, *, start_revision: int) -> AsyncIterator[WatchEvent]:
        async for event in self.inner.watch(prefix, start_revision=start_revision):
            prev = self._decrypt(event.prev) if event.prev is not None else None
            yield WatchEvent(event.type, self._decrypt(event.kv), prev)

    async def current_revision(self) -> int:
        return await self.inner.current_revision()

    async def compact(self, revision: int) -> None:
        await self.inner.compact(revision)
