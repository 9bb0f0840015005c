"""CSR signing: the controller-manager's signer for ``kubernetes.io/kube-apiserver-client`` (people
and tools) and ``kubernetes.io/kube-apiserver-client-kubelet`` (kubelets), with the cluster CA.

An approved request, not denied or failed and without a certificate yet, is checked against what
its signer issues; a good one gets a certificate with the request's subject (CN the user, O the
groups), valid from five minutes ago for ``spec.expirationSeconds`` (at most
``cluster-signing-duration``, and never past the CA), written to ``status.certificate``. A request the
signer will not issue gets the ``Failed`` condition and its reason. Requests for other signers are
left to theirs. ``plan`` decides; ``issue`` makes the certificate; ``sync`` writes the answer.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agents.controllers.base import Context, Controller, rfc3339
from agents.machinery.client import ApiError
from agents.machinery.objects import Object
from agents.machinery.resources import CERTIFICATE_SIGNING_REQUESTS
from agents.machinery.settings import SettingsError

CLIENT = "kubernetes.io/kube-apiserver-client"
KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
SIGNERS = (CLIENT, KUBELET_CLIENT)
CLIENT_USAGES = frozenset({"digital signature", "key encipherment", "client auth"})
BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Plan:
    sign: bool = False
    failure: str = ""  # the Failed condition's message: the signer refuses this request


def _conditions(csr: Object) -> set[str]:
    status = csr.get("status") or {}
    return {str(c.get("type")) for c in status.get("conditions") or [] if c.get("status", "True") == "True"}


def _request(csr: Object) -> x509.CertificateSigningRequest | None:
    try:
        pem = base64.b64decode(str((csr.get("spec") or {}).get("request") or ""), validate=True)
        return x509.load_pem_x509_csr(pem)
    except ValueError:
        return None


def _names(request: x509.CertificateSigningRequest, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in request.subject.get_attributes_for_oid(oid)]


def refusal(signer: str, request: x509.CertificateSigningRequest | None, usages: list[str]) -> str:
    """Why ``signer`` will not issue this request, or "" when it will."""
    if request is None or not request.is_signature_valid:
        return "the certificate request is not signed by its own key"
    if not _names(request, NameOID.COMMON_NAME) or not _names(request, NameOID.COMMON_NAME)[0]:
        return "subject common name is required"
    extra = sorted(set(usages) - CLIENT_USAGES)
    if extra:
        return f"invalid usage for client certificate: {extra[0]}"
    if "client auth" not in usages:
        return "missing required usages: client auth"
    if signer == KUBELET_CLIENT:
        cn = _names(request, NameOID.COMMON_NAME)[0]
        if not cn.startswith("system:node:") or _names(request, NameOID.ORGANIZATION_NAME) != ["system:nodes"]:
            return 'subject must be "O=system:nodes, CN=system:node:<name>"'
    return ""


def plan(csr: Object) -> Plan:
    """What the signer does with this request now."""
    spec = csr.get("spec") or {}
    signer = str(spec.get("signerName") or "")
    states = _conditions(csr)
    if signer not in SIGNERS or "Approved" not in states or states & {"Denied", "Failed"}:
        return Plan()
    if (csr.get("status") or {}).get("certificate"):
        return Plan()
    reason = refusal(signer, _request(csr), [str(u) for u in spec.get("usages") or []])
    return Plan(failure=reason) if reason else Plan(sign=True)


def issue(
    request: x509.CertificateSigningRequest,
    ca_cert: x509.Certificate,
    ca_key: Any,
    *,
    now: dt.datetime,
    seconds: float,
) -> bytes:
    """The PEM certificate for ``request``: its subject and key, signed by the CA for ``seconds``."""
    not_after = min(now + dt.timedelta(seconds=seconds), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(request.subject)
        .issuer_name(ca_cert.subject)
        .public_key(request.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=isinstance(request.public_key(), rsa.RSAPublicKey),
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class CsrSigningController(Controller):
    name = "csrsigning"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        settings = ctx.settings
        self.duration = settings.cluster_signing_duration
        self.ca_cert: x509.Certificate | None = None
        self.ca_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None
        if settings.cluster_signing_cert_file is not None and settings.cluster_signing_key_file is not None:
            self.ca_cert, self.ca_key = _load_ca(settings.cluster_signing_cert_file, settings.cluster_signing_key_file)
        self.requests = ctx.informer(CERTIFICATE_SIGNING_REQUESTS)
        self.requests.on_any(lambda csr: self.queue.add(csr["metadata"]["name"]))

    async def sync(self, key: str) -> None:
        csr = self.requests.get(key)
        if csr is None or self.ca_cert is None or self.ca_key is None:
            return
        decided = plan(csr)
        now = dt.datetime.now(dt.UTC)
        status = dict(csr.get("status") or {})
        if decided.failure:
            condition = {
                "type": "Failed",
                "status": "True",
                "reason": "SignerValidationFailure",
                "message": decided.failure,
                "lastUpdateTime": rfc3339(now),
                "lastTransitionTime": rfc3339(now),
            }
            status["conditions"] = [*(status.get("conditions") or []), condition]
        elif decided.sign:
            request = _request(csr)
            assert request is not None  # plan checked it
            wanted = (csr.get("spec") or {}).get("expirationSeconds")
            seconds = min(float(wanted), self.duration) if isinstance(wanted, int) else self.duration
            pem = issue(request, self.ca_cert, self.ca_key, now=now, seconds=seconds)
            status["certificate"] = base64.b64encode(pem).decode()
        else:
            return
        try:
            await self.client.update_status(CERTIFICATE_SIGNING_REQUESTS, {**csr, "status": status})
        except ApiError as exc:
            if exc.code not in (404, 409):
                raise


def _load_ca(
    cert_file: Path, key_file: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SettingsError(f"cluster-signing-cert-file/-key-file: cannot load the signing CA: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise SettingsError(f"cluster-signing-key-file: {key_file} is not an ECDSA or RSA key")
    return cert, key
