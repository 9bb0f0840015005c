"""Reproducible OCI images: one layer from a list of entries, packed as an OCI image-layout tar.

The same entries always give the same bytes: entries are sorted, every timestamp is the epoch, owners
are root, gzip carries no name or time. That makes an image's digest a function of its inputs, so a
rebuild from the same Debian packages is recognised as the same image by containerd and the registry.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agents.machinery.imagerefs import full_reference, split_reference

LAYOUT_VERSION = "1.0.0"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
EPOCH = "1970-01-01T00:00:00Z"

Kind = Literal["file", "dir", "symlink"]


@dataclass(frozen=True)
class Entry:
    """One path of a layer. ``path`` is absolute inside the image (``/bin/sh``)."""

    path: str
    kind: Kind
    mode: int = 0o644
    data: bytes = b""
    target: str = ""  # for symlinks

    @property
    def name(self) -> str:
        return self.path.strip("/")


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", "sha256:" + hashlib.sha256(self.data).hexdigest())

    def descriptor(self, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
        found: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}
        if annotations:
            found["annotations"] = dict(annotations)
        return found


def with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """The entries plus a directory entry (0755) for every parent that has none, sorted by path."""
    by_path = {e.name: e for e in entries}
    for name in list(by_path):
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            by_path.setdefault(parent, Entry("/" + parent, "dir", 0o755))
    return [by_path[name] for name in sorted(by_path)]


def layer_tar(entries: Iterable[Entry]) -> bytes:
    """An uncompressed layer tar of ``entries`` (parents added), byte-for-byte reproducible."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in with_parents(entries):
            info = tarfile.TarInfo(entry.name)
            info.mode = entry.mode
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = entry.target
                tar.addfile(info)
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    return out.getvalue()


def gzipped(data: bytes) -> bytes:
    """gzip without a file name or timestamp in its header, so equal input gives equal output."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6, filename="") as stream:
        stream.write(data)
    return out.getvalue()


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Image:
    """An image ready to be written: its blobs and the manifest that ties them together."""

    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]

    @property
    def digest(self) -> str:
        return self.manifest.digest

    @property
    def size(self) -> int:
        return len(self.manifest.data) + len(self.config.data) + sum(len(b.data) for b in self.layers)


def build_image(entries: Iterable[Entry], *, config: Mapping[str, Any], labels: Mapping[str, str]) -> Image:
    """One-layer linux/amd64 image of ``entries``; ``config`` is the OCI config's ``config`` object
    (Entrypoint, Cmd, Env, WorkingDir, ExposedPorts)."""
    raw = layer_tar(entries)
    layer = Blob(LAYER_TYPE, gzipped(raw))
    image_config = {
        "created": EPOCH,
        "architecture": "amd64",
        "os": "linux",
        "config": {**config, "Labels": dict(labels)} if labels else dict(config),
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
        "history": [{"created": EPOCH, "created_by": "kubelab image build"}],
    }
    config_blob = Blob(CONFIG_TYPE, canonical_json(image_config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config_blob.descriptor(),
        "layers": [layer.descriptor()],
    }
    return Image(Blob(MANIFEST_TYPE, canonical_json(manifest)), config_blob, (layer,))


def layout_tar(image: Image, *, references: Sequence[str]) -> bytes:
    """An OCI image-layout tar holding ``image`` once per reference (``busybox:1.35.0`` or a full
    ``registry/name:tag``): what ``ctr image import``, ``skopeo copy oci-archive:`` and
    ``docker load`` take."""
    manifests = []
    for reference in references:
        tag = split_reference(reference)[1]
        manifests.append(image.manifest.descriptor({REF_NAME: tag, CONTAINERD_NAME: full_reference(reference)}))
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    entries = [
        Entry("/oci-layout", "file", data=canonical_json({"imageLayoutVersion": LAYOUT_VERSION})),
        Entry("/index.json", "file", data=canonical_json(index)),
    ]
    for blob in (image.manifest, image.config, *image.layers):
        entries.append(Entry("/blobs/sha256/" + blob.digest.split(":", 1)[1], "file", data=blob.data))
    return layer_tar(entries)
