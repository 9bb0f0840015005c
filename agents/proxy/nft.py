"""The proxy's hands on the host: ``nft -f -`` for the ruleset, ``ip route`` for the node routes.

Thin on purpose: what to write is decided by the pure planners (``rules``, ``routes``); this module
only runs the two tools, remembers what it last applied successfully (an unchanged ruleset is not
written again), and turns every failure into a ``ProxyError`` carrying the tool's own message. With
``netns`` set, both tools run inside that network namespace (``ip netns exec NAME ...``): tests,
benchmarks and local labs give the proxy a namespace of its own instead of the host's network.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from collections.abc import Sequence

from agents.proxy.errors import NftError, ProxyError, RouteError
from agents.proxy.routes import ROUTE_PROTOCOL, InstalledRoute, Route, RouteAction, RoutePlan, plan_routes

log = logging.getLogger(__name__)


def _netns_prefix(netns: str) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


async def _run(argv: Sequence[str], *, error: type[ProxyError], stdin: bytes | None = None, patience: float) -> str:
    """Run ``argv``; its stdout, or ``error`` with its stderr (the failure chained as the cause)."""
    command = " ".join(argv)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise error(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    try:
        async with asyncio.timeout(patience):
            out, err = await process.communicate(stdin)
    except TimeoutError as exc:
        process.kill()
        await process.wait()
        raise error(f"{command} did not finish within {patience:.0f} s") from exc
    if process.returncode != 0:
        message = (err or out).decode(errors="replace").strip() or f"exit status {process.returncode}"
        cause = subprocess.CalledProcessError(process.returncode or 1, list(argv), out, err)
        raise error(f"{command}: {message}") from cause
    return out.decode(errors="replace")


class Nft:
    """Writes whole rulesets with ``nft -f -``: one file, one transaction."""

    def __init__(self, *, netns: str = "", binary: str = "nft", timeout: float = 10.0) -> None:
        self.netns = netns
        self.binary = binary
        self.timeout = timeout
        self.applied: str | None = None  # the last ruleset nft accepted
        self.writes = 0

    async def apply(self, ruleset: str, *, force: bool = False) -> bool:
        """Write ``ruleset`` unless it is what was last written (or ``force``); True when written.

        A ruleset nft rejects changes nothing in the kernel (the transaction is aborted whole).
        """
        if not force and ruleset == self.applied:
            return False
        self.applied = None
        argv = [*_netns_prefix(self.netns), self.binary, "-f", "-"]
        await _run(argv, error=NftError, stdin=ruleset.encode(), patience=self.timeout)
        self.applied = ruleset
        self.writes += 1
        return True


def parse_routes(text: str, *, protocol: int = ROUTE_PROTOCOL) -> list[InstalledRoute]:
    """``ip -json -4 route show table main`` -> routes, ours when their protocol is ``protocol``."""
    found = []
    for entry in json.loads(text or "[]"):
        dst = str(entry.get("dst") or "")
        cidr = "0.0.0.0/0" if dst == "default" else (dst if "/" in dst else f"{dst}/32")
        ours = str(entry.get("protocol") or "") == str(protocol)
        found.append(InstalledRoute(cidr, str(entry.get("gateway") or ""), ours))
    return found


class RouteTable:
    """Keeps the proxy's routes (those with its protocol number) in the main table as planned."""

    def __init__(self, *, netns: str = "", protocol: int = ROUTE_PROTOCOL, timeout: float = 10.0) -> None:
        self.netns = netns
        self.protocol = protocol
        self.timeout = timeout
        self.applied: tuple[Route, ...] | None = None  # the wanted routes last reconciled without error

    async def installed(self) -> list[InstalledRoute]:
        argv = [*_netns_prefix(self.netns), "ip", "-json", "-4", "route", "show", "table", "main"]
        text = await _run(argv, error=RouteError, patience=self.timeout)
        try:
            return parse_routes(text, protocol=self.protocol)
        except (ValueError, AttributeError) as exc:
            raise RouteError(f"unexpected output of {' '.join(argv)}: {text[:200]!r}") from exc

    async def _apply(self, action: RouteAction) -> None:
        verb = "replace" if action.verb == "replace" else "del"
        route = action.route
        argv = [*_netns_prefix(self.netns), "ip", "route", verb, route.cidr, "via", route.via]
        await _run([*argv, "proto", str(self.protocol)], error=RouteError, patience=self.timeout)

    async def reconcile(self, wanted: Sequence[Route], *, force: bool = False) -> RoutePlan | None:
        """Make the proxy's routes ``wanted``; None when they already were (and not ``force``).

        Every action is tried; if any failed, one ``RouteError`` reports them all afterwards.
        """
        if not force and tuple(wanted) == self.applied:
            return None
        self.applied = None
        plan = plan_routes(wanted, await self.installed())
        failures: list[RouteError] = []
        for action in plan.actions:
            try:
                await self._apply(action)
            except RouteError as exc:
                failures.append(exc)
        for route in plan.blocked:
            log.warning("not routing %s via %s: a route the proxy did not add holds it", route.cidr, route.via)
        if failures:
            raise RouteError("; ".join(str(f) for f in failures)) from failures[0]
        self.applied = tuple(wanted)
        return plan
