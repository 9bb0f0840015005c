"""The control-plane components as the local driver runs them: config, command line, health.

Configs are rendered from the same templates the Ansible roles use. Each component is started as
a background process and awaited until its health endpoint answers; start order is explicit
(etcd before the API server).
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from provisioner.errors import ComponentError
from provisioner.lab import pki, render
from provisioner.lab.paths import LabPaths
from provisioner.system import ports
from provisioner.system import processes as procs
from provisioner.system.netns import enter as netns_enter
from provisioner.system.waiting import wait_for

HEALTH_TIMEOUT = 3.0  # the longest one health check takes
# registries whose names the lab registry answers to (the node role writes the same hosts.toml files)
MIRRORED_REGISTRIES = ("docker.io", "registry.k8s.io", "k8s.gcr.io")


class Component(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def endpoint(self) -> str: ...

    def configure(self) -> bool:
        """Render the component's config; return whether it changed."""
        ...

    def argv(self) -> list[str]: ...

    def ports(self) -> list[tuple[int, str]]:
        """The ports it listens on, with the flag that chooses each."""
        ...

    def health(self) -> str:
        """'' when healthy, else what its health check saw (an HTTP status, a connection error)."""
        ...

    def healthy(self) -> bool: ...


class _Checked:
    """``healthy`` from ``health``, for every component below."""

    def health(self) -> str:
        raise NotImplementedError

    def healthy(self) -> bool:
        return not self.health()


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "reason", exc)
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror
    return str(inner) or type(inner).__name__


def _http_health(
    url: str, *, expect: Callable[[bytes], bool] = lambda _body: True, context: ssl.SSLContext | None = None
) -> str:
    """'' when ``url`` answers 200 with a body ``expect`` accepts; else the status and the body's
    start (``HTTP 500: [-]etcd failed``), or the connection error (``Connection refused``)."""
    try:
        with urllib.request.urlopen(url, timeout=min(2.0, HEALTH_TIMEOUT), context=context) as response:
            code, body = int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        code, body = exc.code, exc.read()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        return _reason(exc)
    if code == 200 and expect(body):
        return ""
    text = " ".join(body.decode(errors="replace").split())[:120]
    return f"HTTP {code}: {text}" if text else f"HTTP {code}"


@dataclass(frozen=True)
class Etcd(_Checked):
    paths: LabPaths
    lab_name: str
    client_port: int = 2379
    peer_port: int = 2380
    address: str = "127.0.0.1"
    name: str = "etcd"

    @property
    def endpoint(self) -> str:
        return f"https://{self.address}:{self.client_port}"

    @property
    def config_file(self) -> Path:
        return self.paths.config / "etcd.conf.yml"

    def client_context(self, client: str = pki.ETCD_HEALTHCHECK_CLIENT) -> ssl.SSLContext:
        """TLS as etcd's clients speak it: etcd's CA, and a client certificate it signed."""
        context = ssl.create_default_context(cafile=str(self.paths.pki / f"{pki.ETCD_CA}.crt"))
        context.load_cert_chain(str(self.paths.pki / f"{client}.crt"), str(self.paths.pki / f"{client}.key"))
        return context

    def configure(self) -> bool:
        self.paths.etcd_data.mkdir(parents=True, exist_ok=True)
        self.paths.etcd_data.chmod(0o700)
        text = render.render(
            "etcd/etcd.conf.yml.j2",
            etcd_name="default",
            etcd_data_dir=str(self.paths.etcd_data),
            etcd_listen_address=self.address,
            etcd_advertise_address=self.address,
            etcd_client_port=self.client_port,
            etcd_peer_port=self.peer_port,
            etcd_cert_file=str(self.paths.pki / f"{pki.ETCD_SERVER}.crt"),
            etcd_key_file=str(self.paths.pki / f"{pki.ETCD_SERVER}.key"),
            etcd_trusted_ca_file=str(self.paths.pki / f"{pki.ETCD_CA}.crt"),
            lab_name=self.lab_name,
        )
        return render.write(self.config_file, text)

    def ports(self) -> list[tuple[int, str]]:
        return [(self.client_port, "--etcd-port"), (self.peer_port, "--etcd-peer-port")]

    def argv(self) -> list[str]:
        binary = shutil.which("etcd")
        if binary is None:
            raise ComponentError("etcd is not installed (Debian package etcd-server)")
        return [binary, "--config-file", str(self.config_file)]

    def health(self) -> str:
        def says_healthy(body: bytes) -> bool:
            try:
                return bool(json.loads(body).get("health") == "true")
            except ValueError:
                return False

        try:
            context = self.client_context()
        except (OSError, ssl.SSLError) as exc:
            return f"no client certificate for etcd: {_reason(exc)}"
        return _http_health(f"{self.endpoint}/health", expect=says_healthy, context=context)


