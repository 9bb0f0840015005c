"""A pod's network and UTS namespaces made and removed with system calls, as ``ip netns add``,
``ip netns delete`` and ``unshare --uts`` would make and remove them; checked with those programs.

Each test's namespaces carry a name of its own and are removed by that name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.kubelet import namespaces
from agents.kubelet.runtime import is_mounted
from agents.kubelet.sandbox import NETNS_DIR

pytestmark = pytest.mark.integration


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)


@pytest.fixture
def netns_name() -> Iterator[str]:
    name = f"kl-test-ns-{uuid.uuid4().hex[:8]}"
    yield name
    if (NETNS_DIR / name).exists():
        run("ip", "netns", "delete", name)


async def test_a_network_namespace_shows_in_ip_netns_with_lo_up_and_goes_with_its_file(netns_name: str) -> None:
    path = NETNS_DIR / netns_name

    await namespaces.add_netns(path)

    assert netns_name in run("ip", "netns", "list").stdout.split()
    lo = run("ip", "-n", netns_name, "-o", "link", "show", "lo")
    assert lo.returncode == 0 and ",UP," in lo.stdout, lo.stdout + lo.stderr
    # localhost answers inside: a connection to a port listening on 127.0.0.1
    code = (
        "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
        "socket.create_connection(s.getsockname(), 2)"
    )
    reply = run("ip", "netns", "exec", netns_name, sys.executable, "-c", code)
    assert reply.returncode == 0, reply.stderr
    # its own namespace: not the kubelet's
    links = run("ip", "-n", netns_name, "-o", "link", "show").stdout.splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"]

    namespaces.delete_netns(path)

    assert not path.exists()
    assert netns_name not in run("ip", "netns", "list").stdout.split()
    namespaces.delete_netns(path)  # a second time: nothing to do, no error


async def test_a_network_namespace_that_exists_is_refused_and_left_as_it_is(netns_name: str) -> None:
    path = NETNS_DIR / netns_name
    await namespaces.add_netns(path)

    with pytest.raises(FileExistsError):
        await namespaces.add_netns(path)

    assert is_mounted(path)
    assert run("ip", "-n", netns_name, "-o", "link", "show", "lo").returncode == 0
    namespaces.delete_netns(path)


def thread_namespaces() -> set[str]:
    """The network and UTS namespaces of every thread of this process."""
    return {
        os.readlink(f"/proc/self/task/{task}/ns/{kind}")
        for task in os.listdir("/proc/self/task")
        for kind in ("net", "uts")
    }


async def test_no_thread_of_the_kubelet_stays_in_a_namespace_it_made(netns_name: str, tmp_path: Path) -> None:
    before = thread_namespaces()

    await namespaces.add_netns(NETNS_DIR / netns_name)
    await namespaces.add_uts(tmp_path / "uts", "web-0")

    assert thread_namespaces() == before
    namespaces.delete_netns(NETNS_DIR / netns_name)
    namespaces.unmount(tmp_path / "uts")


async def test_a_uts_namespace_holds_the_pod_s_hostname_until_unmounted(tmp_path: Path) -> None:
    path = tmp_path / "uts"
    own = run("hostname").stdout.strip()

    await namespaces.add_uts(path, "web-0")
    try:
        assert is_mounted(path)
        assert run("nsenter", f"--uts={path}", "hostname").stdout.strip() == "web-0"
        assert run("hostname").stdout.strip() == own
    finally:
        namespaces.unmount(path)

    assert not is_mounted(path)
    namespaces.unmount(path)  # not mounted: no error
