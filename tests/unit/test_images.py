"""Image recipes and reproducible OCI archives, without apt: recipes parse or fail naming the field,
layers are planned from an unpacked tree, and equal inputs give equal bytes."""

from __future__ import annotations

import ast
import importlib.metadata
import io
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name

from agents.machinery.imagerefs import full_reference
from provisioner.artefacts import containerimages as ci
from provisioner.artefacts import oci, registry
from provisioner.errors import HostError, SpecError
from provisioner.project import ROOT

SOURCE = Path("test.yaml")


def recipe(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "tool", "version": "1.0", "packages": ["tool-static"], "take": ["/bin/tool"]}
    return {**base, **fields}


def members(archive: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: m for m in tar.getmembers()}


def read(archive: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        handle = tar.extractfile(name)
        assert handle is not None
        return handle.read()


# --- recipes --------------------------------------------------------------------------------------


def test_the_shipped_recipes_parse() -> None:
    found = ci.recipes()
    assert set(found) == {
        "pause",
        "busybox",
        "echo",
        "kubeclient",
        "nginx",
        "python",
        "redis",
        "kube-dns",
        "metrics-server",
        "ingress-nginx",
        "dashboard",
    }
    assert found["pause"].config["Entrypoint"] == ["/usr/bin/catatonit", "-P"]
    # kube's own registry names the pause image; Docker Hub's tags name the others
    assert "registry.k8s.io/pause:3.10" in found["pause"].aliases
    assert {"nginx:1.14.2", "python:3", "redis:7"} <= {
        *found["nginx"].aliases,
        *found["python"].aliases,
        *found["redis"].aliases,
    }
    assert found["busybox"].version == {"package": "busybox-static"}
    # every lab gets the others; the client image is built and pushed when named, an add-on's by its add-on
    assert [name for name, recipe in sorted(found.items()) if recipe.on_demand] == [
        "dashboard",
        "ingress-nginx",
        "kube-dns",
        "kubeclient",
        "metrics-server",
    ]
    # an add-on image carries the project's code and locked wheels
    assert found["kube-dns"].python is not None and "agents/dns" in found["kube-dns"].python.code


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"name": "Tool"}, "name"),
        ({"packages": []}, "packages"),
        ({"version": {"package": "other"}}, "version"),
        ({"take": ["bin/tool"]}, "take"),
        ({"take": ["/bin/../etc/shadow"]}, "take"),
        ({"applets": "/bin/other"}, "applets"),
        ({"files": [{"path": "/etc/x"}]}, "files[0]"),
        ({"dirs": [{"path": "/tmp", "mode": "rwx"}]}, "dirs[0]"),
        ({"config": {"Volumes": {}}}, "config"),
        ({"colour": "blue"}, "colour"),
        ({"aliases": ["Pause:3.10"]}, "aliases"),
        ({"aliases": ["registry.k8s.io/pause"]}, "aliases"),
        ({"aliases": "pause:3.10"}, "aliases"),
    ],
)
def test_a_bad_recipe_is_refused_naming_the_field(change: dict[str, Any], named: str) -> None:
    with pytest.raises(SpecError) as caught:
        ci.parse_recipe(recipe(**change), source=SOURCE)
    assert str(caught.value).startswith("test.yaml: ")
    assert named in str(caught.value)


def test_aliases_do_not_change_the_image_or_its_cache_key() -> None:
    plain = ci.parse_recipe(recipe(), source=SOURCE)
    aliased = ci.parse_recipe(recipe(aliases=["registry.k8s.io/tool:3.10", "tool:1"]), source=SOURCE)
    assert aliased.aliases == ("registry.k8s.io/tool:3.10", "tool:1")
    packages = [ci.Package("tool-static", "1.0-1", "ab" * 32)]
    assert ci.cache_key(aliased, packages) == ci.cache_key(plain, packages)


def test_the_tag_is_the_named_packages_upstream_version_or_the_literal() -> None:
    packages = [ci.Package("busybox-static", "1:1.35.0-4+deb12u1+b1", "ab" * 32)]
    from_package = ci.parse_recipe(
        recipe(packages=["busybox-static"], version={"package": "busybox-static"}), source=SOURCE
    )
    assert ci.tag_of(from_package, packages) == "1.35.0"
    assert ci.tag_of(ci.parse_recipe(recipe(), source=SOURCE), packages) == "1.0"


def test_the_cache_key_follows_the_recipe_and_the_exact_debs() -> None:
    r = ci.parse_recipe(recipe(), source=SOURCE)
    deb = ci.Package("tool-static", "1.0-1", "aa" * 32)
    same = ci.cache_key(r, [deb])
    assert ci.cache_key(ci.parse_recipe(recipe(), source=SOURCE), [deb]) == same
    assert ci.cache_key(r, [ci.Package("tool-static", "1.0-1", "bb" * 32)]) != same
    assert ci.cache_key(ci.parse_recipe(recipe(config={"Cmd": ["x"]}), source=SOURCE), [deb]) != same