@dataclass(frozen=True)
class Registry(_Checked):
    """The lab's image registry: Debian's docker-registry, plain HTTP on the lab's own address."""

    paths: LabPaths
    port: int = 5000
    address: str = "127.0.0.1"
    name: str = "registry"

    @property
    def endpoint(self) -> str:
        return f"http://{self.address}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.paths.config / "registry.yml"

    def configure(self) -> bool:
        self.paths.registry_data.mkdir(parents=True, exist_ok=True)
        text = render.render(
            "registry/config.yml.j2",
            registry_root=str(self.paths.registry_data),
            registry_listen_address=self.address,
            registry_port=self.port,
        )
        return render.write(self.config_file, text)

    def ports(self) -> list[tuple[int, str]]:
        return [(self.port, "--registry-port")]

    def argv(self) -> list[str]:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise ComponentError("docker-registry is not installed (Debian package docker-registry)")
        return [binary, "serve", str(self.config_file)]

    def health(self) -> str:
        return _http_health(f"{self.endpoint}/v2/")


def start(
    component: Component,
    paths: LabPaths,
    *,
    timeout: float,
    tags: Mapping[str, str] | None = None,
    say: Callable[[str], None] | None = None,
) -> procs.ProcessRecord:
    """Start and await one (configured) component, ``tags`` (the lab's identity) in its environment,
    saying at least every 10 s what its health check sees; raise ComponentError naming the last of it
    and the component's log on failure."""
    for port, flag in component.ports():
        if ports.in_use("127.0.0.1", port):
            raise ComponentError(
                f"{component.name}: port {port} is in use by another process; free it or choose another with {flag}"
            )
    log = paths.logs / f"{component.name}.log"
    record = procs.spawn(component.name, component.argv(), log=log, tags=tags, record_in=paths.run)

    def exited() -> str | None:
        return None if procs.alive(record) else "exited"

    seen = ["not asked yet"]

    def up() -> bool:
        if not procs.alive(record):
            return False
        seen[0] = component.health()
        return not seen[0]

    what = f"{component.name} to be healthy at {component.endpoint}"
    if not wait_for(
        up,
        timeout=timeout,
        interval=0.1,
        abort=exited,
        what=what,
        say=say,
        last=lambda: seen[0],
        slowest=HEALTH_TIMEOUT,
    ):
        reason = "exited" if not procs.alive(record) else f"was not healthy after {timeout:.0f}s (last: {seen[0]})"
        tail = procs.log_tail(log, 3)
        procs.stop(record)
        raise ComponentError(f"{component.name} {reason}; see {log}" + (f"\n{tail}" if tail else ""))
    return record


