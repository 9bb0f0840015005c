"""``kubelab addons list|enable|disable``: the cluster add-ons a lab runs."""

from __future__ import annotations

import argparse

from provisioner.addons import catalog, manager
from provisioner.cli.lab import existing, say
from provisioner.errors import SpecError
from provisioner.lab.apiclient import LabApi


def run(args: argparse.Namespace) -> int:
    known = catalog.load()
    names = list(getattr(args, "addons", []) or [])
    refused = catalog.unknown(known, names)
    if refused:
        raise SpecError(refused)  # before the lab is looked at
    driver = existing(args.name)
    api = LabApi(f"https://127.0.0.1:{driver.spec.api_port}", driver.paths)
    choices = catalog.read_choices(driver.paths.root)
    if args.addons_command == "list":
        on = set(catalog.enabled(known, choices))
        say(f"{'NAME':<10} {'ENABLED':<8} {'STATUS':<40} DESCRIPTION")
        for name, addon in sorted(known.items()):
            state = manager.status(api, addon, driver.spec)
            say(f"{name:<10} {'yes' if name in on else 'no':<8} {state:<40} {addon.description}")
        return 0
    wanted = args.addons_command == "enable"
    changed = [n for n in names if (n in catalog.enabled(known, choices)) != wanted]
    for name in names:
        choices[name] = wanted
    catalog.write_choices(driver.paths.root, choices)
    manager.converge(api, driver.registry, driver.spec, driver.paths, say=say)
    verb = "enabled" if wanted else "disabled"
    unchanged = [n for n in names if n not in changed]
    say(
        f"{verb}: {', '.join(changed) or 'nothing new'}"
        + (f" (already {verb}: {', '.join(unchanged)})" if unchanged else "")
    )
    return 0
