"""The libvirt driver's pure parts: machine plan, accelerator choice, rendered XML, ssh config, tunnel."""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from provisioner.drivers.libvirt import daemon as libvirthost
from provisioner.drivers.libvirt import plan as vmplan
from provisioner.drivers.libvirt import ssh as sshkeys
from provisioner.drivers.libvirt.tunnel import Forward
from provisioner.errors import SpecError
from provisioner.lab import render
from provisioner.lab import spec as labspec


def test_machines_get_stable_addresses_names_and_macs() -> None:
    spec = labspec.LabSpec(name="demo", workers=2)
    machines = vmplan.machines(spec)
    assert [(m.name, m.role, m.ip) for m in machines] == [
        ("demo-master", "master", "192.168.123.10"),
        ("demo-worker1", "worker", "192.168.123.11"),
        ("demo-worker2", "worker", "192.168.123.12"),
    ]
    assert machines[0].cpus == spec.master_cpus and machines[1].memory_mib == spec.memory
    # converging to more workers keeps the existing machines' identity
    more = vmplan.machines(labspec.LabSpec(name="demo", workers=3))
    assert more[:3] == machines
    assert [vmplan.is_worker_name("demo", n) for n in ("demo-worker3", "demo-master", "demo-workerx", "x-worker1")] == [
        True,
        False,
        False,
        False,
    ]
    assert vmplan.address_of(spec, "demo-worker5") == "192.168.123.15"  # a worker that left a 5-worker lab
    assert vmplan.address_of(spec, "demo-master") == "192.168.123.10" and vmplan.address_of(spec, "x") is None
    assert len({m.mac for m in more}) == 4 and all(m.mac.startswith("52:54:00:") for m in more)
    # another lab gets other MACs for the same addresses
    assert vmplan.machines(labspec.LabSpec(name="other"))[0].mac != machines[0].mac


def test_network_is_isolated_with_a_reservation_per_machine() -> None:
    spec = labspec.LabSpec(name="demo", network_cidr="10.77.0.0/24")
    plan = vmplan.network(spec)
    assert len(plan.bridge) <= 15 and plan.gateway == "10.77.0.1"
    xml = ET.fromstring(vmplan.network_xml(plan, vmplan.machines(spec), lab="demo", uid="u1"))
    assert xml.find("forward") is None  # isolated: nothing is routed or NATed out of the lab
    hosts = xml.findall("./ip/dhcp/host")
    assert [(h.get("name"), h.get("ip")) for h in hosts] == [
        ("demo-master", "10.77.0.10"),
        ("demo-worker1", "10.77.0.11"),
        ("demo-worker2", "10.77.0.12"),
    ]
    dhcp = xml.find("./ip/dhcp/range")
    assert dhcp is not None
    low, high = ipaddress.IPv4Address(dhcp.get("start", "")), ipaddress.IPv4Address(dhcp.get("end", ""))
    assert all(low <= ipaddress.IPv4Address(h.get("ip", "")) <= high for h in hosts)


@pytest.mark.parametrize("accel", ["kvm", "tcg"])
def test_domain_boots_the_image_directly_on_its_overlay(accel: str) -> None:
    spec = labspec.LabSpec(name="demo")
    machine = vmplan.machines(spec)[1]
    text = render.render(
        "libvirt/domain.xml.j2",
        machine=machine,
        lab="demo",
        uid="u1",
        accel=accel,
        network=vmplan.network(spec),
        kernel="/cache/vmlinuz",
        initrd="/cache/initrd.img",
        cmdline="root=/dev/vda rw",
        disk="/vms/demo/demo-worker1.qcow2",
        console_log="/log/demo-worker1-console.log",
        image_digest="abc",
    )
    xml = ET.fromstring(text)
    assert xml.get("type") == ("kvm" if accel == "kvm" else "qemu")
    assert xml.findtext("name") == "demo-worker1"
    assert xml.findtext("./os/kernel") == "/cache/vmlinuz" and xml.findtext("./os/cmdline") == "root=/dev/vda rw"
    assert xml.findtext("memory") == str(machine.memory_mib) and xml.findtext("vcpu") == str(machine.cpus)
    source = xml.find("./devices/disk/source")
    assert source is not None and source.get("file") == "/vms/demo/demo-worker1.qcow2"
    mac = xml.find("./devices/interface/mac")
    assert mac is not None and mac.get("address") == machine.mac
    assert (xml.find("cpu") is not None) == (accel == "kvm")  # TCG guests get QEMU's default model


