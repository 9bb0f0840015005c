"""The OpenAPI v2 endpoint, kept minimal on purpose.

kubectl 1.32 takes schemas, field validation support and strategic-merge keys from OpenAPI v3.
It still downloads v2 (as protobuf, gnostic's ``openapi.v2.Document``) in two cases: to validate a
kind the server does not serve (then it reports "no matches for kind") and to validate a
``kind: List``. For both, a valid document without definitions is what it needs: kubectl then
skips client-side checks and the server validates each object with ``fieldValidation=Strict``.
The document therefore carries only ``swagger`` and ``info``; clients wanting schemas use v3.
"""

from __future__ import annotations

PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"  # what clients ask for
# what is answered: the same type without '@', which Go's media type parser rejects
PROTOBUF_RESPONSE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (strings and nested messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def document_protobuf(version: str) -> bytes:
    # openapi.v2.Document: swagger = 1, info = 2; Info: title = 1, version = 2.
    info = _field(1, b"Kubernetes") + _field(2, version.encode())
    return _field(1, b"2.0") + _field(2, info)


def document_json(version: str) -> dict[str, object]:
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": version}, "paths": {}, "definitions": {}}
