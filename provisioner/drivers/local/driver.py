"""The local driver: the control plane as processes on this host, under the lab's state directory.

``up`` installs what is missing, creates certificates and tokens, starts etcd, the image registry,
the API server, the controller-manager and the scheduler (each awaited until healthy), puts the
built-in images into the registry and writes a kubeconfig; running it again keeps what is running.
``stop`` stops the processes and keeps the state; ``down`` stops them and removes the lab.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provisioner.artefacts import registry
from provisioner.drivers.local import components, nodenet
from provisioner.lab import kubeconfig
from provisioner.lab.paths import LabPaths
from provisioner.lab.pki import (
    ADMIN,
    APISERVER_KUBELET,
    CONTROLLER_MANAGER,
    PROXY,
    SCHEDULER,
    SIMULATED_NODES,
    Pki,
    node_identity,
)
from provisioner.lab.spec import LabSpec, service_ip
from provisioner.system import packages as host
from provisioner.system import processes as procs

START_TIMEOUT = 60.0
START_ORDER = (
    "etcd",
    "registry",
    "apiserver",
    "controller-manager",
    "scheduler",
    "simnodes",
    "containerd",
    "kubelet",
    "proxy",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    state: str  # running, stopped, exited
    healthy: bool
    endpoint: str
    log: str


class LocalDriver:
    def __init__(self, spec: LabSpec, paths: LabPaths, *, say: Callable[[str], None] = print) -> None:
        self.spec = spec
        self.paths = paths
        self.say = say
        self.pki = Pki(paths.pki)

    def _ports(self) -> dict[str, int]:
        """Health ports of the components, chosen once per lab and kept in run/ports.json."""
        known: dict[str, int] = {}
        if self.paths.ports.exists():
            known = json.loads(self.paths.ports.read_text())
        for name in ("scheduler", "controller-manager", "simnodes", "kubelet", "kubelet-server", "proxy"):
            if name not in known:
                known[name] = _free_port()
        self.paths.run.mkdir(parents=True, exist_ok=True)
        self.paths.ports.write_text(json.dumps(known, indent=2) + "\n")
        return known

    def components(self) -> list[components.Component]:
        spec = self.spec
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
        )
        ports = self._ports()
        out: list[components.Component] = [
            etcd,
            components.Registry(self.paths, port=spec.registry_port),
            apiserver,
            components.ControllerManager(
                self.paths,
                ports["controller-manager"],
                sys.executable,
                node_grace_period=spec.node_grace_period,
                cluster_cidr=spec.cluster_cidr,
            ),
            components.Scheduler(self.paths, ports["scheduler"], sys.executable),
        ]
        if spec.simulated_nodes:
            # a node renews its lease four times per grace period, as a kubelet does (10 s for 40 s)
            out.append(
                components.SimNodes(
                    self.paths,
                    ports["simnodes"],
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
                components.Kubelet(
                    self.paths,
                    ports["kubelet"],
                    sys.executable,
                    node_name=self.node_name,
                    node_ip=network.ip,
                    node_netns=network.netns,
                    containerd=containerd,
                    server_port=ports["kubelet-server"],
                ),
                components.Proxy(
                    self.paths,
                    ports["proxy"],
                    sys.executable,
                    node_name=self.node_name,
                    node_ip=network.ip,
                    cluster_cidr=spec.cluster_cidr,
                    netns=network.netns,
                ),
            ]
        return out

    @property
    def node_name(self) -> str:
        return f"{self.spec.name}-node1"

    def _record(self, name: str) -> procs.ProcessRecord | None:
        record = procs.ProcessRecord.load(self.paths.run, name)
        return record if record is not None and procs.alive(record) else None

    def up(self) -> None:
        started = time.monotonic()
        self.say(f"lab {self.spec.name!r}: local driver, state in {self.paths.root}")
        needs = [host.ETCD, host.REGISTRY, host.SKOPEO]
        if self.spec.nodes:
            needs += [host.CONTAINERD, host.CTR, host.RUNC, host.CNI_BRIDGE, host.NFT, host.IPROUTE]
        host.ensure(needs, say=lambda msg: self.say(f"  host: {msg}"))
        self.paths.root.mkdir(parents=True, exist_ok=True)
        self.paths.spec.write_text(self.spec.to_json())
        created = self.pki.ensure_ca()
        self.pki.ensure_serving(
            dns_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            ips=["127.0.0.1", service_ip(self.spec)],
        )
        tokens = self.pki.ensure_tokens(
            [
                *(ADMIN, SCHEDULER, CONTROLLER_MANAGER, PROXY, SIMULATED_NODES, APISERVER_KUBELET),
                node_identity(self.node_name),
            ]
        )
        # the token the API server presents to kubelets, which they accept (kubectl logs)
        kubelet_client = self.paths.pki / "apiserver-kubelet-client.token"
        kubelet_client.write_text(tokens[APISERVER_KUBELET.key] + "\n")
        kubelet_client.chmod(0o600)
        if self.spec.nodes:
            network = nodenet.for_lab(self.spec.name)
            self.pki.ensure_serving(
                name="kubelet",
                common_name=self.node_name,
                dns_names=[self.node_name, "localhost"],
                ips=["127.0.0.1", network.ip],
            )
        self.say(f"  certificates and tokens: {'created' if created else 'reused'} ({self.paths.pki})")
        server = f"https://127.0.0.1:{self.spec.api_port}"
        for owner, identity in (
            ("scheduler", SCHEDULER),
            ("controller-manager", CONTROLLER_MANAGER),
            ("simnodes", SIMULATED_NODES),
            ("kubelet", node_identity(self.node_name)),
            ("proxy", PROXY),
        ):
            kubeconfig.write(
                self.paths.kubeconfig_of(owner),
                kubeconfig.render(
                    cluster=self.spec.name,
                    server=server,
                    ca_pem=self.pki.ca_cert.read_bytes(),
                    user=identity.user,
                    token=tokens[identity.key],
                ),
            )
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
            record = components.start(component, self.paths, timeout=START_TIMEOUT)
            self.say(
                f"  {component.name}: started (pid {record.pid}), healthy after"
                f" {time.monotonic() - began:.1f}s at {component.endpoint}"
            )
        self.publish_images()
        text = kubeconfig.render(
            cluster=self.spec.name,
            server=server,
            ca_pem=self.pki.ca_cert.read_bytes(),
            user=f"{self.spec.name}-admin",
            token=tokens[ADMIN.key],
        )
        kubeconfig.write(self.paths.kubeconfig, text)
        self.say(f"lab {self.spec.name!r} is up in {time.monotonic() - started:.1f}s. Use it with:")
        self.say(f"  export KUBECONFIG={self.paths.kubeconfig}")
        self.say("  kubectl get nodes" if self.spec.simulated_nodes else "  kubectl get namespaces")

    @property
    def registry(self) -> str:
        return components.Registry(self.paths, port=self.spec.registry_port).endpoint

    def publish_images(self) -> None:
        """The built-in images, built or taken from the cache, into the lab registry."""
        done = registry.publish_builtin(self.registry, say=self.say)
        self.say(f"  images: in the registry at {self.registry}: {done}")

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

    def status(self) -> list[ComponentStatus]:
        out = []
        for component in self.components():
            record = procs.ProcessRecord.load(self.paths.run, component.name)
            log = str(self.paths.logs / f"{component.name}.log")
            if record is None:
                out.append(ComponentStatus(component.name, None, "stopped", False, component.endpoint, log))
            elif not procs.alive(record):
                out.append(ComponentStatus(component.name, record.pid, "exited", False, component.endpoint, log))
            else:
                out.append(
                    ComponentStatus(component.name, record.pid, "running", component.healthy(), component.endpoint, log)
                )
        return out
