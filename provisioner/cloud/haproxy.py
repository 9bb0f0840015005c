"""The cloud's load balancers, carried out: their addresses on the lab network, and one haproxy.

``Balancers`` keeps the lab's load balancers in a JSON file of the lab's (so a restarted cloud serves
the same ones at the same addresses), puts each address on the lab network's bridge (``ip addr``, in
the network namespace the cloud runs in) and runs Debian's haproxy in master-worker mode with the
configuration ``loadbalancers.haproxy_config`` renders: a new configuration is checked first
(``haproxy -c``; one haproxy refuses changes nothing), then the running haproxy reloads it (SIGUSR2 to
its master: connections in flight finish on the old workers). haproxy is this process's child and dies
with it (``setpriv --pdeathsig``: call from the thread that lives as long as the process); ``close``
ends it and takes the addresses back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import signal
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provisioner.cloud import loadbalancers as lbs

log = logging.getLogger(__name__)


class Balancers:
    """The lab's load balancers: what the cloud API's load balancer calls change."""

    def __init__(self, *, lab: str, state_dir: Path, pool: list[str], bridge: str) -> None:
        self.lab = lab
        self.pool = pool
        self.bridge = bridge
        self.state_file = state_dir / "loadbalancers.json"
        self.config_file = state_dir / "haproxy.cfg"
        self.socket = state_dir / "haproxy.sock"
        self.log_file = state_dir / "haproxy.log"
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self.balancers: dict[str, lbs.LoadBalancer] = self._load()
        if self.balancers:
            self._apply({}, self.balancers)

    # --- state -----------------------------------------------------------------------------------

    def _load(self) -> dict[str, lbs.LoadBalancer]:
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        out = {}
        for name, body in data.items():
            try:
                out[name] = lbs.parse(name, body, address=str(body["address"]))
            except (lbs.LoadBalancerError, KeyError) as exc:
                log.warning("load balancer %s in %s dropped: %s", name, self.state_file, exc)
        return out

    def _save(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({name: lb.json() for name, lb in sorted(self.balancers.items())}, indent=1)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(self.state_file)

    # --- the calls -------------------------------------------------------------------------------

    def ensure(self, name: str, body: Mapping[str, Any]) -> lbs.LoadBalancer:
        """Create or change load balancer ``name``; its address stays the one it has."""
        with self._lock:
            asked = lbs.parse(name, body, address="")  # a wrong request is refused before any address is taken
            taken = {n: lb.address for n, lb in self.balancers.items()}
            wanted = dataclasses.replace(asked, address=lbs.allocate(name, self.pool, taken))
            if self.balancers.get(name) == wanted:
                return wanted
            new = {**self.balancers, name: wanted}
            self._apply(self.balancers, new)
            self.balancers = new
            self._save()
            log.info(
                "load balancer %s at %s: %d ports, %d nodes", name, wanted.address, len(wanted.ports), len(wanted.nodes)
            )
            return wanted

    def delete(self, name: str) -> bool:
        with self._lock:
            if name not in self.balancers:
                return False
            new = {n: lb for n, lb in self.balancers.items() if n != name}
            self._apply(self.balancers, new)
            self.balancers = new
            self._save()
            log.info("load balancer %s deleted", name)
            return True

    def close(self) -> None:
        """End haproxy and take the addresses off the bridge (the load balancers stay in the state file)."""
        with self._lock:
            self._stop()
            for lb in self.balancers.values():
                self._address("del", lb.address)

    # --- carrying it out -------------------------------------------------------------------------

    def _apply(self, old: Mapping[str, lbs.LoadBalancer], new: Mapping[str, lbs.LoadBalancer]) -> None:
        text = lbs.haproxy_config(list(new.values()), lab=self.lab, stats_socket=str(self.socket))
        candidate = self.config_file.with_suffix(".new")
        candidate.parent.mkdir(parents=True, exist_ok=True)
        candidate.write_text(text)
        if new:
            checked = subprocess.run(
                ["haproxy", "-c", "-q", "-f", str(candidate)], check=False, capture_output=True, text=True
            )
            if checked.returncode != 0:
                raise lbs.LoadBalancerError(
                    f"haproxy refused the configuration: {checked.stdout}{checked.stderr}".strip()
                )
        wanted = {lb.address for lb in new.values()}
        for address in sorted(wanted):  # idempotent: also after a restart, when the bridge has none of them
            self._address("replace", address)
        candidate.replace(self.config_file)
        if not new:
            self._stop()
        elif self._process is None or self._process.poll() is not None:
            self._start()
        else:
            self._process.send_signal(signal.SIGUSR2)  # the master reloads the configuration file
        for address in sorted({lb.address for lb in old.values()} - wanted):
            self._address("del", address)

    def _address(self, verb: str, address: str) -> None:
        argv = ["ip", "addr", verb, f"{address}/32", "dev", self.bridge]
        done = subprocess.run(argv, check=False, capture_output=True, text=True)
        if done.returncode != 0 and verb != "del":
            raise lbs.LoadBalancerError(f"cannot put {address} on {self.bridge}: {done.stderr.strip()}")

    def _start(self) -> None:
        # setpriv: haproxy gets SIGTERM when the thread that started it ends (call this from the main one)
        argv = ["setpriv", "--pdeathsig", "TERM", "haproxy", "-W", "-db", "-f", str(self.config_file)]
        with self.log_file.open("ab") as out:
            self._process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        log.info("haproxy started (pid %d)", self._process.pid)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGUSR1)  # the master ends its workers once their connections finish
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
            return
        process.kill()
        process.wait()
