"""``python -m agents.metricsserver``: the metrics-server add-on's process (in its pod, with its
ServiceAccount)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from agents.machinery import component
from agents.machinery.settings import SettingsError
from agents.metricsserver import server
from agents.metricsserver.durations import DurationError, parse_seconds
from agents.metricsserver.settings import MetricsServerSettings

ADDRESS_TYPES = ("Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP")
MIN_RESOLUTION = 10.0  # seconds, as metrics-server: the kubelet's measurements are not finer


def check(settings: MetricsServerSettings) -> None:
    try:
        resolution = parse_seconds(settings.metric_resolution)
        timeout = parse_seconds(settings.kubelet.request_timeout)
    except DurationError as exc:
        raise SettingsError(str(exc)) from exc
    if resolution < MIN_RESOLUTION:
        raise SettingsError(
            f"metric-resolution should be a time duration at least 10s, but value {settings.metric_resolution} provided"
        )
    if timeout <= 0:
        raise SettingsError("kubelet-request-timeout must be positive")
    for port, name in ((settings.secure_port, "secure-port"), (settings.kubelet.port, "kubelet-port")):
        if not 0 < port < 65536:
            raise SettingsError(f"{name}: {port} is not a port number")
    unknown = [t for t in settings.kubelet.preferred_address_types if t not in ADDRESS_TYPES]
    if unknown or not settings.kubelet.preferred_address_types:
        raise SettingsError(f"kubelet-preferred-address-types: choose among {', '.join(ADDRESS_TYPES)}")
    if (settings.tls_cert_file is None) != (settings.tls_private_key_file is None):
        raise SettingsError("tls-cert-file and tls-private-key-file are given together")


def run(argv: Sequence[str]) -> int:
    return component.run("metrics-server", MetricsServerSettings, argv, server.run, check=check)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
