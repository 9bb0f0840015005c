"""Client certificates: the API server's authenticator, the CSR kind, the signer's plan, the host's
kubeconfigs and ``kubelab user add``'s request."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agents.apiserver.kinds.certificates import CertificateSigningRequestStrategy
from agents.apiserver.resources import Catalog
from agents.apiserver.server import ApiServer
from agents.apiserver.x509 import CertificateAuthenticator, user_of
from agents.controllers import csrcleaner, csrsigning
from agents.controllers.settings import ControllerManagerSettings
from agents.machinery.client import ClientConfig
from agents.machinery.resources import CERTIFICATE_SIGNING_REQUESTS
from provisioner.lab import kubeconfig, users
from provisioner.lab.pki import ADMIN, Pki, node_identity
from tests.support.controllerharness import running

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)


def _ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    cn: str,
    orgs: tuple[str, ...] = (),
    *,
    days: tuple[int, int] = (-1, 1),
    usage: Any = ExtendedKeyUsageOID.CLIENT_AUTH,
) -> bytes:
    ca_cert, ca_key = _ca()
    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    if cn:
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(NOW + dt.timedelta(days=days[0]))
        .not_valid_after(NOW + dt.timedelta(days=days[1]))
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_a_client_certificate_names_its_user_by_cn_and_groups_by_o_while_it_is_valid() -> None:
    auth = CertificateAuthenticator(clock=lambda: NOW)
    user = auth.authenticate(_leaf("system:node:w1", ("system:nodes",)))
    assert user is not None and (user.name, user.groups) == ("system:node:w1", ("system:nodes",))
    assert auth.authenticate(_leaf("old", days=(-3, -1))) is None  # expired: 401, not a TLS alert
    assert auth.authenticate(_leaf("early", days=(1, 3))) is None  # not valid yet
    assert auth.authenticate(_leaf("", ("devs",))) is None  # no name
    assert auth.authenticate(_leaf("web", usage=ExtendedKeyUsageOID.SERVER_AUTH)) is None  # not for clients
    assert auth.authenticate(_leaf("any-usage", usage=None)) is not None  # no usage named: any
    assert auth.authenticate(b"not DER") is None
    assert auth.authenticate(None) is None


def test_a_cached_certificate_is_refused_once_it_expires() -> None:
    now = [NOW]
    auth = CertificateAuthenticator(clock=lambda: now[0])
    der = _leaf("jane")
    assert auth.authenticate(der) is not None
    now[0] = NOW + dt.timedelta(days=2)
    assert auth.authenticate(der) is None


def _csr_pem(cn: str = "jane", orgs: tuple[str, ...] = ("devs",)) -> bytes:
    return users.request(cn, orgs)[1]


def _csr(**spec: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "request": base64.b64encode(_csr_pem()).decode(),
        "signerName": csrsigning.CLIENT,
        "usages": ["client auth"],
    }
    fields.update(spec)
    return {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "jane"},
        "spec": fields,
    }


def _strategy() -> CertificateSigningRequestStrategy:
    resource = Catalog().lookup("certificates.k8s.io", "v1", "certificatesigningrequests")
    assert resource is not None
    return CertificateSigningRequestStrategy(resource)


def test_a_request_must_hold_a_pem_certificate_request_a_signer_and_known_usages() -> None:
    strategy = _strategy()
    assert strategy.validate(_csr()) == []
    fields = {e.field: e.detail for e in strategy.validate(_csr(request=base64.b64encode(b"junk").decode()))}
    assert fields == {"spec.request": "PEM block type must be CERTIFICATE REQUEST"}
    assert [e.field for e in strategy.validate(_csr(signerName=""))] == ["spec.signerName"]
    assert [e.field for e in strategy.validate(_csr(signerName="no-slash"))] == ["spec.signerName"]
    short = strategy.validate(_csr(expirationSeconds=599))
    assert short[0].detail == "may not specify a duration less than 600 seconds (10 minutes)"
    assert [e.field for e in strategy.validate(_csr(usages=["client auth", "flying"]))] == ["spec.usages[1]"]


def test_approved_and_denied_exclude_each_other_and_an_approval_stays() -> None:
    strategy = _strategy()
    old = _csr()
    old["status"] = {"conditions": [{"type": "Approved", "status": "True"}]}
    both = _csr()
    both["status"] = {"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}
    assert any("mutually exclusive" in e.detail for e in strategy.validate_status(both, old))
    gone = _csr()
    gone["status"] = {"conditions": []}
    assert any("may not remove a condition of type 'Approved'" in e.detail for e in strategy.validate_status(gone, old))


def test_the_object_itself_changes_only_metadata() -> None:
    strategy = _strategy()
    old = _csr()
    old["status"] = {"certificate": "x"}
    new = _csr(signerName="example.com/other")
    new["status"] = {}
    strategy.prepare_update(new, old)
    assert new["spec"] == old["spec"] and new["status"] == {"certificate": "x"}


def _approved(csr: dict[str, Any]) -> dict[str, Any]:
    return users.approved(csr, NOW)


def test_the_signer_issues_only_approved_requests_it_may_sign() -> None:
    assert csrsigning.plan(_csr()) == csrsigning.Plan()  # pending
    assert csrsigning.plan(_approved(_csr())) == csrsigning.Plan(sign=True)
    other = _approved(_csr(signerName="example.com/mine"))
    assert csrsigning.plan(other) == csrsigning.Plan()  # another signer's
    issued = _approved(_csr())
    issued["status"]["certificate"] = "done"
    assert csrsigning.plan(issued) == csrsigning.Plan()
    server = csrsigning.plan(_approved(_csr(usages=["client auth", "server auth"])))
    assert server.failure == "invalid usage for client certificate: server auth"
    assert csrsigning.plan(_approved(_csr(usages=["digital signature"]))).failure == (
        "missing required usages: client auth"
    )
    kubelet = _approved(_csr(signerName=csrsigning.KUBELET_CLIENT))
    assert "system:nodes" in csrsigning.plan(kubelet).failure


def test_an_issued_certificate_carries_the_requests_subject_and_lasts_what_was_asked() -> None:
    ca_cert, ca_key = _ca()
    request = x509.load_pem_x509_csr(_csr_pem("jane", ("devs", "ops")))
    pem = csrsigning.issue(request, ca_cert, ca_key, now=NOW, seconds=3600)
    cert = x509.load_pem_x509_certificate(pem)
    cert.verify_directly_issued_by(ca_cert)
    user = user_of(cert)
    assert user is not None and (user.name, user.groups) == ("jane", ("devs", "ops"))
    assert cert.not_valid_after_utc == NOW + dt.timedelta(hours=1)
    assert cert.not_valid_before_utc == NOW - dt.timedelta(minutes=5)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # never past the CA's own end
    long = csrsigning.issue(request, ca_cert, ca_key, now=NOW, seconds=1e10)
    assert x509.load_pem_x509_certificate(long).not_valid_after_utc == ca_cert.not_valid_after_utc


def test_components_and_the_admin_get_client_certificates_in_kubes_identities(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    pki.ensure_ca()
    cert_pem, key_pem = pki.ensure_client(node_identity("w1"))
    cert = x509.load_pem_x509_certificate(cert_pem)
    user = user_of(cert)
    assert user is not None and (user.name, user.groups) == ("system:node:w1", ("system:nodes",))
    assert pki.ensure_client(node_identity("w1")) == (cert_pem, key_pem)  # kept while current
    pki.ensure_tokens([ADMIN])
    admin_cert = pki.ensure_client(ADMIN)
    text = kubeconfig.render(
        cluster="lab", server="https://127.0.0.1:6443", ca_pem=b"CA", user="a", client_cert=admin_cert
    )
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    user_entry = yaml.safe_load(text)["users"][0]["user"]
    assert set(user_entry) == {"client-certificate-data", "client-key-data"}
    config = ClientConfig.from_kubeconfig(path)
    assert config.client_cert == admin_cert and config.token == ""
    # tools that send only bearer tokens find the same user's static token
    assert kubeconfig.bearer_token(path) == pki.read_tokens()[ADMIN.key]


def test_user_names_and_groups_are_checked_before_anything_is_sent() -> None:
    users.check_name("jane@example.com", ["devs"])
    for name, groups, words in (
        ("", [], "user name ''"),
        ("a b", [], "user name 'a b'"),
        ("jane", ["system:masters"], "kube's own identities"),
        ("jane", ["a,b"], "group 'a,b'"),
    ):
        with pytest.raises(users.UserError, match=words):
            users.check_name(name, groups)
    key_pem, request_pem = users.request("jane", ["devs"])
    request = x509.load_pem_x509_csr(request_pem)
    assert request.is_signature_valid
    assert request.subject.rfc4514_string() == "CN=jane,O=devs"
    assert b"PRIVATE KEY" in key_pem


def test_the_cleaner_keeps_a_request_an_hour_after_a_decision_a_day_undecided_and_not_past_its_certificate() -> None:
    created = {"creationTimestamp": "2026-12-06T10:00:00Z", "name": "jane"}
    pending = {**_csr(), "metadata": created}
    assert csrcleaner.remaining(pending, NOW) == dt.timedelta(hours=22)  # created two hours before NOW
    denied = {
        **pending,
        "status": {"conditions": [{"type": "Denied", "status": "True", "lastUpdateTime": "2026-12-06T11:30:00Z"}]},
    }
    assert csrcleaner.remaining(denied, NOW) == dt.timedelta(minutes=30)
    approved = {
        **pending,
        "status": {"conditions": [{"type": "Approved", "status": "True", "lastUpdateTime": "2026-12-06T10:30:00Z"}]},
    }
    assert csrcleaner.remaining(approved, NOW) == dt.timedelta(hours=22)  # approved, not issued: as pending
    ca_cert, ca_key = _ca()
    request = x509.load_pem_x509_csr(_csr_pem())
    short = csrsigning.issue(request, ca_cert, ca_key, now=NOW - dt.timedelta(hours=2), seconds=600)
    issued = {**approved, "status": {**approved["status"], "certificate": base64.b64encode(short).decode()}}
    assert csrcleaner.remaining(issued, NOW) < dt.timedelta(0)  # the certificate expired an hour and 50 min ago
    broken = {**pending, "metadata": {"name": "x", "creationTimestamp": "yesterday"}}
    assert csrcleaner.remaining(broken, NOW) == dt.timedelta(hours=24)  # an unreadable time counts from now


async def test_the_signer_issues_an_approved_request_and_the_cleaner_deletes_it_an_hour_after(
    server: ApiServer, tmp_path: Path
) -> None:
    """The controllers' syncs against an API server: kubectl's approval (an hour and more ago, by its
    time stamp), the signer's certificate, then the cleaner's delete; a request denied now stays."""
    ca_cert, ca_key = _ca()
    (tmp_path / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    key_pem = ca_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "ca.key").write_bytes(key_pem)
    settings = ControllerManagerSettings(
        cluster_signing_cert_file=tmp_path / "ca.crt", cluster_signing_key_file=tmp_path / "ca.key"
    )
    kinds = (csrsigning.CsrSigningController, csrcleaner.CsrCleanerController)
    async with running(server, *kinds, settings=settings) as lab:
        for name, decision, when in (
            ("old", "Approved", dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)),
            ("recent", "Denied", dt.datetime.now(dt.UTC)),
        ):
            created = await lab.create(CERTIFICATE_SIGNING_REQUESTS, {**_csr(), "metadata": {"name": name}})
            condition = {
                "type": decision,
                "status": "True",
                "reason": "Test",
                "lastUpdateTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            await lab.client.update(
                CERTIFICATE_SIGNING_REQUESTS, {**created, "status": {"conditions": [condition]}}, subresource="approval"
            )

        async def gone() -> bool:
            # the cleaner counts an approval only once the certificate is issued: gone means signed first
            return await lab.get(CERTIFICATE_SIGNING_REQUESTS, "old") is None

        await lab.eventually(gone, what="the approved request signed, then deleted")
        recent = await lab.get(CERTIFICATE_SIGNING_REQUESTS, "recent")
        assert recent is not None and "certificate" not in (recent.get("status") or {})
