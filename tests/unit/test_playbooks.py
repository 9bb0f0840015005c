"""The roles under playbooks/ against the inventory the provisioner writes, without VMs.

Every file a role renders (``ansible.builtin.template``) is rendered here the way Ansible renders it
(Jinja2 with ``trim_blocks``, Ansible's own filters, the variables layered as Ansible layers them:
role defaults < inventory < playbook group_vars < task vars), but with ``StrictUndefined``, so a name
the contract does not provide fails here instead of on a VM. The agents' configs are then loaded with
each agent's own settings loader, and every file a role copies from the host is checked against the
list of host-side files the provisioner generates.

What this does not cover: the modules themselves (systemd, uri, copy) and the guests; the syntax
check and ansible-lint run in ``make lint``, and the playbooks run against real VMs in tests/e2e.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import pytest
import yaml

from agents.apiserver.settings import ApiServerSettings
from agents.collector.settings import CollectorSettings
from agents.controllers.cloud.settings import CloudControllerManagerSettings
from agents.controllers.settings import ControllerManagerSettings
from agents.kubelet.settings import KubeletSettings
from agents.machinery.settings import load
from agents.proxy.settings import ProxySettings
from agents.scheduler.settings import SchedulerSettings
from provisioner.drivers.libvirt.inventory import InventoryNode, inventory
from provisioner.drivers.libvirt.playbooks import SITE
from provisioner.drivers.local.components import MIRRORED_REGISTRIES
from provisioner.lab import render
from provisioner.lab.render import HEADER
from provisioner.project import PLAYBOOKS, TEMPLATES
from tests.support.inventory import lab_variables

STATE_DIR = Path("/root/.kubelab/kubelab")
CODE_DIGEST = str(lab_variables(STATE_DIR)["kubelab_code_digest"])
NODES = (
    InventoryNode("kubelab-master", "192.168.150.10", "master"),
    InventoryNode("kubelab-worker1", "192.168.150.11", "worker"),
    InventoryNode("kubelab-worker2", "192.168.150.12", "worker"),
)
VARIABLES: Mapping[str, object] = lab_variables(STATE_DIR)
# the file contents a kubelab_files task renders: a template lookup under templates/
_LOOKUP = re.compile(r"lookup\('ansible\.builtin\.template', kubelab_templates ~ '/(?P<path>[^']+)'\)")
AGENT_SETTINGS: Mapping[str, type[Any]] = {
    "apiserver.yaml": ApiServerSettings,
    "scheduler.yaml": SchedulerSettings,
    "controller-manager.yaml": ControllerManagerSettings,
    "cloud-controller-manager.yaml": CloudControllerManagerSettings,
    "kubelet.yaml": KubeletSettings,
    "proxy.yaml": ProxySettings,
    "trace-collector.yaml": CollectorSettings,
}


# --- a small model of Ansible's variables and templating ------------------------------------------


@cache
def _environment() -> jinja2.Environment:
    from ansible.plugins.filter.core import FilterModule as CoreFilters  # noqa: PLC0415
    from ansible.plugins.filter.mathstuff import FilterModule as MathFilters  # noqa: PLC0415

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True, autoescape=False
    )
    for name, function in {**CoreFilters().filters(), **MathFilters().filters()}.items():
        env.filters.setdefault(name, function)  # Jinja2's own (default, map, ...) as they are
    return env


_ONE_EXPRESSION = re.compile(r"^\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}$", re.DOTALL)


class Variables:
    """A host's variables, templated when read, as Ansible resolves them lazily; a value that is one
    ``{{ expression }}`` keeps its type (Ansible's native templating)."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = dict(raw)
        self._done: dict[str, Any] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.raw

    def get(self, name: str) -> Any:
        if name not in self._done:
            self._done[name] = self.template(self.raw[name])
        return self._done[name]

    def context(self, source: str) -> dict[str, Any]:
        names = jinja2.meta.find_undeclared_variables(_environment().parse(source))
        return {name: self.get(name) for name in names if name in self.raw}

    def template(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: self.template(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.template(v) for v in value]
        if not isinstance(value, str) or ("{{" not in value and "{%" not in value):
            return value
        whole = _ONE_EXPRESSION.match(value.strip())
        if whole:
            return _environment().compile_expression(whole["expr"], undefined_to_none=False)(**self.context(value))
        return _environment().from_string(value).render(self.context(value))

    def with_(self, extra: Mapping[str, Any]) -> Variables:
        return Variables({**self.raw, **extra})


class HostVars(Mapping[str, Mapping[str, Any]]):
    """``hostvars``: every host's variables, resolved when read."""

    def __init__(self, hosts: Mapping[str, Variables]) -> None:
        self.hosts = hosts

    def __getitem__(self, host: str) -> Mapping[str, Any]:
        return {name: self.hosts[host].get(name) for name in self.hosts[host].raw if name != "hostvars"}

    def __iter__(self) -> Iterator[str]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.exists() else None


@dataclass(frozen=True)
class Lab:
    groups: dict[str, list[str]]
    hosts: dict[str, Variables]  # inventory + playbook group_vars + magic variables, by host


def _lab() -> Lab:
    document = yaml.safe_load(inventory(NODES, VARIABLES))["all"]
    groups = {name: list(group.get("hosts") or {}) for name, group in document["children"].items()}
    groups["all"] = [node.name for node in NODES]
    hosts: dict[str, Variables] = {}
    for host in groups["all"]:
        raw: dict[str, Any] = dict(document["vars"])
        raw.update(_yaml(PLAYBOOKS / "group_vars" / "all.yml") or {})
        for group, members in groups.items():
            if group != "all" and host in members:
                raw.update(_yaml(PLAYBOOKS / "group_vars" / f"{group}.yml") or {})
        for group in document["children"].values():
            raw.update((group.get("hosts") or {}).get(host) or {})
        raw.update(inventory_hostname=host, groups=groups, playbook_dir=str(PLAYBOOKS))
        hosts[host] = Variables(raw)
    hostvars = HostVars(hosts)
    for variables in hosts.values():
        variables.raw["hostvars"] = hostvars
    return Lab(groups, hosts)


def _roles_of(host: str, lab: Lab) -> list[str]:
    group_names = [g for g, members in lab.groups.items() if g != "all" and host in members]
    roles = []
    for play in yaml.safe_load(SITE.read_text()):
        members = lab.groups["all"] if play["hosts"] == "all" else lab.groups[play["hosts"]]
        if host not in members:
            continue
        for entry in play["roles"]:
            role = entry["role"] if isinstance(entry, Mapping) else entry
            when = entry.get("when") if isinstance(entry, Mapping) else None
            if when is None or _environment().compile_expression(when)(group_names=group_names):
                roles.append(role)
    return roles


def _tasks(entries: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for entry in entries:
        for part in ("block", "rescue", "always"):
            if part in entry:
                yield from _tasks(entry[part])
        if "block" not in entry:
            yield entry


@dataclass(frozen=True)
class Step:
    """One file a role writes on a host (a kubelab_files task): rendered from templates/ or copied from
    the host."""

    host: str
    role: str
    task: str
    module: str  # template or copy
    src: str
    dest: str
    text: str  # the rendered file (templates only)


def _steps(host: str, lab: Lab) -> Iterator[Step]:
    for role in _roles_of(host, lab):
        base = lab.hosts[host]
        defaults = _yaml(PLAYBOOKS / "roles" / role / "defaults" / "main.yml") or {}
        # role defaults are the weakest: inventory and group_vars win over them
        base = Variables({**defaults, **base.raw})
        base.raw["hostvars"].hosts[host] = base
        for task in _tasks(_yaml(PLAYBOOKS / "roles" / role / "tasks" / "main.yml")):
            if "kubelab_files" not in task:
                continue
            scoped = base.with_(task.get("vars") or {})
            for item in task["kubelab_files"].get("files") or []:
                dest = scoped.template(item["dest"])
                if "src" in item:
                    yield Step(host, role, task["name"], "copy", scoped.template(item["src"]), dest, "")
                    continue
                found = _LOOKUP.search(item["content"])
                assert found, f"{task['name']}: content is not a template lookup under templates/"
                src = TEMPLATES / found["path"]
                source = src.read_text()
                text = _environment().from_string(source).render(scoped.context(source))
                yield Step(host, role, task["name"], "template", str(src), dest, text)
        base.raw["hostvars"].hosts[host] = lab.hosts[host]


@cache
def _all_steps() -> tuple[Step, ...]:
    lab = _lab()
    return tuple(step for host in lab.groups["all"] for step in _steps(host, lab))


def _step(host: str, dest: str) -> Step:
    return next(s for s in _all_steps() if s.host == host and s.dest == dest)


def _settings(step: Step, tmp_path: Path) -> Any:
    config = tmp_path / Path(step.dest).name
    config.write_text(step.text)
    return load(AGENT_SETTINGS[config.name], ["--config", str(config)], env_prefix="KUBELAB_NOTHING", prog="test")


# --- the specification -----------------------------------------------------------------------------


def test_every_file_a_role_renders_comes_from_templates_and_starts_with_the_header() -> None:
    rendered = [s for s in _all_steps() if s.module == "template"]
    assert rendered
    for step in rendered:
        assert Path(step.src).resolve().is_relative_to(TEMPLATES), step
        assert HEADER in step.text.split("\n", 1)[0], f"{step.src} does not start with the header"


def test_the_roles_render_the_templates_the_local_driver_renders() -> None:
    used = {str(Path(s.src).resolve().relative_to(TEMPLATES)) for s in _all_steps() if s.module == "template"}
    assert {
        "agents/apiserver.yaml.j2",
        "agents/scheduler.yaml.j2",
        "agents/controller-manager.yaml.j2",
        "agents/kubelet.yaml.j2",
        "agents/proxy.yaml.j2",
        "agents/trace-collector.yaml.j2",
        "etcd/etcd.conf.yml.j2",
        "registry/config.yml.j2",
        "containerd/config.toml.j2",
        "containerd/hosts.toml.j2",
    } <= used
    units = {p.removeprefix("systemd/") for p in used if p.startswith("systemd/kubelab-")}
    assert units == {
        f"kubelab-{c}.service.j2" for c in ("apiserver", "scheduler", "controller-manager", "kubelet", "proxy")
    } | {
        "kubelab-cloud-controller-manager.service.j2",  # the VM lab's alone: libvirt is its cloud
        "kubelab-trace-collector.service.j2",
    }


def test_the_master_runs_the_control_plane_and_every_host_is_a_node() -> None:
    by_host: dict[str, set[str]] = {}
    for step in _all_steps():
        by_host.setdefault(step.host, set()).add(step.dest)
    for host in ("kubelab-master", "kubelab-worker1", "kubelab-worker2"):
        assert {"/etc/kubelab/kubelet.yaml", "/etc/kubelab/proxy.yaml", "/etc/containerd/config.toml"} <= by_host[host]
    assert "/etc/kubelab/apiserver.yaml" in by_host["kubelab-master"]
    assert "/etc/kubelab/apiserver.yaml" not in by_host["kubelab-worker1"]


def test_the_host_side_files_the_roles_copy_are_the_ones_the_provisioner_generates() -> None:
    copied = {(s.host, s.src) for s in _all_steps() if s.module == "copy"}
    pki, config = STATE_DIR / "pki", STATE_DIR / "config"
    expected = {
        ("kubelab-master", str(pki / name))
        for name in ("apiserver.crt", "apiserver.key", "tokens.csv", "apiserver-kubelet-client.token")
    } | {
        ("kubelab-master", str(config / name))
        for name in ("scheduler.kubeconfig", "controller-manager.kubeconfig", "trace-collector.kubeconfig")
    }
    # the cloud-controller-manager's kubeconfig and the cloud API's token: the master only
    expected |= {
        ("kubelab-master", str(config / "cloud-controller-manager.kubeconfig")),
        ("kubelab-master", str(pki / "cloud.token")),
    }
    # etcd's CA and certificates (pki.Pki.ensure_etcd): the master only
    expected |= {
        ("kubelab-master", str(pki / f"{name}{suffix}"))
        for name in ("etcd-server", "etcd-healthcheck-client", "apiserver-etcd-client")
        for suffix in (".crt", ".key")
    } | {("kubelab-master", str(pki / "etcd-ca.crt"))}
    # the ServiceAccount token key pair (pki.Pki.ensure_service_account_key): the master only
    expected |= {("kubelab-master", str(pki / "sa.key")), ("kubelab-master", str(pki / "sa.pub"))}
    # the cluster CA's key, with which the controller-manager's CSR signer issues certificates: the master only
    expected |= {("kubelab-master", str(pki / "ca.key"))}
    # the EncryptionConfiguration with the key Secrets are encrypted with in etcd: the master only
    expected |= {("kubelab-master", str(pki / "encryption-config.yaml"))}
    # the front proxy's CA and the API server's client certificate for aggregated API servers: the master only
    expected |= {
        ("kubelab-master", str(pki / name))
        for name in ("front-proxy-ca.crt", "front-proxy-client.crt", "front-proxy-client.key")
    }
    for node in NODES:
        expected |= {
            (node.name, str(pki / "ca.crt")),
            (node.name, str(pki / "apiserver-kubelet-client.token")),
            (node.name, str(pki / f"kubelet-{node.name}.crt")),
            (node.name, str(pki / f"kubelet-{node.name}.key")),
            (node.name, str(config / f"kubelet-{node.name}.kubeconfig")),
            (node.name, str(config / "proxy.kubeconfig")),
        }
    assert copied == expected


def test_the_agents_configs_load_with_each_agent_s_settings(tmp_path: Path) -> None:
    apiserver = _settings(_step("kubelab-master", "/etc/kubelab/apiserver.yaml"), tmp_path)
    assert apiserver.etcd.servers == ("https://192.168.150.10:2379",)
    assert apiserver.etcd.cafile == Path("/etc/kubelab/pki/etcd-ca.crt")
    assert apiserver.etcd.certfile == Path("/etc/kubelab/pki/apiserver-etcd-client.crt")
    assert apiserver.etcd.keyfile == Path("/etc/kubelab/pki/apiserver-etcd-client.key")
    assert apiserver.advertise_address == "192.168.150.10"
    assert apiserver.kubelet.address_override == ""  # kubelets are reached at their InternalIP
    assert apiserver.kubelet.token_file == Path("/etc/kubelab/pki/apiserver-kubelet-client.token")
    scheduler = _settings(_step("kubelab-master", "/etc/kubelab/scheduler.yaml"), tmp_path)
    assert scheduler.kubeconfig == Path("/etc/kubelab/scheduler.kubeconfig")
    manager = _settings(_step("kubelab-master", "/etc/kubelab/controller-manager.yaml"), tmp_path)
    assert manager.kubeconfig == Path("/etc/kubelab/controller-manager.kubeconfig")
    proxy = _settings(_step("kubelab-worker1", "/etc/kubelab/proxy.yaml"), tmp_path)
    assert (proxy.node_name, proxy.node_ip, proxy.netns) == ("kubelab-worker1", "192.168.150.11", "")
    cloud = _settings(_step("kubelab-master", "/etc/kubelab/cloud-controller-manager.yaml"), tmp_path)
    assert cloud.kubeconfig == Path("/etc/kubelab/cloud-controller-manager.kubeconfig")
    assert cloud.cloud_config == Path("/etc/kubelab/cloud-config.yaml") and cloud.healthz.port == 10258
    # the cloud routes the pod networks (--pod-routes cloud, the default): the proxies do not
    assert cloud.configure_cloud_routes and cloud.allocate_node_cidrs and cloud.cluster_cidr == "10.244.0.0/16"
    assert not proxy.routes
    config = yaml.safe_load(_step("kubelab-master", "/etc/kubelab/cloud-config.yaml").text)
    assert config == {
        "url": "https://192.168.150.1:7443",
        "token-file": "/etc/kubelab/pki/cloud.token",
        "ca-file": "/etc/kubelab/pki/ca.crt",
    }
    for node in ("kubelab-master", "kubelab-worker1"):  # every kubelet waits for the cloud to initialize its node
        assert _settings(_step(node, "/etc/kubelab/kubelet.yaml"), tmp_path).cloud_provider == "external"


def test_the_master_s_kubelet_registers_tainted_and_labelled_and_a_worker_s_does_not(tmp_path: Path) -> None:
    master = _settings(_step("kubelab-master", "/etc/kubelab/kubelet.yaml"), tmp_path)
    assert master.register_with_taints == ("node-role.kubernetes.io/control-plane:NoSchedule",)
    assert master.node_labels == (
        "node-role.kubernetes.io/control-plane=",
        "node.kubernetes.io/exclude-from-external-load-balancers=",
    )
    worker = _settings(_step("kubelab-worker2", "/etc/kubelab/kubelet.yaml"), tmp_path)
    assert worker.register_with_taints == () and worker.node_labels == ()
    assert (worker.node_name, worker.node_ip) == ("kubelab-worker2", "192.168.150.12")
    assert worker.network.node_netns == ""  # the VM is the node
    assert worker.cni_conf_dir == Path("/etc/cni/net.d")
    assert worker.containerd.address == "/run/containerd/containerd.sock"
    assert (worker.server.address, worker.server.port) == ("0.0.0.0", 10250)
    assert worker.server.cert_file == Path("/etc/kubelab/pki/kubelet.crt")


def test_etcd_and_the_registry_listen_on_the_master_s_address() -> None:
    etcd = yaml.safe_load(_step("kubelab-master", "/etc/kubelab/etcd.conf.yml").text)
    assert etcd["listen-client-urls"] == "https://192.168.150.10:2379"
    assert etcd["initial-cluster"] == "kubelab-master=https://192.168.150.10:2380"
    for side in ("client-transport-security", "peer-transport-security"):
        assert etcd[side] == {
            "cert-file": "/etc/kubelab/pki/etcd-server.crt",
            "key-file": "/etc/kubelab/pki/etcd-server.key",
            "client-cert-auth": True,
            "trusted-ca-file": "/etc/kubelab/pki/etcd-ca.crt",
        }
    etcdctl = _step("kubelab-master", "/etc/profile.d/kubelab-etcdctl.sh").text
    assert "export ETCDCTL_ENDPOINTS=https://192.168.150.10:2379\n" in etcdctl
    assert "export ETCDCTL_CERT=/etc/kubelab/pki/etcd-healthcheck-client.crt\n" in etcdctl
    assert etcd["data-dir"] == "/var/lib/etcd/kubelab"
    registry = yaml.safe_load(_step("kubelab-master", "/etc/docker/registry/config.yml").text)
    assert registry["http"]["addr"] == "192.168.150.10:5000"
    assert registry["storage"]["filesystem"]["rootdirectory"] == "/var/lib/docker-registry"
    dropin = _step("kubelab-master", "/etc/systemd/system/etcd.service.d/kubelab.conf").text
    assert "ExecStart=\nExecStart=/usr/bin/etcd --config-file /etc/kubelab/etcd.conf.yml\n" in dropin


def test_containerd_uses_debian_s_paths_and_docker_io_is_the_lab_registry() -> None:
    config = tomllib.loads(_step("kubelab-worker1", "/etc/containerd/config.toml").text)
    assert (config["root"], config["state"]) == ("/var/lib/containerd", "/run/containerd")
    assert config["grpc"]["address"] == "/run/containerd/containerd.sock"
    # no CRI (the kubelet is kubelab's own), no snapshotter a node cannot use
    assert {"io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs"} <= set(config["disabled_plugins"])
    assert "io.containerd.snapshotter.v1.overlayfs" not in config["disabled_plugins"]
    for registry in MIRRORED_REGISTRIES:  # the same registries as the local driver's containerd
        hosts = tomllib.loads(_step("kubelab-worker1", f"/etc/containerd/certs.d/{registry}/hosts.toml").text)
        assert hosts["server"] == "http://192.168.150.10:5000"


@pytest.mark.parametrize(
    "component", ["apiserver", "scheduler", "controller-manager", "kubelet", "proxy", "trace-collector"]
)
def test_each_unit_runs_its_agent_from_the_venv_and_names_the_code(component: str) -> None:
    host = "kubelab-worker1" if component in ("kubelet", "proxy") else "kubelab-master"
    unit = _step(host, f"/etc/systemd/system/kubelab-{component}.service").text
    module = {"controller-manager": "controllers", "trace-collector": "collector"}.get(component, component)
    assert f"ExecStart=/opt/kubelab/venv/bin/python -m agents.{module} --config /etc/kubelab/{component}.yaml\n" in unit
    assert f"X-Kubelab-Code={CODE_DIGEST}\n" in unit


def test_etc_hosts_lists_every_node() -> None:
    text = _step("kubelab-worker2", "/etc/hosts").text
    for node in NODES:
        assert f"{node.ip}\t{node.name}\n" in text
    assert "127.0.0.1\tlocalhost\n" in text
    # last, as kubelab-firstboot (images/guest) rewrites it at every boot: a reboot changes nothing
    assert text.endswith("\n127.0.1.1\tkubelab-worker2\n")


def test_the_node_s_kernel_settings_forward_and_filter_bridged_traffic() -> None:
    sysctl = _step("kubelab-worker1", "/etc/sysctl.d/90-kubelab.conf").text
    assert "\nnet.ipv4.ip_forward = 1\n" in sysctl
    assert "\n-net.bridge.bridge-nf-call-iptables = 1\n" in sysctl
    modules = _step("kubelab-worker1", "/etc/modules-load.d/kubelab.conf").text
    assert "\nbr_netfilter\n" in modules


def test_the_local_driver_s_proxy_config_renders_with_plain_jinja_and_routes_on(tmp_path: Path) -> None:
    """The local driver renders the proxy's template without Ansible (no Ansible filters there) and
    gives no proxy_routes: its nodes have no cloud, so the proxy routes the pod networks."""
    text = render.render(
        "agents/proxy.yaml.j2",
        proxy_kubeconfig="/k",
        proxy_node_name="n1",
        proxy_node_ip="10.250.0.2",
        proxy_cluster_cidr="10.244.0.0/16",
        proxy_netns="kl-x",
        proxy_healthz_port=10256,
    )
    settings = tmp_path / "proxy.yaml"
    settings.write_text(text)
    assert load(ProxySettings, ["--config", str(settings)], env_prefix="KUBELAB_NOTHING", prog="test").routes


@pytest.mark.parametrize(
    ("host", "config"),
    [
        ("kubelab-master", "apiserver.yaml"),
        ("kubelab-master", "scheduler.yaml"),
        ("kubelab-master", "controller-manager.yaml"),
        ("kubelab-worker1", "kubelet.yaml"),
        ("kubelab-worker1", "proxy.yaml"),
    ],
)
def test_every_component_sends_its_spans_to_the_collector_on_the_master(host: str, config: str, tmp_path: Path) -> None:
    settings = _settings(_step(host, f"/etc/kubelab/{config}"), tmp_path)
    assert settings.tracing.endpoint == "http://192.168.150.10:4318"


def test_the_trace_collector_listens_on_4318_and_publishes_the_master_s_address(tmp_path: Path) -> None:
    settings = _settings(_step("kubelab-master", "/etc/kubelab/trace-collector.yaml"), tmp_path)
    assert settings.port == 4318
    assert settings.advertise_address == "192.168.150.10"
    assert settings.kubeconfig == Path("/etc/kubelab/trace-collector.kubeconfig")
