"""CSR cleaner: CertificateSigningRequests do not pile up, as kube-controller-manager's csrcleaner keeps it.

A request is deleted an hour after it was approved (with its certificate issued), denied or failed,
a day after it was created when nobody decided on it, and once the certificate it carries has
expired. ``remaining`` says how long a request has left; ``sync`` deletes it when that is nothing, and
otherwise looks again when it will be.
"""

from __future__ import annotations

import base64
from datetime import datetime, timedelta

from cryptography import x509

from agents.controllers.base import Context, Controller
from agents.machinery.client import ApiError
from agents.machinery.objects import Object, parse_time
from agents.machinery.resources import CERTIFICATE_SIGNING_REQUESTS

DECIDED = timedelta(hours=1)  # approved and issued, denied, failed
PENDING = timedelta(hours=24)


def _time(stamp: object) -> datetime | None:
    try:
        return parse_time(stamp) if isinstance(stamp, str) and stamp else None
    except ValueError:
        return None


def _condition_time(csr: Object, kind: str) -> datetime | None:
    for condition in (csr.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status", "True") == "True":
            return _time(condition.get("lastUpdateTime") or condition.get("lastTransitionTime"))
    return None


def _certificate_end(csr: Object) -> datetime | None:
    encoded = (csr.get("status") or {}).get("certificate")
    if not encoded:
        return None
    try:
        return x509.load_pem_x509_certificate(base64.b64decode(encoded)).not_valid_after_utc
    except ValueError:
        return None


def remaining(csr: Object, now: datetime) -> timedelta:
    """How long the request is kept from ``now`` (zero or less: delete it)."""
    created = _time((csr.get("metadata") or {}).get("creationTimestamp")) or now
    ends = [created + PENDING]
    issued = (csr.get("status") or {}).get("certificate")
    for kind in ("Denied", "Failed", *(("Approved",) if issued else ())):
        decided = _condition_time(csr, kind)
        if decided is not None:
            ends.append(decided + DECIDED)
    expiry = _certificate_end(csr)
    if expiry is not None:
        ends.append(expiry)
    return min(ends) - now


class CsrCleanerController(Controller):
    name = "csrcleaner"
    workers = 1

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.requests = ctx.informer(CERTIFICATE_SIGNING_REQUESTS)
        self.requests.on_any(lambda csr: self.queue.add(csr["metadata"]["name"]))

    async def sync(self, key: str) -> None:
        csr = self.requests.get(key)
        if csr is None:
            return
        left = remaining(csr, self.now()).total_seconds()
        if left > 0:
            self.queue.add_after(key, left + 1)
            return
        try:
            await self.client.delete(CERTIFICATE_SIGNING_REQUESTS, key)
        except ApiError as exc:
            if exc.code != 404:
                raise
