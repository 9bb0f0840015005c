"""The lab network's time source: one chronyd per lab, serving this host's clock on the lab's gateway.

A lab's network is isolated: no route leads out of it, so its machines have no NTP server to follow.
A machine that was paused (``virsh suspend``, ``kubelab fault pause``) resumes with its clock behind
by as long as it was paused, and without a time source it stays behind for good: its certificates
look not yet valid to others, its leases and heartbeats carry old times, its logs disagree with the
rest. A cloud serves time to its instances on its side of their network; so does the lab: Debian's
chronyd with ``local stratum 10`` and no upstream servers (it sends nothing anywhere, it only
answers), run with ``-x`` so it never adjusts this host's clock, bound to the gateway address (the
bridge's own, ``plan.network``) and answering the lab's subnet only. The machines' chronyd follows it
(``templates/chrony/chrony.conf.j2``, installed by the ``common`` role).

Each lab has its own daemon and its own files (config, pid, drift, command socket) in
``<lab>/run/chrony/``; it runs where the lab's network is (inside kubelab's ``kubelab-vms`` namespace
in self-contained mode, on this host with a system libvirtd), is recorded by pid and start time in
the lab's run directory like every process of a lab (so a later ``down`` or ``stop`` ends exactly it),
and carries the lab's identity in its environment (so an orphan is found and removed by it).

Planning is pure (:func:`plan`, :func:`config`, :func:`argv`, and the SNTP request and answer that
check the daemon serves); the executor is at the bottom (:func:`ensure`, :func:`query`, :func:`stop`).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from provisioner.drivers.libvirt import plan as vmplan
from provisioner.errors import HostError
from provisioner.lab import render
from provisioner.lab.paths import LabPaths
from provisioner.lab.spec import LabSpec
from provisioner.system import netns, processes
from provisioner.system.waiting import timed_out, wait_for

NAME = "chronyd"  # the record in the lab's run directory, and its log
PORT = 123
START_TIMEOUT = 15.0  # until it answers a time request on the gateway
QUERY_TIMEOUT = 1.0
NTP_EPOCH = 2_208_988_800  # seconds from 1900-01-01 (NTP's era 0) to 1970-01-01
_PACKET = struct.Struct("!BBbb11I")  # NTP header: LI/VN/mode, stratum, poll, precision, then 11 words
_MODE_CLIENT, _MODE_SERVER, _VERSION = 3, 4, 4
_UNSYNCHRONISED = 3  # leap indicator: the server's clock is not synchronised


class TimeSourceError(HostError):
    """The lab's time source did not start, or did not answer as an NTP server."""


@dataclass(frozen=True)
class TimeSource:
    """A lab's time source: where it serves and where its files are."""

    lab: str
    address: str  # the lab network's gateway: the only address it listens on
    subnet: str  # the lab's network: the only clients it answers
    directory: Path  # its own files

    @property
    def config_file(self) -> Path:
        return self.directory / "chronyd.conf"

    @property
    def pid_file(self) -> Path:
        return self.directory / "chronyd.pid"

    @property
    def drift_file(self) -> Path:
        return self.directory / "chrony.drift"

    @property
    def socket_file(self) -> Path:
        """chronyd's command socket: ``chronyc -h THIS sources`` (chronyd wants its directory root's alone)."""
        return self.directory / "chronyd.sock"


def plan(spec: LabSpec, paths: LabPaths) -> TimeSource:
    return TimeSource(
        lab=spec.name,
        address=vmplan.network(spec).gateway,
        subnet=spec.network_cidr,
        directory=paths.run / "chrony",
    )


def serves_here(uri: str) -> bool:
    """Whether a lab under the libvirt at ``uri`` has its network on this host, where its time source
    can serve it: not so for a libvirt on another host (``qemu+ssh://host/system``)."""
    return not urlsplit(uri).netloc


def config(source: TimeSource) -> str:
    """chronyd's whole configuration for the lab (its own file: never the host's /etc/chrony)."""
    return render.render(
        "chrony/lab-server.conf.j2",
        lab=source.lab,
        address=source.address,
        subnet=source.subnet,
        socket=str(source.socket_file),
        pidfile=str(source.pid_file),
        driftfile=str(source.drift_file),
    )


def argv(source: TimeSource, *, netns: str) -> list[str]:
    """chronyd in the foreground (``-d``: its log on stderr, its pid the recorded one), never touching this
    host's clock (``-x``), with the lab's own configuration; inside ``netns`` when there is one."""
    command = ["chronyd", "-d", "-x", "-f", str(source.config_file)]
    return ["ip", "netns", "exec", netns, *command] if netns else command


# --- SNTP: the question that proves the daemon serves ---------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A time server's answer to one request."""

    stratum: int
    offset: float  # seconds the server's clock is ahead of the asker's (RFC 5905's theta)
    delay: float  # seconds the round trip took, less the server's own time


def _timestamp(seconds: float) -> tuple[int, int]:
    whole = int(seconds)
    return (whole + NTP_EPOCH) & 0xFFFFFFFF, int((seconds - whole) * 2**32) & 0xFFFFFFFF


def _seconds(high: int, low: int) -> float:
    return high - NTP_EPOCH + low / 2**32


def request(now: float) -> bytes:
    """An SNTP client request (version 4, mode 3) whose transmit time is ``now`` (Unix seconds)."""
    return _PACKET.pack(_VERSION << 3 | _MODE_CLIENT, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, *_timestamp(now))


