"""The cloud's routes, carried out: the lab's routing table, its rule, its isolation, in the kernel.

``Router`` keeps the lab's routes in a JSON file of the lab's (a restarted cloud routes the same way:
on ``start`` the kernel is made to match the file) and has the kernel of the network namespace the
cloud runs in carry them: forwarding on (``/proc/sys``, which is per namespace), the lab's nftables
table (``nft -f -``, whole, in one transaction), its rule and the routes of its table (``ip``), all as
``routes`` plans them from what ``ip -json`` says is there. Every change re-reads the kernel, so a
route removed by hand comes back with the next call. ``close`` takes the rule, the table's routes and
the nftables table away; forwarding stays on, since another lab in the namespace may be routing.

``IpKernel`` runs the tools; the ``Kernel`` protocol is the seam a test puts a fake in.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from provisioner.cloud import routes
from provisioner.cloud.instances import Instance

log = logging.getLogger(__name__)
_LINK = re.compile(r"[A-Za-z0-9_.-]{1,15}")
TIMEOUT = 10.0  # seconds, for each tool run
T = TypeVar("T")


class RouterError(RuntimeError):
    """The kernel refused or a tool failed; the message is the tool's own."""


class Kernel(Protocol):
    """What the router asks of the network namespace it runs in."""

    def ifindex(self, link: str) -> int: ...
    def rules(self) -> list[routes.Rule]: ...
    def routes_of(self, table: int) -> list[routes.KernelRoute]: ...
    def apply(self, action: routes.Action) -> None: ...
    def nft(self, ruleset: str) -> None: ...
    def sysctl(self, path: str, value: str) -> None: ...