@dataclass(frozen=True)
class ApiServer(_Checked):
    paths: LabPaths
    port: int
    etcd_servers: tuple[str, ...]
    service_cidr: str
    node_port_range: str
    python: str
    eviction_seconds: int = 300
    workers: int = 0
    address: str = "127.0.0.1"
    advertise_address: str = ""  # what the kubernetes Service leads to (default: address)
    node_netns: str = ""  # the node's network namespace (pods' addresses are reached from inside it)
    tracing_endpoint: str = ""  # the trace collector's OTLP/HTTP address (empty: no spans)
    name: str = "apiserver"

    @property
    def endpoint(self) -> str:
        return f"https://{self.address}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.paths.config / "apiserver.yaml"

    @property
    def audit_policy(self) -> Path:
        return self.paths.config / "audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        return self.paths.logs / "audit.log"

    def configure(self) -> bool:
        policy = render.write(self.audit_policy, render.render("agents/audit-policy.yaml.j2"))
        # aggregated API servers' pods live on the node's bridge, inside the node's network namespace
        egress = {"apiserver_egress_network_namespace": f"/run/netns/{self.node_netns}"} if self.node_netns else {}
        text = render.render(
            "agents/apiserver.yaml.j2",
            apiserver_bind_address=self.address,
            apiserver_port=self.port,
            apiserver_advertise_address=self.advertise_address or self.address,
            apiserver_tls_cert_file=str(self.paths.pki / "apiserver.crt"),
            apiserver_tls_key_file=str(self.paths.pki / "apiserver.key"),
            apiserver_token_file=str(self.paths.tokens),
            apiserver_client_ca_file=str(self.paths.pki / "ca.crt"),
            apiserver_encryption_config=str(self.paths.pki / "encryption-config.yaml"),
            apiserver_etcd_servers=list(self.etcd_servers),
            apiserver_etcd_cafile=str(self.paths.pki / f"{pki.ETCD_CA}.crt"),
            apiserver_etcd_certfile=str(self.paths.pki / f"{pki.APISERVER_ETCD_CLIENT}.crt"),
            apiserver_etcd_keyfile=str(self.paths.pki / f"{pki.APISERVER_ETCD_CLIENT}.key"),
            apiserver_service_cidr=self.service_cidr,
            apiserver_node_port_range=self.node_port_range,
            apiserver_schema_cache_dir=str(self.paths.root.parent / ".cache"),
            apiserver_eviction_seconds=self.eviction_seconds,
            apiserver_workers=self.workers,
            # the API server reaches the local node's kubelet on the host's loopback (kubectl logs)
            apiserver_kubelet_ca_file=str(self.paths.pki / "ca.crt"),
            apiserver_kubelet_token_file=str(self.paths.pki / "apiserver-kubelet-client.token"),
            apiserver_kubelet_address_override="127.0.0.1",
            apiserver_audit_policy_file=str(self.audit_policy),
            apiserver_audit_log_path=str(self.audit_log),
            apiserver_audit_log_maxsize=20,
            apiserver_audit_log_maxbackup=2,
            apiserver_sa_key_file=str(self.paths.pki / "sa.pub"),
            apiserver_sa_signing_key_file=str(self.paths.pki / "sa.key"),
            apiserver_proxy_client_cert_file=str(self.paths.pki / f"{pki.FRONT_PROXY_CLIENT}.crt"),
            apiserver_proxy_client_key_file=str(self.paths.pki / f"{pki.FRONT_PROXY_CLIENT}.key"),
            apiserver_requestheader_client_ca_file=str(self.paths.pki / f"{pki.FRONT_PROXY_CA}.crt"),
            apiserver_tracing_endpoint=self.tracing_endpoint,
            **egress,
        )
        return render.write(self.config_file, text) or policy

    def ports(self) -> list[tuple[int, str]]:
        return [(self.port, "--api-port")]

    def argv(self) -> list[str]:
        return [self.python, "-m", "agents.apiserver", "--config", str(self.config_file)]

    def health(self) -> str:
        context = ssl.create_default_context(cafile=str(self.paths.pki / "ca.crt"))
        return _http_health(f"{self.endpoint}/readyz", expect=lambda body: body.strip() == b"ok", context=context)


def _ready(port: int) -> str:
    return _http_health(f"http://127.0.0.1:{port}/readyz", expect=lambda body: body.strip() == b"ok")


