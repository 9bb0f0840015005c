"""Scenario 11 (last): `kubelab down` removes every domain, network, disk, namespace and process."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kubelab_testing.lab import Lab
from provisioner.drivers.libvirt import daemon as libvirthost
from provisioner.drivers.libvirt.plan import CONSOLE_ROOT, VM_ROOT


def _netns() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def _processes_mentioning(text: str) -> list[str]:
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                out.append(f"{proc.name}: {cmdline}")
    return out


def test_down_leaves_nothing_behind(kubelab_lab: Lab) -> None:
    started_daemon = libvirthost.current()
    down = kubelab_lab.cli("down", "--name", kubelab_lab.name, timeout=600)
    assert down.ok, down.out + down.err
    assert not kubelab_lab.root.exists()
    assert not (VM_ROOT / kubelab_lab.name).exists() and not (CONSOLE_ROOT / kubelab_lab.name).exists()
    assert not _processes_mentioning(f"-name guest={kubelab_lab.name}-")  # no QEMU of the lab
    assert not _processes_mentioning(str(kubelab_lab.root))  # no tunnel, no ssh of the lab
    if started_daemon is not None and started_daemon.self_contained:
        import libvirt  # noqa: PLC0415

        # the lab's domains and network are gone; with no other lab left, so are kubelab's daemons
        assert libvirthost.NETNS not in _netns() or libvirthost.current() is not None
        if libvirthost.current() is not None:
            conn = libvirt.open(libvirthost.URI)
            try:
                assert not [d.name() for d in conn.listAllDomains() if d.name().startswith(kubelab_lab.name + "-")]
                assert f"kubelab-{kubelab_lab.name}" not in [n.name() for n in conn.listAllNetworks()]
            finally:
                conn.close()
