"""The libvirt daemon the labs' machines run under, and the accelerator they use.

With a system libvirtd (a socket at /run/libvirt/libvirt-sock that kubelab did not start), labs use
``qemu:///system`` and their networks live on the host. ``LIBVIRT_DEFAULT_URI``, as every libvirt
client honours it, points kubelab at another libvirt, which it then uses as it is. Without one (hosts without a service
manager), kubelab runs its own: a network namespace ``kubelab-vms``, and ``virtlogd`` then
``libvirtd`` started inside it, so every bridge, tap and dnsmasq of every lab lives in that namespace
and no lab traffic touches the host's own network. The daemons are recorded by pid and start time
in /run/kubelab and stopped, with the namespace, when the last lab is removed.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provisioner.errors import HostError
from provisioner.system import processes as procs
from provisioner.system.waiting import Heartbeat, timed_out, wait_for

URI = "qemu:///system"
NETNS = "kubelab-vms"
SOCKET = Path("/run/libvirt/libvirt-sock")
LOG_SOCKET = Path("/run/libvirt/virtlogd-sock")
STATE = Path("/run/kubelab")
LOGS = Path("/var/log/kubelab")
START_TIMEOUT = 30.0  # each daemon, until its socket answers


def accelerator(choice: str, *, dev_kvm: Path = Path("/dev/kvm"), modules: Path = Path("/sys/module")) -> str:
    """``kvm`` where hardware KVM is usable (``/dev/kvm`` and the kvm_intel or kvm_amd module), else ``tcg``.

    A KVM device without either module (e.g. a paravirtual KVM) does not boot normal guests, so it
    counts as unusable. ``choice`` other than ``auto`` forces the answer.
    """
    if choice != "auto":
        return choice
    hardware = any((modules / name).exists() for name in ("kvm_intel", "kvm_amd"))
    return "kvm" if dev_kvm.exists() and hardware else "tcg"


@dataclass(frozen=True)
class Daemon:
    uri: str
    netns: str  # '' when the system's libvirtd is used

    @property
    def self_contained(self) -> bool:
        return bool(self.netns)

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run where the lab networks are (inside the namespace in self-contained mode)."""
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv


def _socket_error(path: Path) -> str:
    """'' when something accepts connections on the unix socket ``path``, else why not."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            return f"no socket at {path} yet"
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}"
    return ""


def _answers(path: Path) -> bool:
    return not _socket_error(path)


def _records() -> dict[str, procs.ProcessRecord]:
    out = {}
    for name in ("virtlogd", "libvirtd"):
        record = procs.ProcessRecord.load(STATE, name)
        if record is not None and procs.alive(record):
            out[name] = record
    return out


def _netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def _kvm_device_permissions(device: Path = Path("/dev/kvm")) -> None:
    """Give /dev/kvm the owner and mode Debian's udev rules give it (root:kvm 0660) on hosts without
    udev. libvirt checks the device as the QEMU user; when only root can open it, libvirt takes every
    capability probe for stale and probes QEMU again on each domain definition (seconds each)."""
    try:
        stat = device.stat()
        kvm = grp.getgrnam("kvm").gr_gid
    except (OSError, KeyError):
        return
    if stat.st_gid != kvm or stat.st_mode & 0o060 != 0o060:
        os.chown(device, 0, kvm)
        device.chmod(0o660)


def chosen_uri() -> str:
    """The libvirt URI the user asked for with ``LIBVIRT_DEFAULT_URI``, or '' for kubelab's choice."""
    given = os.environ.get("LIBVIRT_DEFAULT_URI", "").strip()
    return "" if given == URI else given


def current() -> Daemon | None:
    """The daemon labs use now, without starting anything; None when there is none."""
    given = chosen_uri()
    if given:
        return Daemon(given, "")
    ours = _records()
    if "libvirtd" in ours:
        return Daemon(URI, NETNS)
    if _answers(SOCKET):
        return Daemon(URI, "")
    return None


def ensure(*, say: Callable[[str], None]) -> Daemon:
    """The libvirt ``LIBVIRT_DEFAULT_URI`` names; else the system libvirtd if one answers; else
    kubelab's own in its namespace (started if needed)."""
    found = current()
    if found is not None:
        return found
    for binary in ("libvirtd", "virtlogd"):
        if shutil.which(binary) is None:
            raise HostError(f"{binary} is missing; install it with: apt-get install -y libvirt-daemon-system")
    if SOCKET.exists():
        SOCKET.unlink()  # left by a daemon that is gone
    _kvm_device_permissions()
    if not _netns_exists(NETNS):
        subprocess.run(["ip", "netns", "add", NETNS], check=True, capture_output=True)
        subprocess.run(["ip", "-n", NETNS, "link", "set", "lo", "up"], check=True, capture_output=True)
    STATE.mkdir(parents=True, exist_ok=True)
    for name, ready in (("virtlogd", LOG_SOCKET), ("libvirtd", SOCKET)):
        _start(name, ready, say=say)
    say(f"libvirt: started libvirtd in network namespace {NETNS} (no system libvirtd here)")
    return Daemon(URI, NETNS)


def _start(name: str, ready: Path, *, say: Callable[[str], None]) -> None:
    """Start daemon ``name`` in kubelab's namespace and wait until its socket ``ready`` answers."""
    log = LOGS / f"{name}.log"
    record = procs.spawn(name, ["ip", "netns", "exec", NETNS, name], log=log)
    record.save(STATE)
    seen = ["not asked yet"]

    def answers() -> bool:
        seen[0] = _socket_error(ready)
        return not seen[0]

    def exited() -> str | None:
        if procs.alive(record):
            return None
        seen[0] = f"it exited ({procs.log_tail(log, 1) or 'no output'})"
        return seen[0]

    what = f"{name} to answer at {ready}"
    if not wait_for(
        answers,
        timeout=START_TIMEOUT,
        interval=0.1,
        abort=exited,
        what=what,
        say=say,
        last=lambda: seen[0],
        slowest=1.0,
    ):
        procs.stop(record)
        raise HostError(
            f"{name} did not start in namespace {NETNS} ({timed_out(what, START_TIMEOUT, seen[0])}); see {log}"
        )


def release(*, still_used: bool, say: Callable[[str], None]) -> None:
    """Stop kubelab's own daemons and remove their namespace when no lab uses them any more."""
    if still_used:
        return
    ours = _records()
    for name in ("libvirtd", "virtlogd"):
        record = ours.get(name)
        if record is not None:
            with Heartbeat(f"{name} (pid {record.pid}) to stop", say):
                procs.stop(record, grace=15.0)
        with contextlib.suppress(FileNotFoundError):
            (STATE / f"{name}.json").unlink()
    if ours:
        if _netns_exists(NETNS):
            subprocess.run(["ip", "netns", "delete", NETNS], capture_output=True, check=False)
        say(f"libvirt: stopped kubelab's libvirtd and removed network namespace {NETNS}")


def state_of(daemon: Daemon) -> str:
    return json.dumps({"uri": daemon.uri, "netns": daemon.netns})
