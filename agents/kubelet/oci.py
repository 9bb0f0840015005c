"""The OCI runtime spec of a container and the snapshot its root file system grows from: pure functions.

Over containerd's gRPC API the client, not the daemon, writes a container's runtime spec (``config.json``
for runc) and names the snapshot its rootfs is prepared from. :func:`runtime_spec` writes the spec
containerd's own client writes for ``ctr containers create`` with the same options (its default Unix
spec: capabilities, mounts, masked and read-only paths, the devices cgroup, ``/<namespace>/<id>`` as
the cgroup; then the image's config, the environment, the working directory, the pod's namespaces,
bind mounts and limits), so a container looks the same whichever client made it; an integration test
compares the two on the installed containerd. :func:`chain_id` is the OCI image spec's ChainID of an
image's layers: the name of the committed snapshot of its unpacked rootfs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the client imports this module: the spec's type only
    from agents.kubelet.containers import ContainerSpec

OCI_VERSION = "1.0.2-dev"  # what containerd 1.6's default spec says
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)
MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
)
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# (type, major, minor): null, zero, full, tty, random, urandom, console, the ptys, ptmx
DEVICES = ((1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9), (5, 1), (136, None), (5, 2))
MAX_ID = 2**31 - 1  # runc's limit on uids and gids


class SpecError(ValueError):
    """The container cannot be described to the runtime (kube: CreateContainerError)."""


def _default_mounts() -> list[dict[str, Any]]:
    def mount(destination: str, kind: str, source: str, *options: str) -> dict[str, Any]:
        return {"destination": destination, "type": kind, "source": source, "options": list(options)}

    return [
        mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
        mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
        mount("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
        mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
        mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
        mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
        mount("/run", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
    ]


def merge_env(defaults: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """containerd's rule: each ``overrides`` entry replaces the default of the same name in place, or
    is appended."""
    merged = list(defaults)
    index = {entry.split("=", 1)[0]: i for i, entry in enumerate(merged)}
    for entry in overrides:
        name = entry.split("=", 1)[0]
        if name in index:
            merged[index[name]] = entry
        else:
            index[name] = len(merged)
            merged.append(entry)
    return merged


def user_of(image_user: str) -> tuple[int, int]:
    """The uid and gid an image's ``User`` names: empty (root), ``root``, ``uid`` (group 0, as
    containerd says for a uid the image's /etc/passwd does not list) or ``uid:gid``. Names other than
    root would need the image's /etc/passwd, which kubelab does not read."""
    if not image_user or image_user in ("root", "0"):
        return 0, 0
    name, _, group = image_user.partition(":")
    if not name.isdigit() or (group and not group.isdigit()):
        raise SpecError(f'the image\'s user "{image_user}" is a name: kubelab runs images whose user is numeric')
    uid = int(name)
    gid = int(group) if group else 0
    if uid > MAX_ID or gid > MAX_ID:
        raise SpecError(f'the image\'s user "{image_user}" is beyond {MAX_ID}')
    return uid, gid


def runtime_spec(spec: ContainerSpec, *, image_config: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """The OCI runtime spec of ``spec`` in containerd namespace ``namespace``; ``image_config`` is the
    image's config (``Env``, ``Entrypoint``, ``Cmd``, ``WorkingDir``, ``User``)."""
    uid, gid = user_of(str(image_config.get("User") or ""))
    image_env = [str(e) for e in image_config.get("Env") or []] or [DEFAULT_PATH]
    argv = list(spec.argv) or [*(image_config.get("Entrypoint") or []), *(image_config.get("Cmd") or [])]
    cwd = spec.working_dir or str(image_config.get("WorkingDir") or "") or "/"
    mounts = _default_mounts()
    for mount in spec.mounts:
        options = ["rbind", "ro" if mount.read_only else "rw"]
        mounts.append({"destination": mount.destination, "type": "bind", "source": mount.source, "options": options})
    devices: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    for major, minor in DEVICES:
        device: dict[str, Any] = {"allow": True, "type": "c", "major": major}
        if minor is not None:
            device["minor"] = minor
        devices.append(device | {"access": "rwm"})
    resources: dict[str, Any] = {"devices": devices}
    if spec.memory_limit:
        resources["memory"] = {"limit": spec.memory_limit}
    if spec.cpu_quota:
        resources["cpu"] = {"quota": spec.cpu_quota, "period": spec.cpu_period}
    namespaces: list[dict[str, str]] = [{"type": "pid", "path": spec.pidns} if spec.pidns else {"type": "pid"}]
    namespaces.append({"type": "ipc"})
    namespaces.append({"type": "uts", "path": spec.uts} if spec.uts else {"type": "uts"})
    namespaces.append({"type": "mount"})
    namespaces.append({"type": "network", "path": spec.netns} if spec.netns else {"type": "network"})
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "user": {"uid": uid, "gid": gid, "additionalGids": [gid]},
            "args": argv,
            "env": merge_env(image_env, [f"{k}={v}" for k, v in spec.env.items()]),
            "cwd": cwd,
            "capabilities": {kind: list(CAPABILITIES) for kind in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
            **({"terminal": True} if spec.tty else {}),
        },
        "root": {"path": "rootfs"},
        "mounts": mounts,
        "linux": {
            "resources": resources,
            "cgroupsPath": f"/{namespace}/{spec.id}",
            "namespaces": namespaces,
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }


def chain_id(diff_ids: Sequence[str]) -> str:
    """The ChainID of layers whose uncompressed digests are ``diff_ids`` (bottom first)."""
    if not diff_ids:
        raise SpecError("the image has no layers")
    chain = diff_ids[0]
    for diff in diff_ids[1:]:
        chain = "sha256:" + hashlib.sha256(f"{chain} {diff}".encode()).hexdigest()
    return chain
