"""kube's CertificateApproval, CertificateSigning and the CSR's requester: who may do what to a
CertificateSigningRequest beyond what RBAC says of the object itself.

Approving or denying (the ``approval`` subresource) needs ``approve`` on ``signers`` in
certificates.k8s.io, named by the request's signer or its domain's wildcard (``kubernetes.io/*``);
setting the certificate (the ``status`` subresource) needs ``sign`` there. ``system:masters`` holds
both. On create, the request is stamped with the user who sent it.
"""

from __future__ import annotations

from agents.apiserver.auth import User, with_authenticated
from agents.apiserver.authorization import Authorizer, may
from agents.apiserver.kinds import certificates
from agents.apiserver.resources import Resource
from agents.machinery.objects import Object, name_of

QUALIFIED = "certificatesigningrequests.certificates.k8s.io"


def stamp(resource: Resource, user: User | None, body: Object) -> None:
    """Write the requesting user into a new CSR's spec (what the client put there is replaced)."""
    if resource.qualified == QUALIFIED and user is not None:
        certificates.stamp_requester(body, user.name, user.uid, list(with_authenticated(user.groups)))


def _may(authorizer: Authorizer, user: User, verb: str, signer: str) -> bool:
    return any(
        may(authorizer, user, verb, certificates.GROUP, "signers", name=name)
        for name in certificates.signer_names(signer)
    )


def check(
    authorizer: Authorizer, user: User | None, resource: Resource, *, subresource: str, new: Object, old: Object
) -> None:
    """Refuse (403) an approval or a signature the user may not give."""
    if resource.qualified != QUALIFIED or user is None:
        return
    signer = certificates.signer_of(old)
    if subresource == "approval":
        verb = "approve"
    elif subresource == "status" and (new.get("status") or {}).get("certificate") != (old.get("status") or {}).get(
        "certificate"
    ):
        verb = "sign"
    else:
        return
    if not _may(authorizer, user, verb, signer):
        raise certificates.not_permitted(verb, name_of(old), signer)
