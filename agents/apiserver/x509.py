"""Client certificates as identities, as kube-apiserver's ``--client-ca-file`` makes them.

The TLS handshake asks every client for a certificate and, when one is sent, checks that the CA in
``client-ca-file`` signed it; a client without one goes on to bearer tokens. The handshake does not
look at the certificate's dates (OpenSSL's ``X509_V_FLAG_NO_CHECK_TIME``): an expired certificate
would otherwise end the connection with a TLS alert, where kube answers ``401 Unauthorized``. This
module looks at them instead, per request, and at the extended key usage (``clientAuth``, or none
named). The subject's common name is the user, each organization a group: ``CN=system:node:w1,
O=system:nodes`` is the kubelet of node w1.

A certificate from another CA still ends at the handshake (``unknown ca``): Python's ``ssl`` module
cannot let a handshake go on past a chain it failed to verify.
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agents.apiserver.auth import User

# OpenSSL's X509_V_FLAG_NO_CHECK_TIME: verify the chain, leave the dates to ``CertificateAuthenticator``
NO_CHECK_TIME = 0x200000
_CACHE_LIMIT = 1024


def request_client_certificates(context: ssl.SSLContext, client_ca_file: Path) -> None:
    """Make ``context`` (a server's) ask for a client certificate and verify it against the CA file."""
    context.load_verify_locations(cafile=str(client_ca_file))
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= NO_CHECK_TIME


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _for_clients(cert: x509.Certificate) -> bool:
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True  # no usage named: any
    return ExtendedKeyUsageOID.CLIENT_AUTH in usages or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages


def user_of(cert: x509.Certificate) -> User | None:
    """The user a certificate names: CN the name, O the groups; None without a name."""
    names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if not names or not names[0]:
        return None
    groups = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return User(names[0], "", groups)


class CertificateAuthenticator:
    """The user of a client certificate the handshake verified (DER), while it is valid."""

    def __init__(self, clock: Callable[[], dt.datetime] = _now) -> None:
        self._clock = clock
        # DER -> (user or None for unusable, not before, not after): parsing once per certificate
        self._known: dict[bytes, tuple[User | None, dt.datetime, dt.datetime]] = {}

    def authenticate(self, der: bytes | None) -> User | None:
        if not der:
            return None
        known = self._known.get(der)
        if known is None:
            try:
                cert = x509.load_der_x509_certificate(der)
            except ValueError:
                return None
            user = user_of(cert) if _for_clients(cert) else None
            known = (user, cert.not_valid_before_utc, cert.not_valid_after_utc)
            if len(self._known) >= _CACHE_LIMIT:
                self._known.clear()
            self._known[der] = known
        user, not_before, not_after = known
        now = self._clock()
        if user is None or not not_before <= now <= not_after:
            return None
        return user


def peer_certificate(ssl_object: object) -> bytes | None:
    """The DER certificate the client sent on this connection, if it sent one."""
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    return ssl_object.getpeercert(binary_form=True)
