"""Lab spec, certificates and tokens, kubeconfig and templates, without starting anything."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioner.errors import SpecError
from provisioner.lab import kubeconfig, render, spec
from provisioner.lab.pki import ADMIN, SCHEDULER, Pki, node_identity


def test_spec_layers_defaults_file_and_flags(tmp_path: Path) -> None:
    lab_file = tmp_path / "lab.yaml"
    lab_file.write_text("name: demo\napi-port: 7443\netcd-port: 7379\n")
    built = spec.build(lab_file, {"api_port": 8443, "driver": None})
    assert (built.name, built.api_port, built.etcd_port, built.etcd_peer_port) == ("demo", 8443, 7379, 2380)
    saved = spec.LabSpec(name="demo", api_port=9443)
    assert spec.build(None, {"name": None}, base=saved).api_port == 9443
    assert spec.service_ip(built) == "10.96.0.1"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "-x"}, "lowercase letters"),
        ({"driver": "vbox"}, "choose one of libvirt, local"),
        ({"api_port": 70000}, "between 1 and 65535"),
        ({"service_cidr": "10.96.0.0/30"}, "at least /28"),
        ({"node_port_range": "3-2"}, "expected LOW-HIGH"),
        ({"api_port": "many"}, "expected a number"),
    ],
)
def test_bad_specs_are_one_clear_error(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        spec.build(None, overrides)


def test_certificates_cover_the_names_and_are_reused(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    assert pki.ensure_ca() is True and pki.ensure_ca() is False
    assert pki.ensure_serving(dns_names=["localhost", "kubernetes"], ips=["127.0.0.1", "10.96.0.1"]) is True
    assert pki.ensure_serving(dns_names=["localhost", "kubernetes"], ips=["127.0.0.1", "10.96.0.1"]) is False
    cert = x509.load_pem_x509_certificate(pki.apiserver_cert.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "kubernetes"]
    assert ipaddress.ip_address("10.96.0.1") in sans.get_values_for_type(x509.IPAddress)
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert pki.ensure_serving(dns_names=["localhost"], ips=["127.0.0.1"]) is True  # other names: reissued
    assert oct(pki.apiserver_key.stat().st_mode & 0o777) == "0o600"


def test_etcd_has_its_own_ca_and_its_clients_certificates_come_from_it(tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    pki.ensure_ca()
    pki.ensure_etcd(dns_names=["m", "localhost"], ips=["192.168.1.10", "127.0.0.1"])

    def load(name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate((tmp_path / "pki" / f"{name}.crt").read_bytes())

    def usage(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
        return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)

    etcd_ca, cluster_ca = load("etcd-ca"), load("ca")
    assert etcd_ca.subject != cluster_ca.subject
    server = load("etcd-server")
    server.verify_directly_issued_by(etcd_ca)
    assert usage(server) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}  # peers are clients
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("192.168.1.10") in sans.get_values_for_type(x509.IPAddress)
    for client, user in (("apiserver-etcd-client", "kube-apiserver-etcd-client"), ("etcd-healthcheck-client", None)):
        cert = load(client)
        cert.verify_directly_issued_by(etcd_ca)
        with pytest.raises(ValueError):
            cert.verify_directly_issued_by(cluster_ca)  # the cluster CA's certificates do not open etcd
        assert usage(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
        if user:
            assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == user
        assert oct((tmp_path / "pki" / f"{client}.key").stat().st_mode & 0o777) == "0o600"
    before = (tmp_path / "pki" / "apiserver-etcd-client.crt").read_bytes()
    pki.ensure_etcd(dns_names=["m", "localhost"], ips=["192.168.1.10", "127.0.0.1"])
    assert (tmp_path / "pki" / "apiserver-etcd-client.crt").read_bytes() == before  # current: kept
    (tmp_path / "pki" / "etcd-ca.crt").unlink()  # a new etcd CA: every etcd certificate is issued again
    pki.ensure_etcd(dns_names=["m", "localhost"], ips=["192.168.1.10", "127.0.0.1"])
    load("apiserver-etcd-client").verify_directly_issued_by(load("etcd-ca"))


def test_tokens_are_stable_per_identity(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    first = pki.ensure_tokens([ADMIN, SCHEDULER])
    second = pki.ensure_tokens([ADMIN, SCHEDULER, node_identity("worker-1")])
    assert second[ADMIN.key] == first[ADMIN.key] and len(second) == 3
    rows = [line.split(",", 3) for line in pki.tokens.read_text().splitlines()]
    assert any(r[1] == "system:node:worker-1" and r[3] == "system:nodes" for r in rows)
    assert oct(pki.tokens.stat().st_mode & 0o777) == "0o600"


def test_kubeconfig_is_what_kubectl_reads() -> None:
    text = kubeconfig.render(
        cluster="lab", server="https://127.0.0.1:6443", ca_pem=b"PEM", user="lab-admin", token="t0k3n"
    )
    doc = yaml.safe_load(text)
    assert doc["current-context"] == "lab"
    assert doc["clusters"][0]["cluster"]["certificate-authority-data"] == "UEVN"
    assert doc["users"][0]["user"]["token"] == "t0k3n"


def test_generated_files_carry_the_header() -> None:
    text = render.render(
        "etcd/etcd.conf.yml.j2",
        etcd_name="m",
        etcd_data_dir="/d",
        etcd_listen_address="1.2.3.4",
        etcd_advertise_address="1.2.3.4",
        etcd_client_port=1,
        etcd_peer_port=2,
        etcd_cert_file="/p/etcd-server.crt",
        etcd_key_file="/p/etcd-server.key",
        etcd_trusted_ca_file="/p/etcd-ca.crt",
        lab_name="x",
    )
    assert text.startswith("# generated by kubelab, do not edit")
    assert yaml.safe_load(text)["listen-client-urls"] == "https://1.2.3.4:1"
