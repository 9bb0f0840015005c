"""``kubelab-agent simnodes`` / ``python -m agents.simnodes``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from agents.machinery import component
from agents.machinery.client import Client
from agents.machinery.settings import SettingsError
from agents.simnodes.settings import SimNodesSettings
from agents.simnodes.simulator import Simulator


def check(settings: SimNodesSettings) -> None:
    if settings.count < 1:
        raise SettingsError("count: simulate at least one node")


async def main(settings: SimNodesSettings, client: Client, ready: asyncio.Event) -> None:
    await Simulator(client, settings).run(ready)


def run(argv: Sequence[str]) -> int:
    return component.run("simnodes", SimNodesSettings, argv, main, check=check)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
