"""What the node and each container use, read from the kernel: CPU time and memory working set.

This is the kubelet's own reading of usage, what kube's kubelet asks cadvisor for. A container's task
lives in the cgroup its runtime spec names, ``/<containerd namespace>/<container id>``
(:mod:`agents.kubelet.oci`), under either hierarchy:

- cgroup v2 (the VM guests): ``cpu.stat``'s ``usage_usec``; ``memory.current``; ``memory.stat``'s
  ``inactive_file`` and ``anon``; ``memory.max``.
- cgroup v1 (this project's hosts): ``cpuacct/<path>/cpuacct.usage`` (nanoseconds);
  ``memory/<path>/memory.usage_in_bytes``; ``memory.stat``'s ``total_inactive_file`` and
  ``total_rss``; ``memory.limit_in_bytes``.

The working set is kube's: the memory in use minus the inactive file cache (what the kernel can drop
first), never below zero. The node's CPU time is the busy time of all CPUs in ``/proc/stat`` (every
state but idle and iowait; guest time is already inside user and nice) over USER_HZ; the node's
working set is ``MemTotal - MemAvailable`` of ``/proc/meminfo`` (cadvisor's root cgroup is not read:
on the hosts it is the host's, not a node's), its usage ``MemTotal - MemFree``.

Parsers take the files' text and are pure; the readers at the bottom are a thin layer over them that
take the root directories as arguments, so tests read fixture trees. A cgroup that is gone (its
container ended between the kubelet's look and the read) reads as None, not as an error.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_ROOT = Path("/proc")
USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
NO_LIMIT = 1 << 62  # cgroup v1 writes "no limit" as the largest page-aligned counter (about 2**63)


@dataclass(frozen=True)
class Usage:
    """One reading of a cgroup or of the node."""

    at: float  # Unix time of the reading
    cpu_seconds: float  # CPU time used so far, in core-seconds
    memory_bytes: int  # memory in use, page cache included
    working_set_bytes: int  # memory in use minus the inactive file cache
    rss_bytes: int = 0  # anonymous memory (0: not told)
    limit_bytes: int | None = None  # None: no limit; the node's is its MemTotal

    @property
    def available_bytes(self) -> int | None:
        """What is left before the limit (None without one), as kube's availableBytes."""
        return None if self.limit_bytes is None else max(0, self.limit_bytes - self.working_set_bytes)


def flat_keyed(text: str) -> dict[str, int]:
    """A cgroup file of ``key value`` lines (``cpu.stat``, ``memory.stat``); other lines are skipped."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if value.strip().isdigit():
            out[key] = int(value.strip())
    return out


def _number(text: str) -> int | None:
    value = text.strip()
    return int(value) if value.isdigit() else None


def working_set(usage: int, inactive_file: int) -> int:
    return max(0, usage - inactive_file)


def cgroup_v2_usage(
    *, cpu_stat: str, memory_current: str, memory_stat: str, memory_max: str = "max", at: float
) -> Usage:
    """A cgroup v2 directory's reading from its files' text."""
    cpu = flat_keyed(cpu_stat)
    memory = flat_keyed(memory_stat)
    current = _number(memory_current) or 0
    return Usage(
        at=at,
        cpu_seconds=cpu.get("usage_usec", 0) / 1e6,
        memory_bytes=current,
        working_set_bytes=working_set(current, memory.get("inactive_file", 0)),
        rss_bytes=memory.get("anon", 0),
        limit_bytes=_number(memory_max),  # "max": none
    )


def cgroup_v1_usage(
    *, cpuacct_usage: str, usage_in_bytes: str, memory_stat: str, limit_in_bytes: str = "", at: float
) -> Usage:
    """A cgroup v1 reading from the text of its cpuacct and memory controllers' files."""
    memory = flat_keyed(memory_stat)
    usage = _number(usage_in_bytes) or 0
    limit = _number(limit_in_bytes)
    return Usage(
        at=at,
        cpu_seconds=(_number(cpuacct_usage) or 0) / 1e9,
        memory_bytes=usage,
        working_set_bytes=working_set(usage, memory.get("total_inactive_file", 0)),
        rss_bytes=memory.get("total_rss", 0),
        limit_bytes=limit if limit is not None and limit < NO_LIMIT else None,
    )


