"""``kubelab user add NAME``: a person's client certificate through the CSR API, and their kubeconfig."""

from __future__ import annotations

import argparse

from provisioner.cli.lab import existing, say
from provisioner.lab import users


def run(args: argparse.Namespace) -> int:
    users.check_name(args.user, args.groups)  # a bad name is refused before the lab is looked at
    driver = existing(args.name)
    users.add(driver.paths, args.user, args.groups, seconds=args.expiration_seconds, say=say)
    return 0
