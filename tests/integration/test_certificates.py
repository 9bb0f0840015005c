"""Client certificates on a local lab: the admin and every component authenticate by one; a person gets
one through the CertificateSigningRequest API (the real ``kubectl certificate approve`` and the
controller-manager's signer, or ``kubelab user add``); a bad certificate is 401 or no connection."""

from __future__ import annotations

import base64
import datetime as dt
import json
import ssl
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubelab_testing.kubectl import Kubectl, manifest
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from provisioner.lab import kubeconfig, users

SIGNER = "kubernetes.io/kube-apiserver-client"


def _whoami(kubectl: Kubectl) -> dict[str, object]:
    info: dict[str, object] = json.loads(kubectl.ok("auth", "whoami", "-o", "json"))["status"]["userInfo"]
    return info


def test_the_admin_and_the_components_authenticate_by_client_certificates(
    lab: Lab, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for owner, user, groups in (
        (None, "kubelab-admin", ["system:masters", "system:authenticated"]),
        ("scheduler", "system:kube-scheduler", ["system:authenticated"]),
        ("controller-manager", "system:kube-controller-manager", ["system:authenticated"]),
        ("proxy", "system:kube-proxy", ["system:authenticated"]),
    ):
        path = lab.kubeconfig if owner is None else lab.root / "config" / f"{owner}.kubeconfig"
        entry = yaml.safe_load(path.read_text())["users"][0]["user"]
        assert "client-certificate-data" in entry and "token" not in entry, path
        found = _whoami(Kubectl(path, cache_dir=tmp_path_factory.mktemp("who")))
        assert (found["username"], found["groups"]) == (user, groups)
    kubelet = _whoami(Kubectl(lab.root / "config" / "kubelet.kubeconfig", cache_dir=tmp_path_factory.mktemp("who")))
    assert str(kubelet["username"]).startswith("system:node:")
    assert kubelet["groups"] == ["system:nodes", "system:authenticated"]


def _certificate(directory: Path, cn: str, *, ca: tuple[bytes, bytes] | None, days: tuple[int, int]) -> Path:
    """A client certificate for ``cn`` signed by ``ca`` (PEM cert and key; self-signed without), valid
    from ``days[0]`` to ``days[1]`` days from now; the file holds the certificate and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )
    issuer, signing_key = subject, key
    if ca is not None:
        ca_cert = x509.load_pem_x509_certificate(ca[0])
        issuer, signing_key = ca_cert.subject, serialization.load_pem_private_key(ca[1], None)  # type: ignore[assignment]
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days[0]))
        .not_valid_after(now + dt.timedelta(days=days[1]))
        .sign(signing_key, hashes.SHA256())
    )
    path = directory / f"{cn}.pem"
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key_pem)
    return path


def _get(lab: Lab, cert: Path) -> int:
    context = ssl.create_default_context(cafile=str(lab.root / "pki" / "ca.crt"))
    context.load_cert_chain(str(cert))
    try:
        with urllib.request.urlopen(f"{lab.server}/api/v1/namespaces", context=context, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read())
        assert body["message"] == "Unauthorized" and set(body) >= {"kind", "code"}
        return exc.code


def test_an_expired_certificate_is_401_and_one_of_another_ca_gets_no_connection(lab: Lab, tmp_path: Path) -> None:
    pki = lab.root / "pki"
    ca = ((pki / "ca.crt").read_bytes(), (pki / "ca.key").read_bytes())
    assert _get(lab, _certificate(tmp_path, "current", ca=ca, days=(-1, 1))) == 200
    assert _get(lab, _certificate(tmp_path, "expired", ca=ca, days=(-3, -1))) == 401
    assert _get(lab, _certificate(tmp_path, "early", ca=ca, days=(1, 3))) == 401
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        _get(lab, _certificate(tmp_path, "stranger", ca=None, days=(-1, 1)))


def _csr(name: str, request_pem: bytes, **spec: object) -> str:
    body: dict[str, object] = {
        "request": base64.b64encode(request_pem).decode(),
        "signerName": SIGNER,
        "usages": ["client auth"],
        **spec,
    }
    return manifest(
        {
            "apiVersion": "certificates.k8s.io/v1",
            "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": body,
        }
    )


def test_kubectl_approves_a_request_and_the_controller_manager_signs_it(
    lab: Lab, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> None:
    name = f"ann-{uuid.uuid4().hex[:6]}"
    key_pem, request_pem = users.request(name, ["devs"])
    kubectl.ok("apply", "-f", "-", stdin=_csr(name, request_pem, expirationSeconds=3600))
    row = kubectl.ok("get", "csr", name, "--no-headers").split()
    assert row[2:] == [SIGNER, "kubelab-admin", "60m", "Pending"]
    spec = kubectl.json("get", "csr", name)["spec"]
    assert spec["username"] == "kubelab-admin" and "system:masters" in spec["groups"]  # stamped by the server
    kubectl.ok("certificate", "approve", name)
    eventually(lambda: bool(kubectl.json("get", "csr", name).get("status", {}).get("certificate")), what="signed")
    assert kubectl.ok("get", "csr", name, "--no-headers").split()[-1] == "Approved,Issued"
    pem = base64.b64decode(kubectl.json("get", "csr", name)["status"]["certificate"])
    cert = x509.load_pem_x509_certificate(pem)
    assert cert.subject.rfc4514_string() == f"CN={name},O=devs"
    lasts = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(minutes=64) <= lasts <= dt.timedelta(minutes=66)  # an hour, backdated 5 minutes
    path = tmp_path_factory.mktemp("ann") / "kubeconfig"
    ca = (lab.root / "pki" / "ca.crt").read_bytes()
    path.write_text(kubeconfig.render(cluster="c", server=lab.server, ca_pem=ca, user=name, client_cert=(pem, key_pem)))
    who = json.loads(Kubectl(path, cache_dir=path.parent).ok("auth", "whoami", "-o", "json"))
    assert who["status"]["userInfo"]["username"] == name


def test_the_signer_fails_a_request_it_does_not_issue_and_bad_requests_are_invalid(kubectl: Kubectl) -> None:
    name = f"srv-{uuid.uuid4().hex[:6]}"
    _, request_pem = users.request(name, [])
    kubectl.ok("apply", "-f", "-", stdin=_csr(name, request_pem, usages=["client auth", "server auth"]))
    kubectl.ok("certificate", "approve", name)

    def failed() -> bool:
        conditions = kubectl.json("get", "csr", name).get("status", {}).get("conditions") or []
        return any(c["type"] == "Failed" for c in conditions)

    eventually(failed, what="the signer refuses server auth")
    status = kubectl.json("get", "csr", name)["status"]
    assert "certificate" not in status
    assert [c["message"] for c in status["conditions"] if c["type"] == "Failed"] == [
        "invalid usage for client certificate: server auth"
    ]
    short = kubectl("apply", "-f", "-", stdin=_csr(f"short-{name}", request_pem, expirationSeconds=60))
    assert short.code == 1 and (
        "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)"
        in short.err
    )
    junk = kubectl("apply", "-f", "-", stdin=_csr(f"junk-{name}", b"not a request"))
    assert junk.code == 1 and "spec.request: Invalid value" in junk.err and "CERTIFICATE REQUEST" in junk.err
    assert kubectl("get", "csr", f"short-{name}").code == 1  # nothing stored


def test_kubelab_user_add_and_approval_needs_approve_on_the_signer(
    lab: Lab, kubectl: Kubectl, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    name = f"u{uuid.uuid4().hex[:6]}"
    added = lab.cli("user", "add", name, "--group", "approvers", "--name", lab.name)
    assert added.ok, added.err
    path = lab.root / "users" / f"{name}.kubeconfig"
    assert str(path) in added.out and path.stat().st_mode & 0o777 == 0o600
    person = Kubectl(path, cache_dir=tmp_path_factory.mktemp(name))
    assert _whoami(person) == {"username": name, "groups": ["approvers", "system:authenticated"]}
    refused = person("get", "pods", "-n", namespace)
    assert f'User "{name}" cannot list resource "pods"' in refused.err
    kubectl.ok("create", "rolebinding", f"{name}-view", "--clusterrole=view", f"--user={name}", "-n", namespace)
    eventually(lambda: person("get", "pods", "-n", namespace).code == 0, what="view granted")
    again = lab.cli("user", "add", name, "--name", lab.name)
    assert again.code == 1 and again.err.strip() == (
        f"kubelab: user {name!r} already has a kubeconfig: {path}; remove it first to issue a new one"
    )
    assert lab.cli("user", "add", "bad name", "--name", lab.name).err.count("\n") == 1

    # may update approvals, but not approve for the signer: kube's CertificateApproval refuses
    role = f"{name}-csr"
    kubectl.ok(
        "create",
        "clusterrole",
        role,
        "--verb=get,list,update",
        "--resource=certificatesigningrequests,certificatesigningrequests/approval",
    )
    kubectl.ok("create", "clusterrolebinding", role, f"--clusterrole={role}", "--group=approvers")
    pending = f"p-{name}"
    _, request_pem = users.request(pending, [])
    kubectl.ok("apply", "-f", "-", stdin=_csr(pending, request_pem))
    eventually(lambda: person("get", "csr", pending).code == 0, what="csr readable")
    denied = person("certificate", "approve", pending)
    assert (
        denied.code == 1
        and (
            f'certificatesigningrequests.certificates.k8s.io "{pending}" is forbidden: '
            f'user not permitted to approve requests with signerName "{SIGNER}"'
        )
        in denied.err
    )
    signer = f"{name}-signer"
    rule = {"apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "verbs": ["approve"]}
    rule["resourceNames"] = ["kubernetes.io/*"]  # the signer's domain: kube's wildcard for every signer in it
    kubectl.ok(
        "apply",
        "-f",
        "-",
        stdin=manifest(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": signer},
                "rules": [rule],
            }
        ),
    )
    kubectl.ok("create", "clusterrolebinding", signer, f"--clusterrole={signer}", "--group=approvers")
    eventually(lambda: person("certificate", "approve", pending).code == 0, what="approve granted on kubernetes.io/*")
    for kind, item in (
        ("clusterrolebinding", role),
        ("clusterrolebinding", signer),
        ("clusterrole", role),
        ("clusterrole", signer),
    ):
        kubectl.ok("delete", kind, item)
