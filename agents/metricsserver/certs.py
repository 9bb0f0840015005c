"""The serving certificate: given (``--tls-cert-file``, ``--tls-private-key-file``), or made at start.

As metrics-server does when it is given none, a self-signed certificate is written into
``--cert-dir`` (``apiserver.crt``, ``apiserver.key``) and used again at the next start if it is still
valid. Nothing checks it: the APIService says ``insecureSkipTLSVerify``, so the aggregation layer does
not verify this server (it is the other way round that matters: this server checks the front proxy).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

CERT_FILE = "apiserver.crt"
KEY_FILE = "apiserver.key"
VALID_DAYS = 365
NAMES = ("localhost", "metrics-server", "metrics-server.kube-system", "metrics-server.kube-system.svc")


def self_signed(*, names: tuple[str, ...] = NAMES, now: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    """A new certificate and key (PEM) for ``names`` and 127.0.0.1, valid for a year."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(minutes=5)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{names[0]}@{int(start.timestamp())}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _still_valid(cert_path: Path, key_path: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    return cert.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)


def serving_pair(cert_dir: Path, cert_file: Path | None = None, key_file: Path | None = None) -> tuple[Path, Path]:
    """Paths of the certificate and key to serve with: the given ones, or those in ``cert_dir``
    (made there now when missing or expiring)."""
    if cert_file is not None and key_file is not None:
        return cert_file, key_file
    cert_path, key_path = cert_dir / CERT_FILE, cert_dir / KEY_FILE
    if _still_valid(cert_path, key_path):
        return cert_path, key_path
    cert_pem, key_pem = self_signed()
    cert_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key_pem)
    cert_path.write_bytes(cert_pem)
    log.info("generated a self-signed serving certificate in %s", cert_dir)
    return cert_path, key_path
