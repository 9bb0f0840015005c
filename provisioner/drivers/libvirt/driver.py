"""The libvirt driver: a master and worker VMs, installed with Ansible.

``up`` takes the guest image from the cache (building it once), defines the lab's isolated network
and one domain per machine (a qcow2 overlay on the image each), boots them, waits for ssh, runs the
playbooks through ansible-runner, waits until every node is Ready and puts the built-in images into
the registry on the master. Run again, it converges: machines that are missing are created, workers
no longer asked for are removed, and the playbooks change only what differs.

The host reaches the lab through ``provisioner.drivers.libvirt.tunnel``: a forwarder process keeps 127.0.0.1:<api-port>
and 127.0.0.1:<registry-port> connected to the master, and ssh uses the tunnel as its ProxyCommand.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import ipaddress
import json
import py_compile
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.artefacts import guestimage, registry
from provisioner.drivers.libvirt import daemon as libvirthost
from provisioner.drivers.libvirt import plan as vmplan
from provisioner.drivers.libvirt import playbooks as ansible
from provisioner.drivers.libvirt import ssh as sshkeys
from provisioner.drivers.libvirt.tunnel import Forward
from provisioner.drivers.local.components import port_in_use
from provisioner.errors import ComponentError, HostError, ProvisionError
from provisioner.faults import plan as faults
from provisioner.faults.executor import FaultOps
from provisioner.lab import kubeconfig, render
from provisioner.lab.paths import LabPaths
from provisioner.lab.pki import ADMIN, APISERVER_KUBELET, CONTROLLER_MANAGER, PROXY, SCHEDULER, Pki, node_identity
from provisioner.lab.spec import LabSpec, service_ip
from provisioner.project import PLAYBOOKS
from provisioner.system import packages as host
from provisioner.system import processes as procs
from provisioner.system.waiting import wait_for

VM_ROOT = Path("/var/lib/kubelab/vms")
CONSOLE_ROOT = Path("/var/log/kubelab")
GUEST_API_PORT = 6443
GUEST_REGISTRY_PORT = 5000
GUEST_ETCD_PORT = 2379
GUEST_ETCD_PEER_PORT = 2380
SSH_TIMEOUT = {"kvm": 120.0, "tcg": 420.0}
READY_TIMEOUT = 300.0
SHUTDOWN_TIMEOUT = 90.0
KERNEL_ARGS = "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet"
GUEST_CACHE_TAG = "cpython-311"  # the guests' Debian 12 Python

# what `kubelab logs NODE COMPONENT` reads: the systemd unit of each component
UNITS = {component: unit for component, (unit, _where) in faults.COMPONENTS.items()}  # kubelab logs NODE COMPONENT
DOMAIN_STATES = {1: "running", 2: "blocked", 3: "paused", 4: "stopping", 5: "shut off", 6: "crashed", 7: "suspended"}
MASTER_UNITS = ("etcd", "docker-registry", "kubelab-apiserver", "kubelab-scheduler", "kubelab-controller-manager")
NODE_UNITS = ("containerd", "kubelab-kubelet", "kubelab-proxy")

HOST_NEEDS = (
    host.Requirement("qemu-system-x86_64", "qemu-system-x86", "running the lab's virtual machines"),
    host.Requirement("qemu-img", "qemu-utils", "the machines' disk overlays"),
    host.Requirement("libvirtd", "libvirt-daemon-system", "managing the virtual machines"),
    host.Requirement("virsh", "libvirt-clients", "inspecting the machines by hand"),
    host.Requirement("dnsmasq", "dnsmasq-base", "DHCP on the lab network"),
    host.Requirement("ssh", "openssh-client", "reaching the machines"),
    host.IPROUTE,
    host.SKOPEO,
)


@dataclass(frozen=True)
class MachineStatus:
    name: str
    role: str
    ip: str
    state: str  # running, shut off, missing, ...
    accel: str


def _libvirt() -> Any:
    try:
        import libvirt  # noqa: PLC0415 - the binding is only needed by this driver
    except ImportError as exc:
        raise HostError(
            "the libvirt Python binding is missing; run ./kubelab again to install it (needs libvirt-dev)"
        ) from exc
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors come back as exceptions
    return libvirt


class LibvirtDriver:
    def __init__(self, spec: LabSpec, paths: LabPaths, *, say: Callable[[str], None] = print) -> None:
        self.spec = spec
        self.paths = paths
        self.say = say
        self.pki = Pki(paths.pki)
        self.network = vmplan.network(spec)
        self.machines = vmplan.machines(spec)
        self.master = self.machines[0]
        self.vm_dir = VM_ROOT / spec.name
        self.console_dir = CONSOLE_ROOT / spec.name

    # --- files ---------------------------------------------------------------------------------

    @property
    def ssh_key(self) -> Path:
        return self.paths.root / "ssh" / "id_ed25519"

    @property
    def ssh_config(self) -> Path:
        return self.paths.root / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.paths.root / "ssh" / "known_hosts"

    @property
    def phases_file(self) -> Path:
        return self.paths.run / "up-phases.json"

    def disk_of(self, name: str) -> Path:
        return self.vm_dir / f"{name}.qcow2"

    def console_of(self, name: str) -> Path:
        return self.console_dir / f"{name}-console.log"

    @property
    def registry(self) -> str:
        return f"http://127.0.0.1:{self.spec.registry_port}"

    # --- libvirt -------------------------------------------------------------------------------

    def _daemon(self, *, start: bool) -> libvirthost.Daemon | None:
        if start:
            return libvirthost.ensure(say=self.say)
        return libvirthost.current()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        libvirt = _libvirt()
        try:
            conn = libvirt.open(libvirthost.URI)
        except libvirt.libvirtError as exc:
            raise HostError(f"cannot connect to libvirt at {libvirthost.URI}: {exc.get_error_message()}") from exc
        try:
            yield conn
        finally:
            conn.close()

    @staticmethod
    def _libvirt_call(name: str, what: str, call: Callable[..., Any], image: guestimage.GuestImage, *args: Any) -> Any:
        """``call(*args)``, with libvirt's refusal as one line naming the machine; where QEMU may not
        read the base image (it runs as libvirt's own user), what to change."""
        try:
            return call(*args)
        except _libvirt().libvirtError as exc:
            message = exc.get_error_message() or str(exc)
            hint = ""
            if "Permission denied" in message:
                hint = (
                    f"; QEMU runs as libvirt's user and must be able to read the guest image {image.disk}"
                    " and every directory above it (set KUBELAB_GUEST_CACHE to such a place)"
                )
            raise ProvisionError(f"{name}: libvirt could not {what} the machine: {message}{hint}") from exc

    def _our_domains(self, conn: Any) -> dict[str, Any]:
        out = {}
        prefix = f"{self.spec.name}-"
        for domain in conn.listAllDomains():
            name = domain.name()
            if name.startswith(prefix) and f"<kubelab:name>{self.spec.name}</kubelab:name>" in domain.XMLDesc(0):
                out[name] = domain
        return out

    def _ensure_network(self, conn: Any) -> None:
        libvirt = _libvirt()
        xml = render.render("libvirt/network.xml.j2", network=self.network, machines=self.machines)
        try:
            net = conn.networkLookupByName(self.network.name)
        except libvirt.libvirtError:
            net = None
        if net is not None:
            self._update_reservations(net)
        if net is None or not net.isActive():
            self._refuse_overlap(conn)
        if net is None:
            net = conn.networkDefineXML(xml)
            self.say(f"  network {self.network.name}: {self.network.gateway}/{self.network.prefix}, isolated")
        if not net.isActive():
            try:
                net.create()
            except libvirt.libvirtError as exc:
                raise ProvisionError(
                    f"network {self.network.name} ({self.spec.network_cidr}) could not start: {exc};"
                    " give the lab another range with --network-cidr"
                ) from exc

    def _refuse_overlap(self, conn: Any) -> None:
        """One line naming the other lab when its active network holds this lab's range (two bridges
        with one range would route the machines of both labs to whichever came first)."""
        others = [
            (n.name(), n.XMLDesc(0)) for n in conn.listAllNetworks() if n.isActive() and n.name() != self.network.name
        ]
        clash = overlapping(self.spec.network_cidr, others)
        if clash:
            lab = clash.removeprefix("kubelab-")
            undo = f"kubelab down --name {lab}" if clash != lab else f"virsh net-destroy {clash}"
            raise ProvisionError(
                f"network-cidr {self.spec.network_cidr} is in use by libvirt network {clash};"
                f" remove it ({undo}) or give this lab another range with --network-cidr"
            )

    def _update_reservations(self, net: Any) -> None:
        """Give a lab that gained or lost workers the DHCP reservations of its machines, in place:
        destroying the network would unplug the running machines from its bridge."""
        libvirt = _libvirt()
        current = _reservations(net.XMLDesc(0))
        wanted = {m.mac: f"<host mac='{m.mac}' name='{m.name}' ip='{m.ip}'/>" for m in self.machines}
        flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
        if net.isActive():
            flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
        changes = [
            (libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, xml) for mac, xml in current.items() if mac not in wanted
        ]
        changes += [
            (libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, xml) for mac, xml in wanted.items() if mac not in current
        ]
        for command, xml in changes:
            try:
                net.update(command, libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST, -1, xml, flags)
            except libvirt.libvirtError as exc:
                raise ProvisionError(
                    f"network {self.network.name}: libvirt could not update the reservation {xml}:"
                    f" {exc.get_error_message()}"
                ) from exc

    def _domain_xml(self, machine: vmplan.Machine, image: guestimage.GuestImage, accel: str, key_line: str) -> str:
        cmdline = f"{KERNEL_ARGS} kubelab.hostname={machine.name} kubelab.ssh={sshkeys.cmdline_value(key_line)}"
        return render.render(
            "libvirt/domain.xml.j2",
            machine=machine,
            lab=self.spec.name,
            accel=accel,
            network=self.network,
            kernel=str(image.kernel),
            initrd=str(image.initrd),
            cmdline=cmdline,
            disk=str(self.disk_of(machine.name)),
            console_log=str(self.console_of(machine.name)),
            image_digest=image.digest,
        )

    def _overlay(self, machine: vmplan.Machine, image: guestimage.GuestImage) -> None:
        disk = self.disk_of(machine.name)
        if disk.exists():
            return
        self.vm_dir.mkdir(parents=True, exist_ok=True)
        self.vm_dir.chmod(0o755)
        done = subprocess.run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "qcow2",
                "-b",
                str(image.disk),
                str(disk),
                f"{self.spec.disk}G",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise HostError(f"qemu-img could not create {disk}: {done.stderr.strip()}")

    def _remove_machine(self, conn: Any, name: str, domain: Any) -> None:
        if domain.isActive():
            domain.destroy()
        domain.undefine()
        sshkeys.forget_hosts(self.known_hosts, name, vmplan.address_of(self.spec, name) or name)
        self.disk_of(name).unlink(missing_ok=True)
        self.console_of(name).unlink(missing_ok=True)

    # --- up --------------------------------------------------------------------------------------

    def up(self) -> None:
        began = time.monotonic()
        phases: dict[str, float] = {}
        spec = self.spec
        self.say(f"lab {spec.name!r}: libvirt driver, 1 master and {spec.workers} workers, state in {self.paths.root}")
        host.ensure([*HOST_NEEDS], say=lambda msg: self.say(f"  host: {msg}"))
        _libvirt()
        accel = libvirthost.accelerator(spec.accel)
        if accel == "kvm" and libvirthost.accelerator("auto") != "kvm":
            self.say("  warning: --accel kvm asked for, but this host's KVM looks unusable (no kvm_intel/kvm_amd)")
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.paths.spec.write_text(spec.to_json())

        mark = time.monotonic()
        image = guestimage.ensure(lambda msg: self.say(f"  image: {msg}"))
        phases["image"] = time.monotonic() - mark
        self.say(f"  image: {'cached' if image.cached else 'built'} {image.disk} ({phases['image']:.1f}s)")

        mark = time.monotonic()
        self._prepare_secrets()
        key_line = sshkeys.ensure_key(self.ssh_key, f"kubelab-{spec.name}")
        daemon = self._daemon(start=True)
        assert daemon is not None
        self._write_ssh_config(daemon)
        self.console_dir.mkdir(parents=True, exist_ok=True)
        created: list[str] = []
        removed: list[str] = []
        with self._connection() as conn:
            self._ensure_network(conn)
            existing = self._our_domains(conn)
            wanted = {m.name for m in self.machines}
            for name, domain in sorted(existing.items()):
                if name not in wanted:
                    self._remove_machine(conn, name, domain)
                    removed.append(name)
                    self.say(f"  {name}: machine removed (no longer part of the lab)")
            for machine in self.machines:
                domain = existing.get(machine.name)
                if domain is None:
                    sshkeys.forget_hosts(self.known_hosts, machine.name, machine.ip)  # a new machine, new keys
                    self._overlay(machine, image)
                    domain = self._libvirt_call(
                        machine.name, "define", conn.defineXML, image, self._domain_xml(machine, image, accel, key_line)
                    )
                    created.append(machine.name)
                if not domain.isActive():
                    self._libvirt_call(machine.name, "start", domain.create, image)
                    self.say(
                        f"  {machine.name}: started ({machine.role}, {machine.ip}, {machine.cpus} vCPU,"
                        f" {machine.memory_mib} MiB, {accel})"
                    )
        phases["machines"] = time.monotonic() - mark

        mark = time.monotonic()
        self._wait_ssh(accel)
        phases["boot"] = time.monotonic() - mark
        self.say(f"  ssh: all {len(self.machines)} machines answer ({phases['boot']:.1f}s)")
        self._start_forwarder(daemon)

        mark = time.monotonic()
        self._run_playbooks()
        phases["playbooks"] = time.monotonic() - mark

        mark = time.monotonic()
        self._delete_stale_nodes()  # the API server answers now (the playbooks waited for it)
        self.wait_ready()
        self._publish_images()
        phases["ready"] = time.monotonic() - mark
        phases["total"] = time.monotonic() - began
        self.paths.run.mkdir(parents=True, exist_ok=True)
        self.phases_file.write_text(
            json.dumps(
                {"accel": accel, "image_cached": image.cached, "created": created, "removed": removed, "phases": phases}
            )
            + "\n"
        )
        split = ", ".join(f"{k} {v:.0f}s" for k, v in phases.items() if k != "total")
        self.say(f"lab {spec.name!r} is up in {phases['total']:.1f}s ({split}). Use it with:")
        self.say(f"  export KUBECONFIG={self.paths.kubeconfig}")
        self.say("  kubectl get nodes -o wide")
        self.say(f"  kubelab ssh {self.master.name}        (or: ssh -F {self.ssh_config} {self.master.name})")

    def _prepare_secrets(self) -> None:
        spec = self.spec
        self.pki.ensure_ca()
        self.pki.ensure_serving(
            dns_names=[
                "localhost",
                self.master.name,
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ips=["127.0.0.1", self.master.ip, service_ip(spec)],
        )
        for machine in self.machines:
            self.pki.ensure_serving(
                name=f"kubelet-{machine.name}",
                common_name=machine.name,
                dns_names=[machine.name],
                ips=[machine.ip],
            )
        nodes = [node_identity(m.name) for m in self.machines]
        tokens = self.pki.ensure_tokens([ADMIN, SCHEDULER, CONTROLLER_MANAGER, PROXY, APISERVER_KUBELET, *nodes])
        client = self.paths.pki / "apiserver-kubelet-client.token"
        client.write_text(tokens[APISERVER_KUBELET.key] + "\n")
        client.chmod(0o600)
        inside = f"https://{self.master.ip}:{GUEST_API_PORT}"
        ca = self.pki.ca_cert.read_bytes()
        owners = [("scheduler", SCHEDULER), ("controller-manager", CONTROLLER_MANAGER), ("proxy", PROXY)]
        owners += [(f"kubelet-{m.name}", node_identity(m.name)) for m in self.machines]
        for owner, identity in owners:
            text = kubeconfig.render(
                cluster=spec.name, server=inside, ca_pem=ca, user=identity.user, token=tokens[identity.key]
            )
            kubeconfig.write(self.paths.kubeconfig_of(owner), text)
        admin = kubeconfig.render(
            cluster=spec.name,
            server=f"https://127.0.0.1:{spec.api_port}",
            ca_pem=ca,
            user=f"{spec.name}-admin",
            token=tokens[ADMIN.key],
        )
        kubeconfig.write(self.paths.kubeconfig, admin)

    def _write_ssh_config(self, daemon: libvirthost.Daemon) -> None:
        text = sshkeys.config(
            hosts=[(m.name, m.ip) for m in self.machines],
            key=self.ssh_key,
            known_hosts=self.known_hosts,
            netns=daemon.netns,
        )
        render.write(self.ssh_config, text, mode=0o600)

    def ssh_argv(self, node: str, command: Sequence[str] = (), *, tty: bool = False) -> list[str]:
        names = {m.name for m in self.machines}
        if node not in names:
            raise ProvisionError(f"no node {node!r} in lab {self.spec.name!r}; nodes: {', '.join(sorted(names))}")
        if not self.ssh_config.exists():
            raise ProvisionError(f"lab {self.spec.name!r} has no machines yet; create it with: kubelab up")
        return ["ssh", "-F", str(self.ssh_config), *(["-t"] if tty else []), node, *command]

    def ssh(self, node: str, command: str, *, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        argv = [*self.ssh_argv(node), "-o", "BatchMode=yes", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def _wait_ssh(self, accel: str) -> None:
        timeout = SSH_TIMEOUT[accel]
        failures: dict[str, str] = {}
        began = time.monotonic()

        def wait(machine: vmplan.Machine) -> None:
            def answers() -> bool:
                try:
                    return self.ssh(machine.name, "true", timeout=20.0).returncode == 0
                except subprocess.TimeoutExpired:
                    return False

            if wait_for(answers, timeout=timeout, interval=2.0):
                self.say(f"  {machine.name}: ssh answers after {time.monotonic() - began:.1f}s")
            else:
                failures[machine.name] = (
                    f"{machine.name} did not answer ssh at {machine.ip} within {timeout:.0f}s (accelerator {accel});"
                    f" console log: {self.console_of(machine.name)}{_last_console_line(self.console_of(machine.name))}"
                )

        threads = [threading.Thread(target=wait, args=(m,), daemon=True) for m in self.machines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise ComponentError(failures[sorted(failures)[0]])

    # --- the tunnel to the API server and the registry ------------------------------------------

    def _start_forwarder(self, daemon: libvirthost.Daemon) -> None:
        forwards = [
            Forward(self.spec.api_port, self.master.ip, GUEST_API_PORT),
            Forward(self.spec.registry_port, self.master.ip, GUEST_REGISTRY_PORT),
        ]
        argv = [
            sys.executable,
            "-m",
            "provisioner.drivers.libvirt.tunnel",
            "forward",
            daemon.netns or "-",
            *(f.argument() for f in forwards),
        ]
        record = procs.ProcessRecord.load(self.paths.run, "forward")
        if record is not None and procs.alive(record):
            if record.argv == tuple(argv):
                return
            procs.stop(record)
        for forward, flag in ((forwards[0], "--api-port"), (forwards[1], "--registry-port")):
            if port_in_use("127.0.0.1", forward.local_port):
                raise HostError(f"port {forward.local_port} is in use on 127.0.0.1; choose another with {flag}")
        record = procs.spawn("forward", argv, log=self.paths.logs / "forward.log")
        record.save(self.paths.run)
        self.say(
            f"  tunnel: 127.0.0.1:{self.spec.api_port} -> API server, 127.0.0.1:{self.spec.registry_port} -> registry"
        )

    def _stop_forwarder(self) -> bool:
        record = procs.ProcessRecord.load(self.paths.run, "forward")
        if record is None:
            return False
        stopped = procs.stop(record)
        (self.paths.run / "forward.json").unlink(missing_ok=True)
        return stopped

    # --- configuration ---------------------------------------------------------------------------

    def _code(self) -> tuple[Path, str]:
        """kubelab's agents for the guests, with bytecode compiled here, and the API schemas derived
        here: (directory, digest of the sources). Rebuilt only when the sources change."""
        root = PLAYBOOKS.parent
        sources = sorted(
            p
            for p in (root / "agents").rglob("*")
            if p.is_file() and p.suffix in (".py", ".json") and "__pycache__" not in p.parts
        )
        digest = hashlib.sha256()
        for path in sources:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
        stamp = digest.hexdigest()[:16]
        out = self.paths.root / "code"
        if (out / "digest").exists() and (out / "digest").read_text().strip() == stamp:
            return out, stamp
        shutil.rmtree(out, ignore_errors=True)
        for path in sources:
            target = out / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            if path.suffix == ".py" and sys.implementation.cache_tag == GUEST_CACHE_TAG:
                # unchecked-hash bytecode stays valid whatever the files' times on the guest
                py_compile.compile(
                    str(target),
                    cfile=importlib.util.cache_from_source(str(target)),
                    dfile=str(Path("/opt/kubelab/venv/lib/python3.11/site-packages") / path.relative_to(root)),
                    doraise=True,
                    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
                )
        # the same derivation the API server makes at its first start (seconds here, minutes on TCG)
        from agents.apiserver import schemas  # noqa: PLC0415 - only `up` needs it, and it is slow to import
        from agents.apiserver.resources import Catalog  # noqa: PLC0415

        (out / "schemas").mkdir()
        schemas.load(Catalog().models(), out / "schemas")
        (out / "digest").write_text(stamp + "\n")
        return out, stamp

    def inventory_variables(self) -> dict[str, object]:
        spec = self.spec
        code, digest = self._code()
        return {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.ssh_key),
            "ansible_ssh_common_args": f"-F {self.ssh_config}",
            "ansible_python_interpreter": "/usr/bin/python3",
            "kubelab_lab": spec.name,
            "kubelab_state_dir": str(self.paths.root),
            "kubelab_code_dir": str(code),
            "kubelab_code_digest": digest,
            "kubelab_master_ip": self.master.ip,
            "kubelab_gateway_ip": self.network.gateway,
            "kubelab_api_port": GUEST_API_PORT,
            "kubelab_etcd_port": GUEST_ETCD_PORT,
            "kubelab_etcd_peer_port": GUEST_ETCD_PEER_PORT,
            "kubelab_registry_port": GUEST_REGISTRY_PORT,
            "kubelab_service_cidr": spec.service_cidr,
            "kubelab_cluster_cidr": spec.cluster_cidr,
            "kubelab_node_port_range": spec.node_port_range,
            "kubelab_node_grace_period": spec.node_grace_period,
            "kubelab_eviction_seconds": spec.eviction_seconds,
            "kubelab_apiserver_workers": spec.apiserver_workers,
        }

    @property
    def inventory_file(self) -> Path:
        return self.paths.root / "inventory.yml"

    def _run_playbooks(self) -> None:
        nodes = [ansible.InventoryNode(m.name, m.ip, m.role) for m in self.machines]
        render.write(self.inventory_file, ansible.inventory(nodes, self.inventory_variables()), mode=0o600)
        result = ansible.run_playbook(
            self.inventory_file,
            state_dir=self.paths.root,
            playbook=PLAYBOOKS / "site.yml",
            say=lambda msg: self.say(f"  playbooks: {msg}"),
        )
        per_host = ", ".join(f"{host} {count}" for host, count in sorted(result.changed.items()) if count)
        self.say(
            f"  playbooks: changed {result.changed_total}{f' ({per_host})' if per_host else ''}"
            f" in {result.seconds:.1f}s"
        )

    # --- the API, from the host ------------------------------------------------------------------

    def _api(self, method: str, path: str, *, timeout: float = 5.0) -> tuple[int, dict[str, Any]]:
        token = self.pki.read_tokens().get(ADMIN.key, "")
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.spec.api_port}{path}",
            method=method,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                return int(response.status), json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, {}
        except (urllib.error.URLError, OSError, ValueError):
            return 0, {}

    def node_readiness(self) -> dict[str, str]:
        code, body = self._api("GET", "/api/v1/nodes")
        if code != 200:
            return {}
        out = {}
        for item in body.get("items", []):
            conditions = (item.get("status") or {}).get("conditions") or []
            ready = next((c.get("status") for c in conditions if c.get("type") == "Ready"), "Unknown")
            out[item["metadata"]["name"]] = "Ready" if ready == "True" else "NotReady"
        return out

    def wait_ready(self) -> None:
        names = [m.name for m in self.machines]
        began = time.monotonic()

        def all_ready() -> bool:
            readiness = self.node_readiness()
            return all(readiness.get(n) == "Ready" for n in names)

        if not wait_for(all_ready, timeout=READY_TIMEOUT, interval=1.0):
            readiness = self.node_readiness()
            late = [f"{n} ({readiness.get(n, 'not registered')})" for n in names if readiness.get(n) != "Ready"]
            raise ComponentError(
                f"nodes not Ready after {READY_TIMEOUT:.0f}s: {', '.join(late)}; see: kubelab logs NODE kubelet"
            )
        self.say(f"  nodes: {', '.join(names)} Ready ({time.monotonic() - began:.1f}s)")

    def _delete_stale_nodes(self) -> None:
        """Remove the Nodes of worker machines that left the lab (also those of an earlier `up` that
        stopped half-way); the pod garbage collector then deletes the pods still bound to them and
        their controllers replace them on the remaining nodes."""
        wanted = {m.name for m in self.machines}
        for name in sorted(set(self.node_readiness()) - wanted):
            if not vmplan.is_worker_name(self.spec.name, name):
                continue
            code, _ = self._api("DELETE", f"/api/v1/nodes/{name}")
            if code not in (200, 202, 404):
                raise ComponentError(
                    f"could not delete Node {name} (the API server answered {code or 'nothing'});"
                    f" remove it with: kubectl delete node {name}"
                )
            self.say(f"  {name}: Node deleted (its pods are replaced on the remaining nodes)")

    def _publish_images(self) -> None:
        done = registry.publish_builtin(self.registry, say=self.say)
        self.say(f"  images: in the registry on {self.master.name}: {done}")

    # --- stop, start, down -----------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Shut the machines down (disks kept) and stop the tunnel; return the machines stopped."""
        stopped = []
        if libvirthost.current() is None:
            self._stop_forwarder()
            return []
        with self._connection() as conn:
            running = {n: d for n, d in self._our_domains(conn).items() if d.isActive()}
            for domain in running.values():
                with contextlib.suppress(Exception):
                    domain.shutdown()

            def all_off() -> bool:
                return not any(d.isActive() for d in running.values())

            if not wait_for(all_off, timeout=SHUTDOWN_TIMEOUT, interval=1.0):
                for name, domain in running.items():
                    if domain.isActive():
                        self.say(f"  {name}: did not shut down within {SHUTDOWN_TIMEOUT:.0f}s; powered off")
                        domain.destroy()
            stopped = sorted(running)
        self._stop_forwarder()
        return stopped

    def start(self) -> None:
        """Boot the stopped machines again; the services start with them and the cluster comes back."""
        began = time.monotonic()
        if not self.paths.spec.exists():
            raise ProvisionError(f"lab {self.spec.name!r} does not exist; create it with: kubelab up")
        daemon = self._daemon(start=True)
        assert daemon is not None
        accel = libvirthost.accelerator(self.spec.accel)
        with self._connection() as conn:
            self._ensure_network(conn)
            domains = self._our_domains(conn)
            missing = [m.name for m in self.machines if m.name not in domains]
            if missing:
                raise ProvisionError(f"machines {', '.join(missing)} are gone; recreate them with: kubelab up")
            for machine in self.machines:
                domain = domains[machine.name]
                if not domain.isActive():
                    domain.create()
                    self.say(f"  {machine.name}: started")
        self._write_ssh_config(daemon)
        self._wait_ssh(accel)
        self._start_forwarder(daemon)
        self.wait_ready()
        self.say(f"lab {self.spec.name!r} is running again after {time.monotonic() - began:.1f}s")

    def down(self) -> list[str]:
        removed: list[str] = []
        self._stop_forwarder()
        FaultOps(self, say=self.say).remove_partitions()
        daemon = libvirthost.current()
        still_used = False
        if daemon is not None:
            libvirt = _libvirt()
            with self._connection() as conn:
                for name, domain in sorted(self._our_domains(conn).items()):
                    self._remove_machine(conn, name, domain)
                    removed.append(name)
                try:
                    net = conn.networkLookupByName(self.network.name)
                except libvirt.libvirtError:
                    net = None
                if net is not None:
                    if net.isActive():
                        net.destroy()
                    net.undefine()
                    removed.append(f"network {self.network.name}")
                still_used = bool(conn.listAllDomains()) or any(
                    n.name().startswith("kubelab-") for n in conn.listAllNetworks()
                )
            if daemon.self_contained:
                libvirthost.release(still_used=still_used, say=self.say)
        shutil.rmtree(self.vm_dir, ignore_errors=True)
        shutil.rmtree(self.console_dir, ignore_errors=True)
        shutil.rmtree(self.paths.root, ignore_errors=True)
        return removed

    # --- status ----------------------------------------------------------------------------------

    def machine_status(self) -> list[MachineStatus]:
        accel = "-"
        if self.phases_file.exists():
            accel = json.loads(self.phases_file.read_text()).get("accel", "-")
        states: dict[str, str] = {}
        if libvirthost.current() is not None:
            with self._connection() as conn:
                for name, domain in self._our_domains(conn).items():
                    states[name] = DOMAIN_STATES.get(domain.state()[0], "other")
        return [MachineStatus(m.name, m.role, m.ip, states.get(m.name, "missing"), accel) for m in self.machines]

    def unit_health(self, machine: vmplan.Machine) -> dict[str, str]:
        units = (*MASTER_UNITS, *NODE_UNITS) if machine.role == "master" else NODE_UNITS
        try:
            done = self.ssh(machine.name, "systemctl is-active " + " ".join(units), timeout=30.0)
        except subprocess.TimeoutExpired:
            return {}
        states = done.stdout.split()
        return dict(zip(units, states, strict=False)) if len(states) == len(units) else {}


def _last_console_line(console: Path) -> str:
    """`` (last line: ...)`` of a console log, or '' when it is empty or unreadable."""
    try:
        with console.open("rb") as log:
            log.seek(max(0, log.seek(0, 2) - 4096))
            tail = log.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return f" (last line: {lines[-1][:160]})" if lines else ""


def overlapping(cidr: str, networks: Sequence[tuple[str, str]]) -> str | None:
    """The first of ``networks`` (name, libvirt XML) with an IPv4 range that overlaps ``cidr``."""
    wanted = ipaddress.ip_network(cidr)
    for name, xml in networks:
        for element in ET.fromstring(xml).iterfind("./ip"):
            address = element.get("address")
            if not address or element.get("family", "ipv4") != "ipv4":
                continue
            mask = element.get("prefix") or element.get("netmask") or "24"
            if ipaddress.ip_network(f"{address}/{mask}", strict=False).overlaps(wanted):
                return name
    return None


def _reservations(xml: str) -> dict[str, str]:
    """The DHCP host reservations of a network's XML: MAC -> the ``<host>`` element as text."""
    out = {}
    for element in ET.fromstring(xml).iterfind("./ip/dhcp/host"):
        attributes = " ".join(f"{k}='{v}'" for k, v in element.attrib.items())
        out[element.get("mac", "")] = f"<host {attributes}/>"
    return out
