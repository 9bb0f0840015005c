"""The add-on manager: makes a lab's cluster run exactly its enabled add-ons (kube's addon-manager,
run by ``kubelab up`` and ``kubelab addons enable|disable`` instead of a pod on the master).

For every enabled add-on: its images are built (or taken from the cache) and put into the lab
registry, its manifests rendered, and then, in two passes over all of them, each object is first
sent with ``dryRun=All`` (so a manifest the API server refuses stops everything with one line that
names the file, before anything changed) and then created, or replaced when what was last applied
differs (an annotation carries the digest of the applied manifest, so an unchanged add-on writes
nothing and its Deployment does not roll). Every object of a disabled add-on is deleted (its pods
go with their owners through the garbage collector).
"""

from __future__ import annotations

import copy
import hashlib
import json
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.addons import catalog
from provisioner.addons.catalog import Addon, Manifest
from provisioner.artefacts import containerimages, registry
from provisioner.errors import ProvisionError, SpecError
from provisioner.lab.apiclient import Answer, LabApi
from provisioner.lab.paths import LabPaths
from provisioner.lab.spec import LabSpec, cluster_dns_ip

ADDON_LABEL = "addonmanager.kubelab.io/addon"
DIGEST_ANNOTATION = "addonmanager.kubelab.io/applied-digest"
REPLICAS = 2


def values_for(spec: LabSpec, images: Mapping[str, str]) -> dict[str, Any]:
    return {
        "cluster_dns": cluster_dns_ip(spec),
        "cluster_domain": "cluster.local",
        "service_cidr": spec.service_cidr,
        "replicas": REPLICAS,
        "images": dict(images),
    }


def desired(manifest: Manifest, addon: str) -> dict[str, Any]:
    """The object as applied: the manifest with the add-on's label and the digest of the manifest."""
    body = copy.deepcopy(manifest.body)
    digest = hashlib.sha256(json.dumps(manifest.body, sort_keys=True).encode()).hexdigest()[:16]
    meta = body["metadata"]
    meta["labels"] = {**(meta.get("labels") or {}), ADDON_LABEL: addon}
    meta["annotations"] = {**(meta.get("annotations") or {}), DIGEST_ANNOTATION: digest}
    return body


@dataclass
class Discovery:
    """Where each kind lives in the API (from the API server's discovery, once per group version)."""

    api: LabApi
    _known: dict[str, dict[str, tuple[str, bool]]] = field(default_factory=dict)

    def collection(self, manifest: Manifest) -> str:
        version = manifest.api_version
        base = f"/api/{version}" if "/" not in version else f"/apis/{version}"
        if version not in self._known:
            answer = self.api.ask("GET", base, timeout=10)
            if answer.code != 200:
                raise SpecError(f"{manifest.where()}: apiVersion {version!r} is not served ({answer.error})")
            self._known[version] = {
                str(r["kind"]): (str(r["name"]), bool(r.get("namespaced")))
                for r in answer.body.get("resources") or []
                if "/" not in str(r.get("name", ""))
            }
        found = self._known[version].get(manifest.kind)
        if found is None:
            raise SpecError(f"{manifest.where()}: no kind {manifest.kind!r} in {version}")
        plural, namespaced = found
        if namespaced:
            namespace = manifest.namespace or "default"
            return f"{base}/namespaces/{namespace}/{plural}"
        return f"{base}/{plural}"


@dataclass(frozen=True)
class Applied:
    created: int = 0
    replaced: int = 0
    unchanged: int = 0


def _refused(manifest: Manifest, answer: Answer) -> Exception:
    if 400 <= answer.code < 500 and answer.code not in (401, 403, 404, 409):
        return SpecError(f"{manifest.where()}: {answer.error}")
    return ProvisionError(f"the API server did not take {manifest.where()}: {answer.error}")


def _apply(api: LabApi, discovery: Discovery, manifest: Manifest, addon: str, *, dry_run: bool) -> str:
    """``created``, ``replaced`` or ``unchanged`` (what was, or with ``dry_run`` would be, done)."""
    collection = discovery.collection(manifest)
    body = desired(manifest, addon)
    query = "?" + urllib.parse.urlencode({"dryRun": "All"}) if dry_run else ""
    current = api.ask("GET", f"{collection}/{manifest.name}", timeout=10)
    if current.code == 404:
        answer = api.ask("POST", collection + query, body=body, timeout=15)
        if answer.code not in (200, 201):
            raise _refused(manifest, answer)
        return "created"
    if current.code != 200:
        raise _refused(manifest, current)
    annotations = (current.body.get("metadata") or {}).get("annotations") or {}
    if annotations.get(DIGEST_ANNOTATION) == body["metadata"]["annotations"][DIGEST_ANNOTATION]:
        return "unchanged"
    body["metadata"]["resourceVersion"] = current.body["metadata"]["resourceVersion"]
    if manifest.kind == "Service":  # the allocated addresses stay unless the manifest names them
        for key in ("clusterIP", "clusterIPs"):
            if key in (current.body.get("spec") or {}) and key not in body.get("spec", {}):
                body.setdefault("spec", {})[key] = current.body["spec"][key]
    answer = api.ask("PUT", f"{collection}/{manifest.name}{query}", body=body, timeout=15)
    if answer.code != 200:
        raise _refused(manifest, answer)
    return "replaced"