def test_apt_show_is_read_as_one_mapping_per_stanza() -> None:
    text = "Package: tool\nVersion: 2.0-1\nDescription: a tool\n more\nSHA256: abc\n\nPackage: lib\nVersion: 1.0\n"
    assert ci.parse_apt_show(text) == [
        {"Package": "tool", "Version": "2.0-1", "Description": "a tool", "SHA256": "abc"},
        {"Package": "lib", "Version": "1.0"},
    ]


# --- planning the layer ---------------------------------------------------------------------------


def test_the_layer_takes_files_with_their_modes_and_adds_applet_links_dirs_and_files(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "tool").write_bytes(b"\x7fELF")
    (tmp_path / "bin" / "tool").chmod(0o755)
    r = ci.parse_recipe(
        recipe(
            applets="/bin/tool",
            files=[{"path": "/etc/motd", "content": "hi\n"}],
            dirs=[{"path": "/tmp", "mode": "1777"}],
        ),
        source=SOURCE,
    )
    entries = {e.path: e for e in ci.plan_entries(r, tmp_path, applet_names=["sh", "tool", "ls"])}
    assert entries["/bin/tool"] == oci.Entry("/bin/tool", "file", 0o755, data=b"\x7fELF")
    assert entries["/bin/sh"] == oci.Entry("/bin/sh", "symlink", 0o777, target="/bin/tool")
    assert entries["/bin/ls"].target == "/bin/tool"
    assert "/bin/tool" in entries and entries["/bin/tool"].kind == "file"  # the binary is not linked to itself
    assert entries["/tmp"] == oci.Entry("/tmp", "dir", 0o1777)
    assert entries["/etc/motd"].data == b"hi\n"


def test_a_taken_directory_brings_everything_under_it_with_links_kept(tmp_path: Path) -> None:
    lib = tmp_path / "usr" / "lib" / "python3"
    (lib / "pkg").mkdir(parents=True)
    (lib / "pkg" / "__init__.py").write_text("x = 1\n")
    (lib / "pkg" / "run").write_bytes(b"#!")
    (lib / "pkg" / "run").chmod(0o755)
    (lib / "alias").symlink_to("pkg")
    r = ci.parse_recipe(recipe(take=["/usr/lib/python3"], **{"on-demand": True}), source=SOURCE)
    assert r.on_demand
    entries = {e.path: e for e in ci.plan_entries(r, tmp_path, applet_names=[])}
    assert entries["/usr/lib/python3/pkg"].kind == "dir"
    assert entries["/usr/lib/python3/pkg/__init__.py"].data == b"x = 1\n"
    assert entries["/usr/lib/python3/pkg/run"].mode == 0o755
    assert entries["/usr/lib/python3/alias"] == oci.Entry("/usr/lib/python3/alias", "symlink", 0o777, target="pkg")
    with pytest.raises(SpecError, match="on-demand: true or false"):
        ci.parse_recipe(recipe(**{"on-demand": "sometimes"}), source=SOURCE)


def test_a_path_missing_from_the_packages_is_a_clear_error(tmp_path: Path) -> None:
    r = ci.parse_recipe(recipe(), source=SOURCE)
    with pytest.raises(HostError, match=r"test.yaml: /bin/tool is not in packages tool-static"):
        ci.plan_entries(r, tmp_path, applet_names=[])


# --- OCI ------------------------------------------------------------------------------------------


def entries() -> list[oci.Entry]:
    return [
        oci.Entry("/usr/bin/tool", "file", 0o755, data=b"binary"),
        oci.Entry("/bin/sh", "symlink", 0o777, target="/usr/bin/tool"),
        oci.Entry("/tmp", "dir", 0o1777),
    ]


def test_a_layer_lists_parents_first_owned_by_root_at_the_epoch() -> None:
    layer = members(oci.layer_tar(entries()))
    assert list(layer) == ["bin", "bin/sh", "tmp", "usr", "usr/bin", "usr/bin/tool"]
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in layer.values())
    assert layer["bin/sh"].issym() and layer["bin/sh"].linkname == "/usr/bin/tool"
    assert layer["tmp"].mode == 0o1777 and layer["usr/bin/tool"].mode == 0o755


def test_equal_entries_in_any_order_give_equal_bytes() -> None:
    first = oci.layout_tar(oci.build_image(entries(), config={"Cmd": ["sh"]}, labels={}), references=["t:1"])
    again = oci.layout_tar(
        oci.build_image(list(reversed(entries())), config={"Cmd": ["sh"]}, labels={}), references=["t:1"]
    )
    assert first == again


