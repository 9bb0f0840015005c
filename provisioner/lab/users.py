"""People of a lab: ``kubelab user add NAME [--group G]`` gets NAME a client certificate the way a
cluster's users get one, through the CertificateSigningRequest API.

The key never leaves this host: ``request`` makes an ECDSA key and a certificate request for
``CN=NAME, O=G...``; the request goes to the API server as a CSR for the
``kubernetes.io/kube-apiserver-client`` signer, is approved as ``kubectl certificate approve``
approves it (the admin may), and the controller-manager's signer writes the certificate into its
status. ``add`` then writes the user's kubeconfig under the lab's ``users/``. The user may do nothing
until something binds it a role (``kubectl create rolebinding ... --user NAME``).
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from provisioner.errors import ProvisionError
from provisioner.lab import kubeconfig
from provisioner.lab.apiclient import LabApi
from provisioner.lab.paths import LabPaths

SIGNER = "kubernetes.io/kube-apiserver-client"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
DEFAULT_SECONDS = 365 * 24 * 3600
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._-]{0,62}")


class UserError(ProvisionError):
    """A user cannot be added: a bad name, a lab that does not answer, a refused request."""


def check_name(name: str, groups: Sequence[str]) -> None:
    """One line saying what is wrong with the name or groups, as a UserError."""
    if not _NAME.fullmatch(name):
        raise UserError(
            f"user name {name!r}: use 1-63 letters, digits, '@', '.', '_' or '-', starting with a letter or digit"
        )
    for value in (name, *groups):
        if value.startswith("system:"):
            raise UserError(f"{value!r}: names starting with 'system:' are kube's own identities; choose another")
    for group in groups:
        if not group or "," in group or "/" in group:
            raise UserError(f"group {group!r}: a group is a non-empty name without ',' or '/'")


def user_kubeconfig(paths: LabPaths, name: str) -> Path:
    return paths.root / "users" / f"{name}.kubeconfig"


def request(name: str, groups: Sequence[str]) -> tuple[bytes, bytes]:
    """A new private key and a certificate request for ``CN=name, O=groups``: (key PEM, request PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
    subject.append(x509.NameAttribute(NameOID.COMMON_NAME, name))
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject)).sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def csr_object(object_name: str, request_pem: bytes, seconds: int) -> dict[str, Any]:
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": object_name, "labels": {"kubelab.dev/user": "true"}},
        "spec": {
            "request": base64.b64encode(request_pem).decode(),
            "signerName": SIGNER,
            "expirationSeconds": seconds,
            "usages": ["digital signature", "client auth"],
        },
    }


def approved(csr: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The CSR with the Approved condition added, as the approval subresource takes it."""
    condition = {
        "type": "Approved",
        "status": "True",
        "reason": "KubelabUserAdd",
        "message": "This CSR was approved by kubelab user add.",
        "lastUpdateTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    status = dict(csr.get("status") or {})
    status["conditions"] = [*(status.get("conditions") or []), condition]
    return {**csr, "status": status}


def _certificate(csr: dict[str, Any]) -> bytes | None:
    """The issued PEM certificate; UserError when the signer refused the request."""
    status = csr.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") in ("Failed", "Denied") and condition.get("status", "True") == "True":
            raise UserError(
                f"the signer did not issue the certificate: {condition.get('message') or condition['type']}"
            )
    certificate = status.get("certificate")
    return base64.b64decode(certificate) if certificate else None


def add(
    paths: LabPaths,
    name: str,
    groups: Sequence[str],
    *,
    seconds: int = DEFAULT_SECONDS,
    timeout: float = 30.0,
    say: Callable[[str], None],
) -> Path:
    """Issue NAME a certificate through the CSR API and write its kubeconfig; the kubeconfig's path."""
    check_name(name, groups)
    if seconds < 600:
        raise UserError(f"--expiration-seconds {seconds}: a certificate lasts at least 600 seconds")
    target = user_kubeconfig(paths, name)
    if target.exists():
        raise UserError(f"user {name!r} already has a kubeconfig: {target}; remove it first to issue a new one")
    admin = _admin(paths)
    api = LabApi(admin["server"], paths)
    key_pem, request_pem = request(name, groups)
    object_name = f"kubelab-user-{name.lower().replace('@', '-').replace('_', '-')}-{secrets.token_hex(3)}"
    created = api.ask("POST", CSR_PATH, body=csr_object(object_name, request_pem, seconds), timeout=10)
    if created.code != 201:
        raise UserError(f"creating the CertificateSigningRequest failed: {created.error}")
    say(f"certificatesigningrequest {object_name} created (signer {SIGNER})")
    approval = api.ask(
        "PUT", f"{CSR_PATH}/{object_name}/approval", body=approved(created.body, datetime.now(UTC)), timeout=10
    )
    if approval.code != 200:
        raise UserError(f"approving {object_name} failed: {approval.error}")
    say(f"certificatesigningrequest {object_name} approved; waiting for the controller-manager's signer")
    deadline = time.monotonic() + timeout
    certificate: bytes | None = None
    while certificate is None:
        found = api.ask("GET", f"{CSR_PATH}/{object_name}", timeout=5)
        if found.code == 200:
            certificate = _certificate(found.body)
        if certificate is None:
            if time.monotonic() > deadline:
                raise UserError(
                    f"no certificate for {object_name} after {timeout:.0f}s;"
                    " see: kubelab logs <master> controller-manager"
                )
            time.sleep(0.3)
    text = kubeconfig.render(
        cluster=admin["cluster"],
        server=admin["server"],
        ca_pem=admin["ca"],
        user=name,
        client_cert=(certificate, key_pem),
    )
    kubeconfig.write(target, text)
    say(f"user {name}{' in ' + ', '.join(groups) if groups else ''}: kubeconfig written to {target}")
    say("the user may do nothing until a role is bound to it, e.g.:")
    say(f"  kubectl create rolebinding {name}-view --clusterrole=view --user={name} --namespace=default")
    say(f"  kubectl --kubeconfig {target} get pods")
    return target


def _admin(paths: LabPaths) -> dict[str, Any]:
    """The cluster name, API server URL and CA of the lab's admin kubeconfig."""
    try:
        document = yaml.safe_load(paths.kubeconfig.read_text())
        cluster = document["clusters"][0]
        return {
            "cluster": cluster["name"],
            "server": cluster["cluster"]["server"],
            "ca": base64.b64decode(cluster["cluster"]["certificate-authority-data"]),
        }
    except (OSError, KeyError, IndexError, TypeError, ValueError, yaml.YAMLError):
        raise UserError(
            f"lab {paths.root.name!r} has no usable kubeconfig ({paths.kubeconfig}); create the lab with: kubelab up"
        ) from None
