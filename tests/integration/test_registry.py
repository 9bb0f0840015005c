"""The lab's image registry: the built-in images are in it after ``kubelab up``, ``kubelab image push``
adds a user's archives, and containerd pulls from it by reference."""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from kubelab_testing.lab import Lab
from provisioner.artefacts import containerimages
from provisioner.artefacts.registry import stored_digest
from provisioner.lab import render
from tests.support.components import running_containerd


def registry_get(lab: Lab, path: str) -> Any:
    with urllib.request.urlopen(f"http://{lab.registry}{path}", timeout=10) as response:
        return json.loads(response.read())


def push(lab: Lab, *args: str) -> tuple[int, str, str]:
    result = lab.cli("image", "push", *args, "--name", lab.name)
    return result.code, result.out, result.err


def built_archive(name: str) -> Path:
    return containerimages.build_all([name], say=lambda _msg: None)[0].archive


def docker_archive(tmp_path: Path, reference: str) -> Path:
    """A ``docker save`` style archive, made by skopeo from the built echo image."""
    target = tmp_path / "image.tar"
    source = f"oci-archive:{built_archive('echo')}:1.0"
    subprocess.run(["skopeo", "copy", "--quiet", source, f"docker-archive:{target}:{reference}"], check=True)
    return target


def test_up_puts_the_built_in_images_into_the_registry_under_both_tags(lab: Lab) -> None:
    repositories = set(registry_get(lab, "/v2/_catalog")["repositories"])
    assert {"library/busybox", "library/echo", "library/pause"} <= repositories
    tags = set(registry_get(lab, "/v2/library/echo/tags/list")["tags"])
    assert tags == {"1.0", "latest"}


def test_the_aliases_name_the_same_image_and_containerd_finds_kubes_pause_through_the_mirror(
    lab: Lab, tmp_path: Path
) -> None:
    url = f"http://{lab.registry}"
    assert {"3.10", "3.9", "3.1"} <= set(registry_get(lab, "/v2/pause/tags/list")["tags"])
    assert stored_digest(url, "pause", "3.10") == stored_digest(url, "library/pause", "latest") != ""
    assert {"1.22.1", "1.14.2", "1.16.1", "latest"} <= set(registry_get(lab, "/v2/library/nginx/tags/list")["tags"])
    assert {"3", "3.11", "latest"} <= set(registry_get(lab, "/v2/library/python/tags/list")["tags"])
    assert {"7", "latest"} <= set(registry_get(lab, "/v2/library/redis/tags/list")["tags"])
    # the nodes' containerd configuration: the lab registry stands in for registry.k8s.io
    hosts = tmp_path / "certs.d"
    (hosts / "registry.k8s.io").mkdir(parents=True)
    text = render.render("containerd/hosts.toml.j2", registry_url=url)
    (hosts / "registry.k8s.io" / "hosts.toml").write_text(text)
    with running_containerd() as containerd:
        containerd.ctr("images", "pull", "--hosts-dir", str(hosts), "registry.k8s.io/pause:3.10")
        listed = containerd.ctr("images", "list", "--quiet").stdout.split()
    assert "registry.k8s.io/pause:3.10" in listed


def test_a_docker_save_archive_is_pushed_under_its_own_name(lab: Lab, tmp_path: Path) -> None:
    team = f"team{uuid.uuid4().hex[:6]}"
    code, out, err = push(lab, str(docker_archive(tmp_path, f"{team}/hello:2.0")))
    assert code == 0, err
    assert f"{team}/hello:2.0: pushed" in out
    assert registry_get(lab, f"/v2/{team}/hello/tags/list")["tags"] == ["2.0"]


def test_as_renames_the_image_and_a_built_in_name_pushes_that_image(lab: Lab, tmp_path: Path) -> None:
    name = f"renamed{uuid.uuid4().hex[:6]}"
    code, out, err = push(lab, str(docker_archive(tmp_path, "whatever:1")), "--as", f"{name}:7")
    assert code == 0, err
    assert f"library/{name}:7: pushed" in out
    code, out, err = push(lab, "busybox")
    assert code == 0, err
    assert "library/busybox:latest: already there" in out  # up put it there; same digest: not copied again


def test_bad_archives_get_one_line_and_change_nothing(lab: Lab, tmp_path: Path) -> None:
    before = registry_get(lab, "/v2/_catalog")["repositories"]
    not_tar = tmp_path / "notes.txt"
    not_tar.write_text("hello\n")
    cases = [
        ([str(not_tar)], "not a tar archive"),
        ([str(tmp_path / "missing.tar")], "no such file"),
        ([str(built_archive("busybox")), "--as", "Bad Name:1"], "use lower-case name parts"),
    ]
    for args, message in cases:
        code, _, err = push(lab, *args)
        assert code == 1
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert registry_get(lab, "/v2/_catalog")["repositories"] == before


def test_containerd_pulls_from_the_lab_registry_by_reference_and_runs_it(lab: Lab) -> None:
    reference = f"{lab.registry}/library/busybox:latest"
    with running_containerd() as containerd:
        containerd.ctr("images", "pull", "--plain-http", reference)
        out = containerd.ctr("run", "--rm", reference, f"pulled-{uuid.uuid4().hex[:6]}", "echo", "pulled").stdout
    assert out.strip() == "pulled"
