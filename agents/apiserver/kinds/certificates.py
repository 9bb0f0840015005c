"""Strategy for certificates.k8s.io/v1 CertificateSigningRequest, and the checks kube's CSR admission makes.

A request carries a PEM ``CERTIFICATE REQUEST`` (base64 in JSON) and the signer it is meant for. On
create the API server writes who asked into ``spec.username``, ``uid`` and ``groups`` (whatever the
client sent there is replaced). ``spec`` never changes afterwards. The ``approval`` subresource
changes only ``status.conditions`` (Approved, Denied), and only for a user allowed to ``approve``
the signer (the ``signers`` resource, named by the signer or its domain with ``/*``); the ``status``
subresource sets ``status.certificate``, and only for a user allowed to ``sign`` for it.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from cryptography import x509

from agents.apiserver.kinds.base import Strategy
from agents.apiserver.status import StatusError, forbidden_object, invalid, not_supported, required
from agents.apiserver.validation import Errors
from agents.machinery.objects import Object

GROUP = "certificates.k8s.io"
KUBE_APISERVER_CLIENT = "kubernetes.io/kube-apiserver-client"
KUBE_APISERVER_CLIENT_KUBELET = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
MIN_EXPIRATION = 600
USAGES = (
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
)
CONDITION_TYPES = ("Approved", "Denied", "Failed")
_SIGNER = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.:]*[A-Za-z0-9])?")


def request_pem(obj: Object) -> bytes:
    """The PEM bytes of ``spec.request`` (base64 in JSON); empty when it is not base64."""
    try:
        return base64.b64decode(str((obj.get("spec") or {}).get("request") or ""), validate=True)
    except (binascii.Error, ValueError):
        return b""


def parse_request(pem: bytes) -> x509.CertificateSigningRequest:
    """The certificate request in ``pem``; ValueError in kube's words when it is not one."""
    if b"-----BEGIN CERTIFICATE REQUEST-----" not in pem:
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    return x509.load_pem_x509_csr(pem)


def conditions(obj: Object) -> list[dict[str, Any]]:
    return [c for c in (obj.get("status") or {}).get("conditions") or [] if isinstance(c, dict)]


def has_condition(obj: Object, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status", "True") == "True" for c in conditions(obj))


def stamp_requester(obj: Object, user: str, uid: str, groups: list[str]) -> None:
    """Write who asked into the request's spec, as kube does on create."""
    spec = obj.setdefault("spec", {})
    if isinstance(spec, dict):
        spec["username"], spec["groups"] = user, groups
        spec.pop("extra", None)
        if uid:
            spec["uid"] = uid
        else:
            spec.pop("uid", None)


def signer_of(obj: Object) -> str:
    return str((obj.get("spec") or {}).get("signerName") or "")


def signer_names(signer: str) -> tuple[str, str]:
    """The names a ``signers`` rule may carry for this signer: itself and its domain's wildcard."""
    return signer, signer.split("/", 1)[0] + "/*"


def not_permitted(verb: str, name: str, signer: str) -> StatusError:
    """A refused approval (``verb`` approve) or signature (sign), in kube's admission wording."""
    return forbidden_object(
        "certificatesigningrequests", GROUP, name, f'user not permitted to {verb} requests with signerName "{signer}"'
    )


def _status_errors(obj: Object, old: Object | None) -> Errors:
    out: Errors = []
    found: set[str] = set()
    for i, condition in enumerate(conditions(obj)):
        kind = condition.get("type", "")
        path = f"status.conditions[{i}]"
        if not kind:
            out.append(required(f"{path}.type"))
            continue
        if kind in CONDITION_TYPES:
            if condition.get("status", "True") != "True":
                out.append(not_supported(f"{path}.status", condition.get("status", ""), ("True",)))
            if kind in found:
                out.append(invalid(f"{path}.type", kind, "duplicate type"))
        found.add(kind)
    if {"Approved", "Denied"} <= found:
        out.append(invalid("status.conditions", "", "Approved and Denied conditions are mutually exclusive"))
    if old is not None:
        for kind in ("Approved", "Denied"):
            if has_condition(old, kind) and kind not in found:
                out.append(invalid("status.conditions", "", f"updates may not remove a condition of type {kind!r}"))
    certificate = (obj.get("status") or {}).get("certificate")
    if certificate:
        try:
            pem = base64.b64decode(str(certificate), validate=True)
            x509.load_pem_x509_certificates(pem)
        except (binascii.Error, ValueError):
            out.append(invalid("status.certificate", "<certificate data>", "must contain PEM certificates"))
        if old is not None and (old.get("status") or {}).get("certificate") not in (None, "", certificate):
            out.append(
                invalid(
                    "status.certificate", "<certificate data>", "updates may not modify existing certificate content"
                )
            )
    return out


class CertificateSigningRequestStrategy(Strategy):
    def prepare_create(self, obj: Object) -> None:
        obj.pop("status", None)

    def validate(self, obj: Object) -> Errors:
        out: Errors = []
        spec = obj.get("spec") or {}
        if not spec.get("request"):
            out.append(required("spec.request"))
        else:
            try:
                parse_request(request_pem(obj))
            except ValueError as exc:
                out.append(invalid("spec.request", "<request data>", str(exc) or "not a certificate request"))
        signer = str(spec.get("signerName") or "")
        if not signer:
            out.append(required("spec.signerName"))
        elif not _SIGNER.fullmatch(signer) or len(signer) > 571:
            out.append(
                invalid(
                    "spec.signerName",
                    signer,
                    "must be a fully qualified domain and path of the form 'example.com/signer-name'",
                )
            )
        seconds = spec.get("expirationSeconds")
        if seconds is not None and (not isinstance(seconds, int) or seconds < MIN_EXPIRATION):
            out.append(
                invalid(
                    "spec.expirationSeconds", seconds, "may not specify a duration less than 600 seconds (10 minutes)"
                )
            )
        usages = spec.get("usages") or []
        for i, usage in enumerate(usages):
            if usage not in USAGES:
                out.append(not_supported(f"spec.usages[{i}]", usage, USAGES))
        if len(set(map(str, usages))) != len(usages):
            out.append(invalid("spec.usages", usages, "usages must not contain duplicates"))
        out += _status_errors(obj, None)
        return out

    def prepare_update(self, new: Object, old: Object) -> None:
        """Only metadata changes through the object itself: spec and status are kept."""
        for part in ("spec", "status"):
            if part in old:
                new[part] = old[part]
            else:
                new.pop(part, None)

    def validate_update(self, new: Object, old: Object) -> Errors:
        return []

    def validate_status(self, new: Object, old: Object) -> Errors:
        return _status_errors(new, old)
