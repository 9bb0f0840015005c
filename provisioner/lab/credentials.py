"""A lab's identities, issued once for either driver: the CA, the API server's serving certificate,
etcd's CA and certificates (``Pki.ensure_etcd``), the front proxy's (``Pki.ensure_front_proxy``), each
kubelet's serving certificate, a client certificate and the kubeconfig of every component and of the
admin, and a static token per identity (kept for tools that speak only bearer tokens: the API
benchmark's load generator, the fuzzer).

What differs between the drivers is only where things are (the addresses in the certificates, the
API server's URL as the components and as the admin reach it); ``Credentials`` says that, ``issue``
makes everything that is missing or stale and keeps what is current.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.lab import kubeconfig
from provisioner.lab.paths import LabPaths
from provisioner.lab.pki import (
    ADMIN,
    APISERVER_KUBELET,
    CONTROLLER_MANAGER,
    PROXY,
    SCHEDULER,
    TRACE_COLLECTOR,
    Identity,
    Pki,
    node_identity,
)

# the names the API server answers to, inside the cluster and out
API_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class KubeletServing:
    """A kubelet's serving certificate (``kubectl logs``/``exec`` reach it over TLS)."""

    cert: str  # file name under pki/ (without .crt/.key)
    node: str
    dns_names: tuple[str, ...]
    ips: tuple[str, ...]


@dataclass(frozen=True)
class Credentials:
    lab: str
    api_dns_names: tuple[str, ...]  # besides API_DNS_NAMES
    api_ips: tuple[str, ...]
    kubelets: tuple[KubeletServing, ...]
    components: tuple[tuple[str, Identity], ...]  # (kubeconfig owner under config/, identity)
    component_server: str  # the API server's URL as the components reach it
    admin_server: str  # the API server's URL as the admin (this host) reaches it
    etcd_dns_names: tuple[str, ...] = ("localhost",)  # the names and addresses etcd serves on
    etcd_ips: tuple[str, ...] = ("127.0.0.1",)

    @property
    def identities(self) -> list[Identity]:
        found = [ADMIN, APISERVER_KUBELET, *(identity for _owner, identity in self.components)]
        unique: dict[str, Identity] = {}
        for identity in found:
            unique.setdefault(identity.key, identity)
        return list(unique.values())


def standard_components(nodes: Sequence[str], *, kubelet_owner: str | None = None) -> list[tuple[str, Identity]]:
    """The control plane's and the node agents' kubeconfig owners, in kube's own identities; the
    kubelets' kubeconfigs are named ``kubelet-<node>`` unless ``kubelet_owner`` names the only one."""
    owners: list[tuple[str, Identity]] = [
        ("scheduler", SCHEDULER),
        ("controller-manager", CONTROLLER_MANAGER),
        ("proxy", PROXY),
        ("trace-collector", TRACE_COLLECTOR),
    ]
    for node in nodes:
        owners.append((kubelet_owner or f"kubelet-{node}", node_identity(node)))
    return owners


def issue(credentials: Credentials, paths: LabPaths) -> bool:
    """Everything ``credentials`` describes, under the lab's pki/ and config/; returns whether the CA
    was created now (a new lab) rather than reused."""
    pki = Pki(paths.pki)
    created = pki.ensure_ca()
    pki.ensure_serving(dns_names=[*API_DNS_NAMES, *credentials.api_dns_names], ips=list(credentials.api_ips))
    pki.ensure_etcd(dns_names=credentials.etcd_dns_names, ips=credentials.etcd_ips)
    pki.ensure_front_proxy()
    pki.ensure_service_account_key()
    pki.ensure_encryption_config()
    for kubelet in credentials.kubelets:
        pki.ensure_serving(
            name=kubelet.cert, common_name=kubelet.node, dns_names=list(kubelet.dns_names), ips=list(kubelet.ips)
        )
    tokens = pki.ensure_tokens(credentials.identities)
    # the token the API server presents to kubelets, which they accept (kubectl logs, exec)
    client = paths.pki / "apiserver-kubelet-client.token"
    client.write_text(tokens[APISERVER_KUBELET.key] + "\n")
    client.chmod(0o600)
    ca = pki.ca_cert.read_bytes()
    # the admin and every component authenticate by a client certificate of the cluster CA
    for owner, identity in credentials.components:
        text = kubeconfig.render(
            cluster=credentials.lab,
            server=credentials.component_server,
            ca_pem=ca,
            user=identity.user,
            client_cert=pki.ensure_client(identity),
        )
        kubeconfig.write(paths.kubeconfig_of(owner), text)
    admin = kubeconfig.render(
        cluster=credentials.lab,
        server=credentials.admin_server,
        ca_pem=ca,
        user=f"{credentials.lab}-admin",
        client_cert=pki.ensure_client(ADMIN),
    )
    kubeconfig.write(paths.kubeconfig, admin)
    return created
