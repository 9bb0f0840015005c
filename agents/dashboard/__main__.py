"""``python -m agents.dashboard``: the dashboard add-on's process (in its pod, or on the host with a
kubeconfig that names the API server)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from agents.dashboard import server
from agents.dashboard.settings import DashboardSettings
from agents.machinery import component
from agents.machinery.settings import SettingsError


def check(settings: DashboardSettings) -> None:
    if not 0 < settings.port < 65536:
        raise SettingsError(f"port: {settings.port} is not a port number")
    if settings.request_timeout <= 0:
        raise SettingsError("request-timeout must be positive")


def run(argv: Sequence[str]) -> int:
    return component.run("dashboard", DashboardSettings, argv, server.run, check=check)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
