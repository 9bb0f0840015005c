"""The guest image built for real (or taken from the cache): what is in it, and a clone of it booting.

The image comes from the usual cache (KUBELAB_GUEST_CACHE or /var/cache/kubelab/guest), so a host
that has built it once runs these tests in a minute. Its contents are read from a copy of the root
file system (``debugfs rdump``, no loop mounts) and checked with the image's own programs through
chroot; the boot test starts a clone under QEMU with TCG inside a network namespace of its own,
with QEMU's user-mode network in it, and logs in with a throwaway key given on the command line.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.artefacts import guestimage
from provisioner.system import packages
from provisioner.system.waiting import wait_for
from tests.support.components import in_ci, network_namespace, require

BOOT_TIMEOUT = 420.0  # TCG on a busy two-core host; an idle one answers in well under a minute
NODE = "kl-imagetest"
IN_IMAGE = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}


def _needs_root() -> None:
    if os.geteuid() != 0:
        reason = "building and booting the guest image needs root (mmdebstrap, chroot, network namespaces)"
        if in_ci():
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def image() -> guestimage.GuestImage:
    _needs_root()
    require(packages.MMDEBSTRAP, packages.MKE2FS, packages.QEMU_IMG)
    return guestimage.ensure(lambda _msg: None)


@pytest.fixture(scope="module")
def raw_disk(image: guestimage.GuestImage, tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("guest-disk") / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image.disk), str(raw)], check=True)
    return raw


@pytest.fixture(scope="module")
def tree(raw_disk: Path) -> Path:
    """The image's root file system copied out (modes without set-id bits: see the debugfs test)."""
    root = raw_disk.parent / "tree"
    root.mkdir()
    subprocess.run(["debugfs", "-R", f"rdump / {root}", str(raw_disk)], check=True, capture_output=True)
    return root


def in_tree(tree: Path, *argv: str, check: bool = True) -> str:
    """Run one of the image's programs in a chroot of the copied tree, with none of the host's environment."""
    done = subprocess.run(
        ["chroot", str(tree), *argv], env=IN_IMAGE, capture_output=True, text=True, timeout=120, check=False
    )
    if check:
        assert done.returncode == 0, f"{' '.join(argv)} in the image failed: {done.stderr.strip()}"
    return done.stdout


# --- the image and its cache ----------------------------------------------------------------------


def test_a_second_ensure_reuses_the_image(image: guestimage.GuestImage) -> None:
    said: list[str] = []
    again = guestimage.ensure(said.append)
    assert again.cached and again.digest == image.digest and again.disk == image.disk
    assert again.seconds < 5
    assert said == [f"guest image {image.digest} from the cache ({image.disk.parent})"]


def test_the_cache_entry_holds_disk_kernel_initrd_manifest_and_build_log(image: guestimage.GuestImage) -> None:
    entry = image.disk.parent
    assert entry.name == image.digest and entry.parent == guestimage.cache_root()
    assert image.kernel.read_bytes()[0x202:0x206] == b"HdrS"  # a bzImage, bootable with -kernel
    initrd = image.initrd.read_bytes()  # kubelab's own: an uncompressed newc archive of klibc, modules and /init
    assert initrd.startswith(b"070701") and len(initrd) < 2_000_000
    for member in (b"init\0", b"bin/run-init\0", b"lib/modules/virtio_pci.ko\0", b"lib/modules/virtio_blk.ko\0"):
        assert member in initrd
    manifest = json.loads((entry / "manifest.json").read_text())
    recipe = guestimage.load_recipe()
    assert manifest["digest"] == image.digest
    assert set(recipe.packages) <= set(manifest["packages"])
    assert any(w.startswith("aiohttp-") for w in manifest["wheels"])
    assert manifest["requirements"] == [f"{pin.name}=={pin.version}" for pin in guestimage.load_lock()]
    log = (entry / "build.log").read_text()
    for phase in ("wheelhouse", "packages", "filesystem", "qcow2"):
        assert f"=== {phase}: " in log


