"""Content negotiation: which representation a client accepts and what a request body is."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from agents.apiserver.status import not_acceptable

TABLE = "table"
PARTIAL = "partial"
JSON = "json"
YAML = "yaml"


@dataclass(frozen=True)
class MediaType:
    type: str
    params: dict[str, str]

    @property
    def essence(self) -> str:
        return self.type


def parse(header: str) -> list[MediaType]:
    out = []
    for part in header.split(","):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        params = {}
        for piece in pieces[1:]:
            key, _, value = piece.partition("=")
            params[key.strip().lower()] = value.strip()
        out.append(MediaType(pieces[0].lower(), params))
    return out


@lru_cache(maxsize=256)
def output(accept: str | None) -> str:
    """The representation to answer with: JSON, YAML, a Table, or PartialObjectMetadata."""
    if not accept:
        return JSON
    for media in parse(accept):
        as_ = media.params.get("as")
        if media.type in ("application/json", "*/*", "application/*") and as_:
            if media.params.get("g") == "meta.k8s.io" and media.params.get("v") in ("v1", "v1beta1"):
                if as_ == "Table":
                    return TABLE
                if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
                    return PARTIAL
            continue
        if media.type in ("application/json", "*/*", "application/*"):
            return JSON
        if media.type == "application/yaml":
            return YAML
    raise not_acceptable(
        f"only the following media types are accepted: application/json, application/yaml,"
        f" application/json;as=Table;v=v1;g=meta.k8s.io (asked for {accept})"
    )


def wants_aggregated_discovery(accept: str | None) -> bool:
    for media in parse(accept or ""):
        if (
            media.params.get("as") == "APIGroupDiscoveryList"
            and media.params.get("g") == "apidiscovery.k8s.io"
            and media.params.get("v") == "v2"
        ):
            return True
        if media.type in ("application/json", "*/*"):
            return False
    return False


def content_type(header: str | None) -> str:
    return (header or "").split(";")[0].strip().lower()
