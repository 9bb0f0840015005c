"""Image references as containerd and kubelets name them: ``busybox`` is
``docker.io/library/busybox:latest`` (used by the kubelet and by the host's image tools)."""

from __future__ import annotations


def split_reference(reference: str) -> tuple[str, str]:
    """``registry/name:tag`` -> (``registry/name``, ``tag``); the tag defaults to ``latest``."""
    if ":" in reference.rsplit("/", 1)[-1]:
        name, tag = reference.rsplit(":", 1)
        return name, tag
    return reference, "latest"


def _full_name(name: str) -> str:
    first = name.split("/", 1)[0]
    if "/" not in name:
        return f"docker.io/library/{name}"
    if not ("." in first or ":" in first or first == "localhost"):
        return f"docker.io/{name}"
    return name


def full_reference(reference: str) -> str:
    """The complete reference: registry, repository and tag (or digest, which then stands alone)."""
    if "@" in reference:
        name, digest = reference.split("@", 1)
        return f"{_full_name(split_reference(name)[0])}@{digest}"
    name, tag = split_reference(reference)
    return f"{_full_name(name)}:{tag}"
