"""The proxy's own errors at its host boundary (nft and ip): the tool's message, its failure chained."""

from __future__ import annotations

from agents.machinery.errors import KubelabError


class ProxyError(KubelabError):
    """The host did not take a change the proxy asked for."""


class NftError(ProxyError):
    """``nft`` refused the ruleset or could not run; the message is nft's own."""


class RouteError(ProxyError):
    """``ip route`` could not list, add or remove a route."""
