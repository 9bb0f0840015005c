"""kubeconfig files in the form kubectl and client libraries read."""

from __future__ import annotations

import base64
import csv
import io
import os
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID


def render(
    *,
    cluster: str,
    server: str,
    ca_pem: bytes,
    user: str,
    token: str | None = None,
    client_cert: tuple[bytes, bytes] | None = None,
) -> str:
    """A kubeconfig of one cluster and one user, who authenticates by a bearer ``token`` or by a
    client certificate (``client_cert``: its PEM certificate and key, embedded)."""
    if client_cert is not None:
        cert, key = client_cert
        credentials = {
            "client-certificate-data": base64.b64encode(cert).decode(),
            "client-key-data": base64.b64encode(key).decode(),
        }
    elif token is not None:
        credentials = {"token": token}
    else:
        raise ValueError("a kubeconfig user needs a token or a client certificate")
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()},
            }
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user, "namespace": "default"}}],
        "current-context": cluster,
        "preferences": {},
    }
    return yaml.safe_dump(document, sort_keys=False)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def bearer_token(path: Path) -> str:
    """A bearer token for the user of the lab kubeconfig ``path``, for tools that send only tokens
    (the API benchmark's load generator, the fuzzer): the kubeconfig's own token, or for a user with
    a client certificate the static token of the same user from the lab's token file
    (``pki/tokens.csv`` beside the kubeconfig, or beside its ``config/`` directory)."""
    document = yaml.safe_load(path.read_text())
    user = document["users"][0]["user"]
    if user.get("token"):
        return str(user["token"])
    pem = base64.b64decode(user["client-certificate-data"])
    name = x509.load_pem_x509_certificate(pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    for root in (path.parent, path.parent.parent):
        tokens = root / "pki" / "tokens.csv"
        if tokens.exists():
            for row in csv.reader(io.StringIO(tokens.read_text())):
                if len(row) >= 2 and row[1] == name:
                    return row[0]
    raise LookupError(f"{path}: no static token of user {name!r} in the lab's pki/tokens.csv")