def test_the_layout_holds_an_index_per_reference_and_blobs_named_by_their_digests() -> None:
    image = oci.build_image(entries(), config={"Entrypoint": ["/usr/bin/tool"]}, labels={"a": "b"})
    archive = oci.layout_tar(image, references=["tool:1.0", "tool:latest"])
    assert json.loads(read(archive, "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(read(archive, "index.json"))
    assert [m["annotations"][oci.REF_NAME] for m in index["manifests"]] == ["1.0", "latest"]
    assert [m["annotations"][oci.CONTAINERD_NAME] for m in index["manifests"]] == [
        "docker.io/library/tool:1.0",
        "docker.io/library/tool:latest",
    ]
    assert {m["digest"] for m in index["manifests"]} == {image.digest}
    manifest = json.loads(read(archive, "blobs/sha256/" + image.digest.split(":")[1]))
    config = json.loads(read(archive, "blobs/sha256/" + manifest["config"]["digest"].split(":")[1]))
    assert config["config"] == {"Entrypoint": ["/usr/bin/tool"], "Labels": {"a": "b"}}
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    layer_digest = manifest["layers"][0]["digest"]
    assert oci.Blob(oci.LAYER_TYPE, read(archive, "blobs/sha256/" + layer_digest.split(":")[1])).digest == layer_digest


@pytest.mark.parametrize(
    ("reference", "full"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.35", "docker.io/library/busybox:1.35"),
        ("kubelab/echo:1.0", "docker.io/kubelab/echo:1.0"),
        ("registry.lab:5000/echo:1.0", "registry.lab:5000/echo:1.0"),
        ("localhost/echo", "localhost/echo:latest"),
    ],
)
def test_references_are_completed_as_containerd_names_images(reference: str, full: str) -> None:
    assert full_reference(reference) == full


# --- archives for the registry --------------------------------------------------------------------


def test_registry_paths_follow_docker_hub_names() -> None:
    assert registry.repository_of("busybox") == ("library/busybox", "latest")
    assert registry.repository_of("team/app:2") == ("team/app", "2")
    assert registry.repository_of("registry.lab:5000/team/app:3") == ("team/app", "3")


def test_an_oci_archive_lists_one_image_per_tag_and_can_be_renamed(tmp_path: Path) -> None:
    image = oci.build_image(entries(), config={}, labels={})
    path = tmp_path / "tool.tar"
    path.write_bytes(oci.layout_tar(image, references=["tool:1.0", "tool:latest"]))
    found = registry.images_in(path)
    assert [(i.repository, i.tag, i.digest) for i in found] == [
        ("library/tool", "1.0", image.digest),
        ("library/tool", "latest", image.digest),
    ]
    assert found[0].source == f"oci-archive:{path}:1.0"
    [renamed] = registry.images_in(path, rename="team/tool:9")  # two tags of one image: one image
    assert (renamed.repository, renamed.tag) == ("team/tool", "9")


def test_a_docker_save_archive_is_read_from_its_manifest(tmp_path: Path) -> None:
    path = tmp_path / "saved.tar"
    manifest = [{"Config": "c.json", "RepoTags": ["app:1", "team/app:2"], "Layers": []}]
    path.write_bytes(oci.layer_tar([oci.Entry("/manifest.json", "file", data=json.dumps(manifest).encode())]))
    found = registry.images_in(path)
    assert [(i.repository, i.tag, i.source) for i in found] == [
        ("library/app", "1", f"docker-archive:{path}:app:1"),
        ("team/app", "2", f"docker-archive:{path}:team/app:2"),
    ]


@pytest.mark.parametrize(
    ("content", "rename", "message"),
    [
        (b"plain text", "", "not a tar archive"),
        (oci.layer_tar([oci.Entry("/etc/motd", "file", data=b"hi")]), "", "neither an OCI image layout"),
        (None, "Bad Name:1", "use lower-case name parts"),
    ],
)
def test_what_is_not_a_pushable_image_is_refused_in_one_line(
    tmp_path: Path, content: bytes | None, rename: str, message: str
) -> None:
    path = tmp_path / "x.tar"
    if content is None:
        content = oci.layout_tar(oci.build_image(entries(), config={}, labels={}), references=["tool:1"])
    path.write_bytes(content)
    with pytest.raises(SpecError, match=message) as caught:
        registry.images_in(path, rename=rename)
    assert "\n" not in str(caught.value)


def _module_level_imports(path: Path) -> set[str]:
    """The top-level modules a file imports when it is loaded (imports inside functions are left out:
    they run only on paths an add-on may never take)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"agents"}


@pytest.mark.parametrize("name", sorted(n for n, r in ci.recipes().items() if r.python is not None))
def test_an_addon_image_holds_a_wheel_for_every_package_its_code_imports(name: str) -> None:
    layer = ci.recipes()[name].python
    assert layer is not None
    wheels = {canonicalize_name(w) for w in layer.wheels}
    providers = importlib.metadata.packages_distributions()
    missing = set()
    for code in layer.code:
        files = [ROOT / code] if code.endswith(".py") else sorted((ROOT / code).rglob("*.py"))
        for path in files:
            for module in _module_level_imports(path):
                if not {canonicalize_name(d) for d in providers.get(module, [module])} & wheels:
                    missing.add(f"{path.relative_to(ROOT)}: {module}")
    assert not missing, f"images/containers/{name}.yaml: python.wheels lacks what its code imports"