@dataclass(frozen=True)
class Scheduler(_Checked):
    paths: LabPaths
    healthz_port: int
    python: str
    tracing_endpoint: str = ""
    name: str = "scheduler"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.healthz_port}/readyz"

    def configure(self) -> bool:
        return render.write(
            self.paths.config / "scheduler.yaml",
            render.render(
                "agents/scheduler.yaml.j2",
                scheduler_kubeconfig=str(self.paths.kubeconfig_of("scheduler")),
                scheduler_healthz_port=self.healthz_port,
                scheduler_tracing_endpoint=self.tracing_endpoint,
            ),
        )

    def ports(self) -> list[tuple[int, str]]:
        return [(self.healthz_port, "a free port (remove run/ports.json)")]

    def argv(self) -> list[str]:
        return [self.python, "-m", "agents.scheduler", "--config", str(self.paths.config / "scheduler.yaml")]

    def health(self) -> str:
        return _ready(self.healthz_port)


@dataclass(frozen=True)
class TraceCollector(_Checked):
    """The trace collector (agents/collector): every component's spans over OTLP/HTTP on the host's
    loopback, where they all run; the Service ``kube-system/trace-collector`` leads to
    ``advertise_address``, which the API server's service proxy dials (from the node's namespace when
    the lab has a node: the uplink relays the port there, as it does the API server's)."""

    paths: LabPaths
    port: int
    python: str
    advertise_address: str = "127.0.0.1"
    name: str = "trace-collector"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def configure(self) -> bool:
        return render.write(
            self.paths.config / "trace-collector.yaml",
            render.render(
                "agents/trace-collector.yaml.j2",
                trace_collector_kubeconfig=str(self.paths.kubeconfig_of("trace-collector")),
                trace_collector_port=self.port,
                trace_collector_bind_address="127.0.0.1",
                trace_collector_advertise_address=self.advertise_address,
            ),
        )

    def ports(self) -> list[tuple[int, str]]:
        return [(self.port, "a free port (remove run/ports.json)")]

    def argv(self) -> list[str]:
        return [self.python, "-m", "agents.collector", "--config", str(self.paths.config / "trace-collector.yaml")]

    def health(self) -> str:
        return _http_health(f"{self.endpoint}/healthz", expect=lambda body: body.strip() == b"ok")


@dataclass(frozen=True)
class ControllerManager(_Checked):
    paths: LabPaths
    healthz_port: int
    python: str
    node_grace_period: int
    cluster_cidr: str
    tracing_endpoint: str = ""
    name: str = "controller-manager"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.healthz_port}/readyz"

    def configure(self) -> bool:
        return render.write(
            self.paths.config / "controller-manager.yaml",
            render.render(
                "agents/controller-manager.yaml.j2",
                controller_manager_kubeconfig=str(self.paths.kubeconfig_of("controller-manager")),
                controller_manager_node_grace_period=self.node_grace_period,
                controller_manager_cluster_cidr=self.cluster_cidr,
                controller_manager_healthz_port=self.healthz_port,
                controller_manager_root_ca_file=str(self.paths.pki / "ca.crt"),
                controller_manager_signing_cert_file=str(self.paths.pki / "ca.crt"),
                controller_manager_signing_key_file=str(self.paths.pki / "ca.key"),
                controller_manager_tracing_endpoint=self.tracing_endpoint,
            ),
        )

    def ports(self) -> list[tuple[int, str]]:
        return [(self.healthz_port, "a free port (remove run/ports.json)")]

    def argv(self) -> list[str]:
        return [self.python, "-m", "agents.controllers", "--config", str(self.paths.config / "controller-manager.yaml")]

    def health(self) -> str:
        return _ready(self.healthz_port)


@dataclass(frozen=True)
class SimNodes(_Checked):
    paths: LabPaths
    healthz_port: int
    python: str
    count: int
    heartbeat_interval: float = 10.0
    name: str = "simnodes"

    @property
    def endpoint(self) -> str:
        return f"{self.count} simulated nodes"

    def configure(self) -> bool:
        return render.write(
            self.paths.config / "simnodes.yaml",
            render.render(
                "agents/simnodes.yaml.j2",
                simnodes_kubeconfig=str(self.paths.kubeconfig_of("simnodes")),
                simnodes_count=self.count,
                simnodes_healthz_port=self.healthz_port,
                simnodes_heartbeat_interval=self.heartbeat_interval,
            ),
        )

    def ports(self) -> list[tuple[int, str]]:
        return [(self.healthz_port, "a free port (remove run/ports.json)")]

    def argv(self) -> list[str]:
        return [self.python, "-m", "agents.simnodes", "--config", str(self.paths.config / "simnodes.yaml")]

    def health(self) -> str:
        return _ready(self.healthz_port)


