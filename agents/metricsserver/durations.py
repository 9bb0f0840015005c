"""Go's duration syntax (``15s``, ``1m30s``, ``250ms``), as metrics-server's flags take durations and
as kube writes a ``metav1.Duration`` (a NodeMetrics' ``window``: ``15.011s``)."""

from __future__ import annotations

import re

from agents.machinery.errors import KubelabError

_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 10**9,
    "m": 60 * 10**9,
    "h": 3600 * 10**9,
}
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


class DurationError(KubelabError):
    """A duration does not parse."""


def parse_nanos(text: str) -> int:
    """Nanoseconds of a Go duration such as ``15s`` or ``1m0.5s`` (``0`` alone is zero)."""
    raw = text.strip()
    if raw in ("0", "+0", "-0"):
        return 0
    sign = -1 if raw.startswith("-") else 1
    body = raw.lstrip("+-")
    total, pos = 0, 0
    while pos < len(body):
        match = _PART.match(body, pos)
        if match is None or match.group(1) in ("", "."):
            raise DurationError(f'time: invalid duration "{text}"')
        total += round(float(match.group(1)) * _UNITS[match.group(2)])
        pos = match.end()
    if not body:
        raise DurationError(f'time: invalid duration "{text}"')
    return sign * total


def parse_seconds(text: str) -> float:
    return parse_nanos(text) / 1e9


def _fraction(value: int, digits: int) -> str:
    """``value`` with ``digits`` decimals, trailing zeros (and a bare point) dropped."""
    whole, rest = divmod(value, 10**digits)
    decimals = f"{rest:0{digits}d}".rstrip("0") if digits else ""
    return f"{whole}.{decimals}" if decimals else str(whole)


def format_nanos(nanos: int) -> str:
    """What Go's ``time.Duration.String`` writes: ``0s``, ``250ms``, ``15.011s``, ``1m0.5s``, ``2h0m0s``."""
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    n = abs(nanos)
    if n < 1_000:
        return f"{sign}{n}ns"
    if n < 1_000_000:
        return f"{sign}{_fraction(n, 3)}µs"
    if n < 10**9:
        return f"{sign}{_fraction(n, 6)}ms"
    hours, rest = divmod(n, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    seconds = _fraction(rest, 9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds
