"""The lock: dependencies declared by who imports them, uv.lock made from pyproject.toml, and the
requirements/*.txt the venvs and the guest image install exported from it, so none can drift.

``make lint`` asks uv the same questions (``uv lock --check``, the exports compared with a fresh
``uv export``); these tests answer them from the files alone, without uv or the network.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from provisioner.artefacts import guestimage
from provisioner.project import PYPROJECT, ROOT

UV_LOCK = ROOT / "uv.lock"
EXPORTS = {"agents": (), "host": ("host",), "dev": ("host", "dev")}  # requirements/NAME.txt: its extras
FIRST_PARTY = {"agents", "provisioner", "kubelab_testing", "benchmarks", "tests"}
# who may import what: the trees and the groups of pyproject.toml their imports must be declared in
WHO = {
    "agents": ("",),
    "provisioner": ("", "host"),
    "playbooks": ("", "host"),  # Ansible's plugins run in the host's venv
    "kubelab_testing": ("", "host", "dev"),
    "benchmarks": ("", "host", "dev"),
    "tests": ("", "host", "dev"),
}
# the one import of a host-only package in agents/: the schema table is derived on the host, and the
# nodes read the table it shipped (agents/apiserver/schemas.py)
HOST_ONLY_IN_AGENTS = {("agents/apiserver/schemas.py", "kubernetes")}


def project() -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads(PYPROJECT.read_text())["project"]
    return data


def groups() -> dict[str, list[str]]:
    """pyproject.toml's requirements by group: "" for [project].dependencies, else the extra."""
    return {"": project()["dependencies"], **project()["optional-dependencies"]}


@functools.cache
def uv_lock() -> dict[str, Any]:
    return tomllib.loads(UV_LOCK.read_text())


def packages() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = uv_lock()["package"]
    return found


def root_package() -> dict[str, Any]:
    return next(p for p in packages() if p["source"].get("editable") == ".")


def closure(extras: Iterable[str]) -> set[str]:
    """Every package uv.lock installs for the project with these extras, whatever the environment."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for package in packages():
        by_name.setdefault(package["name"], []).append(package)
    root = root_package()
    todo = [*root.get("dependencies", [])]
    for extra in extras:
        todo += root["optional-dependencies"][extra]
    seen: set[str] = set()
    while todo:
        dependency = todo.pop()
        for package in by_name[dependency["name"]]:
            if "version" in dependency and package["version"] != dependency["version"]:
                continue
            key = f"{package['name']}=={package['version']}"
            requested = set(dependency.get("extra", []))
            todo += [d for e in requested for d in package.get("optional-dependencies", {}).get(e, [])]
            if key not in seen:
                seen.add(key)
                todo += package.get("dependencies", [])
    return seen


def export(name: str) -> tuple[guestimage.Pin, ...]:
    return guestimage.load_lock(ROOT / "requirements" / f"{name}.txt")


# --- uv.lock is made from pyproject.toml ----------------------------------------------------------


Declared = set[tuple[str, str, str, str, str]]  # name, specifier, extras, marker, group


def _declared_here() -> Declared:
    found: Declared = set()
    for group, requirements in groups().items():
        for text in requirements:
            requirement = Requirement(text)
            marker = str(requirement.marker) if requirement.marker else ""
            extras = ",".join(sorted(requirement.extras))
            found.add((canonicalize_name(requirement.name), str(requirement.specifier), extras, marker, group))
    return found


def _declared_in_lock() -> Declared:
    found: Declared = set()
    for entry in root_package()["metadata"]["requires-dist"]:
        marker = entry.get("marker", "")
        match = re.fullmatch(r"(?:(.*) and )?extra == '([^']+)'", marker)
        group, rest = (match.group(2), match.group(1) or "") if match else ("", marker)
        extras = ",".join(sorted(entry.get("extras", [])))
        specifier = str(SpecifierSet(entry.get("specifier", "")))
        found.add((canonicalize_name(entry["name"]), specifier, extras, str(Marker(rest)) if rest else "", group))
    return found


def test_uv_lock_was_made_from_the_requirements_of_pyproject() -> None:
    """A stale lock fails here: run `make lock`."""
    assert _declared_in_lock() == _declared_here()
    assert set(root_package()["metadata"].get("provides-extras", [])) == set(project()["optional-dependencies"])


def test_the_lock_resolves_for_linux_and_the_projects_pythons() -> None:
    lock = uv_lock()
    assert lock["requires-python"] == project()["requires-python"]
    assert lock.get("supported-markers") == ["sys_platform == 'linux'"]


# --- the exports are uv.lock's ---------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPORTS)
def test_each_export_pins_exactly_uv_locks_packages_for_its_extras(name: str) -> None:
    pins = export(name)
    assert {f"{canonicalize_name(p.name)}=={p.version}" for p in pins} == closure(EXPORTS[name])
    by_pin = {f"{p['name']}=={p['version']}": p for p in packages()}
    for pin in pins:
        locked = by_pin[f"{canonicalize_name(pin.name)}=={pin.version}"]
        files = [*locked.get("wheels", []), *([locked["sdist"]] if "sdist" in locked else [])]
        assert set(pin.hashes) == {f["hash"] for f in files}, pin.name


def test_the_host_and_dev_sets_hold_the_agents_set_with_the_same_versions_and_files() -> None:
    """Markers may differ (a package reached by other paths), the version and its files may not."""
    agents, host, dev = ({(p.name, p.version, p.hashes) for p in export(name)} for name in EXPORTS)
    assert agents <= host <= dev


def test_the_agents_set_is_what_the_guest_image_installs_and_holds_nothing_host_only() -> None:
    pins = guestimage.load_lock()
    requirements = guestimage.guest_requirements(pins, guestimage.load_recipe().host_only)
    assert guestimage.parse_lock(requirements, source=guestimage.AGENTS_LOCK) == export("agents")
    names = {canonicalize_name(p.name) for p in pins}
    assert not names & {"kubernetes", "libvirt-python", "ansible-core", "ansible-runner", "jinja2"}
    # cryptography and pyjwt: the API server signs and checks ServiceAccount tokens
    assert {
        "aetcd",
        "aiohttp",
        "grpcio",
        "protobuf",
        "uvloop",
        "orjson",
        "pyyaml",
        "jsonpatch",
        "cryptography",
        "pyjwt",
    } <= names


def test_libvirt_python_is_locked_as_its_source_archive() -> None:
    """No wheels exist: the bootstrap builds it against the host's libvirt, hash-checked all the same."""
    (pin,) = (p for p in export("host") if p.name == "libvirt-python")
    (locked,) = (p for p in packages() if p["name"] == "libvirt-python")
    assert "wheels" not in locked and pin.hashes == (locked["sdist"]["hash"],)


# --- declared by who imports it --------------------------------------------------------------------


def _third_party_imports(tree: str) -> Iterator[tuple[str, str]]:
    """(file, top-level module) of every import of something neither stdlib nor ours under ``tree``."""
    for path in sorted((ROOT / tree).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                    yield path.relative_to(ROOT).as_posix(), top


@pytest.mark.parametrize("tree", WHO)
def test_every_package_a_tree_imports_is_declared_for_it(tree: str) -> None:
    providers = importlib.metadata.packages_distributions()
    allowed = {canonicalize_name(Requirement(r).name) for g in WHO[tree] for r in groups()[g]}
    undeclared = set()
    for path, module in _third_party_imports(tree):
        distributions = {canonicalize_name(d) for d in providers.get(module, [module])}
        if not distributions & allowed and (path, module) not in HOST_ONLY_IN_AGENTS:
            undeclared.add(f"{path}: {module} ({', '.join(sorted(distributions))})")
    assert not undeclared, f"imported but not declared for {tree}/ in pyproject.toml"


def test_the_agents_import_the_host_only_kubernetes_package_in_the_schema_derivation_only() -> None:
    found = {(path, module) for path, module in _third_party_imports("agents") if module == "kubernetes"}
    assert found == HOST_ONLY_IN_AGENTS
    assert "kubernetes" in {canonicalize_name(Requirement(r).name) for r in groups()["host"]}
