"""The built-in images, built offline from Debian packages, run on a real containerd."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.artefacts import containerimages
from provisioner.errors import HostError
from tests.support.components import Containerd, in_ci, network_namespace, running_containerd


def _build(cache: Path, *, force: bool = False) -> dict[str, containerimages.Built]:
    try:
        built = containerimages.build_all(cache=cache, say=lambda _msg: None, force=force)
    except HostError as exc:
        if in_ci():
            pytest.fail(f"CI=true and images cannot be built: {exc}")
        pytest.skip(str(exc))
    return {b.name: b for b in built}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, containerimages.Built]:
    return _build(tmp_path_factory.mktemp("image-cache"))


@pytest.fixture(scope="module")
def containerd(images: dict[str, containerimages.Built]) -> Iterator[Containerd]:
    with running_containerd() as daemon:
        for built in images.values():
            daemon.ctr("images", "import", str(built.archive))
        yield daemon


@pytest.fixture
def netns() -> Iterator[str]:
    with network_namespace() as name:
        yield name


def test_every_recipe_builds_tagged_with_its_debian_version(images: dict[str, containerimages.Built]) -> None:
    assert set(images) == {"pause", "busybox", "echo"}
    assert images["busybox"].tag.startswith("1.")  # busybox-static's upstream version
    assert images["echo"].tag == "1.0"
    assert all(b.archive.exists() and b.digest.startswith("sha256:") for b in images.values())


def test_a_second_build_comes_from_the_cache_and_a_forced_one_is_byte_identical(
    images: dict[str, containerimages.Built], tmp_path: Path
) -> None:
    again = _build(images["pause"].archive.parent)
    assert all(b.cached for b in again.values())
    fresh = _build(tmp_path, force=True)
    for name, built in images.items():
        assert not fresh[name].cached
        assert fresh[name].digest == built.digest
        assert fresh[name].archive.read_bytes() == built.archive.read_bytes()


def test_containerd_imports_them_under_both_tags(
    containerd: Containerd, images: dict[str, containerimages.Built]
) -> None:
    listed = set(containerd.ctr("images", "list", "--quiet").stdout.split())
    for built in images.values():
        assert f"docker.io/library/{built.name}:{built.tag}" in listed
        assert f"docker.io/library/{built.name}:latest" in listed


def test_busybox_runs_a_shell_with_the_tools_pods_use(containerd: Containerd) -> None:
    name = f"bb-{uuid.uuid4().hex[:6]}"
    script = "for t in sh wget nc httpd nslookup ip ps sleep; do which $t; done; id -un; test -d /tmp && echo tmp"
    out = containerd.ctr("run", "--rm", "docker.io/library/busybox:latest", name, "sh", "-c", script).stdout.split()
    assert out == [f"/bin/{t}" for t in ("sh", "wget", "nc", "httpd", "nslookup", "ip", "ps", "sleep")] + [
        "root",
        "tmp",
    ]


def test_echo_answers_with_the_pod_name_and_ip_inside_its_network_namespace(containerd: Containerd, netns: str) -> None:
    name = f"echo-{uuid.uuid4().hex[:6]}"
    containerd.ctr(
        "run",
        "--detach",
        "--with-ns",
        f"network:/var/run/netns/{netns}",
        "--env",
        "POD_NAME=web-7d9f",
        "--env",
        "POD_IP=10.244.1.7",
        "docker.io/library/echo:1.0",
        name,
    )
    deadline = time.monotonic() + 20
    answer = ""
    while time.monotonic() < deadline:
        # the client is a second container in the same network namespace, as in a pod
        fetched = containerd.ctr(
            "run",
            "--rm",
            "--with-ns",
            f"network:/var/run/netns/{netns}",
            "docker.io/library/busybox:latest",
            f"client-{uuid.uuid4().hex[:6]}",
            "timeout",  # not wget -T: Debian's busybox 1.35 wget crashes on it
            "3",
            "wget",
            "-q",
            "-O",
            "-",
            "http://127.0.0.1:8080/",
            check=False,
        )
        answer = fetched.stdout.strip()
        if answer:
            break
        time.sleep(0.1)
    assert answer == "pod web-7d9f ip 10.244.1.7 method GET path /"


def test_pause_holds_until_sigterm_then_exits(containerd: Containerd) -> None:
    name = f"pause-{uuid.uuid4().hex[:6]}"
    containerd.ctr("run", "--detach", "docker.io/library/pause:latest", name)

    def status() -> str:
        rows = [line.split() for line in containerd.ctr("tasks", "list").stdout.splitlines()[1:]]
        return next((row[2] for row in rows if row[0] == name), "")

    assert status() == "RUNNING"
    containerd.ctr("tasks", "kill", "--signal", "SIGTERM", name)
    deadline = time.monotonic() + 10
    while status() != "STOPPED":
        assert time.monotonic() < deadline, "pause ignored SIGTERM"
        time.sleep(0.05)
    containerd.ctr("tasks", "delete", name)
    containerd.ctr("containers", "delete", name)
