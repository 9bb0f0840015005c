"""The local driver: the control plane as processes on this host, under the lab's state directory.

``up`` installs what is missing, creates certificates and tokens, starts etcd then the API server
(each awaited until healthy) and writes a kubeconfig; running it again keeps what is running.
``stop`` stops the processes and keeps the state; ``down`` stops them and removes the lab.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from provisioner import components, host, kubeconfig, procs
from provisioner.errors import ProvisionError
from provisioner.labpaths import LabPaths
from provisioner.pki import ADMIN, CONTROLLER_MANAGER, PROXY, SCHEDULER, Pki
from provisioner.spec import LabSpec, service_ip

START_TIMEOUT = 60.0


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

    def components(self) -> list[components.Component]:
        etcd = components.Etcd(
            self.paths, self.spec.name, client_port=self.spec.etcd_port, peer_port=self.spec.etcd_peer_port
        )
        apiserver = components.ApiServer(
            self.paths,
            port=self.spec.api_port,
            etcd_servers=(etcd.endpoint,),
            service_cidr=self.spec.service_cidr,
            node_port_range=self.spec.node_port_range,
            python=sys.executable,
        )
        return [etcd, apiserver]

    def _check_running_spec(self) -> None:
        if not self.paths.spec.exists():
            return
        previous = LabSpec.from_json(self.paths.spec.read_text())
        if previous == self.spec:
            return
        running = [c.name for c in self.components() if self._record(c.name) is not None]
        if running:
            raise ProvisionError(
                f"lab {self.spec.name!r} is running with other settings ({self.paths.spec}); run"
                f" 'kubelab stop --name {self.spec.name}' first, or 'kubelab up' with the same settings"
            )

    def _record(self, name: str) -> procs.ProcessRecord | None:
        record = procs.ProcessRecord.load(self.paths.run, name)
        return record if record is not None and procs.alive(record) else None

    def up(self) -> None:
        started = time.monotonic()
        self.say(f"lab {self.spec.name!r}: local driver, state in {self.paths.root}")
        host.ensure([host.ETCD], say=lambda msg: self.say(f"  host: {msg}"))
        self._check_running_spec()
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
        tokens = self.pki.ensure_tokens([ADMIN, SCHEDULER, CONTROLLER_MANAGER, PROXY])
        self.say(f"  certificates and tokens: {'created' if created else 'reused'} ({self.paths.pki})")
        for component in self.components():
            record = self._record(component.name)
            if record is not None and component.healthy():
                self.say(f"  {component.name}: already running (pid {record.pid}) at {component.endpoint}")
                continue
            if record is not None:
                procs.stop(record)
            began = time.monotonic()
            record = components.start(component, self.paths, timeout=START_TIMEOUT)
            self.say(
                f"  {component.name}: started (pid {record.pid}), healthy after"
                f" {time.monotonic() - began:.1f}s at {component.endpoint}"
            )
        text = kubeconfig.render(
            cluster=self.spec.name,
            server=f"https://127.0.0.1:{self.spec.api_port}",
            ca_pem=self.pki.ca_cert.read_bytes(),
            user=f"{self.spec.name}-admin",
            token=tokens[ADMIN.key],
        )
        kubeconfig.write(self.paths.kubeconfig, text)
        self.say(f"lab {self.spec.name!r} is up in {time.monotonic() - started:.1f}s. Use it with:")
        self.say(f"  export KUBECONFIG={self.paths.kubeconfig}")
        self.say("  kubectl get namespaces")

    def stop(self) -> list[str]:
        """Stop every process of the lab (API server first); return the names of those stopped."""
        stopped = []
        for component in reversed(self.components()):
            record = procs.ProcessRecord.load(self.paths.run, component.name)
            if record is None:
                continue
            if procs.stop(record):
                stopped.append(component.name)
            (self.paths.run / f"{component.name}.json").unlink(missing_ok=True)
        return stopped

    def down(self) -> list[str]:
        stopped = self.stop()
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