@dataclass(frozen=True)
class Containerd(_Checked):
    """The node's container runtime: Debian's containerd with a root, state and socket of the lab's."""

    paths: LabPaths
    name: str = "containerd"

    @property
    def socket(self) -> Path:
        return self.paths.run / "containerd.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    @property
    def hosts_dir(self) -> Path:
        return self.paths.config / "containerd" / "certs.d"

    def configure(self) -> bool:
        root = self.paths.root / "containerd"
        text = render.render(
            "containerd/config.toml.j2",
            containerd_root=str(root / "root"),
            containerd_state=str(root / "state"),
            containerd_socket=str(self.socket),
        )
        return render.write(self.paths.config / "containerd" / "config.toml", text)

    def mirror(self, registry_url: str) -> bool:
        """The lab registry as the mirror of every registry a lab's manifests name."""
        text = render.render("containerd/hosts.toml.j2", registry_url=registry_url)
        changed = [render.write(self.hosts_dir / host / "hosts.toml", text) for host in MIRRORED_REGISTRIES]
        return any(changed)

    def ports(self) -> list[tuple[int, str]]:
        return []

    def argv(self) -> list[str]:
        binary = shutil.which("containerd")
        if binary is None:
            raise ComponentError("containerd is not installed (Debian package containerd)")
        return [binary, "--config", str(self.paths.config / "containerd" / "config.toml")]

    def health(self) -> str:
        if not self.socket.exists():
            return f"no socket at {self.socket} yet"
        try:
            done = subprocess.run(
                ["ctr", "--address", str(self.socket), "version"],
                capture_output=True,
                text=True,
                timeout=HEALTH_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return f"ctr version did not answer within {HEALTH_TIMEOUT:.0f}s"
        if done.returncode == 0:
            return ""
        lines = (done.stderr or done.stdout).strip().splitlines()
        return f"ctr version: {lines[-1][:160]}" if lines else f"ctr version exited with code {done.returncode}"

    def kill_all(self, namespace: str = "k8s.io") -> int:
        """Kill and remove every container of ``namespace`` (their shims outlive containerd)."""
        if not self.healthy():
            return 0
        base = ["ctr", "--address", str(self.socket), "--namespace", namespace]
        listed = subprocess.run([*base, "containers", "list", "--quiet"], capture_output=True, text=True, check=False)
        ids = listed.stdout.split()
        for cid in ids:
            subprocess.run([*base, "tasks", "kill", "--signal", "SIGKILL", cid], capture_output=True, check=False)
            subprocess.run([*base, "tasks", "delete", "--force", cid], capture_output=True, check=False)
            subprocess.run([*base, "containers", "delete", cid], capture_output=True, check=False)
        return len(ids)


@dataclass(frozen=True)
class Kubelet(_Checked):
    paths: LabPaths
    healthz_port: int
    python: str
    node_name: str
    node_ip: str
    node_netns: str
    containerd: Containerd
    server_port: int = 10250
    cluster_dns: str = ""
    tracing_endpoint: str = ""
    name: str = "kubelet"

    @property
    def endpoint(self) -> str:
        return f"node {self.node_name} ({self.node_ip} in netns {self.node_netns})"

    def configure(self) -> bool:
        return render.write(
            self.paths.config / "kubelet.yaml",
            render.render(
                "agents/kubelet.yaml.j2",
                kubelet_kubeconfig=str(self.paths.kubeconfig_of("kubelet")),
                kubelet_node_name=self.node_name,
                kubelet_node_ip=self.node_ip,
                kubelet_root_dir=str(self.paths.root / "kubelet"),
                kubelet_containerd_socket=str(self.containerd.socket),
                kubelet_hosts_dir=str(self.containerd.hosts_dir),
                kubelet_node_netns=self.node_netns,
                kubelet_healthz_port=self.healthz_port,
                kubelet_server_address="127.0.0.1",
                kubelet_server_port=self.server_port,
                kubelet_server_cert_file=str(self.paths.pki / "kubelet.crt"),
                kubelet_server_key_file=str(self.paths.pki / "kubelet.key"),
                kubelet_server_token_file=str(self.paths.pki / "apiserver-kubelet-client.token"),
                kubelet_tracing_endpoint=self.tracing_endpoint,
                **({"kubelet_cluster_dns": self.cluster_dns} if self.cluster_dns else {}),
            ),
        )

    def ports(self) -> list[tuple[int, str]]:
        return [
            (self.healthz_port, "a free port (remove run/ports.json)"),
            (self.server_port, "a free port (remove run/ports.json)"),
        ]

    def argv(self) -> list[str]:
        return [self.python, "-m", "agents.kubelet", "--config", str(self.paths.config / "kubelet.yaml")]

    def health(self) -> str:
        return _ready(self.healthz_port)


@dataclass(frozen=True)
class Proxy(_Checked):
    paths: LabPaths
    healthz_port: int
    python: str
    node_name: str
    node_ip: str
    cluster_cidr: str
    netns: str
    tracing_endpoint: str = ""
    name: str = "proxy"

    @property
    def endpoint(self) -> str:
        return f"nftables table ip kubelab in netns {self.netns}"

    def configure(self) -> bool:
        return render.write(
            self.paths.config / "proxy.yaml",
            render.render(
                "agents/proxy.yaml.j2",
                proxy_kubeconfig=str(self.paths.kubeconfig_of("proxy")),
                proxy_node_name=self.node_name,
                proxy_node_ip=self.node_ip,
                proxy_cluster_cidr=self.cluster_cidr,
                proxy_netns=self.netns,
                proxy_healthz_port=self.healthz_port,
                proxy_tracing_endpoint=self.tracing_endpoint,
            ),
        )

    def ports(self) -> list[tuple[int, str]]:
        return [(self.healthz_port, "a free port (remove run/ports.json)")]

    def argv(self) -> list[str]:
        return [self.python, "-m", "agents.proxy", "--config", str(self.paths.config / "proxy.yaml")]

    def health(self) -> str:
        return _ready(self.healthz_port)


def _connects_in(netns: str, address: str, port: int) -> str:
    """'' when a TCP connection to ADDRESS:PORT made inside NETNS is accepted, else why not (the
    check runs in a thread of its own, which alone enters the namespace)."""
    result: list[str] = ["no answer"]

    def attempt() -> None:
        try:
            netns_enter(netns)
            with socket.create_connection((address, port), timeout=HEALTH_TIMEOUT):
                result[0] = ""
        except OSError as exc:
            result[0] = exc.strerror or str(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(HEALTH_TIMEOUT + 1)
    return result[0]


@dataclass(frozen=True)
class Uplink(_Checked):
    """The node's way to the API server and the kubelet's port (:mod:`provisioner.drivers.local.uplink`):
    the address the ``kubernetes`` Service leads pods to, and the one the node publishes for its kubelet
    (metrics-server scrapes it), inside the node's namespace."""

    python: str
    netns: str
    address: str
    port: int
    extra_ports: tuple[int, ...] = ()
    name: str = "uplink"

    @property
    def endpoint(self) -> str:
        ports = ",".join(str(p) for p in (self.port, *self.extra_ports))
        return f"{self.address}:{ports} in netns {self.netns} -> 127.0.0.1"

    def configure(self) -> bool:
        return False

    def ports(self) -> list[tuple[int, str]]:
        return []

    def argv(self) -> list[str]:
        ports = [str(p) for p in (self.port, *self.extra_ports)]
        return [self.python, "-m", "provisioner.drivers.local.uplink", self.netns, self.address, *ports]

    def health(self) -> str:
        return _connects_in(self.netns, self.address, self.port)
