"""``--encryption-provider-config``: kube's ``apiserver.config.k8s.io/v1`` EncryptionConfiguration.

Each entry of ``resources`` names resources (``secrets``, ``deployments.apps``, ``*.apps``, ``*.*``)
and the providers that store them (``aescbc``, ``aesgcm``, ``identity``); the first entry naming a
resource wins. Keys are base64 of 16, 24 or 32 bytes. ``secretbox`` and ``kms`` are kube's too, but
not provided here (secretbox's XSalsa20-Poly1305 is not in the cryptography library): a file asking
for them is refused at start with one line, as is any other mistake.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from agents.apiserver.resources import Resource
from agents.apiserver.storage.encryption import (
    AesCbcProvider,
    AesGcmProvider,
    IdentityProvider,
    Key,
    Provider,
    Transformer,
)
from agents.machinery.errors import KubelabError

API_VERSION = "apiserver.config.k8s.io/v1"
KIND = "EncryptionConfiguration"
KEY_SIZES = (16, 24, 32)


class EncryptionConfigError(KubelabError):
    """The encryption configuration cannot be used."""


def _keys(path: str, spec: Any) -> list[Key]:
    keys = (spec or {}).get("keys") if isinstance(spec, dict) else None
    if not isinstance(keys, list) or not keys:
        raise EncryptionConfigError(f"{path}.keys: Required value: at least one key")
    out: list[Key] = []
    for i, entry in enumerate(keys):
        where = f"{path}.keys[{i}]"
        name = str((entry or {}).get("name") or "")
        if not name or ":" in name:
            raise EncryptionConfigError(f"{where}.name: Invalid value: {name!r}: a non-empty name without ':'")
        try:
            secret = base64.b64decode(str((entry or {}).get("secret") or ""), validate=True)
        except (binascii.Error, ValueError):
            raise EncryptionConfigError(f'{where}.secret: Invalid value: "REDACTED": not base64') from None
        if len(secret) not in KEY_SIZES:
            raise EncryptionConfigError(
                f'{where}.secret: Invalid value: "REDACTED": secret is not of the expected length,'
                f" got {len(secret)}, expected one of [16 24 32]"
            )
        if name in {k.name for k in out}:
            raise EncryptionConfigError(f"{where}.name: Duplicate value: {name!r}")
        out.append(Key(name, secret))
    return out


def _provider(path: str, entry: Any) -> Provider:
    if not isinstance(entry, dict) or len(entry) != 1:
        raise EncryptionConfigError(f"{path}: Invalid value: exactly one provider per entry")
    ((kind, spec),) = entry.items()
    if kind == "identity":
        return IdentityProvider()
    if kind == "aescbc":
        return AesCbcProvider(_keys(f"{path}.aescbc", spec))
    if kind == "aesgcm":
        return AesGcmProvider(_keys(f"{path}.aesgcm", spec))
    if kind in ("secretbox", "kms"):
        raise EncryptionConfigError(f"{path}.{kind}: not provided by kubelab's API server; use aescbc or aesgcm")
    raise EncryptionConfigError(
        f'{path}: Unsupported value: "{kind}": supported values: "aescbc", "aesgcm", "identity"'
    )


def _matches(pattern: str, resource: Resource) -> bool:
    if pattern == "*.*":
        return True
    name, _, group = pattern.partition(".")
    if name == "*":
        return resource.group == group
    return resource.plural == name and resource.group == group


def load(path: Path, resources: Iterable[Resource]) -> list[tuple[str, Transformer]]:
    """(etcd key prefix, transformer) for every resource the file names; EncryptionConfigError otherwise."""
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise EncryptionConfigError(f"encryption-provider-config {path}: {exc}") from exc
    if not isinstance(document, dict) or document.get("kind") != KIND or document.get("apiVersion") != API_VERSION:
        raise EncryptionConfigError(f"encryption-provider-config {path}: not an {API_VERSION} {KIND}")
    known = [r for r in resources if not r.review]
    out: list[tuple[str, Transformer]] = []
    taken: set[str] = set()
    for i, entry in enumerate(document.get("resources") or []):
        where = f"resources[{i}]"
        names = (entry or {}).get("resources") if isinstance(entry, dict) else None
        providers = (entry or {}).get("providers") if isinstance(entry, dict) else None
        if not isinstance(names, list) or not names:
            raise EncryptionConfigError(f"{path}: {where}.resources: Required value")
        if not isinstance(providers, list) or not providers:
            raise EncryptionConfigError(f"{path}: {where}.providers: Required value")
        try:
            transformer = Transformer([_provider(f"{where}.providers[{j}]", p) for j, p in enumerate(providers)])
        except EncryptionConfigError as exc:
            raise EncryptionConfigError(f"{path}: {exc}") from None
        for name in names:
            matched = [r for r in known if _matches(str(name), r)]
            if not matched and "*" not in str(name):
                raise EncryptionConfigError(f"{path}: {where}.resources: resource {name!r} is not served here")
            for resource in matched:
                if resource.key_prefix not in taken:
                    taken.add(resource.key_prefix)
                    out.append((resource.key_prefix, transformer))
    return out
