"""What a container's cgroup tells of its end: how many times the kernel's OOM killer killed in it.

containerd puts a container's task in the cgroup its runtime spec names, ``/<namespace>/<container
id>`` (:mod:`agents.kubelet.oci`), which stays until the task is removed. Both hierarchies count OOM
kills in a line ``oom_kill N``: cgroup v2 (the VM guests) in ``memory.events`` of the cgroup's
directory, cgroup v1 (this project's hosts) in ``memory.oom_control`` of the memory controller's
hierarchy. This is the second witness beside containerd's OOM event, which a restarted event stream
can miss.
"""

from __future__ import annotations

from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def oom_kill_count(text: str) -> int:
    """The ``oom_kill N`` line of ``memory.events`` (v2) or ``memory.oom_control`` (v1); 0 without one."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value.strip())
    return 0


def oom_kills(cgroup: str, *, root: Path = CGROUP_ROOT) -> int:
    """OOM kills in ``cgroup`` (a path like ``/k8s.io/<id>``) under either hierarchy; 0 when the
    cgroup is gone or the kernel does not say."""
    relative = cgroup.strip("/")
    for path in (root / relative / "memory.events", root / "memory" / relative / "memory.oom_control"):
        try:
            return oom_kill_count(path.read_text())
        except OSError:
            continue
    return 0
