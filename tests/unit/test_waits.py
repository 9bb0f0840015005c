"""The host side's waits are never silent for more than 10 s: each says what it waits for, for how long, and
the last thing it saw, and ends at its deadline with an error naming that last thing. Time is a fake here
(declared below): a clock the checks and the pauses move forward."""

from __future__ import annotations

import itertools
import os
import random
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from provisioner.drivers.libvirt import ssh as sshkeys
from provisioner.drivers.libvirt import tunnel
from provisioner.errors import ComponentError
from provisioner.lab import apiclient
from provisioner.lab.paths import LabPaths
from provisioner.system.waiting import EVERY, Heartbeat, progress_line, timed_out, wait_for


@dataclass
class FakeTime:
    """A monotonic clock that only moves when a check takes time or the wait pauses; it notes each line said."""

    now: float = 1000.0
    said: list[tuple[float, str]] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def say(self, line: str) -> None:
        self.said.append((self.now, line))

    def silences(self, began: float, ended: float) -> list[float]:
        """The gaps between the wait's start, each line, and its end."""
        marks = [began, *(t for t, _ in self.said), ended]
        return [b - a for a, b in itertools.pairwise(marks)]


def test_the_progress_line_says_what_how_long_of_how_long_and_what_was_seen_last() -> None:
    line = progress_line("ssh on 3 machines", 20.4, 420.0, "kubelab-master: Connection refused")
    assert line == "waiting for ssh on 3 machines: 20s of 420s; last: kubelab-master: Connection refused"
    assert progress_line("ansible-playbook", 61.7, None, "") == "waiting for ansible-playbook: 62s"
    assert timed_out("3 nodes to be Ready", 300.0, "a NotReady (KubeletNotReady)") == (
        "3 nodes to be Ready: not within 300s; last: a NotReady (KubeletNotReady)"
    )
    assert timed_out("etcd to be healthy", 60.0, "").endswith("; last: nothing seen")


def test_a_wait_that_never_succeeds_speaks_every_10s_and_its_error_names_the_last_error() -> None:
    time = FakeTime()
    attempts = [0]

    def answers() -> bool:
        attempts[0] += 1
        time.now += 0.3  # a refused connection is quick
        return False

    def last() -> str:
        return f"Connection refused (attempt {attempts[0]})"

    began = time.now
    assert not wait_for(
        answers,
        timeout=60.0,
        interval=1.0,
        what="the API server",
        say=time.say,
        last=last,
        clock=time.clock,
        sleep=time.sleep,
    )
    ended = time.now
    assert 60.0 <= ended - began <= 61.3  # at the deadline, not a pause past it
    assert max(time.silences(began, ended)) <= EVERY
    assert len(time.said) >= 6
    stamp, line = time.said[-1]
    assert line.startswith(f"waiting for the API server: {stamp - began:.0f}s of 60s; last: Connection refused")
    error = timed_out("the API server", 60.0, last())
    assert error == f"the API server: not within 60s; last: Connection refused (attempt {attempts[0]})"


@pytest.mark.parametrize("seed", range(12))
def test_checks_of_any_length_within_their_bound_never_leave_10s_of_silence(seed: int) -> None:
    draw = random.Random(seed)
    slowest = draw.choice([0.0, 1.0, 3.0, 5.0])
    interval = draw.choice([0.1, 0.5, 1.0, 2.0])
    time = FakeTime()

    def check() -> bool:
        time.now += draw.uniform(0.0, slowest) if draw.random() < 0.3 else 0.01
        return False

    began = time.now
    wait_for(
        check,
        timeout=draw.uniform(5.0, 200.0),
        interval=interval,
        what="x",
        say=time.say,
        slowest=slowest,
        clock=time.clock,
        sleep=time.sleep,
    )
    assert max(time.silences(began, time.now)) <= EVERY


def test_a_wait_that_succeeds_soon_says_nothing_and_a_quiet_one_stays_quiet() -> None:
    time = FakeTime()
    answers = iter([False, False, True])
    assert wait_for(lambda: next(answers), timeout=60, interval=1.0, say=time.say, clock=time.clock, sleep=time.sleep)
    assert time.said == []
    assert not wait_for(lambda: False, timeout=30, interval=1.0, clock=time.clock, sleep=time.sleep)  # no say: silent