def _images(addon: Addon, registry_url: str, say: Callable[[str], None]) -> dict[str, str]:
    """The add-on's images into the lab registry; recipe name -> reference for its manifests."""
    references = {}
    if addon.images:
        for built in containerimages.build_all(addon.images, say=lambda msg: say(f"  addons: {msg}")):
            registry.publish(built, registry=registry_url, say=say)
            references[built.name] = f"{built.name}:{built.tag}"
    return references


def publish_images(registry_url: str, paths: LabPaths, *, say: Callable[[str], None]) -> dict[str, str]:
    """The enabled add-ons' images into the lab registry; recipe name -> reference."""
    known = catalog.load()
    references: dict[str, str] = {}
    for name in catalog.enabled(known, catalog.read_choices(paths.root)):
        references.update(_images(known[name], registry_url, say))
    return references


def converge(
    api: LabApi,
    registry_url: str,
    spec: LabSpec,
    paths: LabPaths,
    *,
    say: Callable[[str], None],
    images: Mapping[str, str] | None = None,
) -> None:
    """Enabled add-ons applied, disabled ones removed; one line per add-on. ``images``: the
    references :func:`publish_images` gave (pushed already), else the images are pushed now."""
    known = catalog.load()
    on = catalog.enabled(known, catalog.read_choices(paths.root))
    planned: list[tuple[str, Manifest]] = []
    for name in on:
        needed = known[name].images
        if images is not None and all(image in images for image in needed):
            references = {image: images[image] for image in needed}
        else:
            references = _images(known[name], registry_url, say)
        values = values_for(spec, references)
        planned += [(name, m) for m in catalog.render(known[name], values)]
    discovery = Discovery(api)
    # The whole plan is checked before anything is written. A dry run into a namespace that does not
    # exist yet is refused, so the plan's own Namespaces are made first, and taken back if the check fails.
    made: list[Manifest] = []
    for name, manifest in planned:
        namespace = (manifest.api_version, manifest.kind) == ("v1", "Namespace")
        if namespace and _apply(api, discovery, manifest, name, dry_run=False) == "created":
            made.append(manifest)
    try:
        for name, manifest in planned:
            _apply(api, discovery, manifest, name, dry_run=True)
    except ProvisionError:
        for manifest in made:
            api.ask("DELETE", f"{discovery.collection(manifest)}/{manifest.name}", timeout=15)
        raise
    done: dict[str, list[str]] = {name: [] for name in on}
    for name, manifest in planned:
        done[name].append(_apply(api, discovery, manifest, name, dry_run=False))
    for name in on:
        counts = {what: done[name].count(what) for what in ("created", "replaced", "unchanged") if what in done[name]}
        summary = ", ".join(f"{n} {what}" for what, n in counts.items())
        say(f"  addons: {name}: {len(done[name])} objects ({summary})")
    for name in sorted(set(known) - set(on)):
        removed = remove(api, discovery, known[name], spec)
        if removed:
            say(f"  addons: {name}: disabled, {removed} objects deleted")


def remove(api: LabApi, discovery: Discovery, addon: Addon, spec: LabSpec) -> int:
    """Deletes every object of the add-on's manifests that exists; returns how many did."""
    placeholders = {image: f"{image}:removed" for image in addon.images}
    removed = 0
    for manifest in reversed(catalog.render(addon, values_for(spec, placeholders))):
        path = f"{discovery.collection(manifest)}/{manifest.name}?propagationPolicy=Background"
        answer = api.ask("DELETE", path, timeout=15)
        if answer.code in (200, 202):
            removed += 1
        elif answer.code != 404:
            raise ProvisionError(f"deleting {manifest.where()} failed: {answer.error}")
    return removed


def status(api: LabApi, addon: Addon, spec: LabSpec) -> str:
    """What runs of the add-on: each Deployment's ready replicas, or whether its objects exist."""
    discovery = Discovery(api)
    parts = []
    present = 0
    placeholders = {image: f"{image}:status" for image in addon.images}
    manifests = catalog.render(addon, values_for(spec, placeholders))
    for manifest in manifests:
        answer = api.ask("GET", f"{discovery.collection(manifest)}/{manifest.name}", timeout=10)
        if answer.code != 200:
            continue
        present += 1
        if manifest.kind in ("Deployment", "StatefulSet", "DaemonSet"):
            status_ = answer.body.get("status") or {}
            wanted = (answer.body.get("spec") or {}).get("replicas", status_.get("desiredNumberScheduled", 0))
            ready = status_.get("readyReplicas", status_.get("numberReady", 0)) or 0
            parts.append(f"{manifest.kind.lower()}/{manifest.name} {ready}/{wanted} ready")
    if not present:
        return "not applied"
    return ", ".join(parts) if parts else f"{present}/{len(manifests)} objects"
