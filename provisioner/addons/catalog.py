"""The add-ons kubelab knows (addons/<name>/ in the repository) and what each one's manifests are
for a lab (pure: reading, rendering and checking, no cluster).

An add-on is a directory: ``addon.yaml`` (``description``, ``default``: enabled on a new lab or
not, ``images``: the built-in image recipes it runs) and Kubernetes manifests, ``*.yaml`` as they
are and ``*.yaml.j2`` rendered with the lab's values (``cluster_dns``, ``cluster_domain``,
``service_cidr``, ``replicas``, ``images``: recipe name -> the reference of the image built now).
Which add-ons a lab runs is its ``addons.json`` (only what differs from the defaults), changed by
``kubelab addons enable|disable``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from provisioner.errors import SpecError
from provisioner.project import ROOT

# the add-ons' directory; KUBELAB_ADDONS_DIR points elsewhere (an add-on of one's own, tests)
ADDONS = Path(os.environ.get("KUBELAB_ADDONS_DIR") or ROOT / "addons")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
STATE_FILE = "addons.json"


@dataclass(frozen=True)
class Addon:
    name: str
    description: str
    default: bool
    images: tuple[str, ...]
    directory: Path

    def manifest_files(self) -> list[Path]:
        return sorted(
            p for p in self.directory.iterdir() if p.name.endswith((".yaml", ".yaml.j2")) and p.name != "addon.yaml"
        )


@dataclass(frozen=True)
class Manifest:
    """One object of an add-on, with the file it came from (for errors that name it)."""

    source: str  # addons/dns/deployment.yaml.j2
    index: int  # its document's position in the file (from 1)
    body: dict[str, Any]

    @property
    def api_version(self) -> str:
        return str(self.body["apiVersion"])

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.body["metadata"].get("namespace") or "")

    def where(self) -> str:
        return f"{self.source} ({self.kind} {self.name})"


def load(directory: Path = ADDONS) -> dict[str, Addon]:
    found: dict[str, Addon] = {}
    for path in sorted(directory.glob("*/addon.yaml")):
        where = str(path.relative_to(directory.parent))
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise SpecError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from exc
        name = path.parent.name
        if not _NAME.match(name):
            raise SpecError(f"{where}: the directory name {name!r} must be a lower-case DNS label")
        if not isinstance(data, dict) or set(data) - {"description", "default", "images"}:
            raise SpecError(f"{where}: give description, default (true or false) and images (recipe names)")
        images = data.get("images") or []
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise SpecError(f"{where}: images: expected a list of image recipe names")
        if not isinstance(data.get("default", False), bool):
            raise SpecError(f"{where}: default: true or false")
        found[name] = Addon(
            name, str(data.get("description") or ""), bool(data.get("default")), tuple(images), path.parent
        )
    return found


# --- which add-ons a lab runs ---------------------------------------------------------------------


def read_choices(lab_root: Path) -> dict[str, bool]:
    try:
        data = json.loads((lab_root / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): bool(v) for k, v in data.items()} if isinstance(data, dict) else {}


def write_choices(lab_root: Path, choices: Mapping[str, bool]) -> None:
    path = lab_root / STATE_FILE
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(dict(sorted(choices.items())), indent=1) + "\n")
    partial.replace(path)


def enabled(known: Mapping[str, Addon], choices: Mapping[str, bool]) -> list[str]:
    return [name for name, addon in sorted(known.items()) if choices.get(name, addon.default)]


def unknown(known: Mapping[str, Addon], names: Sequence[str]) -> str:
    """A line refusing names that are not add-ons ("" when all are)."""
    missing = [n for n in names if n not in known]
    if not missing:
        return ""
    return f"no add-on named {missing[0]!r}; known: {', '.join(sorted(known))} (kubelab addons list)"


# --- manifests ------------------------------------------------------------------------------------


def render(addon: Addon, values: Mapping[str, Any]) -> list[Manifest]:
    """The add-on's objects for a lab; SpecError names the file and what is wrong in it."""
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    out: list[Manifest] = []
    for path in addon.manifest_files():
        source = str(path.relative_to(addon.directory.parent.parent))
        text = path.read_text()
        if path.name.endswith(".j2"):
            try:
                text = env.from_string(text).render(**values)
            except jinja2.TemplateError as exc:
                raise SpecError(f"{source}: cannot be rendered ({exc})") from exc
        try:
            documents = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as exc:
            raise SpecError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from exc
        for index, body in enumerate(documents, start=1):
            out.append(Manifest(source, index, checked(body, f"{source}: document {index}")))
    return out


def checked(body: object, where: str) -> dict[str, Any]:
    """What the manager needs of an object before the API server sees it."""
    if not isinstance(body, dict):
        raise SpecError(f"{where}: expected a Kubernetes object (a mapping)")
    for field in ("apiVersion", "kind"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise SpecError(f"{where}: {field}: Required value")
    meta = body.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise SpecError(f"{where}: metadata.name: Required value")
    return body
