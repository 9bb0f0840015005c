"""The guest image's planning: its recipe, its digest, the commands of a build, and reuse of the cache.

Each test works on a copy of images/guest and a small pyproject.toml in a temporary directory, so
that it can change one input and watch what the digest does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from provisioner.artefacts import guestimage
from provisioner.errors import HostError, SpecError

PYPROJECT = """\
[project]
name = "kubelab"
version = "0.1.0"
dependencies = [
    "aiohttp>=3.9,<4",
    "kubernetes>=37,<38",
    "libvirt-python>=9.0",
    "Ansible_Core>=2.16",
]
"""


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    copy = tmp_path / "guest"
    shutil.copytree(guestimage.RECIPE_DIR, copy)
    return copy


@pytest.fixture
def pyproject(tmp_path: Path) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(PYPROJECT)
    return path


def digest_of(recipe_dir: Path, pyproject: Path) -> str:
    recipe = guestimage.load_recipe(recipe_dir)
    deps = guestimage.guest_dependencies(guestimage.project_dependencies(pyproject), recipe.host_only)
    return guestimage.digest(recipe, guestimage.content_files(recipe_dir), deps)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


# --- the recipe -----------------------------------------------------------------------------------


def test_the_shipped_recipe_names_what_the_contract_puts_in_a_node() -> None:
    recipe = guestimage.load_recipe()
    for package in (
        "linux-image-cloud-amd64",
        "systemd-sysv",
        "openssh-server",
        "python3-venv",
        "containerd",
        "runc",
        "containernetworking-plugins",
        "etcd-server",
        "docker-registry",
    ):
        assert package in recipe.packages
    assert {"etcd.service", "docker-registry.service", "containerd.service"} <= set(recipe.disable)
    assert {"kubelab-firstboot.service", "systemd-networkd.service", "ssh.service"} <= set(recipe.enable)
    assert not set(recipe.mask) & set(recipe.enable)
    assert [stage for stage, _ in recipe.hooks] == ["essential", "customize"]


def test_a_recipe_with_an_unknown_field_is_refused_with_its_name(recipe_dir: Path) -> None:
    (recipe_dir / "recipe.yaml").write_text((recipe_dir / "recipe.yaml").read_text() + "colour: blue\n")
    with pytest.raises(SpecError, match="unknown field 'colour'"):
        guestimage.load_recipe(recipe_dir)


def test_a_disk_size_without_a_unit_is_refused(recipe_dir: Path) -> None:
    edit(recipe_dir / "recipe.yaml", "disk_size: 8G", "disk_size: 8")
    with pytest.raises(SpecError, match="disk_size"):
        guestimage.load_recipe(recipe_dir)


def test_a_hook_outside_the_recipe_directory_is_refused(recipe_dir: Path) -> None:
    edit(recipe_dir / "recipe.yaml", "- hooks/customize.sh", "- ../../etc/evil.sh")
    with pytest.raises(SpecError, match="under hooks/ or files/"):
        guestimage.load_recipe(recipe_dir)


def test_a_hook_that_is_not_executable_is_refused(recipe_dir: Path) -> None:
    (recipe_dir / "hooks" / "customize.sh").chmod(0o644)
    with pytest.raises(SpecError, match="not an executable file"):
        guestimage.load_recipe(recipe_dir)


def test_a_unit_name_with_a_shell_character_is_refused(recipe_dir: Path) -> None:
    edit(recipe_dir / "recipe.yaml", "- fstrim.timer", "- fstrim.timer; rm -rf /")
    with pytest.raises(SpecError, match="mask"):
        guestimage.load_recipe(recipe_dir)


def test_host_only_dependencies_stay_out_of_the_guest_whatever_their_spelling() -> None:
    deps = ("aiohttp>=3.9", "libvirt_python>=9", "Ansible-Core >= 2.16", "kubernetes[adal]>=37")
    kept = guestimage.guest_dependencies(deps, ["libvirt-python", "ansible-core"])
    assert kept == ("aiohttp>=3.9", "kubernetes[adal]>=37")


# --- the digest -----------------------------------------------------------------------------------


def test_the_digest_is_sixteen_hex_digits_and_stable(recipe_dir: Path, pyproject: Path) -> None:
    first = digest_of(recipe_dir, pyproject)
    assert len(first) == 16 and int(first, 16) >= 0
    assert digest_of(recipe_dir, pyproject) == first


def test_the_digest_changes_with_the_package_list(recipe_dir: Path, pyproject: Path) -> None:
    before = digest_of(recipe_dir, pyproject)
    edit(recipe_dir / "recipe.yaml", "  - less\n", "  - less\n  - strace\n")
    assert digest_of(recipe_dir, pyproject) != before


def test_the_digest_changes_with_a_hook_script(recipe_dir: Path, pyproject: Path) -> None:
    before = digest_of(recipe_dir, pyproject)
    with (recipe_dir / "hooks" / "customize.sh").open("a") as hook:
        hook.write('touch "$1/etc/kubelab-was-here"\n')
    assert digest_of(recipe_dir, pyproject) != before


def test_the_digest_changes_with_a_file_for_the_image(recipe_dir: Path, pyproject: Path) -> None:
    before = digest_of(recipe_dir, pyproject)
    edit(recipe_dir / "files/etc/systemd/network/10-kubelab-eth0.network", "DHCP=ipv4", "DHCP=yes")
    assert digest_of(recipe_dir, pyproject) != before


def test_the_digest_changes_when_a_file_becomes_executable(recipe_dir: Path, pyproject: Path) -> None:
    before = digest_of(recipe_dir, pyproject)
    (recipe_dir / "files/etc/default/locale").chmod(0o755)
    assert digest_of(recipe_dir, pyproject) != before


def test_the_digest_changes_with_a_guest_dependency(recipe_dir: Path, pyproject: Path) -> None:
    before = digest_of(recipe_dir, pyproject)
    edit(pyproject, '"aiohttp>=3.9,<4"', '"aiohttp>=3.10,<4"')
    assert digest_of(recipe_dir, pyproject) != before


def test_the_digest_ignores_host_only_dependencies(recipe_dir: Path, pyproject: Path) -> None:
    before = digest_of(recipe_dir, pyproject)
    edit(pyproject, '"libvirt-python>=9.0"', '"libvirt-python>=10.0"')
    assert digest_of(recipe_dir, pyproject) == before


def test_the_digest_ignores_notes_and_comments_beside_the_recipe(recipe_dir: Path, pyproject: Path) -> None:
    before = digest_of(recipe_dir, pyproject)
    (recipe_dir / "README.md").write_text("# notes about the guest image\n")
    edit(recipe_dir / "recipe.yaml", "# The guest base image", "# A comment about the guest base image")
    assert digest_of(recipe_dir, pyproject) == before


def test_the_digest_ignores_the_rest_of_pyproject(recipe_dir: Path, pyproject: Path) -> None:
    before = digest_of(recipe_dir, pyproject)
    edit(pyproject, 'version = "0.1.0"', 'version = "0.2.0"')
    with pyproject.open("a") as extra:
        extra.write("\n[tool.ruff]\nline-length = 100\n")
    assert digest_of(recipe_dir, pyproject) == before


# --- the commands of a build ------------------------------------------------------------------------


def plan(recipe_dir: Path, pyproject: Path, work: Path) -> guestimage.BuildPlan:
    recipe = guestimage.load_recipe(recipe_dir)
    deps = guestimage.guest_dependencies(guestimage.project_dependencies(pyproject), recipe.host_only)
    return guestimage.plan_build(recipe, dependencies=deps, image_digest="0" * 16, work=work, python="/venv/python")


def test_manylinux_tags_run_from_the_guests_glibc_down_to_manylinux1() -> None:
    tags = guestimage.manylinux_platforms("2.36")
    assert tags[0] == "manylinux_2_36_x86_64"
    assert tags[-2:] == ["manylinux_2_5_x86_64", "manylinux1_x86_64"]
    assert {"manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux2010_x86_64"} <= set(tags)
    assert "manylinux_2_37_x86_64" not in tags


def test_the_wheelhouse_takes_wheels_for_the_guests_python_only(recipe_dir: Path, pyproject: Path) -> None:
    argv = list(plan(recipe_dir, pyproject, Path("/w")).wheelhouse)
    assert argv[:4] == ["/venv/python", "-m", "pip", "download"]
    assert "--only-binary=:all:" in argv
    assert argv[argv.index("--python-version") + 1] == "3.11"
    assert argv[argv.index("--implementation") + 1] == "cp"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--abi"] == ["cp311", "abi3", "none"]
    assert argv[-2:] == ["--requirement", "/w/wheels/requirements.txt"]


def test_the_wheelhouse_requirements_are_the_guests_dependencies(recipe_dir: Path, pyproject: Path) -> None:
    assert plan(recipe_dir, pyproject, Path("/w")).requirements == "aiohttp>=3.9,<4\nkubernetes>=37,<38\n"


def test_mmdebstrap_builds_a_directory_with_the_recipes_packages(recipe_dir: Path, pyproject: Path) -> None:
    argv = list(plan(recipe_dir, pyproject, Path("/w")).packages)
    recipe = guestimage.load_recipe(recipe_dir)
    assert argv[0] == "mmdebstrap"
    assert "--variant=minbase" in argv and "--format=directory" in argv
    assert f"--include={','.join(recipe.packages)}" in argv
    assert "--dpkgopt=path-exclude=/usr/share/man/*" in argv
    assert argv[-2:] == ["bookworm", "/w/rootfs"]


def test_hooks_run_with_the_root_the_recipe_and_the_wheelhouse(tmp_path: Path, pyproject: Path) -> None:
    spaced = tmp_path / "a recipe"
    shutil.copytree(guestimage.RECIPE_DIR, spaced)
    argv = list(plan(spaced, pyproject, Path("/w")).packages)
    hooks = [a for a in argv if a.startswith(("--essential-hook=", "--customize-hook="))]
    assert hooks[0] == f"--essential-hook='{spaced}/hooks/essential.sh' \"$1\" '{spaced}' /w/wheels"
    assert hooks[1] == f"--customize-hook='{spaced}/hooks/customize.sh' \"$1\" '{spaced}' /w/wheels"


def test_units_are_enabled_then_disabled_then_masked_after_the_hooks(recipe_dir: Path, pyproject: Path) -> None:
    argv = list(plan(recipe_dir, pyproject, Path("/w")).packages)
    units = [a for a in argv if "systemctl" in a]
    assert [u.split()[4] for u in units] == ["enable", "disable", "mask"]
    assert units[1].endswith("disable etcd.service docker-registry.service containerd.service")
    assert argv.index(units[0]) > max(i for i, a in enumerate(argv) if "customize.sh" in a)


def test_the_disk_is_an_ext4_of_the_tree_converted_to_qcow2(recipe_dir: Path, pyproject: Path) -> None:
    built = plan(recipe_dir, pyproject, Path("/w"))
    fs = list(built.filesystem)
    assert fs[:3] == ["mke2fs", "-q", "-t"] and fs[3] == "ext4"
    assert fs[fs.index("-d") + 1] == "/w/rootfs" and fs[fs.index("-L") + 1] == "root"
    assert fs[-2:] == ["/w/disk.raw", "8G"]
    assert list(built.qcow2) == ["qemu-img", "convert", "-O", "qcow2", "/w/disk.raw", "/w/out/disk.qcow2"]


# --- small parsers ---------------------------------------------------------------------------------


def test_dpkg_status_gives_installed_packages_only() -> None:
    status = (
        "Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b13\nDescription: shell\n more text\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n"
        "Package: containerd\nStatus: install ok installed\nVersion: 1.6.20~ds1-1+deb12u3\n"
    )
    assert guestimage.parse_dpkg_status(status) == {"bash": "5.2.15-2+b13", "containerd": "1.6.20~ds1-1+deb12u3"}


def test_progress_names_hooks_by_stage_and_leaves_out_the_final_success() -> None:
    line = "running --customize-hook in shell: sh -c 'chroot \"$1\" systemctl enable a' exec /w/rootfs"
    assert guestimage._progress_message(line) == "running --customize-hook"
    assert guestimage._progress_message("downloading packages with apt...") == "downloading packages with apt"
    assert guestimage._progress_message("success in 90.3827 seconds") == ""


# --- the executor's edges (no build) ----------------------------------------------------------------


def test_a_complete_cache_entry_is_reused_without_building(recipe_dir: Path, pyproject: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    entry = cache / digest_of(recipe_dir, pyproject)
    entry.mkdir(parents=True)
    for name in ("disk.qcow2", "vmlinuz", "initrd.img"):
        (entry / name).write_bytes(b"x")
    (entry / "manifest.json").write_text(json.dumps({"digest": entry.name}))
    said: list[str] = []
    image = guestimage.ensure(said.append, cache=cache, recipe_dir=recipe_dir, pyproject=pyproject)
    assert image == guestimage.GuestImage(
        disk=entry / "disk.qcow2",
        kernel=entry / "vmlinuz",
        initrd=entry / "initrd.img",
        digest=entry.name,
        cached=True,
        seconds=image.seconds,
    )
    assert said == [f"guest image {entry.name} from the cache ({entry})"]


def test_the_cache_directory_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBELAB_GUEST_CACHE", str(tmp_path))
    assert guestimage.cache_root() == tmp_path
    monkeypatch.delenv("KUBELAB_GUEST_CACHE")
    assert guestimage.cache_root() == Path("/var/cache/kubelab/guest")


def test_a_failing_step_is_one_line_with_its_last_output_and_the_log(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_text("")
    argv = ["sh", "-c", "echo I: starting; echo E: no space left on device >&2; exit 25"]
    with pytest.raises(guestimage.GuestImageError) as failed:
        guestimage._run("packages", argv, log=log)
    message = str(failed.value)
    assert "\n" not in message
    assert "exit code 25" in message and "E: no space left on device" in message and str(log) in message
    assert "E: no space left on device" in log.read_text()


def test_a_missing_tool_is_named(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    with pytest.raises(HostError, match="no-such-mmdebstrap is missing"):
        guestimage._run("packages", ["no-such-mmdebstrap"], log=log)
