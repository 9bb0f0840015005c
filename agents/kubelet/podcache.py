"""What this kubelet knows of each pod's runs: kube's pod cache, shared by the kubelet's seams.

The pod workers record a run when they start it and forget a pod once it is stopped; the PLEG records
a run's end (an exit event, a relist) and, after a restart, rebuilds the records from containerd; the
status manager and the kubelet's server read them. A record also holds what the planner needs besides
the runs: the pod's sandbox address, its failed pulls, the problems that kept a container from getting
a run, and the probe workers of its current runs (a run that ends takes its probes with it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from agents.kubelet import podstate
from agents.kubelet.probes import ContainerProber
from agents.kubelet.runtime import CONTAINERD


def containerd_id(attempt: podstate.Attempt) -> str:
    """The containerd id of a run (its status's containerID without the scheme)."""
    return attempt.container_id.removeprefix(CONTAINERD)


@dataclass
class PodRecord:
    """One pod's runs and what goes with them."""

    uid: str
    key: str  # namespace/name, for logs and the server's lookups
    attempts: dict[str, list[podstate.Attempt]] = field(default_factory=dict)  # by container, oldest first
    pulls: dict[str, podstate.PullFailure] = field(default_factory=dict)
    problems: dict[str, podstate.Problem] = field(default_factory=dict)
    sandbox_ip: str = ""
    started_at: float = field(default_factory=time.time)

    probers: dict[str, ContainerProber] = field(default_factory=dict)  # by container name, current run

    def observed(self) -> podstate.Observed:
        probes = {name: (p.state.ready, p.state.started) for name, p in self.probers.items()}
        return podstate.Observed(self.sandbox_ip, self.attempts, self.pulls, self.problems, probes)

    def record(self, name: str, attempt: podstate.Attempt) -> None:
        runs = self.attempts.setdefault(name, [])
        runs[:] = [a for a in runs if a.number != attempt.number] + [attempt]
        runs.sort(key=lambda a: a.number)
        del runs[:-2]  # the current run and the one before it are all a status shows

    def run(self, name: str, number: int) -> podstate.Attempt | None:
        return next((a for a in self.attempts.get(name) or [] if a.number == number), None)

    def running(self) -> dict[str, podstate.Attempt]:
        """The containers whose current run is running, by name."""
        return {name: runs[-1] for name, runs in self.attempts.items() if runs and runs[-1].state == "running"}

    def stop_prober(self, name: str) -> None:
        prober = self.probers.pop(name, None)
        if prober is not None:
            prober.stop()

    def stop_probers(self) -> None:
        for name in list(self.probers):
            self.stop_prober(name)


class PodCache:
    """The records by pod UID."""

    def __init__(self) -> None:
        self._records: dict[str, PodRecord] = {}

    def __len__(self) -> int:
        return len(self._records)

    def get(self, uid: str) -> PodRecord | None:
        return self._records.get(uid)

    def ensure(self, uid: str, key: str) -> PodRecord:
        """The pod's record, made empty if there is none yet."""
        if uid not in self._records:
            self._records[uid] = PodRecord(uid, key)
        return self._records[uid]

    def forget(self, uid: str) -> None:
        self._records.pop(uid, None)

    def records(self) -> list[PodRecord]:
        return list(self._records.values())
