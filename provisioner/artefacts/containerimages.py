"""The built-in container images, built offline from Debian packages (recipes in images/containers/).

A recipe names Debian packages, the paths to take from them, files and directories to add, busybox
applet links, the image config, and the other references the image answers to (``aliases``: tagged
in the lab registry after the push, not part of the archive or its cache key). Building is: ask apt
which .deb each package would be (version and SHA-256, no download), derive the cache key from those
and the recipe, and only on a miss download the .debs (``apt-get download``), unpack them
(``dpkg-deb -x``), plan the layer (pure) and write a reproducible OCI archive
(:mod:`provisioner.artefacts.oci`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from provisioner.artefacts import oci, pythonlayer
from provisioner.errors import HostError, SpecError
from provisioner.project import IMAGES

RECIPES = IMAGES / "containers"
CACHE = Path(os.environ.get("KUBELAB_IMAGE_CACHE", "/var/cache/kubelab/images"))
FORMAT = 1  # bump when the builder's output changes for the same inputs
_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")
_CONFIG_KEYS = {"Entrypoint", "Cmd", "Env", "WorkingDir", "ExposedPorts", "User", "StopSignal"}
_FIELDS = {
    "name",
    "version",
    "packages",
    "take",
    "applets",
    "files",
    "dirs",
    "config",
    "on-demand",
    "aliases",
    "python",
}
# an alias: [registry/]repository:tag, lower-case repository parts, a registry only with a dot in it
_ALIAS = re.compile(
    r"^(?:[a-z0-9-]+(?:\.[a-z0-9-]+)+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
)


@dataclass(frozen=True)
class AddedFile:
    path: str
    content: str
    mode: int


@dataclass(frozen=True)
class Recipe:
    name: str
    version: str | dict[str, str]  # a literal, or {"package": P}: P's upstream version
    packages: tuple[str, ...]
    take: tuple[str, ...]
    applets: str
    files: tuple[AddedFile, ...]
    dirs: tuple[tuple[str, int], ...]
    config: Mapping[str, Any]
    source: Path
    on_demand: bool = False  # built and pushed only when named (``kubelab image push NAME``), not at every up
    aliases: tuple[str, ...] = ()  # other references of the same image, e.g. registry.k8s.io/pause:3.10
    python: pythonlayer.PythonLayer | None = None  # an add-on's code and locked wheels

    def canonical(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "packages": list(self.packages),
            "take": list(self.take),
            "applets": self.applets,
            "files": [[f.path, f.content, f.mode] for f in self.files],
            "dirs": [list(d) for d in self.dirs],
            "config": dict(self.config),
            **({"python": self.python.canonical()} if self.python is not None else {}),
        }


@dataclass(frozen=True)
class Package:
    """What apt would install for a name: the exact .deb, known before downloading it."""

    name: str
    version: str
    sha256: str

    @property
    def upstream(self) -> str:
        """Debian version without epoch and revision: ``1:1.35.0-4+deb12u1+b1`` -> ``1.35.0``."""
        return self.version.split(":", 1)[-1].rsplit("-", 1)[0]


@dataclass(frozen=True)
class Built:
    name: str
    tag: str
    archive: Path
    digest: str
    size: int
    cached: bool
    aliases: tuple[str, ...] = ()

    @property
    def references(self) -> list[str]:
        """The references in the archive (pushed as they are); the aliases are tagged after them."""
        return [f"{self.name}:{self.tag}", f"{self.name}:latest"]


# --- recipes --------------------------------------------------------------------------------------


def _mode(value: object, where: str) -> int:
    try:
        return int(str(value), 8)
    except ValueError as exc:
        raise SpecError(f'{where}: mode {value!r} is not an octal number like "0755"') from exc


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f"{where}: expected a list of strings")
    return tuple(value)


def _absolute(path: object, where: str) -> str:
    if not isinstance(path, str) or not path.startswith("/") or ".." in path.split("/"):
        raise SpecError(f"{where}: {path!r} must be an absolute path inside the image")
    return path


def parse_recipe(data: object, *, source: Path) -> Recipe:
    """A recipe from its YAML document; SpecError names the file and the field that is wrong."""
    where = source.name
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping")
    unknown = set(data) - _FIELDS
    if unknown:
        raise SpecError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(f"{where}: name {name!r} must be lower-case letters, digits, '.', '_' or '-'")
    packages = _strings(data.get("packages") or [], f"{where}: packages")
    if not packages:
        raise SpecError(f"{where}: packages: name at least one Debian package")
    version = data.get("version")
    if isinstance(version, dict):
        if set(version) != {"package"} or version["package"] not in packages:
            raise SpecError(f"{where}: version: {{package: P}} must name one of the recipe's packages")
    elif not isinstance(version, str) or not version:
        raise SpecError(f"{where}: version: give a tag or {{package: P}}")
    take = tuple(_absolute(p, f"{where}: take") for p in _strings(data.get("take") or [], f"{where}: take"))
    applets = data.get("applets") or ""
    if applets and applets not in take:
        raise SpecError(f"{where}: applets: {applets!r} must be one of the paths in take")
    files = []
    for i, item in enumerate(data.get("files") or []):
        at = f"{where}: files[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise SpecError(f"{at}: needs path and content")
        files.append(AddedFile(_absolute(item.get("path"), at), item["content"], _mode(item.get("mode", "0644"), at)))
    dirs = []
    for i, item in enumerate(data.get("dirs") or []):
        at = f"{where}: dirs[{i}]"
        if not isinstance(item, dict):
            raise SpecError(f"{at}: needs path (and mode)")
        dirs.append((_absolute(item.get("path"), at), _mode(item.get("mode", "0755"), at)))
    config = data.get("config") or {}
    if not isinstance(config, dict) or set(config) - _CONFIG_KEYS:
        raise SpecError(f"{where}: config: allowed keys are {', '.join(sorted(_CONFIG_KEYS))}")
    on_demand = data.get("on-demand", False)
    if not isinstance(on_demand, bool):
        raise SpecError(f"{where}: on-demand: true or false")
    aliases = _strings(data.get("aliases") or [], f"{where}: aliases")
    for alias in aliases:
        if not _ALIAS.match(alias):
            raise SpecError(
                f"{where}: aliases: {alias!r} is not a reference like name:tag or registry.example/name:tag"
            )
    python = pythonlayer.parse(data["python"], where) if "python" in data else None
    return Recipe(
        name, version, packages, take, applets, tuple(files), tuple(dirs), config, source, on_demand, aliases, python
    )


def recipes(directory: Path = RECIPES) -> dict[str, Recipe]:
    found: dict[str, Recipe] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise SpecError(f"{path.name}: not valid YAML ({exc})") from exc
        recipe = parse_recipe(data, source=path)
        found[recipe.name] = recipe
    return found


# --- planning (pure) ------------------------------------------------------------------------------


def tag_of(recipe: Recipe, packages: Sequence[Package]) -> str:
    if isinstance(recipe.version, str):
        return recipe.version
    wanted = recipe.version["package"]
    return next(p.upstream for p in packages if p.name == wanted)


def cache_key(recipe: Recipe, packages: Sequence[Package], python: str = "") -> str:
    """Changes when the recipe, any package's exact .deb, the Python layer's inputs (``python``, a
    digest of its code and wheels) or the builder's format changes."""
    inputs = {"format": FORMAT, "recipe": recipe.canonical(), "debs": sorted((p.name, p.sha256) for p in packages)}
    if python:
        inputs["python"] = python
    return hashlib.sha256(oci.canonical_json(inputs)).hexdigest()[:16]