def test_a_heartbeat_speaks_only_after_a_silence_and_counts_the_steps_own_lines() -> None:
    time = FakeTime()
    beat = Heartbeat("apt-get", time.say, last=lambda: "running apt-get install", clock=time.clock)
    time.now += 5
    assert beat.due() is None
    beat.say("installing Debian packages: qemu-utils")  # the step's own word resets the silence
    time.now += 9
    assert beat.due() is None
    time.now += 1
    assert beat.due() == "waiting for apt-get: 15s; last: running apt-get install"
    assert beat.due() is None  # said just now
    assert time.said == [(1005.0, "installing Debian packages: qemu-utils")]


def test_a_heartbeat_thread_speaks_while_a_step_blocks() -> None:
    said: list[str] = []
    spoke = threading.Event()

    def say(line: str) -> None:
        said.append(line)
        spoke.set()

    with Heartbeat("a blocking step", say, last=lambda: "its last line", every=0.6):
        assert spoke.wait(10.0)  # the step blocks; the heartbeat speaks for it
    assert said[0].startswith("waiting for a blocking step: ") and said[0].endswith("; last: its last line")


def test_waiting_for_another_guest_image_build_names_the_pid_holding_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fcntl  # noqa: PLC0415

    from provisioner.artefacts import guestimage  # noqa: PLC0415

    monkeypatch.setattr(guestimage, "LOCK_TIMEOUT", 0.3)
    path = tmp_path / ".lock"
    with path.open("w") as other:  # another build holds the lock
        fcntl.flock(other, fcntl.LOCK_EX)
        other.write("4242\n")
        other.flush()
        with pytest.raises(guestimage.GuestImageError) as failed, guestimage._locked(path, say=lambda _l: None):
            pass
        assert str(failed.value) == (
            f"another kubelab's build of the guest image: not within 0s; last: the lock {path} is held by pid 4242"
        )
    with guestimage._locked(path, say=lambda _l: None):  # free now: taken, with this process's pid in it
        assert path.read_text().strip() == str(os.getpid())
    assert path.read_text() == ""


# --- what the waits see: ssh's own error, the HTTP status, a node's Ready condition -----------------------


@pytest.mark.parametrize(
    ("stderr", "said"),
    [
        (
            "root@192.168.123.10: Permission denied (publickey).\n",
            "root@192.168.123.10: Permission denied (publickey).",
        ),
        ("ssh: connect to host 192.168.123.10 port 22: Connection refused\n", "ssh: connect to host"),
        (
            "kubelab tunnel: cannot reach 192.168.123.11:22: No route to host\n"
            "kex_exchange_identification: Connection closed by remote host\n"
            "Connection closed by UNKNOWN port 65535\n",
            "cannot reach 192.168.123.11:22: No route to host",
        ),
        ("", "ssh exited with code 255 and said nothing"),
    ],
)
def test_ssh_says_why_it_could_not_get_in_and_the_tunnels_reason_comes_first(stderr: str, said: str) -> None:
    assert sshkeys.ssh_error(stderr, 255).startswith(said)


def test_a_real_ssh_probe_returns_ssh_s_own_reason(tmp_path: Path) -> None:
    if shutil.which("ssh") is None:
        pytest.skip("no ssh client here")
    port = _closed_port()
    config = tmp_path / "ssh_config"
    config.write_text(f"Host node\n  HostName 127.0.0.1\n  Port {port}\n  LogLevel ERROR\n")
    said = sshkeys.Access("lab", config, ("node",)).probe("node")
    assert said == f"ssh: connect to host 127.0.0.1 port {port}: Connection refused"


def test_the_ssh_tunnel_names_the_address_it_could_not_reach(capsys: pytest.CaptureFixture[str]) -> None:
    import socket  # noqa: PLC0415

    with socket.socket() as unlistened:
        unlistened.bind(("127.0.0.1", 0))
        port = unlistened.getsockname()[1]
        assert tunnel.main(["connect", "-", "127.0.0.1", str(port)]) == 1
    assert capsys.readouterr().err.strip() == f"kubelab tunnel: cannot reach 127.0.0.1:{port}: Connection refused"


def test_machines_still_awaited_are_grouped_by_what_ssh_said() -> None:
    line = sshkeys.pending_line(
        [("m", "Connection refused"), ("w1", "Permission denied (publickey)."), ("w2", "Connection refused")]
    )
    assert line == "m, w2: Connection refused; w1: Permission denied (publickey)."


