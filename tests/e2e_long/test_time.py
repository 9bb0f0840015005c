"""Drill: a worker paused for 20 s has its clock back in step with the host's within a minute.

A paused domain's virtual CPUs and clocks stop (``virsh suspend``); when it resumes, its clock is
behind by as long as it was paused. Without a time source it would stay behind for good; with the
lab's (chronyd on the gateway, ``makestep 1 -1`` on the nodes) the node's chronyd steps it back once the
samples from before the pause have left its statistics: about five polls, some 10 s at the nodes' 2-s
polling (templates/chrony/chrony.conf.j2). The drill reads the worker's clock from
the host over one ssh session kept open across the pause (``ClockProbe``), so the first reading after
the resume shows the lag the pause made (the drill would prove nothing without one), then reads again
until the clock is within a second of the host's, and prints how long that took.
"""

from __future__ import annotations

import subprocess
import time

from kubelab_testing.lab import Lab
from kubelab_testing.waiting import eventually
from provisioner.drivers.libvirt import daemon as libvirthost
from tests.e2e.test_05_time import IN_STEP, ClockProbe, Reading, following, gateway_of

PAUSED = 20.0  # seconds the worker stays suspended
CATCH_UP = 60.0  # seconds its clock may take to be back in step
BACK_IN_STEP = 1.0  # seconds off the host's clock that count as back in step


def _virsh(lab: Lab, *args: str) -> None:
    """``virsh ARGS`` against the libvirt the lab runs under, where its network is."""
    running = libvirthost.current()
    assert running is not None, "no libvirtd answers"
    argv = lab.on_lab_network(["virsh", "-c", running.uri, *args])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"virsh {' '.join(args)}: {done.stderr}{done.stdout}"


def test_a_paused_worker_s_clock_is_back_in_step_within_a_minute(kubelab_lab: Lab) -> None:
    lab = kubelab_lab
    worker = lab.workers[0].name
    following(lab, worker, gateway_of(lab))
    probe = ClockProbe(lab, worker)
    try:
        before = probe.best()
        assert abs(before.offset) < IN_STEP + before.error, before
        _virsh(lab, "suspend", worker)
        try:
            time.sleep(PAUSED)  # the fault itself: the domain stays paused this long
        finally:
            _virsh(lab, "resume", worker)
        resumed = time.monotonic()
        lag = probe.read()
        print(f"{worker}: {before.offset * 1e3:+.0f} ms off before the pause, {lag.offset:+.1f} s just after it")
        assert lag.offset < -PAUSED / 2, f"the pause left the clock in step ({lag}): nothing to catch up"

        readings: list[Reading] = []

        def in_step() -> Reading | None:
            reading = probe.read()
            readings.append(reading)
            return reading if abs(reading.offset) < BACK_IN_STEP + reading.error else None

        found: Reading = eventually(in_step, timeout=CATCH_UP, interval=0.5, what=f"{worker}'s clock back in step")
        took = time.monotonic() - resumed
        print(
            f"{worker}: clock back in step {took:.1f} s after the resume ({found.offset * 1e3:+.0f} ms,"
            f" ± {found.error * 1e3:.0f} ms; {len(readings)} readings)"
        )
        settled = probe.best()
        assert abs(settled.offset) < BACK_IN_STEP + settled.error, settled
    finally:
        probe.close()
