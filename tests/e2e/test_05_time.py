"""Scenario 5t: the nodes' clocks follow the lab's time source.

The lab network is isolated, so the only time server its machines can reach is the one the lab
serves on its gateway (chronyd on the host side, ``provisioner/drivers/libvirt/timesource.py``). It
answers there as a stratum-10 server from this host's clock; every node's chronyd names the gateway as
its reference, and every node's clock agrees with this host's: by chronyd's own account (``chronyc -n
tracking``) and as measured from here (:class:`ClockProbe`: the node's clock read over one open ssh
session, against this host's clock before and after each reading).
"""

from __future__ import annotations

import re
import select
import subprocess
import time
from dataclasses import dataclass

from kubelab_testing.commands import stop
from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from provisioner.drivers.libvirt import plan, timesource
from provisioner.lab.spec import LabSpec

IN_STEP = 0.5  # seconds a node's clock may be off the host's
SYNC_TIMEOUT = 180.0  # a node that just booted: chronyd's first answers come within seconds (iburst)


def gateway_of(lab: Lab) -> str:
    return plan.network(LabSpec.from_json((lab.root / "lab.json").read_text())).gateway


@dataclass(frozen=True)
class Tracking:
    """What ``chronyc -n tracking`` says on a node."""

    reference: str  # the server's address in the Reference ID line ('' none)
    stratum: int
    system_time: float  # seconds the node's clock is ahead of the time it follows (negative: behind)
    leap: str

    @classmethod
    def parse(cls, text: str) -> Tracking:
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        reference = re.search(r"\(([^)]*)\)", fields.get("Reference ID", ""))
        system = re.match(r"([0-9.]+) seconds (fast|slow)", fields.get("System time", ""))
        offset = float(system[1]) * (1 if system[2] == "fast" else -1) if system else float("nan")
        return cls(
            reference[1] if reference else "", int(fields.get("Stratum", "0")), offset, fields.get("Leap status", "")
        )


def tracking(lab: Lab, node: str) -> Tracking:
    done = lab.ssh(node, "chronyc -n tracking", timeout=60)
    return Tracking.parse(done.checked(f"chronyc -n tracking on {node}"))


def following(lab: Lab, node: str, gateway: str) -> Tracking:
    """The node's tracking once its chronyd follows ``gateway`` (synchronised to it)."""

    def synced() -> Tracking | None:
        found = tracking(lab, node)
        return found if found.reference == gateway and found.leap == "Normal" else None

    found: Tracking = eventually(synced, timeout=SYNC_TIMEOUT, what=f"{node}'s chronyd to follow {gateway}")
    return found


@dataclass(frozen=True)
class Reading:
    offset: float  # the node's clock minus this host's, in seconds
    error: float  # at most this far off: half the time the reading took, seen from here


class ClockProbe:
    """A node's clock read from here: one ssh session whose shell prints its clock (bash's
    ``$EPOCHREALTIME``, no process started) for each line it is sent; the node's time is compared with
    the middle of this host's clock before and after."""

    def __init__(self, lab: Lab, node: str) -> None:
        self.node = node
        script = "exec bash -c 'while read -r _; do echo \"$EPOCHREALTIME\"; done'"
        self.process = subprocess.Popen(
            ["ssh", "-F", str(lab.ssh_config), "-o", "BatchMode=yes", node, script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def read(self, *, timeout: float = 30.0) -> Reading:
        assert self.process.stdin is not None and self.process.stdout is not None
        before = time.time()
        self.process.stdin.write(b"\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        assert ready, f"{self.node} did not tell its time within {timeout:g}s"
        line = self.process.stdout.readline()
        after = time.time()
        assert line.strip(), f"the ssh session to {self.node} ended"
        return Reading(float(line) - (before + after) / 2, (after - before) / 2)

    def best(self, count: int = 5) -> Reading:
        """The reading with the least error of ``count`` (the first one pays for the session's start)."""
        return min((self.read() for _ in range(count)), key=lambda r: r.error)

    def close(self) -> None:
        stop(self.process)


def test_every_node_follows_the_lab_time_source_and_keeps_the_host_s_time(kubelab_lab: Lab) -> None:
    lab = kubelab_lab
    gateway = gateway_of(lab)
    served = timesource.query(gateway, netns_name=lab.network_namespace)
    print(f"time source at {gateway}: stratum {served.stratum}, offset {served.offset * 1e3:+.3f} ms")
    assert served.stratum == 10  # this host's clock, as `local stratum 10` serves it
    assert abs(served.offset) < 0.01  # the very clock this host keeps
    for node in lab.nodes:
        found = following(lab, node.name, gateway)
        assert found.stratum == 11
        assert abs(found.system_time) < IN_STEP, found
        probe = ClockProbe(lab, node.name)
        try:
            reading = probe.best()
        finally:
            probe.close()
        print(
            f"{node.name}: follows {found.reference}, chronyd's own offset {found.system_time * 1e3:+.1f} ms,"
            f" measured from the host {reading.offset * 1e3:+.0f} ms (± {reading.error * 1e3:.0f} ms)"
        )
        assert abs(reading.offset) < IN_STEP + reading.error, reading
