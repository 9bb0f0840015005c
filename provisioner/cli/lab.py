"""The commands that act on a lab as a whole: up, start, stop, down, list, status, kubeconfig, ssh,
ssh-config, logs. The lifecycle (``provisioner.lifecycle``) carries out the first five under the lab's
lock; the others ask the lab's driver. None knows which driver a lab uses."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from provisioner import drivers, lifecycle
from provisioner.drivers.base import Driver, LabStatus
from provisioner.errors import ProvisionError
from provisioner.lab import identity as labidentity
from provisioner.lab import spec as labspec
from provisioner.lab.paths import LabPaths, default_home


def say(message: str) -> None:
    print(message, flush=True)


def lab_name(given: str | None) -> str:
    """``--name``, else ``$KUBELAB_LAB``, else ``kubelab``."""
    return given or os.environ.get("KUBELAB_LAB") or "kubelab"


def paths_of(name: str | None) -> LabPaths:
    return LabPaths.for_lab(lab_name(name))


def driver_of(name: str | None) -> Driver:
    """The driver of the lab named so, with its saved settings (or the defaults for a lab not made yet)."""
    paths = paths_of(name)
    spec = lifecycle.saved_spec(paths) or labspec.LabSpec(name=lab_name(name))
    return drivers.for_lab(spec, paths, say=say, identity=labidentity.read(paths))


def existing(name: str | None) -> Driver:
    """The driver of a lab that exists; one line saying how to make it otherwise."""
    lab = lifecycle.existing(paths_of(name))
    assert lab.spec is not None
    return lifecycle.driver_for(lab, lab.spec, say)


def up(args: argparse.Namespace) -> int:
    overrides = {field: getattr(args, field, None) for field in labspec.LabSpec.fields()}
    paths = paths_of(args.name)
    overrides["name"] = paths.root.name
    spec, given = labspec.build_given(args.file, overrides, base=lifecycle.saved_spec(paths))
    lifecycle.up(paths, spec, given=given, say=say)
    return 0


def start(args: argparse.Namespace) -> int:
    lifecycle.start(paths_of(args.name), say=say)
    return 0


def stop(args: argparse.Namespace) -> int:
    stopped = lifecycle.stop(paths_of(args.name), say=say)
    say(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def down(args: argparse.Namespace) -> int:
    if args.orphans:
        removed = lifecycle.down_orphans(default_home())
        for resource in removed:
            say(f"removed {resource.describe()}")
        say(f"removed {len(removed)} orphans" if removed else "no orphans")
        return 0
    paths = paths_of(args.name)
    done = lifecycle.down(paths, say=say)
    if done.stopped:
        say(f"stopped: {', '.join(done.stopped)}")
    for resource in done.leftovers:
        say(f"removed {resource.describe()}")
    if done.existed or done.leftovers:
        say(f"removed lab {paths.root.name!r} ({paths.root})")
    else:
        say(f"lab {paths.root.name!r} does not exist; nothing to do")
    return 0


def listing(_args: argparse.Namespace) -> int:
    """Every lab on this host (all homes), its driver and health, and what belongs to no lab."""
    home = default_home()
    listed, orphans = lifecycle.listing(home, say=lambda _m: None)
    say(f"{'LAB':<20} {'DRIVER':<8} {'HEALTH':<10} {'UID':<9} STATE")
    for row in listed:
        driver = row.lab.spec.driver if row.lab.spec else "?"
        health = "-" if row.status is None else ("healthy" if row.status.healthy else "unhealthy")
        uid = row.lab.identity.short if row.lab.identity else "-"
        say(f"{row.lab.name:<20} {driver:<8} {health:<10} {uid:<9} {row.lab.paths.root}")
    if not listed:
        say("(no labs)")
    if orphans:
        say("orphans (belong to no lab; remove with: kubelab down --orphans):")
        for resource in orphans:
            say(f"  {resource.describe()}")
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
