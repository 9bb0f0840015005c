"""The built-in images, built offline from Debian packages, run on a real containerd."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from provisioner.artefacts import containerimages
from provisioner.errors import HostError
from tests.support.components import Containerd, in_ci, network_namespace, running_containerd


def _build(cache: Path, *, force: bool = False, names: tuple[str, ...] = ()) -> dict[str, containerimages.Built]:
    try:
        built = containerimages.build_all(names, cache=cache, say=lambda _msg: None, force=force)
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
    assert set(images) == {"pause", "busybox", "echo", "nginx", "python", "redis"}
    assert images["busybox"].tag.startswith("1.")  # busybox-static's upstream version
    assert images["nginx"].tag.startswith("1.") and images["python"].tag.startswith("3.")
    assert images["echo"].tag == "1.0"
    assert all(b.archive.exists() and b.digest.startswith("sha256:") for b in images.values())


def test_a_second_build_comes_from_the_cache_and_a_forced_one_is_byte_identical(
    images: dict[str, containerimages.Built], tmp_path: Path
) -> None:
    again = _build(images["pause"].archive.parent)
    assert all(b.cached for b in again.values())
    fresh = _build(tmp_path, force=True, names=("pause", "echo", "nginx"))  # the larger ones take longer alike
    for name, built in ((n, images[n]) for n in fresh):
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


def _in_netns(containerd: Containerd, netns: str, image: str, *argv: str, detach: bool = False) -> str:
    """Runs a container of ``image`` in the network namespace, as a pod's containers share one; a
    client that fails gives its output all the same (the caller retries until the server answers)."""
    name = f"c-{uuid.uuid4().hex[:8]}"
    mode = "--detach" if detach else "--rm"
    ns = f"network:/var/run/netns/{netns}"
    argv = ("run", mode, "--with-ns", ns, f"docker.io/library/{image}", name, *argv)
    return containerd.ctr(*argv, check=detach).stdout


def _until(fetch: Callable[[], str], wanted: str) -> str:
    deadline = time.monotonic() + 20
    answer = fetch()
    while wanted not in answer and time.monotonic() < deadline:
        time.sleep(0.2)
        answer = fetch()
    return answer


def test_nginx_serves_its_default_page_on_port_80(containerd: Containerd, netns: str) -> None:
    _in_netns(containerd, netns, "nginx:latest", detach=True)
    wget = ("busybox:latest", "timeout", "3", "wget", "-q", "-O", "-", "http://127.0.0.1/")

    assert "<title>Welcome to nginx!</title>" in _until(lambda: _in_netns(containerd, netns, *wget), "Welcome to nginx")


def test_python_runs_with_its_standard_library_and_a_shell(containerd: Containerd) -> None:
    script = "import json, sqlite3, ssl, http.server, zlib, lzma, bz2, ctypes; print(json.dumps({'ok': 1}))"
    name = f"py-{uuid.uuid4().hex[:6]}"
    out = containerd.ctr("run", "--rm", "docker.io/library/python:latest", name, "python", "-c", script).stdout
    assert out.strip() == '{"ok": 1}'
    name = f"py-{uuid.uuid4().hex[:6]}"
    out = containerd.ctr("run", "--rm", "docker.io/library/python:latest", name, "sh", "-c", "echo $0 ok").stdout
    assert out.strip() == "sh ok"


def test_redis_answers_clients_from_other_containers(containerd: Containerd, netns: str) -> None:
    # arguments alone go to redis-server, as with the Docker Hub image's entrypoint (ctr's arguments
    # replace the whole command line, so the entrypoint is named here as a pod's args would follow it)
    _in_netns(containerd, netns, "redis:latest", "/usr/local/bin/docker-entrypoint.sh", "--port", "6380", detach=True)

    ping = ("redis:latest", "redis-cli", "-p", "6380", "ping")
    assert _until(lambda: _in_netns(containerd, netns, *ping), "PONG").strip() == "PONG"


def test_the_dns_addon_image_is_reproducible_and_runs_the_projects_code(containerd: Containerd, tmp_path: Path) -> None:
    first = _build(tmp_path / "a", names=("kube-dns",))["kube-dns"]
    again = _build(tmp_path / "b", names=("kube-dns",))["kube-dns"]  # its own downloads, its own build
    assert first.digest == again.digest and first.tag == again.tag and first.tag.startswith("1.0-")
    containerd.ctr("images", "import", str(first.archive))
    name = f"dns-{uuid.uuid4().hex[:6]}"
    reference = f"docker.io/library/kube-dns:{first.tag}"
    # the whole command line, as ctr replaces it: the add-on's entry point with its imports (dnslib, aiohttp)
    out = containerd.ctr("run", "--rm", reference, name, "/usr/bin/python3", "-m", "agents.dns", "--help").stdout
    assert "--domain DOMAIN" in out and "the cluster's DNS domain" in out
