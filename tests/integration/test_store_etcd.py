"""The storage contract against a real etcd (Debian's etcd-server), over TLS with a client
certificate, as the labs run it; and what etcd does to a client without the right certificate."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agents.apiserver.storage.errors import StorageUnavailableError
from agents.apiserver.storage.etcd import EtcdStore, EtcdTls
from provisioner.drivers.local.components import Etcd
from provisioner.lab import pki
from tests.support.store_contract import StoreContract


def client_tls(etcd: Etcd, client: str = pki.APISERVER_ETCD_CLIENT) -> EtcdTls:
    directory = etcd.paths.pki
    return EtcdTls(
        ca=(directory / f"{pki.ETCD_CA}.crt").read_bytes(),
        cert=(directory / f"{client}.crt").read_bytes(),
        key=(directory / f"{client}.key").read_bytes(),
    )


class TestEtcdStore(StoreContract):
    @pytest.fixture
    async def store(self, etcd: Etcd) -> AsyncIterator[EtcdStore]:
        store = EtcdStore([etcd.endpoint], tls=client_tls(etcd))
        await store.start()
        yield store
        await store.close()


async def test_etcd_refuses_a_client_without_a_certificate_of_its_own_ca(
    etcd: Etcd, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert etcd.endpoint.startswith("https://")
    # a certificate of another CA (as the cluster CA signs nodes' and people's): refused
    other = pki.Pki(tmp_path_factory.mktemp("other-ca"))
    other.ensure_ca(pki.ETCD_CA, "not-etcd-ca")
    other.ensure_leaf("intruder", common_name="intruder", client=True, ca=pki.ETCD_CA)
    ours = client_tls(etcd)
    refused = [
        EtcdTls(ca=ours.ca),  # TLS, no client certificate
        EtcdTls(
            ca=ours.ca, cert=other.serving_cert("intruder").read_bytes(), key=other.serving_key("intruder").read_bytes()
        ),
    ]
    for tls in refused:
        store = EtcdStore([etcd.endpoint], timeout=5, tls=tls)
        with pytest.raises(StorageUnavailableError):
            await store.start()
        await store.close()
    # plaintext against TLS-only etcd: refused too
    plain = EtcdStore([etcd.endpoint.replace("https://", "http://")], timeout=5)
    with pytest.raises(StorageUnavailableError):
        await plain.start()
    await plain.close()
    # the health check's certificate is one of etcd's own: it reads
    health = EtcdStore([etcd.endpoint], timeout=5, tls=client_tls(etcd, pki.ETCD_HEALTHCHECK_CLIENT))
    await health.start()
    assert await health.current_revision() > 0
    await health.close()


def test_an_https_endpoint_without_tls_settings_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="needs etcd's CA"):
        EtcdStore(["https://127.0.0.1:2379"])