def test_the_disk_is_a_qcow2_of_the_recipes_size(image: guestimage.GuestImage) -> None:
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(image.disk)], check=True, capture_output=True, text=True
        ).stdout
    )
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == 8 * 1024**3
    assert "backing-filename" not in info


def test_modes_with_set_id_and_sticky_bits_survive_into_the_file_system(raw_disk: Path) -> None:
    def mode(path: str) -> str:
        out = subprocess.run(
            ["debugfs", "-R", f"stat {path}", str(raw_disk)], check=True, capture_output=True, text=True
        )
        found = re.search(r"Mode:\s+(\d+)", out.stdout)
        assert found, out.stdout
        return found.group(1)

    assert mode("/tmp") == "01777"
    assert mode("/usr/bin/sudo") == "04755"


# --- what is inside -------------------------------------------------------------------------------


def test_the_venv_imports_the_agents_dependencies_with_the_guests_python(tree: Path) -> None:
    out = in_tree(
        tree,
        "/opt/kubelab/venv/bin/python",
        "-c",
        "import sys, aiohttp, aetcd, grpc, uvloop, orjson, yaml, jsonpatch; print(sys.version_info[:2], sys.prefix)",
    )
    assert out.strip() == "(3, 11) /opt/kubelab/venv"


def test_the_venv_holds_exactly_the_locked_versions_of_the_agents_packages(tree: Path) -> None:
    listing = in_tree(
        tree,
        "/opt/kubelab/venv/bin/python",
        "-c",
        "import importlib.metadata as m, json; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
    )
    installed = {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in json.loads(listing).items()}
    for tool in ("pip", "setuptools"):
        installed.pop(tool, None)
    locked = {re.sub(r"[-_.]+", "-", pin.name).lower(): pin.version for pin in guestimage.load_lock()}
    assert installed == locked
    assert not {"kubernetes", "jinja2", "libvirt-python", "ansible-core"} & set(installed)
    assert {"cryptography", "pyjwt"} <= set(installed)  # the API server's ServiceAccount tokens


def test_the_wheelhouse_stays_in_the_image_and_the_project_does_not(tree: Path) -> None:
    wheels = tree / "opt/kubelab/wheels"
    assert (wheels / "requirements.txt").read_text() == guestimage.guest_requirements(
        guestimage.load_lock(), guestimage.load_recipe().host_only
    )
    assert any(wheels.glob("aetcd-*.whl"))
    assert not list(wheels.glob("kubernetes-*.whl"))
    assert not list((tree / "opt/kubelab/venv/lib").glob("python3.11/site-packages/kubelab*"))
    assert not list((tree / "opt/kubelab/venv/lib").glob("python3.11/site-packages/libvirt*"))
    assert not list((tree / "opt/kubelab/venv/lib").glob("python3.11/site-packages/kubernetes*"))


def test_the_roles_services_are_installed_but_disabled(tree: Path) -> None:
    for binary in ("usr/bin/etcd", "usr/bin/etcdctl", "usr/bin/containerd", "usr/sbin/runc", "usr/bin/docker-registry"):
        assert (tree / binary).exists(), binary
    assert (tree / "usr/lib/cni/bridge").exists()
    units = ["etcd.service", "docker-registry.service", "containerd.service"]
    assert in_tree(tree, "systemctl", "is-enabled", *units, check=False).split() == ["disabled"] * 3


def test_firstboot_networkd_and_ssh_are_enabled_and_the_recipes_masks_applied(tree: Path) -> None:
    units = ["kubelab-firstboot.service", "systemd-networkd.service", "ssh.service"]
    assert in_tree(tree, "systemctl", "is-enabled", *units).split() == ["enabled"] * 3
    masked = list(guestimage.load_recipe().mask)
    assert in_tree(tree, "systemctl", "is-enabled", *masked, check=False).split() == ["masked"] * len(masked)