def plan_entries(recipe: Recipe, tree: Path, *, applet_names: Sequence[str]) -> list[oci.Entry]:
    """The layer's entries: taken paths (files with their mode, symlinks as links, directories with
    everything under them), applet links next to the applet binary, added directories and files.
    Later entries win over earlier ones."""
    entries: dict[str, oci.Entry] = {}
    for path in recipe.take:
        source = tree / path.lstrip("/")
        if not source.is_symlink() and source.is_dir():
            for inner in _tree_entries(source, path):
                entries[inner.path] = inner
        elif source.is_symlink() or source.is_file():
            entries[path] = _entry(source, path)
        else:
            raise HostError(f"{recipe.source.name}: {path} is not in packages {', '.join(recipe.packages)}")
    if recipe.applets:
        binary = recipe.applets.rsplit("/", 1)[1]
        for applet in applet_names:
            if "/" in applet or applet in ("", binary):
                continue
            link = f"/bin/{applet}"
            entries.setdefault(link, oci.Entry(link, "symlink", 0o777, target=recipe.applets))
    if recipe.python is not None:
        for inner in _tree_entries(tree / pythonlayer.SITE.lstrip("/"), pythonlayer.SITE):
            entries[inner.path] = inner
    for path, mode in recipe.dirs:
        entries[path] = oci.Entry(path, "dir", mode)
    for added in recipe.files:
        entries[added.path] = oci.Entry(added.path, "file", added.mode, data=added.content.encode())
    return list(entries.values())