def test_waiting_for_ssh_names_each_machine_and_ssh_s_last_error_as_it_goes(tmp_path: Path) -> None:
    from provisioner.drivers.base import Machine  # noqa: PLC0415

    machines = [Machine("demo-master", "master", "192.168.123.10", "52:54:00:00:00:01", 1, 1024)]
    said: list[str] = []
    with pytest.raises(ComponentError) as failed:
        sshkeys.wait_all(
            machines,
            probe=lambda _node: "ssh: connect to host 192.168.123.10 port 22: Connection refused",
            timeout=0.3,
            accel="tcg",
            console_of=lambda node: tmp_path / f"{node}-console.log",
            say=said.append,
        )
    assert "ssh said: ssh: connect to host 192.168.123.10 port 22: Connection refused;" in str(failed.value)


def test_a_machine_that_crashes_while_booting_is_started_again_once(tmp_path: Path) -> None:
    from provisioner.drivers.base import Machine  # noqa: PLC0415

    machines = [Machine("demo-master", "master", "192.168.123.10", "52:54:00:00:00:01", 1, 1024)]
    why = ["its QEMU crashed (see /var/log/libvirt/qemu/demo-master.log)"]
    boots: list[str] = []

    def restart(name: str) -> None:
        boots.append(name)
        why[0] = ""

    said: list[str] = []
    sshkeys.wait_all(
        machines,
        probe=lambda _node: "" if boots else "No route to host",
        timeout=10,
        accel="tcg",
        console_of=lambda node: tmp_path / f"{node}-console.log",
        say=said.append,
        stopped=lambda _node: why[0],
        restart=restart,
    )
    assert boots == ["demo-master"]
    assert said[0] == (
        "  demo-master: its QEMU crashed (see /var/log/libvirt/qemu/demo-master.log) while it booted; starting it again"
    )


def test_a_machine_that_stops_twice_while_booting_is_an_error_at_once(tmp_path: Path) -> None:
    from provisioner.drivers.base import Machine  # noqa: PLC0415

    machines = [Machine("demo-master", "master", "192.168.123.10", "52:54:00:00:00:01", 1, 1024)]
    restarts: list[str] = []
    began = time.monotonic()
    with pytest.raises(ComponentError) as failed:
        sshkeys.wait_all(
            machines,
            probe=lambda _node: "No route to host",
            timeout=60,
            accel="tcg",
            console_of=lambda node: tmp_path / f"{node}-console.log",
            say=lambda _line: None,
            stopped=lambda _node: "its QEMU crashed",
            restart=restarts.append,
        )
    assert time.monotonic() - began < 10
    assert restarts == ["demo-master"]
    assert str(failed.value).startswith(
        "demo-master stopped while it booted, twice (its QEMU crashed, then its QEMU crashed); console log: "
    )


def test_a_node_wait_says_each_late_nodes_condition_or_the_api_servers_failure() -> None:
    conditions = {"a": "Ready", "b": "NotReady (KubeletNotReady)"}
    assert apiclient.readiness_line(["a", "b", "c"], conditions, "") == "b NotReady (KubeletNotReady), c not registered"
    assert apiclient.readiness_line(["a"], {}, "https://127.0.0.1:6443: Connection refused") == (
        "the API server: https://127.0.0.1:6443: Connection refused"
    )


def test_the_api_client_names_the_status_or_the_connection_error(tmp_path: Path, echo_port: int) -> None:
    from provisioner.lab.pki import Pki  # noqa: PLC0415

    paths = LabPaths(tmp_path)
    Pki(paths.pki).ensure_ca()
    answer = apiclient.LabApi(f"https://127.0.0.1:{_closed_port()}", paths).ask("GET", "/api/v1/nodes")
    assert answer.code == 0 and answer.error.endswith(": Connection refused")
    plain = apiclient.LabApi(f"https://127.0.0.1:{echo_port}", paths).ask("GET", "/fail")  # not TLS
    assert plain.code == 0 and plain.error


def test_a_components_health_is_its_http_status_and_body_or_the_connection_error(echo_port: int) -> None:
    from provisioner.drivers.local import components  # noqa: PLC0415

    assert components._http_health(f"http://127.0.0.1:{echo_port}/readyz") == ""
    assert components._http_health(f"http://127.0.0.1:{echo_port}/readyz", expect=lambda b: b == b"ok") == (
        "HTTP 200: pod echo"
    )
    assert components._http_health(f"http://127.0.0.1:{echo_port}/fail").startswith("HTTP 500")
    assert components._http_health(f"http://127.0.0.1:{_closed_port()}/readyz") == "Connection refused"


def _closed_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
