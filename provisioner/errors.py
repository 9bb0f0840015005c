"""Errors the CLI reports to the user as one line, without a traceback."""

from __future__ import annotations


class ProvisionError(Exception):
    """A user-facing failure: the message says what is wrong and how to fix it."""


class HostError(ProvisionError):
    """The host lacks a capability (a package, root, a free port)."""


class SpecError(ProvisionError):
    """The lab spec (flags or lab.yaml) is invalid."""


class ComponentError(ProvisionError):
    """A component did not start or did not become healthy."""