def test_udev_skips_the_rules_for_hardware_a_node_lacks_and_keeps_module_loading(tree: Path) -> None:
    rules = tree / "etc/udev/rules.d"
    assert os.readlink(rules / "60-persistent-storage.rules") == "/dev/null"
    assert os.readlink(rules / "70-uaccess.rules") == "/dev/null"
    for kept in ("50-udev-default", "60-block", "80-drivers"):
        assert not (rules / f"{kept}.rules").exists() and (tree / f"usr/lib/udev/rules.d/{kept}.rules").is_file()
    # pods' veth ends: systemd's rules leave them out (no device unit, no systemd-sysctl run), and
    # only them
    packaged = (tree / "usr/lib/udev/rules.d/99-systemd.rules").read_text()
    overridden = (rules / "99-systemd.rules").read_text()
    assert overridden.count('SUBSYSTEM=="net", KERNEL!="lo|veth*",') == 2
    assert overridden.splitlines()[1:] == packaged.replace('KERNEL!="lo",', 'KERNEL!="lo|veth*",').splitlines()


def test_the_initrd_loads_the_virtio_modules_before_it_mounts_root(image: guestimage.GuestImage) -> None:
    initrd = image.initrd.read_bytes()
    script = initrd[initrd.index(b"#!/bin/sh") :].split(b"\0", 1)[0].decode()
    loads = re.search(r"for module in ([a-z_ -]+); do", script)
    assert loads, script
    modules = loads.group(1).split()
    assert modules.index("virtio") < modules.index("virtio_pci") < modules.index("virtio_blk")
    assert script.index("insmod") < script.index("mount -t ext4") < script.index("exec run-init /root /sbin/init")


def test_a_clone_starts_without_identity(tree: Path) -> None:
    assert (tree / "etc/machine-id").read_text() == ""
    assert not list((tree / "etc/ssh").glob("ssh_host_*"))
    assert not (tree / "root/.ssh/authorized_keys").exists()
    assert (tree / "etc/resolv.conf").read_text() == ""
    assert "/dev/vda\t/\text4" in (tree / "etc/fstab").read_text()


# --- a clone boots --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Guest:
    namespace: str
    key: Path
    qmp: Path  # QEMU's control socket: the power button is pressed through it
    process: subprocess.Popen[bytes]
    seconds_to_ssh: float

    def ssh(self, command: str, *, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [
            *("ip", "netns", "exec", self.namespace, "ssh", "-i", str(self.key), "-p", "2222"),
            *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"),
            *("-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@127.0.0.1", command),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"ssh {command!r} failed ({done.returncode}): {done.stderr.strip()}")
        return done


@pytest.fixture(scope="module")
def guest(image: guestimage.GuestImage, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    """A clone of the image booted under TCG (the host's KVM may not run guests), reachable by ssh
    on 127.0.0.1:2222 inside a network namespace that exists for this test only."""
    require(packages.QEMU_SYSTEM, packages.SSH)
    work = tmp_path_factory.mktemp("guest-boot")
    key = work / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "imagetest", "-f", str(key)], check=True)
    line = key.with_suffix(".pub").read_text().strip()
    overlay = work / "node.qcow2"
    backing = ["-f", "qcow2", "-F", "qcow2", "-b", str(image.disk)]
    subprocess.run(["qemu-img", "create", "-q", *backing, str(overlay)], check=True)
    cmdline = (
        f"root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet kubelab.hostname={NODE} "
        f"kubelab.ssh={base64.b64encode(line.encode()).decode()}"
    )
    serial = work / "serial.log"
    qmp = work / "qmp.sock"
    with network_namespace("kl-imgtest") as namespace:
        qemu = [
            *("ip", "netns", "exec", namespace, "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg"),
            *("-m", "1024", "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", cmdline),
            *("-drive", f"file={overlay},if=virtio", "-netdev", "user,id=n,hostfwd=tcp:127.0.0.1:2222-:22"),
            *("-device", "virtio-net-pci,netdev=n", "-nographic", "-monitor", "none", "-serial", f"file:{serial}"),
            *("-qmp", f"unix:{qmp},server=on,wait=off"),
        ]
        with (work / "qemu.log").open("w") as log:
            began = time.monotonic()
            process = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            guest = Guest(namespace, key, qmp, process, 0.0)
            answered = wait_for(
                lambda: guest.ssh("true", check=False, timeout=60).returncode == 0,
                timeout=BOOT_TIMEOUT,
                interval=1.0,
                abort=lambda: None if process.poll() is None else "qemu exited",
            )
            if not answered:
                tail = serial.read_text(errors="replace")[-2000:] if serial.exists() else ""
                raise AssertionError(f"no ssh within {BOOT_TIMEOUT:.0f} s; serial console:\n{tail}")
            yield Guest(namespace, key, qmp, process, time.monotonic() - began)
        finally:
            process.kill()
            process.wait()