def proc_stat_cpu_seconds(text: str, *, user_hz: int = USER_HZ) -> float:
    """All CPUs' busy time so far, in seconds, from ``/proc/stat``'s ``cpu`` line: user, nice,
    system, irq, softirq and steal (guest and guest_nice are counted in user and nice already)."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            jiffies = [int(f) for f in fields[1:9]] + [0] * (8 - len(fields[1:9]))
            user, nice, system, _idle, _iowait, irq, softirq, steal = jiffies
            return (user + nice + system + irq + softirq + steal) / user_hz
    raise ValueError("no cpu line in /proc/stat")


def proc_stat_boot_time(text: str) -> float:
    """When the machine booted (``btime``, Unix seconds)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "btime" and value.strip().isdigit():
            return float(value.strip())
    raise ValueError("no btime line in /proc/stat")


def meminfo(text: str) -> dict[str, int]:
    """``/proc/meminfo`` in bytes, by field (``MemTotal: 123 kB``)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key.strip()] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def node_usage(*, proc_stat: str, proc_meminfo: str, at: float, user_hz: int = USER_HZ) -> Usage:
    """The node's reading: busy CPU time; MemTotal - MemAvailable as the working set."""
    memory = meminfo(proc_meminfo)
    total = memory["MemTotal"]
    available = memory.get("MemAvailable", memory.get("MemFree", 0))
    return Usage(
        at=at,
        cpu_seconds=proc_stat_cpu_seconds(proc_stat, user_hz=user_hz),
        memory_bytes=max(0, total - memory.get("MemFree", 0)),
        working_set_bytes=max(0, total - available),
        rss_bytes=memory.get("AnonPages", 0),
        limit_bytes=total,
    )


# --- reading the files -------------------------------------------------------------------------------


def _read(path: Path) -> str:
    return path.read_text()


def _read_or(path: Path, default: str) -> str:
    try:
        return path.read_text()
    except OSError:
        return default


def read_cgroup(cgroup: str, *, root: Path = CGROUP_ROOT, clock: Callable[[], float] = time.time) -> Usage | None:
    """The reading of ``cgroup`` (a path like ``/k8s.io/<id>``) under whichever hierarchy has it;
    None when neither has it (the container is gone)."""
    relative = cgroup.strip("/")
    v2 = root / relative
    try:
        if (v2 / "cpu.stat").exists():
            return cgroup_v2_usage(
                cpu_stat=_read(v2 / "cpu.stat"),
                memory_current=_read_or(v2 / "memory.current", "0"),
                memory_stat=_read_or(v2 / "memory.stat", ""),
                memory_max=_read_or(v2 / "memory.max", "max"),
                at=clock(),
            )
        memory = root / "memory" / relative
        return cgroup_v1_usage(
            cpuacct_usage=_read(root / "cpuacct" / relative / "cpuacct.usage"),
            usage_in_bytes=_read(memory / "memory.usage_in_bytes"),
            memory_stat=_read_or(memory / "memory.stat", ""),
            limit_in_bytes=_read_or(memory / "memory.limit_in_bytes", ""),
            at=clock(),
        )
    except OSError:
        return None


def read_node(*, proc: Path = PROC_ROOT, clock: Callable[[], float] = time.time) -> Usage:
    """The node's reading from ``/proc``; OSError or ValueError when the kernel's files cannot be read."""
    return node_usage(proc_stat=_read(proc / "stat"), proc_meminfo=_read(proc / "meminfo"), at=clock())


def read_boot_time(*, proc: Path = PROC_ROOT) -> float:
    return proc_stat_boot_time(_read(proc / "stat"))