def test_a_range_held_by_another_active_network_is_named() -> None:
    other = labspec.LabSpec(name="first", workers=1)
    xml = vmplan.network_xml(vmplan.network(other), vmplan.machines(other), lab="first", uid="u1")
    default = "<network><name>default</name><ip address='192.168.122.1' netmask='255.255.255.0'/></network>"
    networks = [("default", default), ("kubelab-first", xml)]
    assert vmplan.overlapping("192.168.123.0/24", networks) == "kubelab-first"
    assert vmplan.overlapping("192.168.0.0/16", networks) == "default"
    assert vmplan.overlapping("10.77.0.0/24", networks) is None
    assert vmplan.ranges(default) == ["192.168.122.0/24"] and vmplan.ranges(xml) == ["192.168.123.0/24"]
    both = "<network><ip family='ipv6' address='fd00::1' prefix='64'/><ip address='10.5.0.1' prefix='16'/></network>"
    assert vmplan.ranges(both) == ["10.5.0.0/16"]  # what a new lab's range must avoid: IPv4 only


def test_the_reservations_of_a_network_are_read_back_as_libvirt_updates_them() -> None:
    spec = labspec.LabSpec(name="demo", workers=1)
    machines = vmplan.machines(spec)
    xml = vmplan.network_xml(vmplan.network(spec), machines, lab="demo", uid="u1")
    found = vmplan.reservations(xml)
    assert list(found) == [m.mac for m in machines]
    element = ET.fromstring(found[machines[1].mac])
    assert element.attrib == {"mac": machines[1].mac, "name": "demo-worker1", "ip": "192.168.123.11"}


def test_accelerator_is_kvm_only_with_hardware_kvm(tmp_path: Path) -> None:
    dev = tmp_path / "kvm"
    modules = tmp_path / "module"
    modules.mkdir()
    assert libvirthost.accelerator("auto", dev_kvm=dev, modules=modules) == "tcg"
    dev.touch()
    (modules / "kvm_pvm").mkdir()  # a paravirtual KVM does not boot ordinary guests
    assert libvirthost.accelerator("auto", dev_kvm=dev, modules=modules) == "tcg"
    (modules / "kvm_amd").mkdir()
    assert libvirthost.accelerator("auto", dev_kvm=dev, modules=modules) == "kvm"
    assert libvirthost.accelerator("tcg", dev_kvm=dev, modules=modules) == "tcg"