def _run(argv: Sequence[str], *, stdin: str | None = None, absent: Sequence[str] = ()) -> str:
    """``argv``'s stdout; '' when it failed saying one of ``absent`` (nothing there to act on)."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RouterError(f"{' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        if any(a in message for a in absent):
            return ""
        raise RouterError(f"{' '.join(argv)}: {message}")
    return done.stdout


def _parsed(text: str, parse: Callable[[str], T], what: str) -> T:
    """``parse(text)``, the output of ``what``; a ``RouterError`` quoting it when it is not as expected."""
    try:
        return parse(text)
    except (ValueError, TypeError, AttributeError) as exc:
        raise RouterError(f"unexpected output of {what}: {text[:200]!r}") from exc


class IpKernel:
    """The real kernel, through ``ip``, ``nft`` and ``/proc/sys`` (of the namespace this process is in)."""

    def __init__(self, *, proc_sys: Path = Path("/proc/sys")) -> None:
        self.proc_sys = proc_sys

    def ifindex(self, link: str) -> int:
        text = _run(["ip", "-json", "link", "show", "dev", link])
        try:
            return int(json.loads(text)[0]["ifindex"])
        except (ValueError, LookupError, TypeError) as exc:
            raise RouterError(f"unexpected output of ip link show dev {link}: {text[:200]!r}") from exc

    def rules(self) -> list[routes.Rule]:
        return _parsed(_run(["ip", "-json", "-4", "rule", "show"]), routes.parse_rules, "ip rule show")

    def routes_of(self, table: int) -> list[routes.KernelRoute]:
        text = _run(["ip", "-json", "-4", "route", "show", "table", str(table)], absent=["table does not exist"])
        return _parsed(text, routes.parse_routes, f"ip route show table {table}")

    def apply(self, action: routes.Action) -> None:
        proto = ["proto", str(routes.PROTOCOL)]
        match action:
            case routes.AddRule(iif=iif, table=table, priority=priority):
                _run(["ip", "-4", "rule", "add", "priority", str(priority), "iif", iif, "lookup", str(table)])
            case routes.DeleteRule(iif=iif, table=table, priority=priority):
                argv = ["ip", "-4", "rule", "del", "priority", str(priority), "iif", iif, "lookup", str(table)]
                _run(argv, absent=["No such file or directory"])
            case routes.ReplaceRoute(destination=dst, via=via, dev=dev, table=table):
                _run(["ip", "-4", "route", "replace", dst, "via", via, "dev", dev, "table", str(table), *proto])
            case routes.DeleteRoute(destination=dst, table=table):
                _run(["ip", "-4", "route", "del", dst, "table", str(table), *proto], absent=["No such process"])
            case routes.FlushTable(table=table):
                _run(["ip", "-4", "route", "flush", "table", str(table), *proto], absent=["table does not exist"])

    def nft(self, ruleset: str) -> None:
        _run(["nft", "-f", "-"], stdin=ruleset)

    def sysctl(self, path: str, value: str) -> None:
        try:
            (self.proc_sys / path).write_text(value + "\n")
        except OSError as exc:
            raise RouterError(f"cannot set {path.replace('/', '.')}={value}: {exc.strerror or exc}") from exc


class Router:
    """The lab's routes: what the cloud API's route calls change."""

    def __init__(
        self, *, bridge: str, network: str, state_dir: Path, own_namespace: bool, kernel: Kernel | None = None
    ) -> None:
        if not _LINK.fullmatch(bridge):
            raise ValueError(f"{bridge!r} is not a network interface's name")
        self.bridge = bridge
        self.network = ipaddress.IPv4Network(network, strict=False)
        self.own_namespace = own_namespace
        self.kernel: Kernel = kernel if kernel is not None else IpKernel()
        self.state_file = state_dir / "routes.json"
        self.table = 0  # known once started
        self._lock = threading.Lock()
        self.routes: dict[str, routes.Route] = self._load()

    # --- state -----------------------------------------------------------------------------------

    def _load(self) -> dict[str, routes.Route]:
        try:
            text = self.state_file.read_text()
        except FileNotFoundError:
            return {}
        try:
            kept, dropped = routes.load(text, network=self.network)
        except ValueError as exc:
            log.warning("routes in %s unreadable, starting with none: %s", self.state_file, exc)
            return {}
        for reason in dropped:
            log.warning("%s (in %s): dropped", reason, self.state_file)
        return kept

    def _save(self, wanted: Mapping[str, routes.Route]) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(routes.dump(wanted))
        tmp.replace(self.state_file)

    # --- the calls -------------------------------------------------------------------------------

    def start(self) -> None:
        """Forwarding on, the lab's isolation in place, and the kernel routing as the state file says."""
        with self._lock:
            self.table = routes.table_of(self.kernel.ifindex(self.bridge))
            for path, value in routes.sysctls(self.bridge, own_namespace=self.own_namespace):
                self.kernel.sysctl(path, value)
            self.kernel.nft(routes.isolation_ruleset(self.bridge))
            self._reconcile(self.routes)
            log.info("router on %s: table %d, %d routes", self.bridge, self.table, len(self.routes))

    def listing(self) -> list[routes.Route]:
        with self._lock:
            return [r for _, r in sorted(self.routes.items())]

    def ensure(self, name: str, body: Mapping[str, Any], *, instances: Sequence[Instance]) -> routes.Route:
        """Create or change route ``name`` (the kernel is reconciled whole, also when nothing changed)."""
        with self._lock:
            wanted = routes.admit(name, body, network=self.network, instances=instances, routes=self.routes)
            new = {**self.routes, name: wanted}
            self._reconcile(new)
            if self.routes.get(name) != wanted:
                self.routes = new
                self._save(new)
                log.info("route %s: %s via %s (%s)", name, wanted.destination, wanted.next_hop, wanted.target)
            return wanted

    def delete(self, name: str) -> routes.Route | None:
        """Remove route ``name``; the route removed, or None when there was none."""
        with self._lock:
            gone = self.routes.get(name)
            if gone is None:
                return None
            new = {n: r for n, r in self.routes.items() if n != name}
            self._reconcile(new)
            self.routes = new
            self._save(new)
            log.info("route %s (%s) deleted", name, gone.destination)
            return gone

    def close(self) -> None:
        """Take the lab's rule, its table's routes and its nftables table away (the routes stay recorded)."""
        with self._lock:
            if not self.table:
                return
            rules = self.kernel.rules()
            for action in routes.teardown(bridge=self.bridge, table=self.table, rules=rules):
                self.kernel.apply(action)
            self.kernel.nft(routes.removal_ruleset(self.bridge))
            log.info("router on %s stopped: table %d flushed", self.bridge, self.table)

    # --- carrying it out -------------------------------------------------------------------------

    def _reconcile(self, wanted: Mapping[str, routes.Route]) -> None:
        if not self.table:
            raise RouterError("the router has not started")
        plan = routes.plan(
            list(wanted.values()),
            bridge=self.bridge,
            table=self.table,
            rules=self.kernel.rules(),
            installed=self.kernel.routes_of(self.table),
        )
        for route in plan.blocked:
            log.warning(
                "not routing %s via %s: a route kubelab did not add holds it", route.destination, route.next_hop
            )
        for action in plan.actions:
            self.kernel.apply(action)
