"""``kubelab fault``: break a lab on purpose and heal it (provisioner.faults does the work)."""

from __future__ import annotations

import argparse
import time

from provisioner.cli.lab import existing, paths_of, say
from provisioner.faults.executor import FaultOps
from provisioner.lab import lock


def run(args: argparse.Namespace) -> int:
    paths = paths_of(args.name)
    with lock.held(paths.root.parent, paths.root.name, f"fault {args.fault_command}"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    ops = FaultOps(existing(args.name), say=say)
    if args.fault_command == "list":
        rows = ops.rows()
        if not rows:
            say(f"no faults in lab {ops.lab!r}")
            return 0
        say(f"{'FAULT':<10} {'NODE':<22} {'COMPONENT':<19} {'SINCE':<9} NOW")
        for row in rows:
            since = time.strftime("%H:%M:%S", time.localtime(row.fault.since))
            say(f"{row.fault.kind:<10} {row.fault.node:<22} {row.fault.component or '-':<19} {since:<9} {row.state}")
        return 0
    if args.fault_command == "heal":
        ops.heal(args.node)
        if args.wait:
            ops.driver.wait_ready()
        return 0
    ops.inject(args.fault_command, args.node, getattr(args, "component", ""))
    return 0