def _entry(source: Path, path: str) -> oci.Entry:
    if source.is_symlink():
        return oci.Entry(path, "symlink", 0o777, target=os.readlink(source))
    if source.is_dir():
        return oci.Entry(path, "dir", source.stat().st_mode & 0o7777)
    return oci.Entry(path, "file", source.stat().st_mode & 0o7777, data=source.read_bytes())


def _tree_entries(root: Path, path: str) -> list[oci.Entry]:
    """A taken directory and everything under it, in name order (symlinks kept as links)."""
    out = [_entry(root, path)]
    for child in sorted(root.iterdir()):
        inner = f"{path.rstrip('/')}/{child.name}"
        if not child.is_symlink() and child.is_dir():
            out += _tree_entries(child, inner)
        elif child.is_symlink() or child.is_file():
            out.append(_entry(child, inner))
    return out


# --- apt (the executor's side) --------------------------------------------------------------------


def _run(args: Sequence[str], *, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(list(args), check=True, capture_output=True, text=True, cwd=cwd)
    except FileNotFoundError as exc:
        raise HostError(f"{args[0]} is missing; kubelab builds images with apt and dpkg (Debian 12)") from exc
    except subprocess.CalledProcessError as exc:
        last = (exc.stderr or exc.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise HostError(f"{' '.join(args[:2])} failed: {last[0]}") from exc
    return done.stdout


def parse_apt_show(text: str) -> list[dict[str, str]]:
    """The stanzas of ``apt-cache show --no-all-versions``, each a field -> value mapping."""
    stanzas = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line[:1].isspace() or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if fields:
            stanzas.append(fields)
    return stanzas


def resolve(names: Sequence[str]) -> dict[str, Package]:
    """The .deb apt would fetch for each package, without fetching it; a host whose package lists
    lack one gets ``apt-get update`` once (as root) and a second look."""
    try:
        return _resolve(names)
    except HostError:
        if os.geteuid() != 0:
            raise
        _run(["apt-get", "update", "-qq"])
        return _resolve(names)


def _resolve(names: Sequence[str]) -> dict[str, Package]:
    """One apt-cache call for all packages (each call costs about a second of reading apt's cache)."""
    wanted = sorted(set(names))
    try:
        stanzas = parse_apt_show(_run(["apt-cache", "show", "--no-all-versions", *wanted]))
    except HostError as exc:
        raise HostError(f"apt does not know all of {', '.join(wanted)} ({exc}); run apt-get update") from exc
    found: dict[str, Package] = {}
    for fields in stanzas:
        if fields.get("Package") in wanted and "Version" in fields and "SHA256" in fields:
            found.setdefault(fields["Package"], Package(fields["Package"], fields["Version"], fields["SHA256"]))
    missing = [n for n in wanted if n not in found]
    if missing:
        raise HostError(f"apt knows no downloadable version of {missing[0]}; run apt-get update")
    return found


def unpack(packages: Sequence[Package], into: Path, *, downloads: Path) -> None:
    downloads.mkdir(parents=True, exist_ok=True)
    for package in packages:
        debs = [d for d in downloads.glob(f"{package.name}_*.deb") if _sha256(d) == package.sha256]
        if not debs:
            _run(["apt-get", "download", "-q", f"{package.name}={package.version}"], cwd=downloads)
            debs = [d for d in downloads.glob(f"{package.name}_*.deb") if _sha256(d) == package.sha256]
        if not debs:
            raise HostError(f"apt-get download {package.name} gave no .deb with the expected SHA-256")
        _run(["dpkg-deb", "-x", str(debs[0]), str(into)])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def applets_of(binary: Path) -> list[str]:
    """The applets a busybox binary was built with (runs it: it is static and of this machine)."""
    return _run([str(binary), "--list"]).split()


# --- building -------------------------------------------------------------------------------------


def build(
    recipe: Recipe,
    *,
    cache: Path = CACHE,
    say: Callable[[str], None] = print,
    force: bool = False,
    resolved: Mapping[str, Package] | None = None,
) -> Built:
    """The recipe's OCI archive, from the cache when its inputs are unchanged."""
    known = resolved if resolved is not None else resolve(recipe.packages)
    packages = [known[name] for name in recipe.packages]
    tag = tag_of(recipe, packages)
    pins = pythonlayer.pins_of(recipe.python, recipe.source.name) if recipe.python is not None else []
    python = pythonlayer.digest(recipe.python, pins) if recipe.python is not None else ""
    if python:
        tag = f"{tag}-{python[:10]}"  # new code, new tag: nodes pull it instead of keeping the old one
    key = cache_key(recipe, packages, python)
    archive = cache / f"{recipe.name}-{tag}-{key}.tar"
    meta = archive.with_suffix(".json")
    if archive.exists() and meta.exists() and not force:
        info = json.loads(meta.read_text())
        return Built(recipe.name, tag, archive, info["digest"], archive.stat().st_size, True, recipe.aliases)
    say(f"building image {recipe.name}:{tag} from {', '.join(f'{p.name} {p.version}' for p in packages)}")
    with tempfile.TemporaryDirectory(prefix=f"kubelab-image-{recipe.name}-") as tmp:
        tree = Path(tmp) / "tree"
        unpack(packages, tree, downloads=cache / "debs")
        if recipe.python is not None:
            pythonlayer.download(pins, cache / "wheels")
            pythonlayer.install(recipe.python, pins, wheels=cache / "wheels", tree=tree)
        applets = applets_of(tree / recipe.applets.lstrip("/")) if recipe.applets else []
        entries = plan_entries(recipe, tree, applet_names=applets)
    labels = {
        "org.opencontainers.image.title": recipe.name,
        "org.opencontainers.image.version": tag,
        "io.kubelab.debian-packages": " ".join(f"{p.name}={p.version}" for p in packages),
    }
    image = oci.build_image(entries, config=recipe.config, labels=labels)
    data = oci.layout_tar(image, references=[f"{recipe.name}:{tag}", f"{recipe.name}:latest"])
    cache.mkdir(parents=True, exist_ok=True)
    for stale in cache.glob(f"{recipe.name}-*.tar"):
        stale.unlink()
        stale.with_suffix(".json").unlink(missing_ok=True)
    partial = archive.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(archive)
    meta.write_text(json.dumps({"digest": image.digest, "packages": [p.__dict__ for p in packages]}, indent=1))
    say(f"built {recipe.name}:{tag}: {len(entries)} paths, {len(data) / 1e6:.1f} MB, {image.digest[:19]}")
    return Built(recipe.name, tag, archive, image.digest, len(data), False, recipe.aliases)


def build_all(
    names: Sequence[str] = (), *, cache: Path = CACHE, say: Callable[[str], None] = print, force: bool = False
) -> list[Built]:
    known = recipes()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SpecError(f"no image recipe named {unknown[0]!r}; known: {', '.join(sorted(known))}")
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise HostError("building images needs apt-get and dpkg-deb (a Debian 12 host)")
    # without names: the images every lab gets (on-demand ones are built when named)
    chosen = [known[n] for n in names] if names else [known[n] for n in sorted(known) if not known[n].on_demand]
    resolved = resolve([p for r in chosen for p in r.packages])
    return [build(r, cache=cache, say=say, force=force, resolved=resolved) for r in chosen]
