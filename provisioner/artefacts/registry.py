"""Putting images into the lab's registry: the built-in ones at ``up``, a user's with ``kubelab image push``.

Archives are copied with skopeo (Debian package), which reads both OCI image-layout tars and
``docker save`` tars. Names follow the registry's own layout of Docker Hub names, so that a node whose
containerd mirrors docker.io through the lab registry finds ``busybox`` as ``library/busybox``.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from agents.machinery.imagerefs import full_reference, split_reference
from provisioner.artefacts import containerimages, oci
from provisioner.errors import HostError, SpecError
from provisioner.system.waiting import Heartbeat, indented

PARALLEL_PUSHES = 3  # built-in images copied at once
PUSH_TIMEOUT = 300.0  # one image copied into a lab's registry (a VM lab's under software emulation is slow)
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
ACCEPT = ", ".join(
    [
        oci.MANIFEST_TYPE,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


@dataclass(frozen=True)
class ArchiveImage:
    """One image in an archive: how skopeo names it in the archive, and where it goes."""

    source: str  # skopeo's source reference, e.g. oci-archive:/x.tar:1.0
    repository: str  # in the registry, e.g. library/busybox
    tag: str
    digest: str  # the manifest's digest as the archive states it ("" for docker archives)


def repository_of(reference: str) -> tuple[str, str]:
    """``busybox:1.35`` -> (``library/busybox``, ``1.35``); ``registry.lab:5000/team/app`` ->
    (``team/app``, ``latest``): the path a registry stores the image under."""
    full = full_reference(reference)
    name, tag = split_reference(full)
    return name.split("/", 1)[1], tag


def images_in(path: Path, *, rename: str = "") -> list[ArchiveImage]:
    """The images of an OCI or docker archive; ``rename`` (``name:tag``) names the only image."""
    if not path.is_file():
        raise SpecError(f"{path}: no such file (give an image archive, or the name of a built-in image)")
    try:
        with tarfile.open(path) as tar:
            names = set(tar.getnames())
            if "index.json" in names and "oci-layout" in names:
                index = json.load(_member(tar, "index.json"))
                found = []
                for descriptor in index.get("manifests") or []:
                    annotations = descriptor.get("annotations") or {}
                    ref = annotations.get(oci.CONTAINERD_NAME) or annotations.get(oci.REF_NAME) or ""
                    if ref:
                        tag_in_archive = annotations.get(oci.REF_NAME) or ref
                        repo, tag = repository_of(ref)
                        found.append(
                            ArchiveImage(f"oci-archive:{path}:{tag_in_archive}", repo, tag, descriptor["digest"])
                        )
                if not found and len(index.get("manifests") or []) == 1:
                    found.append(ArchiveImage(f"oci-archive:{path}", "", "", index["manifests"][0]["digest"]))
                return _renamed(found, rename, path)
            if "manifest.json" in names:
                manifest = json.load(_member(tar, "manifest.json"))
                found = []
                for i, entry in enumerate(manifest):
                    for ref in entry.get("RepoTags") or []:
                        repo, tag = repository_of(ref)
                        found.append(ArchiveImage(f"docker-archive:{path}:{ref}", repo, tag, ""))
                    if not entry.get("RepoTags"):
                        found.append(ArchiveImage(f"docker-archive:{path}:@{i}", "", "", ""))
                return _renamed(found, rename, path)
    except tarfile.ReadError as exc:
        raise SpecError(f"{path}: not a tar archive (give an OCI or docker-save image archive)") from exc
    except (tarfile.TarError, OSError, ValueError, KeyError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError(f"{path}: not a readable image archive ({reason})") from exc
    raise SpecError(f"{path}: neither an OCI image layout (index.json, oci-layout) nor a docker save archive")


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    handle = tar.extractfile(name)
    if handle is None:
        raise KeyError(name)
    return handle


def _renamed(found: list[ArchiveImage], rename: str, path: Path) -> list[ArchiveImage]:
    if rename:
        distinct = {f.digest or f.source for f in found}  # one image under several tags is one image
        if len(distinct) != 1:
            raise SpecError(f"{path}: holds {len(distinct)} images; --as names exactly one")
        repo, tag = repository_of(rename)
        if not _REPOSITORY.match(repo) or not _TAG.match(tag):
            raise SpecError(
                f"--as {rename!r}: use lower-case name parts (a-z, 0-9, '.', '_', '-') joined by '/',"
                " and a tag of letters, digits, '.', '_' or '-', e.g. team/app:1.0"
            )
        return [ArchiveImage(found[0].source, repo, tag, found[0].digest)]
    unnamed = [f for f in found if not f.repository]
    if unnamed:
        raise SpecError(f"{path}: an image in it has no name; give one with --as NAME:TAG")
    if not found:
        raise SpecError(f"{path}: holds no images")
    return found


def stored_digest(registry: str, repository: str, tag: str) -> str:
    """The digest the registry has for ``repository:tag`` ("" when it has none)."""
    request = urllib.request.Request(
        f"{registry}/v2/{repository}/manifests/{tag}", method="HEAD", headers={"Accept": ACCEPT}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(response.headers.get("Docker-Content-Digest") or "")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return ""
        raise HostError(f"the lab registry answered {exc.code} for {repository}:{tag}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise HostError(f"the lab registry at {registry} does not answer; is the lab up? ({exc})") from exc


def push(
    images: Sequence[ArchiveImage], *, registry: str, say: Callable[[str], None] = print, force: bool = False
) -> list[str]:
    """Copy each image into the registry (skipped when it already holds that digest); return what
    was copied as ``repository:tag``."""
    if shutil.which("skopeo") is None:
        raise HostError("skopeo is missing; install it with: apt-get install -y skopeo")
    host = registry.split("://", 1)[-1]
    copied = []
    for image in images:
        if not force and image.digest and stored_digest(registry, image.repository, image.tag) == image.digest:
            continue
        destination = f"docker://{host}/{image.repository}:{image.tag}"
        command = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", image.source, destination]
        try:
            with Heartbeat(f"skopeo to copy {image.repository}:{image.tag} to {host}", indented(say)):
                done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=PUSH_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise HostError(
                f"copying {image.repository}:{image.tag} into the lab registry at {host} did not finish within"
                f" {PUSH_TIMEOUT:.0f}s; is the registry up? see: kubelab status"
            ) from exc
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise HostError(f"copying {image.repository}:{image.tag} into the lab registry failed: {last[0]}")
        copied.append(f"{image.repository}:{image.tag}")
        say(f"  registry: pushed {image.repository}:{image.tag}")
    return copied


def _call(request: urllib.request.Request, what: str) -> tuple[bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(request, timeout=PUSH_TIMEOUT) as response:
            return response.read(), dict(response.headers.items())
    except urllib.error.HTTPError as exc:
        raise HostError(f"the lab registry answered {exc.code} to {what}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise HostError(f"the lab registry does not answer ({what}: {exc}); is the lab up?") from exc


def tag(registry: str, source: str, alias: str) -> bool:
    """Make ``alias`` (a reference such as ``registry.k8s.io/pause:3.10``) name the image that
    ``source`` (``repository:tag`` in the registry) names, through the registry's own API: the blobs
    are mounted into the alias's repository from the source's (no data moves), then the same manifest
    is put under the alias's tag. Returns whether anything changed."""
    repository, reference = source.rsplit(":", 1)
    to_repository, to_tag = repository_of(alias)
    body, headers = _call(
        urllib.request.Request(f"{registry}/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT}),
        f"GET {source}",
    )
    digest = headers.get("Docker-Content-Digest", "")
    if digest and stored_digest(registry, to_repository, to_tag) == digest:
        return False
    manifest = json.loads(body)
    if to_repository != repository:
        for blob in [manifest.get("config") or {}, *(manifest.get("layers") or [])]:
            if not blob.get("digest"):
                continue
            mount = urllib.parse.urlencode({"mount": blob["digest"], "from": repository})
            _call(
                urllib.request.Request(f"{registry}/v2/{to_repository}/blobs/uploads/?{mount}", method="POST"),
                f"mount {blob['digest'][:19]} into {to_repository}",
            )
    content_type = headers.get("Content-Type") or manifest.get("mediaType") or oci.MANIFEST_TYPE
    _call(
        urllib.request.Request(
            f"{registry}/v2/{to_repository}/manifests/{to_tag}",
            data=body,
            method="PUT",
            headers={"Content-Type": content_type},
        ),
        f"PUT {to_repository}:{to_tag}",
    )
    return True


def publish(
    built: containerimages.Built, *, registry: str, say: Callable[[str], None], force: bool = False
) -> list[str]:
    """A built-in image into the registry: copied once (skopeo) under its archive's first reference,
    then tagged under the others (``name:latest``) and its aliases; returns what was pushed or tagged
    as ``repository:tag``."""
    images = images_in(built.archive)
    pushed = push(images[:1], registry=registry, say=say, force=force)
    source = f"{images[0].repository}:{images[0].tag}"
    others = [f"{image.repository}:{image.tag}" for image in images[1:]]
    for alias in [*others, *built.aliases]:
        if tag(registry, source, alias):  # counted in the caller's summary, not a line each
            repository, alias_tag = repository_of(alias)
            pushed.append(f"{repository}:{alias_tag}")
    return pushed


def publish_builtin(registry: str, *, say: Callable[[str], None]) -> str:
    """The built-in images, built or taken from the cache, pushed into ``registry``; returns a line
    saying which, how many tags were pushed and how long it took (what both drivers print)."""
    began = time.monotonic()
    built = containerimages.build_all(say=lambda msg: say(f"  images: {msg}"))
    # a few at once: each copy waits on the registry (on a VM lab, an emulated CPU hashing the blobs)
    said: dict[str, list[str]] = {image.name: [] for image in built}
    with concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL_PUSHES) as pool:
        copies = [pool.submit(publish, image, registry=registry, say=said[image.name].append) for image in built]
        results = [copy.result() for copy in copies]
    pushed = [reference for result in results for reference in result]
    for image in built:  # what each copy said, in the images' order
        for line in said[image.name]:
            say(line)
    names = ", ".join(f"{b.name}:{b.tag}" for b in built)
    return f"{names} ({len(pushed)} pushed, {time.monotonic() - began:.1f}s)"
