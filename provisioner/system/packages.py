"""What the host must have, and installing what it lacks from Debian packages."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from provisioner.errors import HostError
from provisioner.system.waiting import Heartbeat


@dataclass(frozen=True)
class Requirement:
    command: str  # the executable that proves the package is there
    package: str  # the Debian package that provides it
    why: str


ETCD = Requirement("etcd", "etcd-server", "the cluster's state store")
ETCDCTL = Requirement("etcdctl", "etcd-client", "inspecting the state store")
REGISTRY = Requirement("docker-registry", "docker-registry", "the lab's image registry")
SKOPEO = Requirement("skopeo", "skopeo", "copying images into the lab's registry")
CONTAINERD = Requirement("containerd", "containerd", "the container runtime")
CTR = Requirement("ctr", "containerd", "containerd's own client")
IPROUTE = Requirement("ip", "iproute2", "network namespaces and routes")
CURL = Requirement("curl", "curl", "fetching from inside a network namespace (tests)")
NFT = Requirement("nft", "nftables", "the proxy's Service rules")
CNI_BRIDGE = Requirement("/usr/lib/cni/bridge", "containernetworking-plugins", "pod networking (CNI)")
RUNC = Requirement("runc", "runc", "the OCI runtime containerd starts containers with")
MMDEBSTRAP = Requirement("mmdebstrap", "mmdebstrap", "building the VM lab's guest image from Debian packages")
MKE2FS = Requirement("mke2fs", "e2fsprogs", "the guest image's ext4 root file system")
QEMU_IMG = Requirement("qemu-img", "qemu-utils", "the guest image's qcow2 disk")
QEMU_SYSTEM = Requirement("qemu-system-x86_64", "qemu-system-x86", "booting virtual machines")
SSH = Requirement("ssh", "openssh-client", "reaching virtual machines")
CHRONY = Requirement("chronyd", "chrony", "the VM lab's time source on its network")
HAPROXY = Requirement("haproxy", "haproxy", "the VM lab's load balancers (its cloud's)")
CHROMIUM = Requirement("chromium", "chromium", "a browser for the dashboard's tests and benchmark")
CHROMEDRIVER = Requirement("chromedriver", "chromium-driver", "driving chromium from selenium")

_apt_state = {"updated": False}


def missing(requirements: Sequence[Requirement]) -> list[Requirement]:
    return [r for r in requirements if shutil.which(r.command) is None]


def ensure(requirements: Sequence[Requirement], *, say: Callable[[str], None] = print) -> None:
    """Install the Debian packages of every requirement whose command is absent."""
    absent = missing(requirements)
    if not absent:
        return
    packages = sorted({r.package for r in absent})
    names = ", ".join(f"{r.command} ({r.why})" for r in absent)
    if os.geteuid() != 0:
        raise HostError(f"missing {names}; install with: sudo apt-get install -y {' '.join(packages)}")
    if shutil.which("apt-get") is None:
        raise HostError(f"missing {names} and there is no apt-get here; install {' '.join(packages)} by hand")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    say(f"installing Debian packages: {' '.join(packages)}")
    step = ["apt-get update"]
    try:
        with Heartbeat(f"Debian packages {' '.join(packages)}", say, last=lambda: f"running {step[0]}"):
            if not _apt_state["updated"]:
                subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, text=True)
                _apt_state["updated"] = True
            step[0] = "apt-get install"
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
                check=True,
                env=env,
                capture_output=True,
                text=True,
            )
    except subprocess.CalledProcessError as exc:
        last = (exc.stderr or exc.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise HostError(f"apt-get could not install {' '.join(packages)}: {last[0]}") from exc
    still = missing(requirements)
    if still:
        raise HostError(f"installed {' '.join(packages)} but {still[0].command} is still not on PATH")
