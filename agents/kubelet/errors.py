"""The kubelet's own errors at its host boundaries: CNI plugins and network namespaces.

A CNI plugin that fails writes a JSON error (``code``, ``msg``, ``details``) on stdout; ``CniError``
carries those fields as they were given, with the failed process chained as the cause. Code 11 is the
spec's "try again later", so it (and a plugin that timed out) is a ``TemporaryError``.
"""

from __future__ import annotations

from agents.machinery.errors import KubelabError, TemporaryError

# CNI spec, "Error": well-known codes 1-99 are reserved by the spec.
CNI_TRY_AGAIN_LATER = 11


class KubeletError(KubelabError):
    """The node did not do what the kubelet asked of it."""


class CniError(KubeletError):
    """A CNI plugin failed; ``msg`` and ``details`` are the plugin's own words."""

    def __init__(self, *, plugin: str, command: str, msg: str, code: int | None = None, details: str = "") -> None:
        text = f"CNI {command} of plugin {plugin} failed"
        if code is not None:
            text += f" (code {code})"
        text += f": {msg}"
        if details:
            text += f" ({details})"
        super().__init__(text)
        self.plugin = plugin
        self.command = command
        self.code = code
        self.msg = msg
        self.details = details


class CniTemporaryError(CniError, TemporaryError):
    """The plugin asked to be retried later (code 11) or did not answer in time."""


class SandboxError(KubeletError):
    """A pod sandbox's network namespace or state file could not be made, read or removed."""
