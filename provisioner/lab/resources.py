"""What a lab has on this host, and whose it is: the pure decisions of ``up``, ``down`` and ``list``.

A ``Resource`` is one thing a lab made outside its state directory: a libvirt domain, network or
storage pool, a process, a network namespace, an nftables table, a directory. The drivers find them
(each knows where its own are) and remove them; which of them belong to a lab, which to nobody
(orphans) and what ``up`` must refuse is decided here, from the resources and the labs' identities.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from provisioner.lab.identity import Identity
from provisioner.lab.spec import LabSpec


@dataclass(frozen=True)
class Resource:
    kind: str  # e.g. "libvirt domain", "process", "network namespace"
    name: str  # its own name (a domain name, "etcd (pid 4242)", a path)
    lab: str  # the lab it names
    uid: str  # the identity stamped on it; "" where it carries none (older labs, foreign things)
    driver: str  # which driver finds and removes it: libvirt or local

    def describe(self) -> str:
        stamp = f", uid {self.uid[:8]}" if self.uid else ", no kubelab identity"
        return f"{self.kind} {self.name} (lab {self.lab}{stamp})"


# what a lab cannot change once made: it would orphan what it has, or give its nodes other addresses
FIXED = ("driver", "network_cidr", "service_cidr", "cluster_cidr")


def refused_change(saved: LabSpec | None, wanted: LabSpec) -> str | None:
    """Why ``up`` with ``wanted`` must not touch a lab made as ``saved`` (None: it may)."""
    if saved is None:
        return None
    for field in FIXED:
        before, after = getattr(saved, field), getattr(wanted, field)
        if before != after:
            key = field.replace("_", "-")
            return (
                f"lab {saved.name!r} was made with {key} {before}, not {after}; a lab keeps its {key}:"
                f" remove it first with: kubelab down --name {saved.name}"
            )
    return None


def not_ours(found: Iterable[Resource], identity: Identity | None) -> list[Resource]:
    """Of the resources named after a lab, those that are not the lab's own. A lab that exists
    (``identity``) owns what carries its identity and what carries none (namespaces, pools and
    directories are known by name only; so are the resources of a lab made before identities);
    what carries another identity is another lab's. A lab not made yet owns nothing."""
    if identity is None:
        return list(found)
    return [r for r in found if r.uid and r.uid != identity.uid]


def refused_resources(lab: str, foreign: Sequence[Resource]) -> str:
    """The one line ``up`` prints when resources named after ``lab`` are not its own."""
    shown = ", ".join(r.describe() for r in foreign[:4])
    more = f" and {len(foreign) - 4} more" if len(foreign) > 4 else ""
    return (
        f"lab {lab!r} would take over what is not its own: {shown}{more};"
        f" remove them first with: kubelab down --name {lab} (or kubelab down --orphans)"
    )


def orphans(found: Iterable[Resource], labs: Mapping[str, Identity | None]) -> list[Resource]:
    """Resources that belong to no lab: their lab does not exist (no state), or it exists with
    another identity. A lab whose state is damaged (no identity) keeps what carries its name."""
    out = []
    for resource in found:
        if resource.lab not in labs:
            out.append(resource)
            continue
        identity = labs[resource.lab]
        if identity is not None and resource.uid and resource.uid != identity.uid:
            out.append(resource)
    return out
