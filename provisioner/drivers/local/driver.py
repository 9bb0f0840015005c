"""The local driver: the control plane as processes on this host, under the lab's state directory.

``up`` installs what is missing, creates certificates and tokens, starts etcd, the image registry,
the API server, the trace collector, the controller-manager and the scheduler (each awaited until healthy), puts the
built-in images into the registry and writes a kubeconfig; running it again keeps what is running.
``stop`` stops the processes and keeps the state; ``down`` stops them and removes the lab.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from provisioner.addons import manager as addons
from provisioner.artefacts import registry
from provisioner.drivers.base import ComponentStatus, LabStatus, MachineControl
from provisioner.drivers.local import components, nodenet
from provisioner.errors import HostError, ProvisionError, SpecError
from provisioner.lab import credentials, render
from provisioner.lab.apiclient import LabApi, wait_nodes_ready
from provisioner.lab.components import AUDIT
from provisioner.lab.identity import Identity
from provisioner.lab.paths import LabPaths
from provisioner.lab.pki import SIMULATED_NODES
from provisioner.lab.spec import LabSpec, cluster_dns_ip, service_ip
from provisioner.system import packages, ports, space
from provisioner.system import processes as procs
from provisioner.system.waiting import indented

START_TIMEOUT = 60.0
MIN_FREE_DISK = 512 << 20  # bytes: etcd's first snapshots, the registry's images, containers
START_ORDER = (
    "etcd",
    "registry",
    "apiserver",
    "trace-collector",
    "controller-manager",
    "scheduler",
    "simnodes",
    "containerd",
    "uplink",
    "kubelet",
    "proxy",
)


class LocalDriver:
    def __init__(
        self, spec: LabSpec, paths: LabPaths, *, say: Callable[[str], None] = print, identity: Identity | None = None
    ) -> None:
        self.spec = spec
        self.paths = paths
        self.say = say
        self.tags = identity.environment() if identity is not None else {}
        self.api = LabApi(f"https://127.0.0.1:{spec.api_port}", paths)

    def _ports(self) -> dict[str, int]:
        """Health ports of the components, chosen once per lab and kept in run/ports.json, written whole (a
        command killed while writing it leaves the old file or the new one); an unreadable one is chosen anew."""
        known: dict[str, int] = {}
        try:
            known = {str(k): int(v) for k, v in json.loads(self.paths.ports.read_text()).items()}
        except (OSError, ValueError, TypeError, AttributeError):
            known = {}
        for name in (
            "scheduler",
            "controller-manager",
            "simnodes",
            "kubelet",
            "kubelet-server",
            "proxy",
            "trace-collector",
        ):
            if name not in known:
                known[name] = ports.free(avoid=set(known.values()))
        render.write(self.paths.ports, json.dumps(known, indent=2) + "\n")
        return known

    def components(self) -> list[components.Component]:
        spec = self.spec
        chosen = self._ports()
        # every component runs in the host's network namespace and sends its spans to the loopback
        tracing = f"http://127.0.0.1:{chosen['trace-collector']}"
        etcd = components.Etcd(self.paths, spec.name, client_port=spec.etcd_port, peer_port=spec.etcd_peer_port)
        apiserver = components.ApiServer(
            self.paths,
            port=spec.api_port,
            etcd_servers=(etcd.endpoint,),
            service_cidr=spec.service_cidr,
            node_port_range=spec.node_port_range,
            python=sys.executable,
            eviction_seconds=spec.eviction_seconds,
            workers=spec.apiserver_workers,
            # pods reach the API server through the uplink at the node's address (in its namespace)
            advertise_address=nodenet.for_lab(spec.name).ip if spec.nodes else "",
            node_netns=nodenet.for_lab(spec.name).netns if spec.nodes else "",
            tracing_endpoint=tracing,
        )
        out: list[components.Component] = [
            etcd,
            components.Registry(self.paths, port=spec.registry_port),
            apiserver,
            # its Service's endpoint is where the API server's service proxy dials it: from the node's
            # namespace (the uplink relays the port there) when there is a node, else from the host
            components.TraceCollector(
                self.paths,
                chosen["trace-collector"],
                sys.executable,
                advertise_address=nodenet.for_lab(spec.name).ip if spec.nodes else "127.0.0.1",
            ),
            components.ControllerManager(
                self.paths,
                chosen["controller-manager"],
                sys.executable,
                node_grace_period=spec.node_grace_period,
                cluster_cidr=spec.cluster_cidr,
                tracing_endpoint=tracing,
            ),
            components.Scheduler(self.paths, chosen["scheduler"], sys.executable, tracing_endpoint=tracing),
        ]
        if spec.simulated_nodes:
            # a node renews its lease four times per grace period, as a kubelet does (10 s for 40 s)
            out.append(
                components.SimNodes(
                    self.paths,
                    chosen["simnodes"],
                    sys.executable,
                    spec.simulated_nodes,
                    heartbeat_interval=min(10.0, spec.node_grace_period / 4),
                )
            )
        if spec.nodes:
            containerd = components.Containerd(self.paths)
            network = nodenet.for_lab(spec.name)
            out += [
                containerd,
                components.Uplink(
                    sys.executable,
                    network.netns,
                    network.ip,
                    spec.api_port,
                    (chosen["kubelet-server"], chosen["trace-collector"]),
                ),
                components.Kubelet(
                    self.paths,
                    chosen["kubelet"],
                    sys.executable,
                    node_name=self.node_name,
                    node_ip=network.ip,
                    node_netns=network.netns,
                    containerd=containerd,
                    server_port=chosen["kubelet-server"],
                    cluster_dns=cluster_dns_ip(self.spec),
                    tracing_endpoint=tracing,
                ),
                components.Proxy(
                    self.paths,
                    chosen["proxy"],
                    sys.executable,
                    node_name=self.node_name,
                    node_ip=network.ip,
                    cluster_cidr=spec.cluster_cidr,
                    netns=network.netns,
                    tracing_endpoint=tracing,
                ),
            ]
        return out

    @property
    def node_name(self) -> str:
        return f"{self.spec.name}-node1"

    def _record(self, name: str) -> procs.ProcessRecord | None:
        record = procs.ProcessRecord.load(self.paths.run, name)
        return record if record is not None and procs.alive(record) else None

    def check(self) -> None:
        """What must hold before ``up`` writes anything: the host's packages, the lab's ports on
        127.0.0.1 (unless the lab's own component holds it), room on disk for its state."""
        needs = [packages.ETCD, packages.REGISTRY, packages.SKOPEO]
        if self.spec.nodes:
            needs += [
                *(packages.CONTAINERD, packages.CTR, packages.RUNC),
                *(packages.CNI_BRIDGE, packages.NFT, packages.IPROUTE),
            ]
        packages.ensure(needs, say=lambda msg: self.say(f"  host: {msg}"))
        spec = self.spec
        for owner, port, flag in (
            ("etcd", spec.etcd_port, "--etcd-port"),
            ("etcd", spec.etcd_peer_port, "--etcd-peer-port"),
            ("registry", spec.registry_port, "--registry-port"),
            ("apiserver", spec.api_port, "--api-port"),
        ):
            if self._record(owner) is None and ports.in_use("127.0.0.1", port):
                raise HostError(f"port {port} is in use by another process; free it or choose another with {flag}")
        space.require(self.paths.root, MIN_FREE_DISK, what="the lab's state (etcd, the registry, containers)")

    def up(self) -> None:
        started = time.monotonic()
        self.say(f"lab {self.spec.name!r}: local driver, state in {self.paths.root}")
        self.paths.root.mkdir(parents=True, exist_ok=True)
        created = self._issue_credentials()
        self.say(f"  certificates and tokens: {'created' if created else 'reused'} ({self.paths.pki})")
        wanted = self.components()
        for name in START_ORDER:  # components this lab no longer runs (fewer features asked for)
            old = self._record(name)
            if old is not None and name not in {c.name for c in wanted}:
                procs.stop(old)
                (self.paths.run / f"{name}.json").unlink(missing_ok=True)
                self.say(f"  {name}: stopped (no longer part of the lab)")
        if self.spec.nodes:
            network = nodenet.for_lab(self.spec.name)
            if nodenet.ensure(network):
                self.say(f"  node network: namespace {network.netns}, {network.address}")
            components.Containerd(self.paths).mirror(self.registry)
        for component in wanted:
            changed = component.configure()
            record = self._record(component.name)
            if record is not None and not changed and component.healthy():
                self.say(f"  {component.name}: already running (pid {record.pid}) at {component.endpoint}")
                continue
            if record is not None:
                procs.stop(record)
                self.say(f"  {component.name}: restarting ({'settings changed' if changed else 'not healthy'})")
            began = time.monotonic()
            record = components.start(
                component, self.paths, timeout=START_TIMEOUT, tags=self.tags, say=indented(self.say)
            )
            self.say(
                f"  {component.name}: started (pid {record.pid}), healthy after"
                f" {time.monotonic() - began:.1f}s at {component.endpoint}"
            )
        self.publish_images()
        self.say(f"lab {self.spec.name!r} is up in {time.monotonic() - started:.1f}s. Use it with:")
        self.say(f"  export KUBECONFIG={self.paths.kubeconfig}")
        self.say("  kubectl get nodes" if self.spec.simulated_nodes else "  kubectl get namespaces")

    def _issue_credentials(self) -> bool:
        kubelets: tuple[credentials.KubeletServing, ...] = ()
        if self.spec.nodes:
            network = nodenet.for_lab(self.spec.name)
            kubelets = (
                credentials.KubeletServing(
                    "kubelet", self.node_name, (self.node_name, "localhost"), ("127.0.0.1", network.ip)
                ),
            )
        server = f"https://127.0.0.1:{self.spec.api_port}"
        return credentials.issue(
            credentials.Credentials(
                lab=self.spec.name,
                api_dns_names=(),
                api_ips=("127.0.0.1", service_ip(self.spec)),
                kubelets=kubelets,
                components=(
                    *credentials.standard_components([self.node_name], kubelet_owner="kubelet"),
                    ("simnodes", SIMULATED_NODES),
                ),
                component_server=server,
                admin_server=server,
            ),
            self.paths,
        )

    @property
    def registry(self) -> str:
        return components.Registry(self.paths, port=self.spec.registry_port).endpoint

    def publish_images(self) -> None:
        """The built-in images, built or taken from the cache, into the lab registry."""
        done = registry.publish_builtin(self.registry, say=self.say)
        self.say(f"  images: in the registry at {self.registry}: {done}")
        addons.converge(self.api, self.registry, self.spec, self.paths, say=self.say)

    def stop(self) -> list[str]:
        """Stop every process of the lab (nodes first, etcd last); return the names of those stopped."""
        stopped = []
        for name in reversed(START_ORDER):
            record = procs.ProcessRecord.load(self.paths.run, name)
            if record is None:
                continue
            if procs.stop(record):
                stopped.append(name)
            (self.paths.run / f"{name}.json").unlink(missing_ok=True)
        return stopped

    def _unmount_all(self) -> list[str]:
        """Mount points under the lab's directory (pods' UTS namespace files, leftover container
        root filesystems), deepest first: what would keep the directory from being removed."""
        root = str(self.paths.root.resolve()) + "/"
        try:
            lines = Path("/proc/self/mountinfo").read_text().splitlines()
        except OSError:
            return []
        points = sorted({p[4] for p in (line.split() for line in lines) if len(p) > 4 and p[4].startswith(root)})
        for point in reversed(points):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        return points

    def down(self) -> list[str]:
        stopped = []
        for name in ("proxy", "kubelet"):  # first, so that nothing restarts the containers removed next
            record = self._record(name)
            if record is not None and procs.stop(record):
                stopped.append(name)
            (self.paths.run / f"{name}.json").unlink(missing_ok=True)
        containerd = components.Containerd(self.paths)
        killed = containerd.kill_all()  # containers outlive containerd: end them while it answers
        if killed:
            self.say(f"  containerd: {killed} containers removed")
        stopped += self.stop()
        self._unmount_all()
        network = nodenet.for_lab(self.spec.name)
        removed = nodenet.remove(network, pod_prefix=f"kl-{self.node_name}-")
        if removed:
            self.say(f"  network namespaces removed: {', '.join(removed)}")
        shutil.rmtree(self.paths.root, ignore_errors=True)
        return stopped

    def start(self) -> None:
        """The local driver's processes start again as ``up`` starts them (the state is kept)."""
        if not self.paths.spec.exists():
            raise ProvisionError(f"lab {self.spec.name!r} does not exist; create it with: kubelab up")
        self.up()

    def status(self) -> LabStatus:
        rows = []
        for component in self.components():
            record = procs.ProcessRecord.load(self.paths.run, component.name)
            log = str(self.paths.logs / f"{component.name}.log")
            if record is None:
                rows.append(ComponentStatus(component.name, "stopped", False, None, component.endpoint, log))
            elif not procs.alive(record):
                rows.append(ComponentStatus(component.name, "exited", False, record.pid, component.endpoint, log))
            else:
                healthy = component.healthy()
                rows.append(ComponentStatus(component.name, "running", healthy, record.pid, component.endpoint, log))
        files = (("kubeconfig", self.paths.kubeconfig),) if self.paths.kubeconfig.exists() else ()
        return LabStatus(
            lab=self.spec.name,
            driver="local",
            root=self.paths.root,
            summary=f"{self.spec.nodes} real and {self.spec.simulated_nodes} simulated nodes on this host",
            processes=tuple(rows),
            files=files,
        )

    def wait_ready(self) -> None:
        names = [self.node_name] if self.spec.nodes else []
        if names:
            wait_nodes_ready(self.api, names, timeout=START_TIMEOUT, say=self.say)

    def ranges_in_use(self) -> list[tuple[str, str]]:
        """None: a local lab's node network lives in a namespace of its own and clashes with nothing."""
        return []

    def _no_machines(self, what: str) -> SpecError:
        return SpecError(
            f"lab {self.spec.name!r} uses the local driver: it has no machines to {what}; its components run"
            " on this host (kubelab status lists them, kubelab logs shows their logs)"
        )

    def ssh_argv(self, node: str, command: Sequence[str] = (), *, tty: bool = False) -> list[str]:
        raise self._no_machines("reach")

    def ssh_config(self) -> str:
        raise self._no_machines("reach")

    def logs_argv(self, node: str, component: str, *, follow: bool, tail: int) -> list[str]:
        """The component's log file, which ``tail`` prints (the local driver has no journal)."""
        if node not in (self.node_name, "localhost"):
            raise SpecError(f"lab {self.spec.name!r} runs on this host: its node is {self.node_name}")
        if component != AUDIT and component not in {c.name for c in self.components()}:
            raise SpecError(f"lab {self.spec.name!r} does not run {component}; see: kubelab status")
        log = self.paths.logs / f"{component}.log"  # the audit log is audit.log beside the others
        if not log.exists():
            raise ProvisionError(f"{component} has not written a log yet ({log})")
        return ["tail", "-n", str(tail) if tail else "+1", *(["-F"] if follow else []), str(log)]

    def machines(self) -> MachineControl:
        raise self._no_machines("break: faults need a VM lab (kubelab up --driver libvirt)")
