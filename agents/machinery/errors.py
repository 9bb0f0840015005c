"""The root of the exception hierarchy every agent raises and catches.

Each component owns the errors of its own I/O boundaries (the API server's storage and Status
errors, the kubelet's runtime errors, ...) and derives them from these two, so a caller can tell
an error of ours from a bug, and a temporary failure from a permanent one.
"""

from __future__ import annotations


class KubelabError(Exception):
    """Base of every error kubelab raises on purpose."""


class TemporaryError(KubelabError):
    """Retrying later may succeed (a peer is down, a connection broke)."""
