"""The commands that act on a lab as a whole: up, start, stop, down, status, kubeconfig, ssh,
ssh-config, logs. Each finds the lab's driver and asks it; none knows which driver it holds."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from provisioner import drivers
from provisioner.drivers.base import Driver, LabStatus
from provisioner.errors import ProvisionError
from provisioner.lab import allocation
from provisioner.lab import spec as labspec
from provisioner.lab.paths import LabPaths


def say(message: str) -> None:
    print(message, flush=True)


def lab_name(given: str | None) -> str:
    """``--name``, else ``$KUBELAB_LAB``, else ``kubelab``."""
    return given or os.environ.get("KUBELAB_LAB") or "kubelab"


def driver_of(name: str | None, *, spec: labspec.LabSpec | None = None) -> Driver:
    """The driver of the lab named so, with its saved spec (or the defaults for a lab not made yet)."""
    paths = LabPaths.for_lab(lab_name(name))
    if spec is None:
        spec = (
            labspec.LabSpec.from_json(paths.spec.read_text())
            if paths.spec.exists()
            else labspec.LabSpec(name=lab_name(name))
        )
    return drivers.for_lab(spec, paths, say=say)


def existing(name: str | None) -> Driver:
    """The driver of a lab that exists; one line saying how to make it otherwise."""
    driver = driver_of(name)
    if not driver.paths.spec.exists():
        raise ProvisionError(f"lab {driver.spec.name!r} does not exist; create it with: kubelab up")
    return driver


def up(args: argparse.Namespace) -> int:
    overrides = {field: getattr(args, field, None) for field in labspec.LabSpec.fields()}
    name = lab_name(args.name)
    overrides["name"] = name
    saved = LabPaths.for_lab(name).spec
    base = labspec.LabSpec.from_json(saved.read_text()) if saved.exists() else None
    spec, given = labspec.build_given(args.file, overrides, base=base)
    if base is None:  # --- a new lab: host ports and address ranges picked free (lab/allocation.py) ---
        spec = pick_free(spec, given)
    driver_of(spec.name, spec=spec).up()
    return 0


def pick_free(spec: labspec.LabSpec, given: frozenset[str]) -> labspec.LabSpec:
    """``spec`` with the host ports and address ranges not ``given`` moved off those in use here and
    those the other labs of this KUBELAB_HOME recorded; says which did not get their defaults."""
    driver = driver_of(spec.name, spec=spec)
    taken = allocation.gather(spec, driver.paths, networks=driver.ranges_in_use())
    chosen = allocation.allocate(spec, explicit=given, taken=taken)
    if chosen.picks:
        say(chosen.line(driver.paths.spec))
    return chosen.spec


def start(args: argparse.Namespace) -> int:
    existing(args.name).start()
    return 0


def stop(args: argparse.Namespace) -> int:
    stopped = driver_of(args.name).stop()
    say(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def down(args: argparse.Namespace) -> int:
    driver = driver_of(args.name)
    existed = driver.paths.root.exists()
    removed = driver.down()
    if removed:
        say(f"stopped: {', '.join(removed)}")
    say(
        f"removed lab {driver.spec.name!r} ({driver.paths.root})"
        if existed
        else f"lab {driver.spec.name!r} does not exist; nothing to do"
    )
    return 0


def render_status(status: LabStatus) -> list[str]:
    """``kubelab status`` as lines: the lab, then its machines and/or its processes on this host."""
    lines = [f"lab {status.lab!r} (driver {status.driver}, {status.summary}, state {status.root})"]
    if status.machines:
        lines.append(f"{'NODE':<24} {'ROLE':<7} {'IP':<16} {'VM':<9} {'ACCEL':<6} {'NODE STATUS':<12} COMPONENTS")
        for machine in status.machines:
            parts = " ".join(f"{c.name}={c.state}" for c in machine.components) or "-"
            lines.append(
                f"{machine.name:<24} {machine.role:<7} {machine.ip:<16} {machine.state:<9} {machine.accel:<6}"
                f" {machine.node:<12} {parts}"
            )
    if status.processes:
        lines.append(f"{'COMPONENT':<19} {'PID':<8} {'STATE':<9} {'HEALTH':<9} ENDPOINT")
        for row in status.processes:
            health = "healthy" if row.healthy else ("-" if row.state == "stopped" else "unhealthy")
            lines.append(f"{row.name:<19} {row.pid or '-':<8} {row.state:<9} {health:<9} {row.endpoint}")
        for row in status.processes:
            if row.log and (row.state == "exited" or (row.state == "running" and not row.healthy)):
                lines.append(f"  {row.name}: see {row.log}")
    lines += [f"{what}: {where}" for what, where in status.files]
    return lines


def status(args: argparse.Namespace) -> int:
    driver = driver_of(args.name)
    if not driver.paths.root.exists():
        say(f"lab {driver.spec.name!r} does not exist; create it with: kubelab up")
        return 1
    found = driver.status()
    for line in render_status(found):
        say(line)
    return 0 if found.healthy else 1


def kubeconfig(args: argparse.Namespace) -> int:
    paths = LabPaths.for_lab(lab_name(args.name))
    if not paths.kubeconfig.exists():
        raise ProvisionError(f"lab {lab_name(args.name)!r} has no kubeconfig yet; create the lab with: kubelab up")
    print(paths.kubeconfig)
    return 0


def ssh(args: argparse.Namespace) -> int:
    remote: list[str] = list(args.remote)
    argv = existing(args.name).ssh_argv(args.node, remote, tty=not remote and sys.stdin.isatty())
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 0  # not reached


def ssh_config(args: argparse.Namespace) -> int:
    print(existing(args.name).ssh_config(), end="")
    return 0


def logs(args: argparse.Namespace) -> int:
    argv = existing(args.name).logs_argv(args.node, args.component, follow=args.follow, tail=args.tail)
    return subprocess.run(argv, check=False).returncode
