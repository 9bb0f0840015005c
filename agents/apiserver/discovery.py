"""API discovery documents: /api, /apis, /apis/GROUP, /api(s)/.../VERSION, and aggregated discovery.

kubectl 1.32 asks for aggregated discovery (apidiscovery.k8s.io/v2) first, which lists every group,
version and resource in two responses instead of one per group-version.
"""

from __future__ import annotations

import hashlib
from typing import Any

from agents.apiserver.resources import SUBRESOURCE_VERBS, Catalog, Resource

AGGREGATED_MEDIA = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

_SUBRESOURCE_KIND = {
    "scale": ("autoscaling", "v1", "Scale"),
    "binding": ("", "v1", "Binding"),
    "token": ("authentication.k8s.io", "v1", "TokenRequest"),
    "eviction": ("policy", "v1", "Eviction"),  # kubectl drain looks for this kind to evict, not delete
}


def _storage_hash(resource: Resource) -> str:
    return hashlib.sha256(f"{resource.group}/{resource.version}/{resource.kind}".encode()).hexdigest()[:11]


def _api_resource(resource: Resource) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": list(resource.verbs),
        "storageVersionHash": _storage_hash(resource),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    return entry


def _subresource_kind(resource: Resource, sub: str) -> tuple[str, str, str]:
    return _SUBRESOURCE_KIND.get(sub, (resource.group, resource.version, resource.kind))


def resource_list(catalog: Catalog, group: str, version: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for resource in catalog.in_group_version(group, version):
        resources.append(_api_resource(resource))
        for sub in resource.subresources:
            sub_group, sub_version, kind = _subresource_kind(resource, sub)
            entry = {
                "name": f"{resource.plural}/{sub}",
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": kind,
                "verbs": list(SUBRESOURCE_VERBS[sub]),
            }
            if sub_group != resource.group or sub_version != resource.version:
                entry["group"], entry["version"] = sub_group, sub_version
            resources.append(entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def api_versions(address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def group_list(catalog: Catalog) -> dict[str, Any]:
    groups = [_group(name, versions) for name, versions in catalog.groups().items() if name]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(catalog: Catalog, name: str) -> dict[str, Any] | None:
    versions = catalog.groups().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def _discovery_resource(resource: Resource) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource.plural,
        "responseKind": {"group": resource.group, "version": resource.version, "kind": resource.kind},
        "scope": "Namespaced" if resource.namespaced else "Cluster",
        "singularResource": resource.singular,
        "verbs": list(resource.verbs),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    if resource.subresources:
        entry["subresources"] = []
        for sub in resource.subresources:
            g, v, kind = _subresource_kind(resource, sub)
            entry["subresources"].append(
                {
                    "subresource": sub,
                    "responseKind": {"group": g, "version": v, "kind": kind},
                    "verbs": list(SUBRESOURCE_VERBS[sub]),
                }
            )
    return entry


def aggregated(catalog: Catalog, *, core: bool) -> dict[str, Any]:
    """The APIGroupDiscoveryList for /api (core) or /apis (named groups)."""
    items = []
    for name, versions in catalog.groups().items():
        if bool(name) == core:
            continue
        items.append(
            {
                "metadata": {"name": name, "creationTimestamp": None},
                "versions": [
                    {
                        "version": v,
                        "freshness": "Current",
                        "resources": [_discovery_resource(r) for r in catalog.in_group_version(name, v)],
                    }
                    for v in versions
                ],
            }
        )
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}
