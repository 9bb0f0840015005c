"""Which Ingresses this controller serves (pure): those of an IngressClass whose ``spec.controller``
is its own, as ingress-nginx decides.

An Ingress is served when its ``spec.ingressClassName`` names such a class; an Ingress without that
field is served when its older ``kubernetes.io/ingress.class`` annotation equals the controller's
``--ingress-class`` name, or, when it names no class either way, when one of the controller's classes
is the cluster's default (annotated ``ingressclass.kubernetes.io/is-default-class: "true"``). The API
server's DefaultIngressClass admission fills the field at creation, so the last case covers Ingresses
made before the default class existed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Object = Mapping[str, Any]

CONTROLLER = "kubelab.dev/ingress-nginx"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"


def own_classes(classes: Iterable[Object], controller: str) -> dict[str, bool]:
    """Name -> whether it is the default, for every IngressClass of ``controller``."""
    out: dict[str, bool] = {}
    for cls in classes:
        if (cls.get("spec") or {}).get("controller") != controller:
            continue
        meta = cls.get("metadata") or {}
        default = str((meta.get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION, "")).lower() == "true"
        out[str(meta.get("name") or "")] = default
    return out


def is_served(ingress: Object, own: Mapping[str, bool], *, ingress_class: str) -> bool:
    meta = ingress.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return False
    named = (ingress.get("spec") or {}).get("ingressClassName")
    if named:
        return str(named) in own
    annotated = (meta.get("annotations") or {}).get(CLASS_ANNOTATION)
    if annotated:
        return str(annotated) == ingress_class
    return any(own.values())


def served(
    ingresses: Iterable[Object], classes: Iterable[Object], *, controller: str, ingress_class: str
) -> list[Object]:
    """The Ingresses this controller serves, oldest first (ties by namespace and name): where two
    claim the same host and path, the older one wins, as in ingress-nginx."""
    own = own_classes(classes, controller)
    mine = [ing for ing in ingresses if is_served(ing, own, ingress_class=ingress_class)]
    return sorted(mine, key=age_key)


def age_key(obj: Object) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("creationTimestamp") or ""), str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def key(obj: Object) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"


def keys(objs: Sequence[Object]) -> tuple[str, ...]:
    return tuple(key(o) for o in objs)