def read_answer(data: bytes, *, asked: bytes, received: float) -> Answer:
    """The answer in ``data`` to the request ``asked``, read at ``received`` (Unix seconds); a reply
    that is not a synchronised server's answer to that very request is a :class:`TimeSourceError`."""
    if len(data) < _PACKET.size:
        raise TimeSourceError(f"a {len(data)}-byte reply is no NTP answer")
    fields = _PACKET.unpack_from(data)
    first, stratum, words = fields[0], fields[1], fields[4:]  # words: root delay ... transmit time
    if first & 0x07 != _MODE_SERVER:
        raise TimeSourceError(f"the reply is NTP mode {first & 0x07}, not a server's answer (mode 4)")
    if data[24:32] != asked[40:48]:
        raise TimeSourceError("the reply answers another request (its origin time is not ours)")
    if stratum == 0 or first >> 6 == _UNSYNCHRONISED:
        raise TimeSourceError(f"the server says its clock is not synchronised (stratum {stratum}, leap {first >> 6})")
    sent = _seconds(*_PACKET.unpack_from(asked)[-2:])
    server_received, server_sent = _seconds(words[7], words[8]), _seconds(words[9], words[10])
    offset = ((server_received - sent) + (server_sent - received)) / 2
    delay = (received - sent) - (server_sent - server_received)
    return Answer(stratum=stratum, offset=offset, delay=delay)


# --- the executor -----------------------------------------------------------------------------------


def _ask(address: str, timeout: float) -> Answer:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        # from the gateway itself: binding fails unless it is an address here, so the request stays here
        sock.bind((address, 0))
        asked = request(time.time())
        sock.sendto(asked, (address, PORT))
        data = sock.recv(512)
        return read_answer(data, asked=asked, received=time.time())


def query(address: str, *, netns_name: str, timeout: float = QUERY_TIMEOUT) -> Answer:
    """Ask the time source at ``address`` for the time, from inside ``netns_name`` ('' this host's own)."""
    outcome: list[Answer | BaseException] = []

    def ask() -> None:  # a thread of its own: entering a namespace moves the calling thread only
        try:
            netns.enter(netns_name)
            outcome.append(_ask(address, timeout))
        except BaseException as exc:  # handed to the caller below
            outcome.append(exc)

    thread = threading.Thread(target=ask, name=f"timesource-{address}", daemon=True)
    thread.start()
    thread.join(timeout + 5.0)
    if not outcome:
        raise TimeSourceError(f"no answer from {address}:{PORT} within {timeout + 5.0:.0f}s")
    found = outcome[0]
    if isinstance(found, TimeSourceError):
        raise found
    if isinstance(found, OSError):
        raise TimeSourceError(f"{address}:{PORT}: {found.strerror or found}") from found
    if isinstance(found, BaseException):
        raise found
    return found


def current(paths: LabPaths) -> processes.ProcessRecord | None:
    """The lab's chronyd while it runs, else None."""
    return processes.running_record(paths.run, NAME)


def ensure(
    source: TimeSource,
    paths: LabPaths,
    *,
    netns_name: str,
    tags: Mapping[str, str],
    say: Callable[[str], None],
) -> processes.ProcessRecord:
    """The lab's chronyd runs with this configuration where the lab network is (started, or restarted
    when its configuration or place changed) and answers on the gateway; ``tags`` (the lab's identity)
    go into its environment."""
    text = config(source)
    wanted = argv(source, netns=netns_name)
    record = current(paths)
    written = source.config_file.read_text() if source.config_file.exists() else ""
    if record is not None and record.argv == tuple(wanted) and written == text:
        say(f"  time: chronyd (pid {record.pid}) serves this host's clock on {source.address}:{PORT} (running)")
        return record
    if record is not None:
        processes.stop(record)
    began = time.monotonic()
    source.directory.mkdir(parents=True, exist_ok=True)
    source.directory.chmod(0o700)  # chronyd opens its command socket only in a directory no one else may enter
    render.write(source.config_file, text, mode=0o600)
    for stale in (source.pid_file, source.socket_file):  # left by a daemon that was killed
        stale.unlink(missing_ok=True)
    log = paths.logs / f"{NAME}.log"
    record = processes.spawn(NAME, wanted, log=log, tags=tags, record_in=paths.run)
    seen = ["not asked yet"]

    def answers() -> bool:
        try:
            found = query(source.address, netns_name=netns_name, timeout=0.5)
        except TimeSourceError as exc:
            seen[0] = str(exc)
            return False
        seen[0] = f"stratum {found.stratum}"
        return True

    def exited() -> str | None:
        if processes.alive(record):
            return None
        seen[0] = f"it exited ({processes.log_tail(log, 1) or 'no output'})"
        return seen[0]

    what = f"chronyd to serve time on {source.address}:{PORT}"
    if not wait_for(answers, timeout=START_TIMEOUT, interval=0.1, abort=exited, what=what, last=lambda: seen[0]):
        stop(paths)
        raise TimeSourceError(
            f"the lab's time source did not start ({timed_out(what, START_TIMEOUT, seen[0])}); see {log}"
        )
    say(
        f"  time: chronyd (pid {record.pid}) serves this host's clock on {source.address}:{PORT} to {source.subnet}"
        f" ({time.monotonic() - began:.1f}s)"
    )
    return record


def stop(paths: LabPaths) -> bool:
    """End the lab's chronyd (by its record: pid and start time) and forget it; whether it ran."""
    return processes.stop_recorded(paths.run, NAME)