def test_ssh_config_goes_through_the_namespace_when_there_is_one(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    line = sshkeys.ensure_key(key, "kubelab-demo")
    assert line.startswith("ssh-ed25519 ") and line.endswith(" kubelab-demo")
    assert sshkeys.ensure_key(key, "kubelab-demo") == line  # kept, not regenerated
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    hosts = [("demo-master", "192.168.123.10"), ("demo-worker1", "192.168.123.11")]
    text = sshkeys.config(hosts=hosts, key=key, known_hosts=tmp_path / "known", netns="kubelab-vms")
    assert "Host demo-master 192.168.123.10\n" in text and "HostName 192.168.123.11\n" in text
    assert "-m provisioner.drivers.libvirt.tunnel connect kubelab-vms %h %p" in text
    assert "ProxyCommand" not in sshkeys.config(hosts=hosts, key=key, known_hosts=tmp_path / "k", netns="")
    cmdline = vmplan.kernel_cmdline(vmplan.machines(labspec.LabSpec(name="demo"))[0], line)
    assert cmdline.endswith(" kubelab.hostname=demo-master kubelab.ssh=" + cmdline.rsplit("=", 1)[1])
    assert " " not in cmdline.rsplit("kubelab.ssh=", 1)[1]


def test_forward_arguments_round_trip() -> None:
    forward = Forward.parse("6443=192.168.123.10:6443")
    assert forward == Forward(6443, "192.168.123.10", 6443)
    assert Forward.parse(forward.argument()) == forward
    with pytest.raises(ValueError, match="LOCAL_PORT=HOST:PORT"):
        Forward.parse("6443:192.168.123.10")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"workers": "17"}, "workers 17: choose 0 to 16"),
        ({"memory": "256"}, "memory 256: give MiB between 512"),
        ({"master_cpus": "0"}, "master-cpus 0: choose 1 to 16"),
        ({"disk": "2"}, "disk 2: give GiB between 4"),
        ({"accel": "hvf"}, "accel 'hvf': choose one of auto, kvm, tcg"),
        ({"pod_routes": "flannel"}, "pod-routes 'flannel': choose one of cloud, host-gw"),
        ({"network_cidr": "10.244.3.0/24"}, "overlaps cluster-cidr"),
        ({"network_cidr": "192.168.1.0/30"}, "between /16 and /28"),
        ({"network_cidr": "192.168.1.0/28", "workers": "8"}, "too small for a master and 8 workers"),
    ],
)
def test_bad_machine_settings_are_one_clear_error(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        labspec.build(None, overrides)


def test_the_local_driver_ignores_machine_settings() -> None:
    assert labspec.build(None, {"driver": "local", "workers": "40"}).workers == 40


def test_libvirt_refusing_a_machine_is_one_line_naming_it_and_what_to_change(tmp_path: Path) -> None:
    import libvirt  # noqa: PLC0415  (the binding is a dependency of the project)

    from provisioner.drivers.libvirt.hypervisor import Hypervisor  # noqa: PLC0415
    from provisioner.errors import ProvisionError  # noqa: PLC0415

    def refuse() -> None:
        error = libvirt.libvirtError("virDomainCreate() failed")
        error.err = (38, 0, "Cannot access backing file 'disk.qcow2': Permission denied", 2, "", None, None, 0, 0)
        raise error

    with pytest.raises(ProvisionError) as caught:
        Hypervisor(conn=None, lab="lab").call("lab-master", "start", refuse, image=tmp_path / "disk.qcow2")
    message = str(caught.value)
    assert message.startswith("lab-master: libvirt could not start the machine: Cannot access backing file")
    assert f"read the guest image {tmp_path / 'disk.qcow2'}" in message
    assert "KUBELAB_GUEST_CACHE" in message
    assert "\n" not in message


def test_a_machine_that_never_answers_ssh_is_one_error_naming_it_the_accelerator_ssh_and_its_console(
    tmp_path: Path,
) -> None:
    from provisioner.errors import ComponentError  # noqa: PLC0415

    machines = vmplan.machines(labspec.LabSpec(name="demo", workers=1))
    console = tmp_path / "console" / "demo-worker1-console.log"
    console.parent.mkdir(parents=True)
    console.write_text("[    3.1] Run /init as init process\n[   9.9] Kernel panic - not syncing\n\n")
    said: list[str] = []
    with pytest.raises(ComponentError) as caught:
        sshkeys.wait_all(
            machines,
            probe=lambda node: "" if node == "demo-master" else "root@192.168.123.11: Permission denied (publickey).",
            timeout=0.5,
            accel="tcg",
            console_of=lambda node: tmp_path / "console" / f"{node}-console.log",
            say=said.append,
        )
    message = str(caught.value)
    assert message.startswith("demo-worker1 did not answer ssh at 192.168.123.11 within 0s (accelerator tcg);")
    assert "; ssh said: root@192.168.123.11: Permission denied (publickey).;" in message
    assert f"console log: {console}" in message
    assert message.endswith("(last line: [   9.9] Kernel panic - not syncing)") and "\n" not in message
    assert said == [said[0]] and said[0].startswith("  demo-master: ssh answers after ")


def test_the_ssh_proxy_command_ends_when_ssh_closes_it_although_the_machine_never_does() -> None:
    import socket  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    with socket.create_server(("127.0.0.1", 0)) as server:  # accepts, then neither reads nor closes
        port = server.getsockname()[1]
        proxy = subprocess.Popen(
            [sys.executable, "-m", "provisioner.drivers.libvirt.tunnel", "connect", "-", "127.0.0.1", str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        peer, _ = server.accept()
        try:
            assert proxy.stdin is not None
            proxy.stdin.write(b"SSH-2.0-client\r\n")
            proxy.stdin.flush()
            peer.settimeout(10)
            assert peer.recv(64) == b"SSH-2.0-client\r\n"
            peer.sendall(b"SSH-2.0-server\r\n")
            assert proxy.stdout is not None and proxy.stdout.readline() == b"SSH-2.0-server\r\n"
            proxy.stdin.close()  # ssh is done; the machine side stays open
            assert proxy.wait(timeout=10) == 0
        finally:
            if proxy.poll() is None:
                proxy.kill()
            peer.close()


def test_a_machine_made_again_has_its_old_host_keys_forgotten(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(
        "demo-worker2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOld2\n"
        "192.168.123.12 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOld2\n"
        "demo-worker1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeep1\n"
    )
    sshkeys.forget_hosts(known, "demo-worker2", "192.168.123.12")
    assert known.read_text() == "demo-worker1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeep1\n"
    assert not (tmp_path / "known_hosts.old").exists()
    sshkeys.forget_hosts(tmp_path / "none", "demo-master")  # nothing recorded yet: nothing to do


def test_converging_removes_machines_no_longer_asked_for_and_creates_the_missing_ones() -> None:
    machines = vmplan.machines(labspec.LabSpec(name="demo", workers=1))
    changes = vmplan.converge(machines, {"demo-master", "demo-worker2", "demo-worker3"})
    assert changes.remove == ("demo-worker2", "demo-worker3")
    assert [m.name for m in changes.create] == ["demo-worker1"]
    assert vmplan.converge(machines, {"demo-master", "demo-worker1"}) == vmplan.Convergence((), ())


def test_reservations_change_in_place_for_the_machines_that_came_and_went() -> None:
    two = vmplan.machines(labspec.LabSpec(name="demo", workers=2))
    one = two[:2]
    network = vmplan.network(labspec.LabSpec(name="demo", workers=2))
    current = vmplan.reservations(vmplan.network_xml(network, two, lab="demo", uid="u1"))
    delete, add = vmplan.reservation_changes(current, one)
    assert delete == [current[two[2].mac]] and add == []
    delete, add = vmplan.reservation_changes({k: v for k, v in current.items() if k != two[2].mac}, two)
    assert delete == [] and add == [f"<host mac='{two[2].mac}' name='demo-worker2' ip='192.168.123.12'/>"]


def test_the_machines_disks_are_overlay_volumes_of_a_pool_of_the_labs_own() -> None:
    pool = vmplan.pool(labspec.LabSpec(name="demo"), Path("/vms"))
    assert pool == vmplan.PoolPlan("kubelab-demo", Path("/vms/demo"))
    xml = ET.fromstring(vmplan.pool_xml(pool))
    assert xml.get("type") == "dir" and xml.findtext("name") == "kubelab-demo"
    assert xml.findtext("./target/path") == "/vms/demo"
    volume = ET.fromstring(vmplan.volume_xml("demo-worker1", capacity_gib=8, backing=Path("/cache/disk.qcow2")))
    assert volume.findtext("name") == "demo-worker1.qcow2"
    capacity = volume.find("capacity")
    assert capacity is not None and (capacity.text, capacity.get("unit")) == ("8", "GiB")
    assert volume.findtext("./backingStore/path") == "/cache/disk.qcow2"
    formats = [f.get("type") for f in volume.iter("format")]
    assert formats == ["qcow2", "qcow2"]


def test_a_domain_is_the_labs_only_when_kubelab_stamped_it_so() -> None:
    spec = labspec.LabSpec(name="demo")
    machine = vmplan.machines(spec)[0]
    xml = vmplan.domain_xml(
        machine,
        lab="demo",
        uid="0123456789abcdef",
        accel="tcg",
        network=vmplan.network(spec),
        kernel=Path("/k"),
        initrd=Path("/i"),
        image_digest="abc",
        disk=Path("/vms/demo/demo-master.qcow2"),
        console_log=Path("/log/c"),
        public_key_line="ssh-ed25519 AAAA demo",
    )
    assert vmplan.is_ours("demo", "demo-master", xml)
    assert vmplan.stamp_of(xml) == ("demo", "0123456789abcdef")
    assert not vmplan.is_ours("demo2", "demo-master", xml)  # another lab's prefix
    assert not vmplan.is_ours("demo", "demo-master", "<domain><name>demo-master</name></domain>")


def test_libvirt_default_uri_points_kubelab_at_another_libvirt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "qemu+ssh://root@elsewhere/system")
    assert libvirthost.current() == libvirthost.Daemon("qemu+ssh://root@elsewhere/system", "")
    assert libvirthost.ensure(say=lambda _m: None) == libvirthost.Daemon("qemu+ssh://root@elsewhere/system", "")
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "qemu:///system")  # the default: kubelab's own choice
    assert libvirthost.chosen_uri() == ""
