"""The libvirt driver: a master and worker VMs, installed with Ansible.

``up`` takes the guest image from the cache (building it once), defines the lab's isolated network,
its storage pool and one domain per machine (a qcow2 volume of the pool, an overlay on the image),
boots them, waits for ssh, runs the playbooks through ansible-runner, waits until every node is Ready
and puts the built-in images into the registry on the master. Run again, it converges: machines that
are missing are created, workers no longer asked for are removed, and the playbooks change only what
differs.

This module only orchestrates: what the lab consists of is decided by ``plan`` and ``inventory``
(pure); libvirt is called through ``hypervisor``, ssh through ``ssh``, the playbooks through
``playbooks``; the host reaches the API server and the registry through the tunnel (``forwarder``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from provisioner.addons import manager as addons
from provisioner.artefacts import guestimage, registry
from provisioner.drivers.base import ComponentStatus, LabStatus, MachineStatus
from provisioner.drivers.libvirt import (
    bundle,
    cloudservice,
    daemon,
    forwarder,
    inventory,
    plan,
    playbooks,
    ssh,
    timesource,
    volumes,
)
from provisioner.drivers.libvirt.hypervisor import RUNNING, Hypervisor, binding
from provisioner.drivers.libvirt.machines import VmMachines
from provisioner.errors import ComponentError, HostError, ProvisionError, SpecError
from provisioner.lab import components, credentials, render
from provisioner.lab.apiclient import LabApi, wait_nodes_ready
from provisioner.lab.identity import ENV_UID, Identity
from provisioner.lab.paths import LabPaths
from provisioner.lab.pki import CLOUD_CONTROLLER_MANAGER
from provisioner.lab.spec import LabSpec, service_ip
from provisioner.project import PLAYBOOKS
from provisioner.system import packages, ports, processes, space
from provisioner.system.waiting import Heartbeat, indented, wait_for

SSH_TIMEOUT = {"kvm": 120.0, "tcg": 420.0}
READY_TIMEOUT = 300.0
SHUTDOWN_TIMEOUT = 90.0
MIN_FREE_DISK = 2 << 30  # bytes: the guest image (about 1 GB built) and the machines' first writes

HOST_NEEDS = (
    packages.Requirement("qemu-system-x86_64", "qemu-system-x86", "running the lab's virtual machines"),
    packages.Requirement("qemu-img", "qemu-utils", "the machines' disk overlays"),
    packages.Requirement("libvirtd", "libvirt-daemon-system", "managing the virtual machines"),
    packages.Requirement("virsh", "libvirt-clients", "inspecting the machines by hand"),
    packages.Requirement("dnsmasq", "dnsmasq-base", "DHCP on the lab network"),
    packages.Requirement("ssh", "openssh-client", "reaching the machines"),
    packages.IPROUTE,
    packages.SKOPEO,
    packages.CHRONY,
    packages.HAPROXY,
    packages.Requirement("nft", "nftables", "the cloud router's walls between lab networks"),
)


class LibvirtDriver:
    def __init__(
        self,
        spec: LabSpec,
        paths: LabPaths,
        *,
        say: Callable[[str], None] = print,
        identity: Identity | None = None,
        vm_root: Path = plan.VM_ROOT,
        console_root: Path = plan.CONSOLE_ROOT,
    ) -> None:
        self.spec = spec
        self.paths = paths
        self.say = say
        self.uid = identity.uid if identity is not None else ""
        self.tags = identity.environment() if identity is not None else {}
        self.network = plan.network(spec)
        self.pool = plan.pool(spec, vm_root)
        # the cloud's volumes (provisioner.drivers.libvirt.volumes): beside the machines' pools
        self.volume_pool = volumes.pool_plan(spec.name, vm_root.parent / volumes.VOLUME_ROOT.name)
        self.lab_machines = plan.machines(spec)
        self.master = self.lab_machines[0]
        self.console_dir = console_root / spec.name
        self.api = LabApi(f"https://127.0.0.1:{spec.api_port}", paths)

    # --- files ---------------------------------------------------------------------------------

    @property
    def ssh_key(self) -> Path:
        return self.paths.root / "ssh" / "id_ed25519"

    @property
    def ssh_config_file(self) -> Path:
        return self.paths.root / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.paths.root / "ssh" / "known_hosts"

    @property
    def phases_file(self) -> Path:
        return self.paths.run / "up-phases.json"

    @property
    def inventory_file(self) -> Path:
        return self.paths.root / "inventory.yml"

    @property
    def partition_file(self) -> Path:
        return self.paths.run / "faults.nft"

    def console_of(self, name: str) -> Path:
        return self.console_dir / f"{name}-console.log"

    @property
    def registry(self) -> str:
        return f"http://127.0.0.1:{self.spec.registry_port}"

    @property
    def access(self) -> ssh.Access:
        return ssh.Access(self.spec.name, self.ssh_config_file, tuple(m.name for m in self.lab_machines))

    def _hypervisor(self, found: daemon.Daemon) -> contextlib.AbstractContextManager[Hypervisor]:
        return Hypervisor.open(found.uri, self.spec.name)

    # --- up --------------------------------------------------------------------------------------

    def up(self) -> None:
        began = time.monotonic()
        phases: dict[str, float] = {}
        spec = self.spec
        self.say(f"lab {spec.name!r}: libvirt driver, 1 master and {spec.workers} workers, state in {self.paths.root}")
        accel = daemon.accelerator(spec.accel)
        if accel == "kvm" and daemon.accelerator("auto") != "kvm":
            self.say("  warning: --accel kvm asked for, but this host's KVM looks unusable (no kvm_intel/kvm_amd)")

        mark = time.monotonic()
        image = guestimage.ensure(lambda msg: self.say(f"  image: {msg}"))
        phases["image"] = time.monotonic() - mark
        self.say(f"  image: {'cached' if image.cached else 'built'} {image.disk} ({phases['image']:.1f}s)")

        mark = time.monotonic()
        self._issue_credentials()
        key_line = ssh.ensure_key(self.ssh_key, f"kubelab-{spec.name}")
        running = daemon.ensure(say=self.say)
        self._write_ssh_config(running)
        self.console_dir.mkdir(parents=True, exist_ok=True)
        with self._hypervisor(running) as hv:
            hv.ensure_network(self.network, self.lab_machines, cidr=spec.network_cidr, xml=self._network_xml())
            self._serve_time(running)
            self._serve_cloud(running)
            existing = hv.domains()
            changes = plan.converge(self.lab_machines, existing)
            for name in changes.remove:
                self._remove_machine(hv, name, existing[name])
                self.say(f"  {name}: machine removed (no longer part of the lab)")
            for machine in changes.create:
                ssh.forget_hosts(self.known_hosts, machine.name, machine.ip)  # a new machine, new keys
                disk = hv.ensure_volume(self.pool, machine.name, capacity_gib=spec.disk, backing=image.disk)
                xml = plan.domain_xml(
                    machine,
                    lab=spec.name,
                    uid=self.uid,
                    accel=accel,
                    network=self.network,
                    kernel=image.kernel,
                    initrd=image.initrd,
                    image_digest=image.digest,
                    disk=disk,
                    console_log=self.console_of(machine.name),
                    public_key_line=key_line,
                )
                existing[machine.name] = hv.define(machine.name, xml, image=image.disk)
            for machine in self.lab_machines:
                if hv.boot(machine.name, existing[machine.name], image=image.disk):
                    self.say(
                        f"  {machine.name}: started ({machine.role}, {machine.ip}, {machine.cpus} vCPU,"
                        f" {machine.memory_mib} MiB, {accel})"
                    )
        phases["machines"] = time.monotonic() - mark

        mark = time.monotonic()
        self._wait_ssh(accel, running)
        phases["boot"] = time.monotonic() - mark
        self.say(f"  ssh: all {len(self.lab_machines)} machines answer ({phases['boot']:.1f}s)")
        forwarder.ensure(spec, self.paths, master_ip=self.master.ip, netns=running.netns, tags=self.tags, say=self.say)

        mark = time.monotonic()
        self._run_playbooks()
        phases["playbooks"] = time.monotonic() - mark

        mark = time.monotonic()
        self._delete_stale_nodes()  # the API server answers now (the playbooks waited for it)
        self.wait_ready()
        done = registry.publish_builtin(self.registry, say=self.say)
        self.say(f"  images: in the registry on {self.master.name}: {done}")
        addons.converge(self.api, self.registry, self.spec, self.paths, say=self.say)
        phases["ready"] = time.monotonic() - mark
        phases["total"] = time.monotonic() - began
        self.paths.run.mkdir(parents=True, exist_ok=True)
        record = {
            "accel": accel,
            "image_cached": image.cached,
            "created": [m.name for m in changes.create],
            "removed": list(changes.remove),
            "phases": phases,
        }
        self.phases_file.write_text(json.dumps(record) + "\n")
        split = ", ".join(f"{k} {v:.0f}s" for k, v in phases.items() if k != "total")
        self.say(f"lab {spec.name!r} is up in {phases['total']:.1f}s ({split}). Use it with:")
        self.say(f"  export KUBECONFIG={self.paths.kubeconfig}")
        self.say("  kubectl get nodes -o wide")
        self.say(f"  kubelab ssh {self.master.name}        (or: ssh -F {self.ssh_config_file} {self.master.name})")

    def _serve_cloud(self, running: daemon.Daemon) -> None:
        """The lab's cloud API on its gateway, where its network is (the master's cloud-controller-manager
        asks it about the machines)."""
        service = cloudservice.plan(self.spec, self.paths, uri=running.uri)
        cloudservice.ensure(service, self.paths, netns_name=running.netns, tags=self.tags, say=self.say)

    def _serve_time(self, running: daemon.Daemon) -> None:
        """The lab's time source on its gateway, where its network is (before the machines boot)."""
        if not timesource.serves_here(running.uri):
            self.say(f"  time: the lab's network is on the host of {running.uri}; no time source here")
            return
        source = timesource.plan(self.spec, self.paths)
        timesource.ensure(source, self.paths, netns_name=running.netns, tags=self.tags, say=self.say)

    def _network_xml(self) -> str:
        return plan.network_xml(self.network, self.lab_machines, lab=self.spec.name, uid=self.uid)

    def check(self) -> None:
        """What must hold before ``up`` writes anything: the host's packages and libvirt binding,
        the ports of the tunnel (unless this lab's own tunnel holds them), the network range (unless
        this lab's own network holds it), and room on disk for the guest image and the machines."""
        packages.ensure([*HOST_NEEDS], say=lambda msg: self.say(f"  host: {msg}"))
        binding()
        own = forwarder.running(self.paths)
        for port, flag in ((self.spec.api_port, "--api-port"), (self.spec.registry_port, "--registry-port")):
            if not own and ports.in_use("127.0.0.1", port):
                raise HostError(f"port {port} is in use on 127.0.0.1; choose another with {flag}")
        running = daemon.current()
        if running is not None:
            with self._hypervisor(running) as hv:
                hv.refuse_overlap(self.network.name, self.spec.network_cidr)
        space.require(self.pool.directory, MIN_FREE_DISK, what="the machines' disks")
        space.require(guestimage.cache_root(), MIN_FREE_DISK, what="the guest image cache")

    def _issue_credentials(self) -> None:
        master = self.master
        credentials.issue(
            credentials.Credentials(
                lab=self.spec.name,
                api_dns_names=(master.name,),
                api_ips=("127.0.0.1", master.ip, service_ip(self.spec)),
                kubelets=tuple(
                    credentials.KubeletServing(f"kubelet-{m.name}", m.name, (m.name,), (m.ip,))
                    for m in self.lab_machines
                ),
                components=(
                    *credentials.standard_components([m.name for m in self.lab_machines]),
                    ("cloud-controller-manager", CLOUD_CONTROLLER_MANAGER),
                ),
                component_server=f"https://{master.ip}:{inventory.GUEST_API_PORT}",
                admin_server=f"https://127.0.0.1:{self.spec.api_port}",
                etcd_dns_names=(master.name, "localhost"),
                etcd_ips=(master.ip, "127.0.0.1"),
            ),
            self.paths,
        )

    def _write_ssh_config(self, running: daemon.Daemon) -> None:
        text = ssh.config(
            hosts=[(m.name, m.ip) for m in self.lab_machines],
            key=self.ssh_key,
            known_hosts=self.known_hosts,
            netns=running.netns,
        )
        render.write(self.ssh_config_file, text, mode=0o600)

    def _wait_ssh(self, accel: str, running: daemon.Daemon) -> None:
        def stopped(name: str) -> str:
            with self._hypervisor(running) as hv:
                return hv.stopped(name)

        def restart(name: str) -> None:
            with self._hypervisor(running) as hv:
                hv.boot(name, hv.domain(name))

        ssh.wait_all(
            self.lab_machines,
            probe=self.access.probe,
            timeout=SSH_TIMEOUT[accel],
            accel=accel,
            console_of=self.console_of,
            say=self.say,
            stopped=stopped,
            restart=restart,
        )

    def _remove_machine(self, hv: Hypervisor, name: str, domain: object) -> None:
        hv.remove_domain(domain)
        ssh.forget_hosts(self.known_hosts, name, plan.address_of(self.spec, name) or name)
        hv.delete_volume(self.pool, name)
        self.console_of(name).unlink(missing_ok=True)

    def _run_playbooks(self) -> None:
        code = bundle.ensure(self.paths.root / "code")
        variables = inventory.variables(
            self.spec, paths=self.paths, ssh_key=self.ssh_key, ssh_config=self.ssh_config_file, bundle=code
        )
        text = inventory.inventory(inventory.nodes_of(self.lab_machines), variables)
        render.write(self.inventory_file, text, mode=0o600)
        self._stop_earlier_playbooks()
        result = playbooks.run_playbook(
            self.inventory_file,
            labels=self.tags,
            state_dir=self.paths.root,
            playbook=PLAYBOOKS / "site.yml",
            say=lambda msg: self.say(f"  playbooks: {msg}"),
        )
        per_host = ", ".join(f"{host} {count}" for host, count in sorted(result.changed.items()) if count)
        self.say(
            f"  playbooks: changed {result.changed_total}{f' ({per_host})' if per_host else ''}"
            f" in {result.seconds:.1f}s"
        )

    def ranges_in_use(self) -> list[tuple[str, str]]:
        """The ranges of libvirt's active networks other than this lab's (none while no libvirt runs)."""
        running = daemon.current()
        if running is None:
            return []
        with self._hypervisor(running) as hv:
            return hv.active_ranges(besides=self.network.name)

    def _stop_earlier_playbooks(self) -> None:
        """An earlier ``up`` of this lab that was killed leaves its ansible-playbook running (ansible-
        runner starts it apart from the terminal): stop it, so two runs never configure one machine."""
        if not self.uid:
            return
        for found in processes.tagged(ENV_UID):
            if found.value == self.uid and any("ansible-playbook" in part for part in found.argv[:2]):
                self.say(f"  playbooks: stopping the run of an earlier up (pid {found.pid})")
                processes.stop(found.record)

    # --- the API, from the host ------------------------------------------------------------------

    def wait_ready(self) -> None:
        try:
            wait_nodes_ready(self.api, [m.name for m in self.lab_machines], timeout=READY_TIMEOUT, say=self.say)
        except ComponentError as exc:
            if "the API server:" not in str(exc):
                raise
            raise ComponentError(f"{exc}\n{self._api_server_seen_from_its_machine()}") from None

    def _api_server_seen_from_its_machine(self) -> str:
        """When the API server does not answer through the tunnel: what its machine says of it (its
        unit, its load and memory, its last log lines), or why that could not be asked."""
        command = (
            "systemctl is-active kubelab-apiserver etcd | paste -sd ' '; uptime; free -m | sed -n 2p; "
            "journalctl --no-pager -o cat -n 8 -u kubelab-apiserver"
        )
        try:
            done = self.access.run(self.master.name, command, timeout=30.0)
        except subprocess.TimeoutExpired:
            return f"  {self.master.name}: no answer over ssh within 30s either"
        said = (done.stdout or done.stderr).strip().splitlines()
        return "\n".join(f"  {self.master.name}: {line}" for line in said[-12:])

    def _delete_stale_nodes(self) -> None:
        """Remove the Nodes of worker machines that left the lab (also those of an earlier `up` that
        stopped half-way); the pod garbage collector then deletes the pods still bound to them and
        their controllers replace them on the remaining nodes."""
        wanted = {m.name for m in self.lab_machines}
        for name in sorted(set(self.api.node_readiness()) - wanted):
            if not plan.is_worker_name(self.spec.name, name):
                continue
            code = self.api.delete_node(name)
            if code not in (200, 202, 404):
                raise ComponentError(
                    f"could not delete Node {name} (the API server answered {code or 'nothing'});"
                    f" remove it with: kubectl delete node {name}"
                )
            self.say(f"  {name}: Node deleted (its pods are replaced on the remaining nodes)")

    # --- stop, start, down -----------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Shut the machines down (disks kept) and stop the tunnel; return the machines stopped."""
        running = daemon.current()
        if running is None:
            forwarder.stop(self.paths)
            timesource.stop(self.paths)
            cloudservice.stop(self.paths)
            return []
        with self._hypervisor(running) as hv:
            active = {n: d for n, d in hv.domains().items() if d.isActive()}
            for domain in active.values():
                with contextlib.suppress(Exception):
                    domain.shutdown()

            def still_on() -> list[str]:
                return [name for name, d in sorted(active.items()) if d.isActive()]

            if active:
                self.say(
                    f"  shutting down {', '.join(sorted(active))} (at most {SHUTDOWN_TIMEOUT:.0f}s, then powered off)"
                )
            if not wait_for(
                lambda: not still_on(),
                timeout=SHUTDOWN_TIMEOUT,
                interval=1.0,
                what=f"{len(active)} machines to shut down",
                say=indented(self.say),
                last=lambda: f"still running: {', '.join(still_on()) or 'none'}",
            ):
                for name, domain in active.items():
                    if domain.isActive():
                        self.say(f"  {name}: did not shut down within {SHUTDOWN_TIMEOUT:.0f}s; powered off")
                        domain.destroy()
        forwarder.stop(self.paths)
        timesource.stop(self.paths)
        cloudservice.stop(self.paths)
        return sorted(active)

    def start(self) -> None:
        """Boot the stopped machines again; the services start with them and the cluster comes back."""
        began = time.monotonic()
        if not self.paths.spec.exists():
            raise ProvisionError(f"lab {self.spec.name!r} does not exist; create it with: kubelab up")
        running = daemon.ensure(say=self.say)
        accel = daemon.accelerator(self.spec.accel)
        with self._hypervisor(running) as hv:
            hv.ensure_network(self.network, self.lab_machines, cidr=self.spec.network_cidr, xml=self._network_xml())
            self._serve_time(running)
            self._serve_cloud(running)
            hv.ensure_pool(self.pool)
            domains = hv.domains()
            missing = [m.name for m in self.lab_machines if m.name not in domains]
            if missing:
                raise ProvisionError(f"machines {', '.join(missing)} are gone; recreate them with: kubelab up")
            for machine in self.lab_machines:
                if hv.boot(machine.name, domains[machine.name]):
                    self.say(f"  {machine.name}: started")
        self._write_ssh_config(running)
        self._wait_ssh(accel, running)
        forwarder.ensure(
            self.spec, self.paths, master_ip=self.master.ip, netns=running.netns, tags=self.tags, say=self.say
        )
        self.wait_ready()
        self.say(f"lab {self.spec.name!r} is running again after {time.monotonic() - began:.1f}s")

    def down(self) -> list[str]:
        removed: list[str] = []
        forwarder.stop(self.paths)
        if cloudservice.stop(self.paths):
            removed.append("cloud API")
        if timesource.stop(self.paths):  # before the namespace it runs in can go
            removed.append("time source (chronyd)")
        running = daemon.current()
        if running is not None:
            self.machines().cut_off(())  # the lab's partition table, if a fault left one
            with self._hypervisor(running) as hv:
                for name, domain in sorted(hv.domains().items()):
                    self._remove_machine(hv, name, domain)
                    removed.append(name)
                if hv.remove_pool(self.pool.name):
                    removed.append(f"storage pool {self.pool.name}")
                if hv.remove_pool(self.volume_pool.name):  # the cloud's volumes (PersistentVolumes' disks)
                    removed.append(f"storage pool {self.volume_pool.name}")
                if hv.remove_network(self.network.name):
                    removed.append(f"network {self.network.name}")
                still_used = hv.still_used()
            if running.self_contained:
                daemon.release(still_used=still_used, say=self.say)
        shutil.rmtree(self.pool.directory, ignore_errors=True)
        shutil.rmtree(self.volume_pool.directory, ignore_errors=True)
        shutil.rmtree(self.console_dir, ignore_errors=True)
        shutil.rmtree(self.paths.root, ignore_errors=True)
        return removed

    # --- status, ssh, logs, machines -------------------------------------------------------------

    def status(self) -> LabStatus:
        accel = "-"
        if self.phases_file.exists():
            accel = json.loads(self.phases_file.read_text()).get("accel", "-")
        running = daemon.current()
        states: dict[str, str] = {}
        if running is not None:
            with self._hypervisor(running) as hv:
                states = hv.states()
        readiness = self.api.node_readiness() if RUNNING in states.values() else {}
        machines = []
        for machine in self.lab_machines:
            state = states.get(machine.name, "missing")
            units = self._unit_states(machine.name, machine.role) if state == RUNNING else ()
            machines.append(
                MachineStatus(
                    machine.name, machine.role, machine.ip, state, accel, readiness.get(machine.name, "-"), units
                )
            )
        return LabStatus(
            lab=self.spec.name,
            driver="libvirt",
            root=self.paths.root,
            summary=f"1 master + {self.spec.workers} workers",
            machines=tuple(machines),
            files=(("kubeconfig", self.paths.kubeconfig), ("ssh config", self.ssh_config_file)),
        )

    def _unit_states(self, node: str, role: str) -> tuple[ComponentStatus, ...]:
        """Each component's systemd unit state on the machine, in one ssh round trip."""
        parts = components.on_machine(role)
        try:
            with Heartbeat(f"{node}'s units over ssh (at most 30s)", self.say):
                done = self.access.run(node, "systemctl is-active " + " ".join(c.unit for c in parts), timeout=30.0)
        except Exception:
            return ()
        states = done.stdout.split()
        if len(states) != len(parts):
            return ()
        return tuple(ComponentStatus(c.name, s, s == "active") for c, s in zip(parts, states, strict=True))

    def ssh_argv(self, node: str, command: Sequence[str] = (), *, tty: bool = False) -> list[str]:
        return self.access.argv(node, command, tty=tty)

    def ssh_config(self) -> str:
        if not self.ssh_config_file.exists():
            raise ProvisionError(f"lab {self.spec.name!r} has no machines yet; create it with: kubelab up")
        return self.ssh_config_file.read_text()

    def logs_argv(self, node: str, component: str, *, follow: bool, tail: int) -> list[str]:
        if component == components.AUDIT:
            if node != self.master.name:
                raise SpecError(f"the audit log is the API server's: it is on {self.master.name}, not {node}")
            return self.access.argv(
                node, ["tail", "-n", str(tail) if tail else "+1", *(["-F"] if follow else []), components.AUDIT_LOG]
            )
        command = ["journalctl", "--no-pager", "-o", "short-iso", "-u", components.unit_of(component)]
        if tail:
            command += ["-n", str(tail)]
        if follow:
            command.append("-f")
        return self.access.argv(node, command)

    def machines(self) -> VmMachines:
        return VmMachines(
            lab=self.spec.name,
            uid=self.uid,
            machines=self.lab_machines,
            access=self.access,
            ruleset=self.partition_file,
        )
