"""Real components for this repository's integration tests: etcd and containerd in temporary directories,
network namespaces, and the host packages they need (installed when missing; a host that cannot gets
the test skipped, or failed under CI=true)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubelab_testing.commands import stop
from kubelab_testing.lab import free_port
from provisioner.drivers.local import components
from provisioner.errors import HostError
from provisioner.lab import render
from provisioner.lab.paths import LabPaths
from provisioner.lab.pki import Pki
from provisioner.system import packages
from provisioner.system import processes as procs


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(*requirements: packages.Requirement) -> None:
    """Install what is missing; outside CI a host that cannot install it skips the test."""
    try:
        packages.ensure(requirements, say=lambda _msg: None)
    except HostError as exc:
        if in_ci():
            pytest.fail(f"CI=true and a component is missing: {exc}")
        pytest.skip(str(exc))


def require_kubectl() -> str:
    """The real kubectl (preinstalled on this project's machines; not a Debian package)."""
    found = shutil.which("kubectl")
    if found is None:
        if in_ci():
            pytest.fail("CI=true and kubectl is not installed")
        pytest.skip("kubectl is not installed")
    return found


@contextmanager
def running_etcd(root: Path) -> Iterator[components.Etcd]:
    require(packages.ETCD)
    paths = LabPaths(root)
    Pki(paths.pki).ensure_etcd(dns_names=["localhost"], ips=["127.0.0.1"])  # etcd serves TLS only
    etcd = components.Etcd(paths, "test", client_port=free_port(), peer_port=free_port())
    etcd.configure()
    record = components.start(etcd, paths, timeout=30)
    try:
        yield etcd
    finally:
        procs.stop(record)


@dataclass(frozen=True)
class Containerd:
    """A containerd of the test's own: its root, state and socket in a private directory."""

    socket: Path
    namespace: str

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = ["ctr", "--address", str(self.socket), "--namespace", self.namespace, *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
        return done


@contextmanager
def running_containerd(namespace: str = "kubelab-test") -> Iterator[Containerd]:
    """containerd and runc from Debian, started for the test and stopped (with its tasks) after."""
    require(packages.CONTAINERD, packages.CTR, packages.RUNC)
    # a short directory of its own: the socket path must stay under the 108 bytes of sun_path
    root = Path(tempfile.mkdtemp(prefix="kl-ctd-", dir="/tmp"))
    config = root / "config.toml"
    # the configuration the labs' nodes get (its disabled plugins included), with paths of its own
    config.write_text(
        render.render(
            "containerd/config.toml.j2",
            containerd_root=f"{root}/root",
            containerd_state=f"{root}/state",
            containerd_socket=f"{root}/c.sock",
        )
    )
    with (root / "containerd.log").open("w") as log:
        process = subprocess.Popen(
            ["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    daemon = Containerd(root / "c.sock", namespace)
    try:
        deadline = time.monotonic() + 30
        while daemon.ctr("version", check=False, timeout=10).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"containerd did not start: {(root / 'containerd.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield daemon
    finally:
        for task in daemon.ctr("tasks", "list", "--quiet", check=False).stdout.split():
            daemon.ctr("tasks", "kill", "--signal", "SIGKILL", task, check=False)
        for container in daemon.ctr("containers", "list", "--quiet", check=False).stdout.split():
            daemon.ctr("tasks", "delete", "--force", container, check=False)
            daemon.ctr("containers", "delete", container, check=False)
        stop(process, timeout=15)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def network_namespace(prefix: str = "kl-test") -> Iterator[str]:
    """A network namespace of the test's own (``lo`` up), deleted by its name afterwards."""
    require(packages.IPROUTE)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)
