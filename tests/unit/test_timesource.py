"""The lab's time source, planned without starting anything: what the host's chronyd is told (serve
the host's clock on the gateway to the lab's subnet, nothing upstream, never touch the host's clock,
files of the lab's own), how it is started, the SNTP question that proves it serves, and the guest
side that follows it (the common role's chrony.conf names the same gateway)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import yaml

from provisioner.drivers.libvirt import inventory, plan, timesource
from provisioner.lab import render
from provisioner.lab.paths import LabPaths
from provisioner.lab.spec import LabSpec
from provisioner.project import PLAYBOOKS
from tests.support.inventory import SPEC, lab_variables

NTP_EPOCH = 2_208_988_800


def _directives(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _source(name: str = "demo", cidr: str = "192.168.150.0/24", home: Path = Path("/labs")) -> timesource.TimeSource:
    return timesource.plan(LabSpec(name=name, network_cidr=cidr), LabPaths.for_lab(name, home))


def test_the_time_source_listens_on_the_lab_gateway_and_keeps_its_files_in_the_lab_s_run_directory() -> None:
    source = _source()
    assert source.address == plan.network(LabSpec(name="demo", network_cidr="192.168.150.0/24")).gateway
    assert source.address == "192.168.150.1"
    assert source.subnet == "192.168.150.0/24"
    assert source.directory == Path("/labs/demo/run/chrony")
    files = (source.config_file, source.pid_file, source.drift_file, source.socket_file)
    assert all(f.parent == source.directory for f in files) and len(set(files)) == 4


def test_the_configuration_serves_the_host_clock_to_the_lab_subnet_only_and_asks_no_one() -> None:
    source = _source()
    text = timesource.config(source)
    assert render.HEADER in text.splitlines()[0]
    directives = _directives(text)
    assert ["local", "stratum", "10"] in directives
    assert ["bindaddress", "192.168.150.1"] in directives
    assert [d for d in directives if d[0] == "allow"] == [["allow", "192.168.150.0/24"]]
    # no upstream: nothing is ever sent anywhere, and the host's RTC is not the lab's business
    assert not [d for d in directives if d[0] in ("server", "pool", "peer", "refclock", "sourcedir", "rtcsync")]
    # no UDP command port (labs in one namespace would share it); the command socket is the lab's own
    assert ["cmdport", "0"] in directives
    assert ["bindcmdaddress", str(source.socket_file)] in directives
    assert ["pidfile", str(source.pid_file)] in directives
    assert ["driftfile", str(source.drift_file)] in directives


def test_two_labs_share_no_address_and_no_file() -> None:
    one, other = _source("one", "192.168.150.0/24"), _source("other", "192.168.151.0/24")
    assert one.address != other.address
    mine = {line for line in timesource.config(one).splitlines() if not line.startswith("#")}
    theirs = {line for line in timesource.config(other).splitlines() if not line.startswith("#")}
    assert mine & theirs == {"local stratum 10", "cmdport 0", "user root"}


def test_chronyd_runs_in_the_foreground_never_adjusting_the_host_clock_where_the_lab_network_is() -> None:
    source = _source()
    command = ["chronyd", "-d", "-x", "-f", "/labs/demo/run/chrony/chronyd.conf"]
    assert timesource.argv(source, netns="kubelab-vms") == ["ip", "netns", "exec", "kubelab-vms", *command]
    assert timesource.argv(source, netns="") == command  # a system libvirtd: the lab's bridge is on the host


def test_the_time_source_runs_here_unless_the_lab_network_is_on_another_host() -> None:
    assert timesource.serves_here("qemu:///system")
    assert not timesource.serves_here("qemu+ssh://root@elsewhere/system")
    assert not timesource.serves_here("qemu+tcp://10.0.0.5/system")


def test_the_request_is_an_sntp_v4_client_packet_carrying_its_transmit_time() -> None:
    packet = timesource.request(1_800_000_000.25)
    assert len(packet) == 48
    assert packet[0] == (0 << 6) | (4 << 3) | 3  # no leap warning, version 4, client
    seconds, fraction = struct.unpack("!II", packet[40:48])
    assert seconds == 1_800_000_000 + NTP_EPOCH
    assert fraction == 2**30  # a quarter of a second
    assert packet[1:40] == bytes(39)


def _reply(
    asked: bytes, *, received: float, sent: float, stratum: int = 10, mode: int = 4, leap: int = 0, origin: bytes = b""
) -> bytes:
    def stamp(t: float) -> bytes:
        return struct.pack("!II", int(t) + NTP_EPOCH, int((t % 1) * 2**32))

    head = struct.pack("!BBbb", leap << 6 | 4 << 3 | mode, stratum, 6, -20) + bytes(12) + stamp(received)
    return head + (origin or asked[40:48]) + stamp(received) + stamp(sent)


def test_the_answer_gives_the_server_s_stratum_its_offset_and_the_round_trip() -> None:
    asked = timesource.request(1000.0)
    # the server's clock is 2 s ahead: it got the request at (its) 1002.1 and answered at 1002.2;
    # the answer arrived at (our) 1000.3
    answer = timesource.read_answer(_reply(asked, received=1002.1, sent=1002.2), asked=asked, received=1000.3)
    assert answer.stratum == 10
    assert answer.offset == pytest.approx(2.0, abs=1e-6)
    assert answer.delay == pytest.approx(0.2, abs=1e-6)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"origin": struct.pack("!II", 1, 2)}, "another request"),
        ({"mode": 3}, "mode 3"),
        ({"stratum": 0}, "not synchronised"),
        ({"leap": 3}, "not synchronised"),
    ],
)
def test_a_reply_that_is_no_synchronised_server_s_answer_to_this_request_is_refused(
    change: dict[str, object], says: str
) -> None:
    asked = timesource.request(1000.0)
    reply = _reply(asked, received=1000.1, sent=1000.1, **change)  # type: ignore[arg-type]
    with pytest.raises(timesource.TimeSourceError, match=says):
        timesource.read_answer(reply, asked=asked, received=1000.2)
    with pytest.raises(timesource.TimeSourceError, match="no NTP answer"):
        timesource.read_answer(reply[:40], asked=asked, received=1000.2)


def test_the_nodes_follow_the_gateway_the_host_serves_on_and_step_a_clock_that_fell_behind() -> None:
    tasks = yaml.safe_load((PLAYBOOKS / "roles" / "common" / "tasks" / "main.yml").read_text())
    task = next(
        t
        for t in tasks
        if any(f["dest"] == "/etc/chrony/chrony.conf" for f in t.get("kubelab_files", {}).get("files", []))
    )
    assert "'/chrony/chrony.conf.j2'" in task["kubelab_files"]["files"][0]["content"]
    assert task["vars"]["chrony_server"] == "{{ kubelab_gateway_ip }}"
    assert task["notify"] == "Common | restart chrony"
    assert any(t.get("kubelab_service", {}).get("unit") == "chrony.service" for t in tasks)
    gateway = lab_variables(Path("/labs/kubelab"))["kubelab_gateway_ip"]
    assert gateway == timesource.plan(SPEC, LabPaths(Path("/labs/kubelab"))).address
    assert inventory.REQUIRED_VARIABLES.count("kubelab_gateway_ip") == 1

    directives = _directives(render.render("chrony/chrony.conf.j2", chrony_server=gateway))
    servers = [d for d in directives if d[0] in ("server", "pool", "peer")]
    assert servers == [["server", "192.168.150.1", "iburst", "minpoll", "1", "maxpoll", "1"]]
    assert ["makestep", "1", "-1"] in directives  # every time it is a second off, not only at start
    assert ["cmdport", "0"] in directives