def test_root_logs_in_with_the_key_from_the_command_line(guest: Guest) -> None:
    assert guest.ssh("id -un").stdout.strip() == "root"
    keys = guest.ssh("cat /root/.ssh/authorized_keys").stdout
    assert keys.strip().endswith("imagetest") and keys.endswith("\n")
    settings = guest.ssh("sshd -T").stdout.splitlines()
    assert "permitrootlogin without-password" in settings
    assert "passwordauthentication no" in settings


def test_the_node_takes_its_hostname_from_the_command_line(guest: Guest) -> None:
    assert guest.ssh("hostname; cat /etc/hostname").stdout.split() == [NODE, NODE]
    assert f"127.0.1.1\t{NODE}" in guest.ssh("cat /etc/hosts").stdout


def test_the_node_made_itself_one_ed25519_host_key(guest: Guest) -> None:
    assert guest.ssh("ls /etc/ssh/ | grep ^ssh_host_").stdout.split() == [
        "ssh_host_ed25519_key",
        "ssh_host_ed25519_key.pub",
    ]


def test_networkd_configures_eth0_by_dhcp(guest: Guest) -> None:
    address = guest.ssh("ip -4 -o addr show dev eth0").stdout
    assert "inet 10.0.2.15/24" in address and "dynamic" in address  # QEMU's DHCP server, a lease
    assert "default via 10.0.2.2 dev eth0" in guest.ssh("ip -4 route").stdout


def test_the_boot_leaves_no_failed_unit_and_the_roles_services_stopped(guest: Guest) -> None:
    assert guest.ssh("systemctl --failed --no-legend --plain").stdout.strip() == ""
    states = guest.ssh("systemctl is-active etcd docker-registry containerd", check=False).stdout.split()
    assert states == ["inactive"] * 3
    assert re.fullmatch(r"[0-9a-f]{32}\n", guest.ssh("cat /etc/machine-id").stdout)


def test_the_agents_runtime_imports_in_the_guest(guest: Guest) -> None:
    out = guest.ssh("/opt/kubelab/venv/bin/python -c 'import aiohttp, aetcd, uvloop; print(\"ok\")'", timeout=300)
    assert out.stdout.strip() == "ok"


def press_power_button(qmp: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(qmp))
        channel = sock.makefile("rw")
        channel.readline()  # QEMU's greeting
        for command in ("qmp_capabilities", "system_powerdown"):
            channel.write(json.dumps({"execute": command}) + "\n")
            channel.flush()
            reply = json.loads(channel.readline())
            while "event" in reply:  # events (POWERDOWN) may come before the command's answer
                reply = json.loads(channel.readline())
            assert "return" in reply, f"{command}: {reply}"


def test_the_power_button_shuts_the_node_down_cleanly(guest: Guest) -> None:
    """Last in this module: the clone is off afterwards. libvirt's shutdown presses this button."""
    press_power_button(guest.qmp)
    assert wait_for(lambda: guest.process.poll() is not None, timeout=120, interval=0.5)
