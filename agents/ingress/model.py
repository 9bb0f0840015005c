"""What nginx is told, as values: servers of locations that send requests to an upstream of
endpoints or answer with a fixed status. :mod:`agents.ingress.planner` makes them from the API's
objects, :mod:`agents.ingress.nginxconf` writes them in nginx's language."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    """Where a location sends its requests: ``upstream`` with ``endpoints`` (``ip:port``), or, when
    ``status`` is not 0, a fixed answer (503: no usable endpoint, ``problem`` says why; 404: no route)."""

    name: str  # what the Ingress named: default/web:80
    upstream: str = ""
    endpoints: tuple[str, ...] = ()
    status: int = 0
    problem: str = ""
    warning: str = ""  # the reason of the warning event the problem deserves ("" for none)


NOT_FOUND = Backend("default backend", status=404)


@dataclass(frozen=True)
class Location:
    exact: bool  # ``location = path`` (else a prefix location)
    path: str
    backend: Backend
    source: str  # the Ingress it came from, namespace/name, and its path type

    @property
    def nginx_key(self) -> tuple[bool, str]:
        return (self.exact, self.path)


@dataclass(frozen=True)
class Tls:
    secret: str  # namespace/name
    path: str  # the file holding the certificate chain and the key


@dataclass(frozen=True)
class Server:
    host: str  # "" for the catch-all server
    locations: tuple[Location, ...]
    tls: Tls | None = None
