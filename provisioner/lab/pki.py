"""The lab's cluster CA, the API server's serving certificate, the client certificates of the admin
and the components, etcd's own CA and certificates, and the static bearer tokens.

Generated once per lab and reused by later runs; a certificate is reissued when the addresses it must
cover change or its CA is new. Keys are ECDSA P-256. Tokens are random and kept in a token file in
kube-apiserver's format, readable by root only.

The front proxy has a CA of its own too (``front-proxy-ca``, with the API server's ``front-proxy-client``
certificate): aggregated API servers believe the user headers of a request only from that certificate.

etcd has a CA of its own (``etcd-ca``), as kubeadm sets it up: etcd requires a client certificate and
trusts only that CA, so the API server's etcd client certificate (and the health check's) opens the
store, and no certificate the cluster CA signs (nodes, people) does.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVING_DAYS = 1825


@dataclass(frozen=True)
class Identity:
    """Who a token authenticates as."""

    key: str  # stable name in the token file, e.g. "admin", "node:worker-1"
    user: str
    groups: tuple[str, ...]


ADMIN = Identity("admin", "kubelab-admin", ("system:masters",))
SCHEDULER = Identity("scheduler", "system:kube-scheduler", ())
CONTROLLER_MANAGER = Identity("controller-manager", "system:kube-controller-manager", ())
PROXY = Identity("proxy", "system:kube-proxy", ())
CLOUD_CONTROLLER_MANAGER = Identity("cloud-controller-manager", "system:cloud-controller-manager", ())
# the trace collector writes only its own Service and EndpointSlice in kube-system (the bootstrap role
# system:kube-trace-collector); its name starts with "system:", so its writes start no trace
TRACE_COLLECTOR = Identity("trace-collector", "system:kube-trace-collector", ())
APISERVER_KUBELET = Identity("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ())
# many nodes under one identity: outside system:nodes (the Node authorizer's), bound to system:node by RBAC
SIMULATED_NODES = Identity("simulated-nodes", "kubelab:simulated-nodes", ())


def node_identity(node: str) -> Identity:
    return Identity(f"node:{node}", f"system:node:{node}", ("system:nodes",))


# etcd's own CA and certificates (file names under pki/, without .crt/.key), as kubeadm names them
ETCD_CA = "etcd-ca"
ETCD_SERVER = "etcd-server"
APISERVER_ETCD_CLIENT = "apiserver-etcd-client"
ETCD_HEALTHCHECK_CLIENT = "etcd-healthcheck-client"
# the front proxy's CA and the API server's client certificate for aggregated API servers, as kubeadm names them
FRONT_PROXY_CA = "front-proxy-ca"
FRONT_PROXY_CLIENT = "front-proxy-client"


def _signed_by(path: Path, ca_cert: x509.Certificate) -> bool:
    try:
        x509.load_pem_x509_certificate(path.read_bytes()).verify_directly_issued_by(ca_cert)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    return True


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Pki:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def tokens(self) -> Path:
        return self.directory / "tokens.csv"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_public_key(self) -> Path:
        return self.directory / "sa.pub"

    def ensure_service_account_key(self) -> bool:
        """The key pair ServiceAccount tokens are signed with (``sa.key``, RSA, as kubeadm makes it) and
        checked with (``sa.pub``), unless it exists; return whether it was created."""
        if self.service_account_key.exists() and self.service_account_public_key.exists():
            return False
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(self.service_account_key, _key_pem(key))
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.service_account_public_key.write_bytes(public)
        return True

    @property
    def encryption_config(self) -> Path:
        return self.directory / "encryption-config.yaml"

    def ensure_encryption_config(self) -> bool:
        """The API server's EncryptionConfiguration (``encryption-config.yaml``): Secrets written with
        aescbc under a random 32-byte key ``key1``, plain ones still read (identity), unless the file
        exists (a rotated file is kept as its owner left it); return whether it was created."""
        if self.encryption_config.exists():
            return False
        document = {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "EncryptionConfiguration",
            "resources": [
                {
                    "resources": ["secrets"],
                    "providers": [
                        {"aescbc": {"keys": [{"name": "key1", "secret": base64.b64encode(os.urandom(32)).decode()}]}},
                        {"identity": {}},
                    ],
                }
            ],
        }
        _write_private(self.encryption_config, yaml.safe_dump(document, sort_keys=False).encode())
        return True

    def ensure_ca(self, name: str = "ca", common_name: str = "kubelab-ca") -> bool:
        """Create the CA ``<name>.crt``/``.key`` (the cluster's by default) unless it exists; return
        whether it was created."""
        cert_path, key_path = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        if cert_path.exists() and key_path.exists():
            return False
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return True

    def _sans_of(self, path: Path) -> set[str]:
        try:
            cert = x509.load_pem_x509_certificate(path.read_bytes())
            ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (OSError, ValueError, x509.ExtensionNotFound):
            return set()
        names = {f"DNS:{n}" for n in ext.get_values_for_type(x509.DNSName)}
        return names | {f"IP:{ip}" for ip in ext.get_values_for_type(x509.IPAddress)}

    def serving_cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def serving_key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    def ensure_serving(
        self,
        *,
        dns_names: Sequence[str],
        ips: Sequence[str],
        name: str = "apiserver",
        common_name: str = "kube-apiserver",
    ) -> bool:
        """Issue a serving certificate (``<name>.crt``/``.key``: the API server's by default) for these
        names unless a current one covers them."""
        return self.ensure_leaf(name, common_name=common_name, dns_names=dns_names, ips=ips, server=True)

    def ensure_leaf(
        self,
        name: str,
        *,
        common_name: str,
        organizations: Sequence[str] = (),
        dns_names: Sequence[str] = (),
        ips: Sequence[str] = (),
        server: bool = False,
        client: bool = False,
        ca: str = "ca",
    ) -> bool:
        """Issue ``<name>.crt``/``.key`` signed by the CA ``<ca>.crt``, for serving (``server``: these
        names), for client authentication (``client``: ``common_name`` is the user, ``organizations``
        the groups), or both, unless a current one exists: same names, signed by that CA's key."""
        cert_path, key_path = self.serving_cert(name), self.serving_key(name)
        ca_cert_path, ca_key_path = self.directory / f"{ca}.crt", self.directory / f"{ca}.key"
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        wanted = {f"DNS:{n}" for n in dns_names} | {f"IP:{ipaddress.ip_address(ip)}" for ip in ips}
        if key_path.exists() and self._sans_of(cert_path) == wanted and _signed_by(cert_path, ca_cert):
            return False
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_key_path} is not an ECDSA key")
        key = ec.generate_private_key(ec.SECP256R1())
        subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
        usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        if not usages:
            raise ValueError(f"{name}: a certificate for serving, for clients, or both")
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=SERVING_DAYS))
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if wanted:
            sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
            sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return True

    def ensure_etcd(self, *, dns_names: Sequence[str], ips: Sequence[str]) -> None:
        """etcd's CA; etcd's certificate for its clients and its peers (both usages, as a member is a
        client of the others); the API server's client certificate; the health check's."""
        self.ensure_ca(ETCD_CA, "kubelab-etcd-ca")
        self.ensure_leaf(
            ETCD_SERVER, common_name="etcd", dns_names=dns_names, ips=ips, server=True, client=True, ca=ETCD_CA
        )
        self.ensure_leaf(APISERVER_ETCD_CLIENT, common_name="kube-apiserver-etcd-client", client=True, ca=ETCD_CA)
        self.ensure_leaf(ETCD_HEALTHCHECK_CLIENT, common_name="kube-etcd-healthcheck-client", client=True, ca=ETCD_CA)

    def ensure_front_proxy(self) -> None:
        """The front proxy's CA and the client certificate (CN ``front-proxy-client``) the API server
        presents to aggregated API servers, which trust that CA alone for the user headers it sends."""
        self.ensure_ca(FRONT_PROXY_CA, "front-proxy-ca")
        self.ensure_leaf(FRONT_PROXY_CLIENT, common_name="front-proxy-client", client=True, ca=FRONT_PROXY_CA)

    def client_cert_name(self, identity: Identity) -> str:
        """The file name (under pki/, without .crt/.key) of an identity's client certificate."""
        return "client-" + identity.key.replace(":", "-")

    def ensure_client(self, identity: Identity) -> tuple[bytes, bytes]:
        """A client certificate of the cluster CA for ``identity`` (CN the user, O its groups, as kube
        reads them), issued unless a current one exists; returns its PEM certificate and key."""
        name = self.client_cert_name(identity)
        self.ensure_leaf(name, common_name=identity.user, organizations=identity.groups, client=True)
        return self.serving_cert(name).read_bytes(), self.serving_key(name).read_bytes()

    # --- tokens ----------------------------------------------------------------------------------

    def read_tokens(self) -> dict[str, str]:
        """Identity key -> token."""
        if not self.tokens.exists():
            return {}
        out: dict[str, str] = {}
        for row in csv.reader(io.StringIO(self.tokens.read_text())):
            if len(row) >= 3 and not row[0].startswith("#"):
                out[row[2]] = row[0]
        return out

    def ensure_tokens(self, identities: Sequence[Identity]) -> dict[str, str]:
        """A token for every identity (existing ones kept); returns identity key -> token."""
        tokens = self.read_tokens()
        missing = [i for i in identities if i.key not in tokens]
        if missing or not self.tokens.exists():
            for identity in missing:
                tokens[identity.key] = secrets.token_urlsafe(32)
            known = {i.key: i for i in identities}
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            for key, token in sorted(tokens.items()):
                found = known.get(key)
                if found is not None:
                    writer.writerow([token, found.user, found.key, ",".join(found.groups)])
            _write_private(self.tokens, buffer.getvalue().encode())
        return tokens
